"""The services, in their containers on an emulated edge server, queried from the mobile user."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from testbed import assets
from testbed.config import load_topology
from testbed.containers.freezer import Freezer
from testbed.containers.server import container_cgroups
from testbed.images import image_name
from testbed.net.network import MecNetwork
from testbed.stack import Stack

from conftest import query_service as query

pytestmark = [pytest.mark.models, pytest.mark.network, pytest.mark.docker]
ROOT = Path(__file__).resolve().parents[2]
APPS = {"counter": 1.0, "alpr": 2.0, "face": 2.0, "detect": 2.0}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from conftest import _missing_for

    for marker in ("network", "criu", "models"):
        reason = _missing_for(marker)
        if reason:
            pytest.skip(f"[{marker}] {reason}")
    run_dir = tmp_path_factory.mktemp("services")
    net = MecNetwork(load_topology(ROOT / "topologies" / "paper.yaml"), workdir=run_dir / "net").start()
    stack = Stack(net, run_dir)
    try:
        stack.start_agents()
        endpoints = {}
        for app, cpus in APPS.items():
            instance = stack.agents["edge1"].call("deploy", spec={
                "service": app, "app": app, "image": image_name(app),
                "limits": {"cpus": cpus, "memory_mb": 2048}})
            endpoints[app] = instance["ip"]
        net.attach("mu", "ap1")
        yield net, stack, endpoints
    finally:
        stack.stop()
        net.stop()


def test_counter_counts(env):
    net, _, endpoints = env
    replies = query(net, endpoints["counter"], repeat=5, client="count")
    counters = [r["counter"] for r in replies]
    assert all(r["ok"] for r in replies)
    assert counters == list(range(counters[0], counters[0] + 5))


def test_alpr_reads_the_plates(env):
    net, _, endpoints = env
    files = [assets.fetch(n) for n in ("plate-car.png", "plate-crop-1.png", "plate-crop-2.png", "street-dog.jpg")]
    car, crop1, crop2, street = query(net, endpoints["alpr"], files=files, client="alpr")
    assert [p["text"] for p in car["result"]["plates"]][:1] == ["5AU5341"]
    assert [p["text"] for p in crop1["result"]["plates"]] == ["AD799KB"]
    assert [p["text"] for p in crop2["result"]["plates"]] == ["KRW301"]
    assert street["result"]["plates"] == []
    assert car["proc_ms"] > 0


def test_face_tells_same_from_different_people(env):
    net, _, endpoints = env
    ip = endpoints["face"]
    [enrolled] = query(net, ip, op="enroll", files=[assets.fetch("face-obama.jpg")], extra={"name": "obama"},
                       client="face")
    assert enrolled["ok"] and enrolled["result"]["enrolled"] == "obama"
    files = [assets.fetch(n) for n in ("face-obama2.jpg", "face-obama3.jpg", "face-biden.jpg")]
    obama2, obama3, biden = (r["result"]["faces"] for r in query(net, ip, files=files, client="face",
                                                                  first_id=1))
    assert len(obama2) == len(obama3) == len(biden) == 1
    assert obama2[0]["identity"] == "obama" and obama3[0]["identity"] == "obama"
    assert biden[0]["identity"] is None
    emb = {name: np.array(faces[0]["embedding"]) for name, faces in
           (("obama2", obama2), ("obama3", obama3), ("biden", biden))}
    assert len(emb["obama2"]) == 128
    assert np.linalg.norm(emb["obama2"] - emb["obama3"]) < 0.6      # pair 1: same person
    assert np.linalg.norm(emb["obama2"] - emb["biden"]) > 0.6       # pair 2: different people
    assert np.linalg.norm(emb["obama3"] - emb["biden"]) > 0.6


def test_detect_finds_dog_bicycle_and_car(env):
    net, _, endpoints = env
    [reply] = query(net, endpoints["detect"], files=[assets.fetch("street-dog.jpg")], client="detect")
    classes = {o["class"] for o in reply["result"]["objects"]}
    assert {"dog", "bicycle"} <= classes and classes & {"car", "truck"}, classes
    [horses] = query(net, endpoints["detect"], files=[assets.fetch("street-horses.jpg")], client="detect",
                     first_id=1)
    assert [o["class"] for o in horses["result"]["objects"]].count("horse") >= 2


def anonymous_kb(pid: int) -> int:
    return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("RssAnon:"))


def test_detect_without_its_arena_finds_the_same_and_gives_its_working_memory_back(env):
    """``MEC_DETECT_ARENA=0`` (a service's ``env:``): the same objects, and after its tasks far
    less anonymous memory than the default keeps (132 MB against 47 MB here): the intermediate
    tensors that a pre-copy's delta would otherwise carry."""
    net, stack, endpoints = env
    lean = stack.agents["edge1"].call("deploy", spec={
        "service": "detect-lean", "app": "detect", "image": image_name("detect"),
        "limits": {"cpus": 2.0, "memory_mb": 2048}, "env": {"MEC_DETECT_ARENA": "0"}})
    try:
        files = [assets.fetch(n) for n in ("street-dog.jpg", "street-person.jpg", "street-horses.jpg")]
        kept = query(net, endpoints["detect"], files=files, client="arena")
        given_back = query(net, lean["ip"], files=files, client="lean")
        assert all(r["ok"] for r in kept + given_back)
        assert [{o["class"] for o in r["result"]["objects"]} for r in given_back] == \
            [{o["class"] for o in r["result"]["objects"]} for r in kept]
        default = next(i for i in stack.agents["edge1"].call("instances_here") if i["service"] == "detect")
        assert anonymous_kb(lean["pid"]) < 0.6 * anonymous_kb(default["pid"]), \
            (anonymous_kb(lean["pid"]), anonymous_kb(default["pid"]))
    finally:
        stack.agents["edge1"].call("remove", service="detect-lean")


@pytest.mark.parametrize("app", ["alpr", "detect"])
def test_a_busy_model_service_sleeps_between_two_tasks(env, app):
    """A migration's quiesce waits for a moment when none of the service's threads works. With
    two cores (two onnxruntime threads) and its user sending back to back, that moment must come
    between two tasks: a thread pool that spins for the next task never looked idle, and every
    checkpoint taken while the user still sent caught the model mid-inference."""
    net, stack, _ = env
    instance = next(i for agent in stack.agents.values() for i in agent.call("instances_here")
                    if i["service"] == app)
    freezer = Freezer(container_cgroups(instance["container_id"]))
    image = assets.fetch({"alpr": "plate-car.png", "detect": "street-dog.jpg"}[app])
    client = net.node("mu").popen([sys.executable, "-m", "testbed.query", instance["ip"], "--client",
                                   f"busy-{app}", "--repeat", "1000", "--timeout", "60", "--file", str(image)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2.0)                                 # its tasks under way
        samples = []
        for _ in range(400):
            samples.append(freezer.idle())
            time.sleep(0.005)
        waits = []
        for _ in range(5):
            started = time.monotonic()
            found = freezer.wait_idle(1.0)
            waits.append(time.monotonic() - started if found else None)
            time.sleep(0.137)                           # a different moment of the next task
        assert client.poll() is None, "the client ended before the sampling did"
    finally:
        client.terminate()
        client.wait(timeout=30)
    busy_share = 1 - sum(samples) / len(samples)
    assert busy_share > 0.5, busy_share                 # it was working most of the time
    assert all(w is not None and w < 0.5 for w in waits), (waits, busy_share)


@pytest.mark.parametrize("app", list(APPS))
def test_survives_1000_malformed_requests(env, app):
    net, _, endpoints = env
    ip = endpoints[app]
    [before] = query(net, ip, op="state", client=f"fuzz-{app}")
    flag = "" if app != "counter" else " --no-image-check"
    out = net.node("mu").cmd(f"{sys.executable} {ROOT}/tests/helpers/malformed.py {ip} 7000 1000{flag}")
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["error_replies"] == 1000, summary
    payload = assets.fetch("street-dog.jpg") if app != "counter" else None
    [after] = query(net, ip, files=[payload] if payload else [], client=f"fuzz-{app}", first_id=1)
    assert after["ok"], after
    assert after["counter"] == before["counter"] + 1


@pytest.mark.criu
@pytest.mark.parametrize("app", list(APPS))
def test_checkpoint_restore_keeps_the_state(env, app):
    net, stack, endpoints = env
    ip = endpoints[app]
    task = [assets.fetch({"counter": "street-dog.jpg", "alpr": "plate-crop-1.png", "face": "face-biden.jpg",
                          "detect": "street-person.jpg"}[app])]
    rid = 100
    if app == "face":
        query(net, ip, op="enroll", files=[assets.fetch("face-biden.jpg")], extra={"name": "biden"},
              client="cr", first_id=rid)
        rid += 1
    query(net, ip, files=task if app != "counter" else [], client="cr", first_id=rid, repeat=3)
    rid += 3
    [before] = query(net, ip, op="state", client="cr-state", first_id=rid)
    record = stack.agents["edge1"].call("migrate", service=app, dest="edge2", mode="cold")
    assert record["ok"], record.get("error")
    new_ip = record["new_endpoint"][0]
    endpoints[app] = new_ip
    [after] = query(net, new_ip, op="state", client="cr-state", first_id=rid + 1)
    assert after["counter"] == before["counter"]
    assert after["result"].get("enrolled") == before["result"].get("enrolled")
    [next_task] = query(net, new_ip, files=task if app != "counter" else [], client="cr", first_id=rid + 2)
    assert next_task["counter"] == before["counter"] + 1
    if app == "face":
        assert before["result"]["enrolled"]["biden"] >= 1
        assert next_task["result"]["faces"][0]["identity"] == "biden"
    back = stack.agents["edge2"].call("migrate", service=app, dest="edge1", mode="cold")
    assert back["ok"], back.get("error")
    endpoints[app] = back["new_endpoint"][0]
