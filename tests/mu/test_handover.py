"""The virtual user on the real emulated network: handovers, their downtime, the path they change."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from testbed.config import load_topology
from testbed.images import image_name
from testbed.events import read_events
from testbed.net.network import MecNetwork
from testbed.records import outages, read_jsonl
from testbed.stack import Stack

pytestmark = [pytest.mark.network, pytest.mark.docker]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path, no_leftovers):
    net = MecNetwork(load_topology(ROOT / "topologies" / "paper.yaml"), workdir=tmp_path / "net").start()
    stack = Stack(net, tmp_path)
    try:
        stack.start_agents(only=["edge1"])
        instance = stack.agents["edge1"].call("deploy", spec={
            "service": "svc", "app": "counter", "image": image_name("counter")})
        yield net, stack, instance
    finally:
        stack.stop()
        net.stop()


def rx_packets(net, node, peer) -> int:
    out = net.node(node).cmd(f"ip -s -j link show dev {net.interface(node, peer)}")
    return json.loads(out[out.index("["):])[0]["stats64"]["rx"]["packets"]


def test_walking_past_three_base_stations_hands_over_twice(env):
    net, stack, instance = env
    stack.start_user("mu", [{"service": "svc", "endpoint": [instance["ip"], instance["port"]]}],
                     mobility={"model": "waypoints", "points": [[0, 5], [60, 5]], "speeds": 3.0},
                     radio={"hysteresis_db": 3.0, "handover_time": "500ms"}, handover="rssi", t0=time.time() + 1)
    user = stack.users["mu"]
    seen = {}
    deadline = time.time() + 40
    while time.time() < deadline and len(seen) < 3:
        status = user.call("status")
        ap = status["ap"]
        if ap and ap not in seen and not status["in_handover"]:
            time.sleep(0.3)
            before = {a: rx_packets(net, a, "mu") for a in ("ap1", "ap2", "ap3")}
            net.node("mu").cmd(f"ping -c 20 -i 0.01 -W 1 {net.address('edge1')}")
            after = {a: rx_packets(net, a, "mu") for a in ("ap1", "ap2", "ap3")}
            seen[ap] = {a: after[a] - before[a] for a in after}
        time.sleep(0.1)
    stack.stop_user("mu")
    assert list(seen) == ["ap1", "ap2", "ap3"], seen
    for ap, delta in seen.items():   # the pings entered the network through that AP only
        assert delta[ap] >= 20, (ap, delta)
        assert all(v < 5 for other, v in delta.items() if other != ap), (ap, delta)
    events = read_events(stack.run_dir / "events.jsonl")
    ends = [e for e in events if e["kind"] == "handover.end"]
    assert [(e["from"], e["to"]) for e in ends] == [("ap1", "ap2"), ("ap2", "ap3")]
    rows = read_jsonl(stack.run_dir / "requests-mu.jsonl")
    found = outages(rows)
    assert len(found) == 2, found
    for outage, end in zip(found, ends):
        assert abs(outage.seconds - 0.5) <= 0.05, outage
        assert abs(outage.start - end["start"]) <= 0.05
    # after each handover the counter simply went on
    counters = [r["counter"] for r in rows if r["ok"]]
    assert counters == list(range(1, len(counters) + 1))
    mobility_log = read_jsonl(stack.run_dir / "mobility-mu.jsonl")
    switch = next(m for m in mobility_log if m["ap"] == "ap2")
    assert 15 < switch["x"] < 30   # past the midpoint between ap1 (0) and ap2 (30): hysteresis


def test_a_commanded_handover_happens_at_the_chosen_time(env):
    net, stack, instance = env
    stack.start_user("mu", [{"service": "svc", "endpoint": [instance["ip"], instance["port"]]}],
                     initial_ap="ap1", handover="controller")
    user = stack.users["mu"]
    at = time.time() + 1.0
    user.call("handover", ap="ap2", at=at, duration=0.3)
    time.sleep(2.0)
    status = user.call("status")
    stack.stop_user("mu")
    assert status["ap"] == "ap2"
    [end] = [e for e in read_events(stack.run_dir / "events.jsonl") if e["kind"] == "handover.end"]
    assert abs(end["start"] - at) < 0.05
    assert abs(end["end"] - end["start"] - 0.3) < 0.05
