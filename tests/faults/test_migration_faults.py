"""Faults during a migration on the real stack: the destination's agent killed at each phase,
the WAN between source and destination cut, the destination's disk full, the source's Docker
engine restarted; for cold and pre-copy delta, with the counter and with ALPR (a real model).

After each, the service runs exactly once (at the source or at the destination), its counter
went on without a gap or a repeat as the client saw it, the migration's record says what
happened, and nothing of the failed side is left (no container of the service at the other
server)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import docker
import pytest

from testbed.containers.server import SERVER_LABEL, SERVICE_LABEL, server_state_dir
from testbed.records import counter_breaks

from conftest import Session, agents_on_paper_network, model_session, outcome, served

pytestmark = [pytest.mark.criu, pytest.mark.network, pytest.mark.docker]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    yield from agents_on_paper_network(tmp_path_factory, "faults")


def tidy(env, service: str) -> None:
    """After a test, whatever it left: the user, the service anywhere, a dead destination agent."""
    if "mu" in env.users:                     # the test stopped before its end
        env.stop_user("mu")
    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"label": [f"{SERVICE_LABEL}={service}"]}):
        container.remove(force=True)
    for agent in env.agents.values():
        try:
            agent.call("remove", service=service)
        except Exception:
            pass
    if "agent:edge2" not in env.processes:
        env.start_agents(only=["edge2"])


@pytest.fixture
def session(env):
    """The counter on edge1, used by the user at ap1."""
    moving = Session(env, "svc", "edge1", ap="ap1")
    time.sleep(1.0)
    yield moving
    tidy(env, "svc")


@pytest.fixture
def alpr_session(env):
    """The ALPR service (a real model, 65 MB of checkpoint) on edge1, used by the user at ap2."""
    moving = model_session(env, "alpr", "plate-crop-1.png")
    time.sleep(3.0)
    yield moving
    tidy(env, "alpr")


def said(record: dict) -> str:
    """The whole record, for an assertion's message (pytest would cut a dict short)."""
    return json.dumps(record, indent=1, default=str)


def containers_of(service: str) -> dict[str, list[str]]:
    """Per server: the states of the service's containers."""
    found: dict[str, list[str]] = {}
    for container in docker.from_env().containers.list(all=True, filters={"label": [f"{SERVICE_LABEL}={service}"]}):
        found.setdefault(container.labels[SERVER_LABEL], []).append(container.status)
    return found


