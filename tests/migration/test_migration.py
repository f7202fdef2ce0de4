"""Live migration on the real stack: Mininet, Docker engine, CRIU, agents over the emulated WAN."""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker
import pytest

from testbed import assets
from testbed.containers.server import (LINK_AT_BYTES, SERVER_LABEL, SERVICE_LABEL, engine_restore_copies,
                                      server_state_dir)
from testbed.records import counter_breaks, outages, read_jsonl

from conftest import COUNTER, Session, agents_on_paper_network, model_session, outcome, served

pytestmark = [pytest.mark.criu, pytest.mark.network, pytest.mark.docker]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    yield from agents_on_paper_network(tmp_path_factory, "migration")


@pytest.mark.parametrize("mode, options", [("cold", {}), ("precopy-delta", {}), ("layered", {}), ("postcopy", {}),
                                           ("precopy-delta", {"postcopy": True})],
                         ids=["cold", "precopy-delta", "layered", "postcopy", "precopy-delta+postcopy"])
def test_stateful_modes_continue_the_counter(env, mode, options):
    session = Session(env, "svc", "edge1", ap="ap2")
    time.sleep(1.5)
    record = session.migrate("edge2", mode, **options)
    time.sleep(1.5)
    rows = session.finish()
    assert record["ok"], record.get("error")
    assert record["carries_state"] is True
    ok_rows = served(rows)
    before = [r for r in ok_rows if r["endpoint"][0] != record["new_endpoint"][0]]
    after = [r for r in ok_rows if r["endpoint"][0] == record["new_endpoint"][0]]
    assert len(before) > 10 and len(after) > 10, outcome(rows)
    assert ok_rows[0]["counter"] == 1
    assert counter_breaks(rows) == []                 # no lost, no repeated increments
    assert after[0]["counter"] == before[-1]["counter"] + 1
    # one outage: the migration's.  Only the pre-copy's checkpoint may make a request late before
    # it (it freezes the service while it dumps; on a busy host longer than the 0.5 s timeout)
    final = min(phase["start"] for phase in record["phases"].values())
    early = [o for o in outages(rows) if o.end <= final]
    assert len(outages(rows)) - len(early) == 1, outages(rows)
    pre = session.pre_record["phases"].get("pre_migration") if session.pre_record else None
    for outage in early:
        assert pre and pre["start"] <= outage.start <= pre["end"] and outage.cause.startswith("timeout"), \
            (outage, session.pre_record)
    for phase in ("final_checkpoint", "final_transfer", "restore"):
        assert record["phases"][phase]["ok"]
    assert record["bytes"]["during_downtime"] > 0
    if mode == "postcopy" or options.get("postcopy"):     # the memory came after the restore, over the WAN
        pages = record["phases"]["postcopy_pages"]
        assert pages["ok"] and pages["start"] >= record["phases"]["restore"]["end"] - 1e-3
        lazy, changed = record["sizes"]["lazy_pages"], record["bytes"]["after_downtime"]
        if mode == "postcopy":       # all of it
            assert changed > record["bytes"]["during_downtime"] and changed >= lazy, \
                (record["bytes"], record["sizes"], record.get("postcopy_eager"))
        else:                        # after a pre-copy, only the pages written since (and a bit per page)
            assert 0 < changed < 0.2 * lazy, (changed, lazy)
        assert not docker.from_env().containers.list(filters={"label": f"{SERVICE_LABEL}=svc", "status": "exited"})


