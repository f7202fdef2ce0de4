"""The radio on the real emulated network: the rate follows the user's SNR through the rate
table, users of one base station share its airtime, A3 with correlated shadowing does not
ping-pong, and a user out of coverage gets no service (downtime with its cause)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from testbed import mobility
from testbed.config import RadioSpec, load_topology
from testbed.events import read_events
from testbed.images import image_name
from testbed.net.network import MecNetwork
from testbed.net.probe import iperf3_together
from testbed.radio import PathLoss, replay_walk
from testbed.rates import RateTable
from testbed.records import outages, read_jsonl
from testbed.stack import Stack

pytestmark = [pytest.mark.network]
ROOT = Path(__file__).resolve().parents[2]
RADIO = {"tx_power_dbm": 20, "pl_d0_db": 40, "exponent": 3.0, "sensitivity_dbm": -85, "hysteresis_db": 3,
         "noise_floor_dbm": -95, "rate_table": "802.11n", "link_rate": "rssi"}
NEAR, FAR = (-2.0, 0.0), (-90.0, 0.0)        # from ap1 at (0, 0): SNR 66 dB and 16.4 dB


@pytest.fixture
def env(tmp_path, no_leftovers):
    spec = load_topology(ROOT / "topologies" / "paper.yaml", ["nodes.mu2={role: mu, path: [[0, 5], [60, 5]]}"])
    net = MecNetwork(spec, workdir=tmp_path / "net").start()
    stack = Stack(net, tmp_path)
    try:
        yield net, stack
    finally:
        stack.stop()
        net.stop()


def standing(stack, user: str, position) -> None:
    stack.start_user(user, [], mobility={"model": "static", "position": list(position)}, radio=RADIO,
                     handover="rssi", t0=time.time())
    deadline = time.time() + 5
    while stack.users[user].call("status")["ap"] is None:
        assert time.time() < deadline, f"{user} never attached"
        time.sleep(0.05)
    time.sleep(0.3)      # a few ticks: every user's share is set


def iperf(net, clients: dict[str, int], reverse: bool = False, seconds: float = 4.0) -> dict[str, float]:
    """Mbit/s received by each of ``clients`` (user -> port), all at once, to or from edge1."""
    return iperf3_together(net.node("edge1"), net.address("edge1"),
                           {net.node(user): port for user, port in clients.items()}, seconds=seconds, reverse=reverse)


def test_the_rate_follows_the_snr_through_the_table(env):
    net, stack = env
    table = RateTable.named("802.11n", -95)
    radio = RadioSpec.model_validate(RADIO)
    measured = {}
    for label, position in (("near", NEAR), ("far", FAR)):
        expected = table.rate_mbps(PathLoss(radio).mean_rssi((0, 0), position))
        standing(stack, "mu", position)
        up = iperf(net, {"mu": 5201})["mu"]
        down = iperf(net, {"mu": 5201}, reverse=True)["mu"]
        stack.stop_user("mu")
        measured[label] = (expected, up, down)
    assert measured["near"][0] == 65.0 and measured["far"][0] == 26.0, measured
    for expected, up, down in measured.values():
        assert abs(up - expected) <= 0.10 * expected, measured
        assert abs(down - expected) <= 0.10 * expected, measured
    rates = [e for e in read_events(stack.run_dir / "events.jsonl") if e["kind"] == "radio.rate"]
    assert {(e["table_mbps"], e["users"]) for e in rates} == {(65.0, 1), (26.0, 1)}


def test_two_users_on_one_base_station_each_get_about_half(env):
    net, stack = env
    standing(stack, "mu", NEAR)
    alone = iperf(net, {"mu": 5201})["mu"]
    standing(stack, "mu2", NEAR)
    shared = iperf(net, {"mu": 5201, "mu2": 5202})
    stack.stop_user("mu2")
    time.sleep(0.3)
    again = iperf(net, {"mu": 5201})["mu"]
    for user, mbps in shared.items():
        assert abs(mbps - alone / 2) <= 0.15 * alone / 2, (alone, shared)
    assert abs(again - alone) <= 0.10 * alone, (alone, again)     # the share returns when mu2 leaves
    rates = [e for e in read_events(stack.run_dir / "events.jsonl") if e["kind"] == "radio.rate" and e["user"] == "mu"]
    assert [e["users"] for e in rates] == [1, 2, 1]


def test_a3_with_correlated_shadowing_hands_over_exactly_twice(env):
    net, stack = env
    radio = {**RADIO, "shadowing_sigma_db": 6.0, "shadowing_decorrelation_m": 10.0, "handover_rule": "a3",
             "time_to_trigger": "320ms", "handover_time": "500ms"}
    walk = {"model": "waypoints", "points": [[0, 5], [60, 5]], "speeds": 3.0}
    seed = 1
    stations = {ap: net.spec.nodes[ap].position for ap in ("ap1", "ap2", "ap3")}
    predicted = [a for a in replay_walk(RadioSpec.model_validate(radio), stations, mobility.build(**walk).position,
                                        20.0, seed=seed, user="mu") if a[1] in ("handover", "forced")]
    # the same seed without a time to trigger ping-pongs (the model's own walk says so)
    plain = RadioSpec.model_validate({**radio, "handover_rule": "hysteresis", "shadowing_decorrelation_m": 0})
    assert len([a for a in replay_walk(plain, stations, mobility.build(**walk).position, 20.0, seed=seed,
                                       user="mu") if a[1] == "handover"]) > 2
    stack.start_user("mu", [], mobility=walk, radio=radio, seed=seed, handover="rssi", t0=time.time() + 0.5)
    time.sleep(21.5)
    stack.stop_user("mu")
    ends = [e for e in read_events(stack.run_dir / "events.jsonl") if e["kind"] == "handover.end"]
    triggered = [e for e in read_events(stack.run_dir / "events.jsonl") if e["kind"] == "handover.triggered"]
    assert [(e["from"], e["to"]) for e in ends] == [("ap1", "ap2"), ("ap2", "ap3")]
    assert [(e["sim_t"], e["source"], e["target"]) for e in triggered] == \
        [(pytest.approx(t), source, target) for t, _, source, target in predicted]


@pytest.mark.docker
def test_a_user_out_of_coverage_gets_no_service_and_the_downtime_says_why(env):
    net, stack = env
    stack.start_agents(only=["edge1"])
    instance = stack.agents["edge1"].call("deploy", spec={"service": "svc", "app": "counter",
                                                         "image": image_name("counter")})
    radio = {**RADIO, "exponent": 4.0, "sensitivity_dbm": -75}          # coverage ends 23.7 m from a station
    # out of ap1's coverage from x = -23.2 m to -40 m and back: 2 x 16.8 m at 8 m/s = 4.2 s
    walk = {"model": "waypoints", "points": [[0, 5], [-40, 5], [0, 5]], "speeds": 8.0}
    stack.start_user("mu", [{"service": "svc", "endpoint": [instance["ip"], instance["port"]]}],
                     mobility=walk, radio=radio, handover="rssi", t0=time.time() + 0.5)
    time.sleep(12.0)
    stack.stop_user("mu")
    events = read_events(stack.run_dir / "events.jsonl")
    lost = [e for e in events if e["kind"] == "radio.lost"]
    regained = [e for e in events if e["kind"] == "radio.regained"]
    assert len(lost) == 1 and lost[0]["cause"] == "out of coverage" and lost[0]["ap"] == "ap1"
    assert len(regained) == 1 and regained[0]["to"] == "ap1"
    assert regained[0]["sim_t"] - lost[0]["sim_t"] == pytest.approx(4.2, abs=0.25)
    rows = read_jsonl(stack.run_dir / "requests-mu.jsonl")
    found = outages(rows)
    assert len(found) == 1, found
    assert found[0].cause == "interrupted: out of coverage"
    assert found[0].seconds == pytest.approx(4.2, abs=0.4)
    counters = [r["counter"] for r in rows if r["ok"]]
    assert counters == list(range(1, len(counters) + 1))     # the service itself lost nothing