def when(condition, then, timeout: float = 60.0) -> threading.Thread:
    """Run ``then`` as soon as ``condition()`` holds (polled every 2 ms)."""
    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                then()
                return
            time.sleep(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def arrived(slot_suffix: str, service: str = "svc"):
    """True once a new slot named ``*<slot_suffix>`` appears in edge2's inbox for the service."""
    inbox = server_state_dir("edge2") / "incoming" / service

    def slots() -> set[str]:
        try:
            return {p.name for p in inbox.iterdir() if p.name.endswith(slot_suffix)}
        except FileNotFoundError:
            return set()

    before = slots()
    return lambda: bool(slots() - before)


def move(session: Session, mode: str) -> tuple[dict, dict]:
    """Pre-migration then migration, as the controller orders them; (pre record, final record)."""
    source, service = session.stack.agents["edge1"], session.service
    pre = source.call("migrate", service=service, dest="edge2", mode=mode, phase="pre")
    if pre.get("ok") is False:
        return pre, pre
    session.user.call("set_endpoints", service=service, pending=[pre["dest_endpoint"]])
    time.sleep(0.3)
    return pre, source.call("migrate", service=service, dest="edge2", mode=mode, phase="final")


def settle_and_check(session: Session, record: dict, expected_server: str) -> list[dict]:
    """The service runs exactly once, at ``expected_server``; the client saw an intact counter."""
    session.wait_served_at(record, count=3, timeout=30.0)
    running = containers_of(session.service)
    session.host = expected_server
    rows = session.finish()
    assert {s: [x for x in states if x == "running"] for s, states in running.items()} == \
        {expected_server: ["running"]}, (running, said(record))
    assert counter_breaks(rows) == [], outcome(rows)
    assert served(rows)[-1]["endpoint"] == record["new_endpoint"], outcome(rows)
    assert served(rows)[-1]["counter"] > 5
    if expected_server == "edge1":            # nothing of the failed migration is left at edge2
        assert not (server_state_dir("edge2") / "incoming" / session.service).exists(), said(record)
    return rows


def test_destination_killed_during_the_pre_transfer(env, session):
    killer = when(arrived("-base"), lambda: env.kill_agent("edge2"))
    pre, record = move(session, "precopy-delta")
    killer.join(timeout=5)
    assert record["ok"] is False and "pre_migration" in record["phases"], said(record)
    assert record["phases"]["pre_migration"]["ok"] is False and record.get("fenced") is True, said(record)
    settle_and_check(session, record, "edge1")


@pytest.mark.parametrize("mode", ["cold", "precopy-delta"])
def test_destination_killed_during_the_final_transfer(env, session, mode):
    client = docker.from_env()
    source = client.containers.list(filters={"label": [f"{SERVER_LABEL}=edge1", f"{SERVICE_LABEL}=svc"]})[0]
    events = client.events(decode=True, filters={"container": source.id, "event": "die"})
    # cold: the full checkpoint is crossing; pre-copy delta: the source has just stopped, the delta follows
    condition = arrived("-final") if mode == "cold" else (lambda: next(iter(events)) is not None)
    killer = when(condition, lambda: env.kill_agent("edge2"))
    pre, record = move(session, mode)
    killer.join(timeout=5)
    events.close()
    assert record["ok"] is False and record.get("fallback") is True and record.get("fenced") is True, said(record)
    assert record["phases"]["resume_at_source"]["ok"] is True
    settle_and_check(session, record, "edge1")


@pytest.mark.models
@pytest.mark.parametrize("mode", ["cold", "precopy-delta"])
def test_model_service_destination_killed_during_the_final_transfer(env, alpr_session, mode):
    """The same with 65 MB of model state: the kill lands while the checkpoint crosses (cold) or
    as the delta arrives with the order to restore (pre-copy); the service resumes at the
    source, its counter intact."""
    condition = arrived("-final" if mode == "cold" else "-delta", service="alpr")
    killer = when(condition, lambda: env.kill_agent("edge2"))
    pre, record = move(alpr_session, mode)
    killer.join(timeout=5)
    assert record["ok"] is False and record.get("fallback") is True and record.get("fenced") is True, said(record)
    settle_and_check(alpr_session, record, "edge1")


def test_destination_killed_during_the_restore(env, session):
    """The delta arrives with the order to restore; the destination's agent dies under it.
    Wherever the service ends up, it runs once and the client's counter goes on."""
    killer = when(arrived("-delta"), lambda: env.kill_agent("edge2"))
    pre, record = move(session, "precopy-delta")
    killer.join(timeout=5)
    assert record["ok"] is False and record.get("fallback") is True, said(record)
    settle_and_check(session, record, "edge1")


def test_destination_killed_as_a_post_copy_restores(env, session):
    """Post-copy: the destination's agent, which holds the connection the pages come by, dies
    as the order to restore arrives.  CRIU's page server at the source takes a connection that
    just closes for the end of the post-copy (and would end the service there); the agent's is
    reset instead, so the source resumes its processes and the service runs on there."""
    killer = when(arrived("-final"), lambda: env.kill_agent("edge2"))
    pre, record = move(session, "postcopy")
    killer.join(timeout=5)
    assert record["ok"] is False and record.get("fallback") is True, said(record)
    settle_and_check(session, record, "edge1")


def link(env, up: bool) -> None:
    env.net.set_link("edge1", "edge2", up=up)


# (mode, service, the slot whose arrival starts the cut): cold cuts the final transfer, pre-copy
# delta the pre-transfer of its full checkpoint (its final delta crosses in one round trip)
CUTS = [("cold", "session", "-final"), ("precopy-delta", "session", "-base"),
        pytest.param("cold", "alpr_session", "-final", marks=pytest.mark.models)]


@pytest.mark.parametrize("mode, which, slot", CUTS)
def test_wan_cut_for_five_seconds_during_the_transfer(env, request, mode, which, slot):
    """TCP rides out the cut: the migration completes, later, with the counter intact."""
    moving = request.getfixturevalue(which)

    def cut():
        link(env, up=False)
        threading.Timer(5.0, link, args=(env, True)).start()

    killer = when(arrived(slot, service=moving.service), cut)
    try:
        pre, record = move(moving, mode)
    finally:
        killer.join(timeout=5)
        time.sleep(0.1)
        link(env, up=True)
    assert record["ok"] is True, said(record)
    cut_phase = "final_transfer" if slot == "-final" else "pre_transfer"
    assert record["phases"][cut_phase]["seconds"] > 5.0, said(record)
    settle_and_check(moving, record, "edge2")


@pytest.mark.parametrize("mode, slot", [("cold", "-final"), ("precopy-delta", "-base")])
def test_wan_cut_for_good_during_the_transfer(env, session, mode, slot):
    """The transfer makes no progress: the source gives up, removes the destination's half,
    and resumes the service from its own checkpoint (cold), or never stopped it (a pre-copy)."""
    killer = when(arrived(slot), lambda: link(env, up=False))
    try:
        pre, record = move(session, mode)
    finally:
        killer.join(timeout=5)
        link(env, up=True)
    assert record["ok"] is False and record.get("fenced") is True, said(record)
    if slot == "-final":
        assert record.get("fallback") is True, said(record)
    else:
        assert record["phases"]["pre_migration"]["ok"] is False and "migration" not in record["phases"], said(record)
    settle_and_check(session, record, "edge1")


@pytest.mark.parametrize("mode, which", [("cold", "session"), ("precopy-delta", "session"),
                                         pytest.param("precopy-delta", "alpr_session", marks=pytest.mark.models)])
def test_destination_disk_full(env, request, mode, which):
    """The destination's checkpoint space holds 1 MB: the state cannot land there."""
    moving = request.getfixturevalue(which)
    inbox = server_state_dir("edge2") / "incoming"
    inbox.mkdir(parents=True, exist_ok=True)
    server = env.net.node("edge2")            # its agent sees the mounts of the node's own namespace
    server.cmd(f"mount -t tmpfs -o size=1m tb-disk-full {inbox}")
    try:
        assert "tb-disk-full" in server.cmd(f"findmnt -n -o SOURCE {inbox}")
        pre, record = move(moving, mode)
    finally:
        server.cmd(f"umount -l {inbox}")
    assert record["ok"] is False, said(record)
    assert "No space left" in record["error"] or "ENOSPC" in record["error"] or "space" in record["error"], said(record)
    settle_and_check(moving, record, "edge1")


def restart_docker_engine() -> None:
    """As setup.sh starts it: systemd's unit, or dockerd by its pid file."""
    if Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "restart", "docker"], check=True)
    else:
        pid = int(Path("/var/run/docker.pid").read_text())
        subprocess.run(["kill", str(pid)], check=True)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        with open("/var/log/mec-testbed-dockerd.log", "a") as log:
            subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 60
    while subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "the Docker engine did not come back"
        time.sleep(0.5)


@pytest.mark.parametrize("which", ["session", pytest.param("alpr_session", marks=pytest.mark.models)])
def test_source_docker_engine_restarted_between_pre_copy_and_migration(env, request, which):
    """With live restore (set by setup.sh) the service outlives the engine's restart; the
    migration that follows moves it with its state."""
    if not docker.from_env().info().get("LiveRestoreEnabled"):
        pytest.skip("the Docker engine runs without live-restore: run ./setup.sh")
    moving = request.getfixturevalue(which)
    source, service = env.agents["edge1"], moving.service
    pre = source.call("migrate", service=service, dest="edge2", mode="precopy-delta", phase="pre")
    moving.user.call("set_endpoints", service=service, pending=[pre["dest_endpoint"]])
    restart_docker_engine()
    time.sleep(1.0)
    record = source.call("migrate", service=service, dest="edge2", mode="precopy-delta", phase="final")
    assert record["ok"] is True, said(record)
    settle_and_check(moving, record, "edge2")