@pytest.mark.parametrize("mode", ["cold", "precopy-delta", "layered", "stateless", "postcopy"])
def test_object_detection_service_migrates(env, mode):
    """A model service (about 130 MB of checkpoint) keeps answering and counting across each mode."""
    session = model_session(env, "detect", "street-dog.jpg")
    time.sleep(3.0)
    record = session.migrate("edge2", mode)
    if record["ok"]:
        session.wait_served_at(record, count=5, timeout=30.0)
    rows = session.finish()
    assert record["ok"], record.get("error")
    ok_rows = served(rows)
    after = [r for r in ok_rows if r["endpoint"][0] == record["new_endpoint"][0]]
    before = [r for r in ok_rows if r["endpoint"][0] != record["new_endpoint"][0]]
    assert len(before) >= 5 and len(after) >= 5, outcome(rows)
    for row in (before[-1], after[-1]):
        assert "dog" in {o["class"] for o in row["result"]["objects"]}
    if mode == "stateless":
        assert record["carries_state"] is False and after[0]["counter"] == 1
        assert counter_breaks(rows) == [(before[-1]["counter"], 1)]
        return
    assert record["carries_state"] is True
    assert counter_breaks(rows) == []
    assert after[0]["counter"] == before[-1]["counter"] + 1
    if mode == "precopy-delta":
        assert record["quiesced"] == {"pre": True, "final": True}   # both caught between two requests
        full, delta = record["sizes"]["pre_checkpoint"], record["sizes"]["delta"]
        assert full > 50_000_000
        assert delta <= 0.05 * full, (delta, full)
    if mode == "postcopy":           # the model's memory followed the restore, all of it
        assert record["phases"]["postcopy_pages"]["ok"] and record["bytes"]["after_downtime"] > 50_000_000


@pytest.mark.parametrize("app, image", [("alpr", "plate-crop-1.png"), ("face", "face-obama2.jpg")])
def test_model_service_delta_stays_under_five_percent_over_repeated_moves(env, app, image):
    """Seed 002 Table I: the delta checkpoint of a model service is a few % of the full one,
    on every move, not only the first (the heap of a serving model keeps changing)."""
    session = model_session(env, app, image)
    records = []
    for dest in ("edge2", "edge1"):
        time.sleep(3.0)
        records.append(session.migrate(dest, "precopy-delta"))
        assert records[-1]["ok"], records[-1].get("error")
        session.wait_served_at(records[-1], count=3, timeout=30.0)
    rows = session.finish()
    assert counter_breaks(rows) == [], outcome(rows)
    assert served(rows)[-1]["endpoint"][0] == records[-1]["new_endpoint"][0], outcome(rows)
    for record in records:
        full, delta = record["sizes"]["pre_checkpoint"], record["sizes"]["delta"]
        assert full > 30_000_000
        assert delta <= 0.05 * full, (record["dest"], delta, full)


def test_stateless_restarts_from_zero_and_says_so(env):
    session = Session(env, "svc", "edge1", ap="ap2")
    time.sleep(1.0)
    record = session.migrate("edge2", "stateless")
    time.sleep(1.0)
    rows = session.finish()
    assert record["ok"], record.get("error")
    assert record["carries_state"] is False
    after = [r for r in served(rows) if r["endpoint"][0] == record["new_endpoint"][0]]
    before = [r for r in served(rows) if r["endpoint"][0] != record["new_endpoint"][0]]
    assert before[-1]["counter"] > 5
    assert after[0]["counter"] == 1
    assert counter_breaks(rows) == [(before[-1]["counter"], 1)]


def test_a_restore_from_linked_images_leaves_docker_a_container_it_fully_manages(env):
    """The engine restores from links to the images (no copy through containerd's content
    store); afterwards Docker sees the container as its own: running with the restored PID,
    its logs readable, checkpointed again (moved back), stopped; no image left behind, nor the
    engine's unpacked copy of the checkpoint (containerd leaves it in its /tmp)."""
    client = docker.from_env()
    copies = set(engine_restore_copies())
    session = Session(env, "svc", "edge1", ap="ap2")
    time.sleep(1.0)
    there = session.migrate("edge2", "precopy-delta")
    assert there["ok"], there.get("error")
    assert there["restore_path"] == "linked", there["restore_steps"]
    container = _service_container(client, "edge2", "svc")
    assert container.status == "running" and container.attrs["State"]["Running"]
    pid = container.attrs["State"]["Pid"]
    assert pid > 0 and Path(f"/proc/{pid}").exists()
    assert "python" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    container.logs(tail=5)                           # the engine still owns the output streams
    time.sleep(1.0)
    back = session.migrate("edge1", "precopy-delta")  # a second checkpoint, of the restored container
    assert back["ok"], back.get("error")
    assert back["restore_path"] == "linked"
    time.sleep(1.0)
    returned = _service_container(client, "edge1", "svc")
    slot = Path(client.info()["DockerRootDir"]) / "containers" / returned.id / "checkpoints"
    engine_copy = [p for p in slot.rglob("*") if p.is_file() and not p.is_symlink()]
    assert engine_copy and all(p.stat().st_size < LINK_AT_BYTES for p in engine_copy)
    assert not [p for p in slot.rglob("*") if p.is_symlink() and p.exists()], "the images were left behind"
    assert set(engine_restore_copies()) == copies
    returned.stop(timeout=2)
    returned.reload()
    assert returned.status == "exited"
    rows = session.finish()
    assert counter_breaks(rows) == []
    assert served(rows)[-1]["counter"] > 30


def _service_container(client, server: str, service: str):
    found = client.containers.list(filters={"label": [f"{SERVER_LABEL}={server}", f"{SERVICE_LABEL}={service}"]})
    assert len(found) == 1, found
    return found[0]


def test_delta_is_at_most_one_percent_for_the_counter(env):
    session = Session(env, "svc", "edge1", ap="ap1")
    time.sleep(1.0)
    record = session.migrate("edge2", "precopy-delta")
    session.finish()
    assert record["ok"], record.get("error")
    full, delta = record["sizes"]["pre_checkpoint"], record["sizes"]["delta"]
    assert full > 1_000_000
    assert delta <= 0.01 * full, (delta, full)
    assert record["bytes"]["during_downtime"] == delta


def test_iterative_precopy_ships_each_rounds_delta_and_keeps_the_counter(env):
    """Three pre-copy rounds (the full checkpoint, then two deltas the destination applies to
    what it holds): the record lists each round, the downtime's delta is taken against the
    last one, and the counter goes on without a break."""
    session = Session(env, "svc", "edge1", ap="ap2")
    time.sleep(1.0)
    record = session.migrate("edge2", "precopy-delta", precopy_rounds=3, min_shrink=0.0)
    time.sleep(1.0)
    rows = session.finish()
    assert record["ok"], record.get("error")
    rounds = record["precopy_rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3], rounds
    full = record["sizes"]["pre_checkpoint"]
    for later in rounds[1:]:
        assert 0 < later["delta"] <= 0.05 * full, rounds
        assert record["phases"][f"pre{later['round']}_transfer"]["ok"]
    assert record["bytes"]["before_downtime"] == sum(r["sent"] for r in rounds)
    assert record["bytes"]["during_downtime"] == record["sizes"]["delta"] <= 0.01 * full
    assert counter_breaks(rows) == [], outcome(rows)
    after = [r for r in served(rows) if r["endpoint"][0] == record["new_endpoint"][0]]
    assert len(after) > 5, outcome(rows)


def _during(rows, phase: dict) -> list[dict]:
    return [r for r in rows if phase["start"] <= r["sent"] <= phase["end"]]


def test_a_paced_precopy_leaves_the_user_its_share_of_the_link(env):
    """A model service's pre-copy at full speed fills the WAN link the user's requests cross
    (queues grow, tasks wait); paced at 60 % of the path (``precopy_share``) it takes longer
    and the user's E2E during it stays near its value before."""
    session = model_session(env, "detect", "street-dog.jpg")
    time.sleep(4.0)
    # edge1 -> edge3 crosses edge1-edge2, as the user's replies from edge1 to ap2 do; the way
    # back, edge3 -> edge1, crosses edge3-edge2 as the replies from edge3 do: the same situation.
    full = session.migrate("edge3", "precopy-delta", precopy_share=1.0)
    assert full["ok"], full.get("error")
    session.wait_served_at(full, count=5, timeout=30.0)
    time.sleep(3.0)
    paced = session.migrate("edge1", "precopy-delta", precopy_share=0.6)
    assert paced["ok"], paced.get("error")
    session.wait_served_at(paced, count=3, timeout=30.0)
    rows = session.finish()
    assert counter_breaks(rows) == [], outcome(rows)
    assert "pace_mbps" not in full and paced["pace_mbps"] == pytest.approx(60.0)
    t_full, t_paced = full["phases"]["pre_transfer"], paced["phases"]["pre_transfer"]
    rate = {name: record["bytes"]["before_downtime"] * 8 / record["phases"]["pre_transfer"]["seconds"] / 1e6
            for name, record in (("full", full), ("paced", paced))}
    assert rate["paced"] <= 62.0 < rate["full"], rate
    first = min(p["start"] for p in full["phases"].values())
    before = [r["e2e_ms"] for r in served(rows) if r["sent"] < first]
    during = {name: [r["e2e_ms"] for r in served(_during(rows, phase))] for name, phase in
              (("full", t_full), ("paced", t_paced))}
    median = {name: statistics.median(values) for name, values in (("before", before), *during.items())}
    print("pre-copy rate (Mbit/s):", rate, "median E2E (ms):", median)
    assert len(during["paced"]) >= 5 and len(during["full"]) >= 3, outcome(rows)
    assert median["paced"] <= median["before"] + 40, median
    assert median["full"] > median["paced"], median


RING = ("edge2", "edge3", "edge1")


@pytest.mark.parametrize("mode", ["precopy-delta", pytest.param("cold", marks=pytest.mark.slow),
                                  pytest.param("layered", marks=pytest.mark.slow),
                                  pytest.param("postcopy", marks=pytest.mark.slow)])
def test_twenty_moves_round_the_ring_keep_the_counter(env, mode):
    """Chained restores (a container restored, then checkpointed again, twenty times round
    edge1 -> edge2 -> edge3 -> edge1): every move carries the state."""
    session = Session(env, "svc", "edge1", ap="ap2")
    records = []
    for n in range(20):
        time.sleep(0.5)
        records.append(session.migrate(RING[n % 3], mode))
        assert records[-1]["ok"], (n, records[-1].get("error"))
    session.wait_served_at(records[-1], count=3, timeout=20.0)
    rows = session.finish()
    assert counter_breaks(rows) == [], outcome(rows)
    assert session.host == "edge3" and served(rows)[-1]["endpoint"][0] == records[-1]["new_endpoint"][0]
    assert len({tuple(r["new_endpoint"]) for r in records}) >= 3


@pytest.mark.slow
def test_twenty_moves_round_the_ring_keep_the_enrolled_faces(env):
    """A model service's state through twenty precopy-delta moves: the identity enrolled
    before the first is still recognised after the last, and the counter never breaks."""
    from conftest import query_service

    session = model_session(env, "face", "face-biden.jpg")
    [enrolled] = query_service(env.net, session_ip(session), op="enroll", files=[assets.fetch("face-biden.jpg")],
                               extra={"name": "biden"}, client="enrol")
    assert enrolled["ok"], enrolled
    records = []
    for n in range(20):
        time.sleep(2.0)
        records.append(session.migrate(RING[n % 3], "precopy-delta"))
        assert records[-1]["ok"], (n, records[-1].get("error"))
        session.wait_served_at(records[-1], count=2, timeout=30.0)
    rows = session.finish()
    # the enrolment is a request too: the user's counter skips its number when it came between two of the user's
    skipped = (enrolled["counter"] - 1, enrolled["counter"] + 1)
    assert counter_breaks(rows) in ([], [skipped]), outcome(rows)
    last = served(rows)[-1]
    assert last["endpoint"][0] == records[-1]["new_endpoint"][0]
    assert last["result"]["faces"][0]["identity"] == "biden", last["result"]   # only an enrolled face has a name


def session_ip(session: Session) -> str:
    return next(i["ip"] for i in session.stack.agents[session.host].call("instances_here")
                if i["service"] == session.service)


def slow_start_seconds(size: float, mbps: float, rtt: float, mss: int = 1448, initial_window: int = 10) -> float:
    """Idealised TCP transfer time: slow start from IW10 until the path is full, then line rate."""
    rate = mbps * 1e6 / 8
    window, sent, elapsed = initial_window * mss, 0.0, rtt  # handshake (new connection)
    while sent + window < size and window < rate * rtt:
        sent += window
        window *= 2
        elapsed += rtt
    return elapsed + (size - sent) / rate + rtt / 2


def line_rate_seconds(size: float, mbps: float, rtt: float) -> float:
    """A window already open (a channel used before; the servers keep it across idle moments)."""
    return size * 8 / (mbps * 1e6) + rtt / 2


def test_full_checkpoint_transfer_slows_down_on_the_cloud_path(env):
    """Each transfer takes between line rate (the channel to that peer already carried a
    transfer) and slow start on a new connection, on the path's own bandwidth and delay."""
    session = Session(env, "svc", "edge1", ap="ap1")
    time.sleep(1.0)
    to_edge = session.migrate("edge2", "cold")          # 100 Mbps / 50 ms
    time.sleep(1.0)
    to_cloud = session.migrate("cloud", "cold")          # same container, 75 Mbps / 150 ms
    session.finish()
    assert to_edge["ok"] and to_cloud["ok"], (to_edge.get("error"), to_cloud.get("error"))
    t_edge = to_edge["phases"]["final_transfer"]["seconds"]
    t_cloud = to_cloud["phases"]["final_transfer"]["seconds"]
    edge = (to_edge["sizes"]["final_checkpoint"], 100, 0.100)
    cloud = (to_cloud["sizes"]["final_checkpoint"], 75, 0.300)
    assert t_cloud > 1.3 * t_edge, (t_edge, t_cloud)      # both at line rate: 1.5x for a 7 MB checkpoint
    assert 0.9 * line_rate_seconds(*edge) <= t_edge <= 2.0 * slow_start_seconds(*edge), (t_edge, edge)
    assert 0.9 * line_rate_seconds(*cloud) <= t_cloud <= 2.0 * slow_start_seconds(*cloud), (t_cloud, cloud)


def test_failed_restore_resumes_at_the_source_with_its_counter(env):
    """The destination's copy of the pre-migration state is damaged: CRIU cannot restore (and
    the engine's copy of the checkpoint is removed all the same)."""
    copies = set(engine_restore_copies())
    session = Session(env, "svc", "edge1", ap="ap1")
    time.sleep(1.0)
    source = env.agents["edge1"]
    pre = source.call("migrate", service="svc", dest="edge2", mode="precopy-delta", phase="pre")
    inbox = server_state_dir("edge2") / "incoming" / "svc" / f"{pre['migration']}-base"
    for pages in inbox.glob("pages-*.img"):
        pages.write_bytes(b"\0" * 4096)
    record = source.call("migrate", service="svc", dest="edge2", mode="precopy-delta", phase="final")
    time.sleep(1.5)
    rows = session.finish()
    assert record["ok"] is False and record["fallback"] is True
    assert record["error"]
    assert set(engine_restore_copies()) == copies
    assert record["new_endpoint"][0] == rows[0]["endpoint"][0]       # back where it was
    assert counter_breaks(rows) == []
    assert served(rows)[-1]["counter"] > 50
    assert not docker.from_env().containers.list(all=True, filters={"label": [f"{SERVER_LABEL}=edge2",
                                                                              f"{SERVICE_LABEL}=svc"]})


def test_destination_killed_mid_migration_resumes_at_the_source(env):
    """The destination's agent dies (SIGKILL) once the source has stopped the service."""
    session = Session(env, "svc", "edge1", ap="ap1")
    time.sleep(1.0)
    source = env.agents["edge1"]
    client = docker.from_env()
    container = _service_container(client, "edge1", "svc")
    events = client.events(decode=True, filters={"container": container.id, "event": "die"})
    killer = threading.Thread(target=lambda: (next(iter(events)), env.kill_agent("edge2")), daemon=True)
    pre = source.call("migrate", service="svc", dest="edge2", mode="cold", phase="pre")
    killer.start()
    record = source.call("migrate", service="svc", dest="edge2", mode="cold", phase="final")
    killer.join(timeout=30)
    events.close()
    time.sleep(1.5)
    rows = session.finish()
    env.start_agents(only=["edge2"])
    assert pre["dest_endpoint"]
    assert record["ok"] is False and record["fallback"] is True, record
    assert counter_breaks(rows) == []
    assert served(rows)[-1]["endpoint"][0] == rows[0]["endpoint"][0]
    assert served(rows)[-1]["counter"] > 50


def test_parallel_migrations(env):
    services = ["svc1", "svc2", "svc3"]
    endpoints = {}
    for service in services:
        instance = env.agents["edge1"].call("deploy", spec={"service": service, **COUNTER})
        endpoints[service] = [instance["ip"], instance["port"]]
    log = env.run_dir / "requests-mu.jsonl"
    log.unlink(missing_ok=True)
    user = env.start_user("mu", [{"service": s, "endpoint": endpoints[s]} for s in services], initial_ap="ap2")
    time.sleep(1.0)
    records = {}
    # the final phases start together, as a planner moving a group would order them
    # (each pre-copy ends at its own time, and a counter's final phase is a few 100 ms)
    all_pre_copied = threading.Barrier(len(services), timeout=120)

    def move(service):
        source = env.agents["edge1"]
        pre = source.call("migrate", service=service, dest="edge2", mode="precopy-delta", phase="pre")
        user.call("set_endpoints", service=service, pending=[pre["dest_endpoint"]])
        all_pre_copied.wait()
        records[service] = source.call("migrate", service=service, dest="edge2", mode="precopy-delta",
                                       phase="final")

    threads = [threading.Thread(target=move, args=(s,)) for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    time.sleep(1.0)
    env.stop_user("mu")
    for service in services:
        env.agents["edge2"].call("remove", service=service)
    rows = read_jsonl(log)
    assert sorted(records) == services
    for service in services:
        record = records[service]
        assert record["ok"], record.get("error")
        mine = [r for r in rows if r["service"] == service]
        assert counter_breaks(mine) == []
        assert served(mine)[-1]["endpoint"] == record["new_endpoint"]
    # they really ran at the same time
    finals = [records[s]["phases"]["migration"] for s in services]
    assert max(f["start"] for f in finals) < min(f["end"] for f in finals)


def test_the_agent_refuses_what_is_not_on_its_list(env):
    """Only ``Agent.REMOTE`` can be called, from the runner's socket or across the network;
    internal steps of a migration (fence, resume, release, on_arrival) cannot."""
    from testbed.agent import Agent
    from testbed.rpc import RpcClient, RpcError

    assert "fence" not in Agent.REMOTE and "restore" not in Agent.REMOTE
    for method in ("fence", "resume", "release", "on_arrival", "restore", "__init__", "deployment"):
        with pytest.raises(RpcError, match="not offered remotely"):
            env.agents["edge1"].call(method, timeout=10)
    over_the_wan = env.net.node("edge2").popen(
        [sys.executable, "-c", "import sys; from testbed.rpc import RpcClient; "
         "c = RpcClient((sys.argv[1], 7100), timeout=10)\n"
         "try:\n    c.call('fence', server='edge1', service='x')\nexcept Exception as e:\n    print(e)\n"
         "print(c.call('ping')['server'])", env.net.address("edge1")], stdout=subprocess.PIPE, text=True)
    out, _ = over_the_wan.communicate(timeout=30)
    assert "not offered remotely" in out and out.strip().endswith("edge1"), out
    assert isinstance(env.agents["edge1"], RpcClient) and env.agents["edge1"].call("ping")["server"] == "edge1"


@pytest.mark.parametrize("mode, options", [("postcopy", {}), ("precopy-delta", {"postcopy": True})],
                         ids=["postcopy", "precopy-delta+postcopy"])
def test_a_source_lost_during_post_copy_is_a_failure_the_record_states(env, mode, options):
    """Post-copy needs the source until the last page: when CRIU serving the pages there dies
    after the restore, the migration fails and its record says that the pages were lost (the
    processes, still whole at the source, run on there)."""
    session = Session(env, "svc", "edge1", ap="ap2")
    time.sleep(1.0)
    killed = []

    def kill_the_page_server():
        client = docker.from_env()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if client.containers.list(filters={"label": [f"{SERVICE_LABEL}=svc", f"{SERVER_LABEL}=edge2"],
                                               "status": "running"}):    # restored (not the pre-copy's dump)
                found = subprocess.run(["pgrep", "-f", "criu: dump"], capture_output=True, text=True).stdout.split()
                if found:
                    subprocess.run(["kill", "-9", *found])
                    killed.extend(found)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_page_server)
    killer.start()
    try:
        record = session.migrate("edge2", mode, **options)
    finally:
        killer.join()
    assert killed, "the source's CRIU never served pages"
    assert record["ok"] is False and record["postcopy_lost"] is True
    assert "pages did not all arrive" in record["error"]
    assert "after_downtime" not in record["bytes"]
    # only the page server died: the processes, whole at the source, run on there
    assert record["fallback"] is True and record["new_endpoint"][0] != record["dest_endpoint"][0]
    session.wait_served_at(record, count=3, timeout=15.0)
    rows = session.finish()
    after = [r for r in served(rows) if r["sent"] >= record["phases"]["migration"]["end"]]
    assert len(after) >= 3 and after[-1]["endpoint"][0] == record["new_endpoint"][0], outcome(rows)
    assert counter_breaks(rows) == []
