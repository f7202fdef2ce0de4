"""Path loss, RSSI and the hysteresis handover, against values computed here."""

import math
from pathlib import Path

import pytest

from testbed.mobility.round_trip import RoundTrip
from testbed.config import RadioSpec
from testbed.radio import HysteresisHandover, PathLoss

PARAMS = RadioSpec(tx_power_dbm=20, pl_d0_db=40, d0_m=1, exponent=3.0, sensitivity_dbm=-85,
                   hysteresis_db=3)


@pytest.mark.parametrize("d,expected", [(1, -20.0), (10, -50.0), (100, -80.0), (0.2, -20.0),
                                         (31.6227766, -65.0)])
def test_rssi_matches_the_formula(d, expected):
    assert PathLoss(PARAMS).rssi("ap", (0, 0), (d, 0)) == pytest.approx(expected)


def test_shadowing_is_seeded_and_gaussian():
    params = RadioSpec(shadowing_sigma_db=4.0)
    a, b, c = PathLoss(params, seed=1), PathLoss(params, seed=1), PathLoss(params, seed=2)
    samples = [a.shadowing("ap1", k) for k in range(4000)]
    assert samples[:50] == [b.shadowing("ap1", k) for k in range(50)]
    assert samples[:50] != [c.shadowing("ap1", k) for k in range(50)]
    mean = sum(samples) / len(samples)
    sd = math.sqrt(sum((s - mean) ** 2 for s in samples) / len(samples))
    assert abs(mean) < 0.3 and 3.7 < sd < 4.3


def test_distance_inverts_the_mean_model():
    loss = PathLoss(PARAMS)
    assert loss.distance_for_rssi(-80) == pytest.approx(100)


def test_handover_happens_where_the_hysteresis_says():
    # Two stations 30 m apart, user walks on y = 5.  With n = 3 and H = 3 dB the user
    # leaves ap1 when 30 log10(d1/d2) = 3, i.e. d1 = 10^0.1 d2 (solved independently below).
    stations = {"ap1": (0, 0), "ap2": (30, 0)}
    ratio = 10 ** (3 / 30)
    # d1^2 = x^2 + 25, d2^2 = (30 - x)^2 + 25, d1 = ratio * d2: solve the quadratic in x.
    a = 1 - ratio ** 2
    b = 60 * ratio ** 2
    c = 25 - ratio ** 2 * (900 + 25)
    x_expected = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    walk = RoundTrip((0, 5), (60, 5), speed=1.0)
    loss, policy = PathLoss(PARAMS), HysteresisHandover(PARAMS)
    serving, where = "ap1", None
    for k in range(0, 3001):
        t = k * 0.01
        position = walk.position(t)
        target = policy.decide(serving, loss.all(stations, position))
        if target:
            serving, where = target, position[0]
            break
    assert serving == "ap2"
    assert where == pytest.approx(x_expected, abs=0.011)   # one 10 ms step at 1 m/s
    assert x_expected > 15  # hysteresis delays it past the midpoint


def test_no_handover_without_a_usable_station_and_forced_below_sensitivity():
    policy = HysteresisHandover(PARAMS)
    assert policy.decide("ap1", {"ap1": -90, "ap2": -95}) is None
    assert policy.decide("ap1", {"ap1": -86, "ap2": -84}) == "ap2"      # serving unusable
    assert policy.decide("ap1", {"ap1": -60, "ap2": -58}) is None        # within hysteresis
    assert policy.decide(None, {"ap1": -60, "ap2": -58}) == "ap2"        # first attach: strongest


# -- rates, airtime, correlated shadowing, A3 (issue: a radio that behaves like one) -------------

from testbed.radio import A3Handover, CorrelatedShadowing, handover_rule  # noqa: E402
from testbed.rates import TABLES, RateTable, airtime_share  # noqa: E402


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_rises_with_snr_and_is_looked_up_by_step(name):
    table = RateTable.named(name, noise_floor_dbm=-95.0)
    steps = table.steps
    assert [s for s, _ in steps] == sorted(s for s, _ in steps)
    assert [r for _, r in steps] == sorted(r for _, r in steps)
    for (snr, rate), following in zip(steps, list(steps[1:]) + [None]):
        assert table.rate_mbps(-95.0 + snr) == rate                     # at the threshold
        if following:
            assert table.rate_mbps(-95.0 + following[0] - 0.01) == rate  # just below the next one
    assert table.rate_mbps(-95.0 + steps[0][0] - 0.01) == 0.0


def test_mcs_lookup_at_known_points():
    n = RateTable.named("802.11n", -95.0)
    assert (n.rate_mbps(-90), n.rate_mbps(-77), n.rate_mbps(-60)) == (6.5, 39.0, 65.0)
    lte = RateTable.named("lte-cqi", -100.0)
    assert lte.rate_mbps(-100.0) == 5.7             # SNR 0 dB: CQI 3 (QPSK)
    assert lte.rate_mbps(-106.8) == 0.0             # below CQI 1: no service
    custom = RateTable.named([[0, 1.0], [10, 10.0]], -90.0)
    assert custom.rate_mbps(-85.0) == 1.0


def test_airtime_is_shared_equally_and_capped_by_the_station():
    assert airtime_share(65.0, 1) == 65.0
    assert airtime_share(65.0, 2) == 32.5
    assert airtime_share(39.0, 3) == pytest.approx(13.0)
    assert airtime_share(65.0, 2, capacity_mbps=40.0) == 20.0
    assert airtime_share(65.0, 0) == 65.0            # counting itself: never below one user


def test_correlated_shadowing_autocorrelation_at_the_decorrelation_distance():
    # walk in 1 m steps: samples d_c apart must correlate by 1/e (Gudmundson), within 10 %
    decorrelation, sigma = 20.0, 6.0
    process = CorrelatedShadowing(sigma, decorrelation, "test")
    values = [process.at((float(x), 0.0)) for x in range(200_000)]
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / len(values)
    lag = int(decorrelation)
    cov = sum((values[i] - mean) * (values[i + lag] - mean) for i in range(len(values) - lag)) / (len(values) - lag)
    assert cov / var == pytest.approx(math.exp(-1), rel=0.10)
    assert math.sqrt(var) == pytest.approx(sigma, rel=0.05)


def test_correlated_shadowing_is_seeded_per_user_and_station_and_still_when_standing():
    params = RadioSpec(shadowing_sigma_db=6.0, shadowing_decorrelation_m=10.0)
    walk = [(float(x), 0.0) for x in range(30)]

    def trace(user, station="ap1", seed=1):
        loss = PathLoss(params, seed=seed, user=user)
        return [loss.rssi(station, (0, 0), p) for p in walk]

    assert trace("mu1") == trace("mu1")
    assert trace("mu1") != trace("mu2")
    assert trace("mu1") != trace("mu1", station="ap2")
    assert trace("mu1") != trace("mu1", seed=2)
    loss = PathLoss(params, seed=1, user="mu1")
    still = [loss.rssi("ap1", (0, 0), (5.0, 5.0)) for _ in range(5)]
    assert len(set(still)) == 1                       # a user standing still sees a steady signal
    # neighbouring samples 1 m apart stay close; a fresh draw per sample would not
    steps = [abs(a - b) for a, b in zip(trace("mu1"), trace("mu1")[1:])]
    assert sum(steps) / len(steps) < 0.6 * 6.0


def test_a3_hands_over_only_after_the_condition_held_for_the_time_to_trigger():
    params = RadioSpec(sensitivity_dbm=-85, hysteresis_db=3, handover_rule="a3", time_to_trigger="320ms")
    rule = handover_rule(params)
    assert isinstance(rule, A3Handover)
    # a synthetic trace every 40 ms: ap2 leads by 4 dB for 280 ms (a shadowing spike), falls back,
    # then leads for good from t = 1.0 s
    trace = []
    for k in range(50):
        t = k * 0.04
        lead = 4.0 if (0.2 <= t < 0.48 or t >= 1.0) else 0.0
        trace.append((t, {"ap1": -70.0, "ap2": -70.0 + lead}))
    serving, moves = "ap1", []
    for t, rssi in trace:
        target = rule.decide_at(serving, rssi, t)
        if target:
            moves.append((t, target))
            serving = target
    assert len(moves) == 1
    assert moves[0][1] == "ap2"
    assert moves[0][0] == pytest.approx(1.0 + 0.32, abs=0.041)
    # the relative-hysteresis rule (no time to trigger) would already have left at t = 0.2
    plain = HysteresisHandover(params)
    assert next(t for t, rssi in trace if plain.decide_at("ap1", rssi, t)) == pytest.approx(0.2)


def test_a3_leaves_at_once_when_the_serving_station_is_lost():
    rule = A3Handover(RadioSpec(sensitivity_dbm=-85, handover_rule="a3", time_to_trigger="1s"))
    assert rule.decide_at("ap1", {"ap1": -90, "ap2": -80}, 0.0) == "ap2"
    assert rule.decide_at("ap1", {"ap1": -90, "ap2": -95}, 0.1) is None     # nothing heard: out of coverage


def test_the_planner_predicts_with_the_mean_model_and_the_configured_rule():
    from pathlib import Path

    from testbed.config.topology import load_topology
    from testbed.controller.state import SystemState, User

    spec = load_topology(Path(__file__).resolve().parents[2] / "topologies" / "paper.yaml")
    noisy = RadioSpec(shadowing_sigma_db=8.0, shadowing_decorrelation_m=5.0)
    state = SystemState.build(spec, noisy, 0.5, t=0.0)
    user = User("mu", "ap1", position=(10.0, 5.0), velocity=(1.0, 0.0), t=0.0)
    assert state.predicted_rssi(user, 2.0) == state.predicted_rssi(user, 2.0)
    assert state.predicted_rssi(user, 2.0)["ap1"] == pytest.approx(state.path_loss.mean_rssi((0, 0), (12.0, 5.0)))
    plain = state.predict_handover(user, 30.0)
    delayed = SystemState.build(spec, RadioSpec(handover_rule="a3", time_to_trigger="2s"), 0.5, t=0.0)
    a3 = delayed.predict_handover(user, 30.0)
    assert plain[1] == a3[1] == "ap2"
    assert a3[0] - plain[0] == pytest.approx(2.0, abs=0.11)


def test_eq4_shares_the_station_only_when_asked():
    from pathlib import Path

    from testbed.config.topology import load_topology
    from testbed.controller.planners.orchestrated import OrchestratedPlanner
    from testbed.controller.state import SystemState, User

    spec = load_topology(Path(__file__).resolve().parents[2] / "topologies" / "paper.yaml",
                         ["nodes.ap1.capacity=40Mbps"])
    state = SystemState.build(spec, RadioSpec(), 0.5, t=0.0)
    assert state.shared_radio and state.stations["ap1"].capacity_mbps == 40.0
    alone, shared = state.path(-60.0, "ap1", "edge1"), state.path(-60.0, "ap1", "edge1", sharing=2)
    assert alone.bandwidth_mbps == 40.0 and shared.bandwidth_mbps == 20.0
    state.users = {"a": User("a", "ap1"), "b": User("b", "ap1")}
    assert OrchestratedPlanner()._sharing(state, "a", "ap1") == 1                    # the paper's eq. (4)
    assert OrchestratedPlanner(params=OrchestratedPlanner.Params(airtime_sharing=True))._sharing(state, "a", "ap1") == 2
    assert OrchestratedPlanner(params=OrchestratedPlanner.Params(airtime_sharing=True))._sharing(state, "a", "ap2") == 1
    fixed = SystemState.build(spec, RadioSpec(link_rate="fixed"), 0.5, t=0.0)
    assert fixed.path(-60.0, "ap1", "edge1", sharing=2).bandwidth_mbps == 65.0


def _step_by_step(state, user, horizon_s, step_s=0.1):
    """The prediction as the rule reads it: one time after another, the mean model's RSSI there."""
    from testbed.radio import handover_rule

    rule, k = handover_rule(state.policy.params), 0
    while k * step_s <= horizon_s:
        at = user.t + k * step_s
        target = rule.decide_at(user.ap, state.predicted_rssi(user, at), at)
        if target:
            return at, target
        k += 1
    return None


@pytest.mark.parametrize("rule", ["hysteresis", "a3"])
def test_the_prediction_over_all_steps_at_once_agrees_with_the_rule_step_by_step(rule):
    """predict_handover answers for a whole horizon in one pass over the stations near the
    user's line; city users heading anywhere from anywhere, served by their best station or by
    one out of reach, get the step-by-step answer, time and station."""
    import random

    from testbed.config import load_experiment
    from testbed.controller.state import SystemState, User
    from testbed.sim.network import GraphNetwork

    city = Path(__file__).resolve().parents[2] / "experiments" / "city.yaml"
    spec = load_experiment(city, ["sim.population.users=2", "sim.city.edge_servers=5",
                                  f"radio.handover_rule={rule}", "radio.time_to_trigger=0.3s"])
    state = SystemState.build(spec.topology, spec.radio, 1.0, t=100.0, network=GraphNetwork(spec.topology))
    names, draw, outcomes = sorted(state.stations), random.Random(7), {"move": 0, "stay": 0}
    users, horizons, answers = [], [], []
    for case in range(150):
        x, y, vx, vy = draw.uniform(0, 1e4), draw.uniform(0, 1e4), draw.uniform(-20, 20), draw.uniform(-20, 20)
        heard = state.policy.usable(state.predicted_rssi(User("u", None, position=(x, y), t=100.0), 100.0))
        ap = max(sorted(heard), key=heard.get) if heard and case % 5 else draw.choice(names)
        user = User("u", ap, position=(x, y), velocity=(vx, vy), t=100.0)
        horizon = draw.uniform(0, 40)
        expected, found = _step_by_step(state, user, horizon), state.predict_handover(user, horizon)
        assert (expected is None) == (found is None), (x, y, vx, vy, ap, horizon)
        if expected:
            assert found[1] == expected[1] and found[0] == pytest.approx(expected[0], abs=1e-9)
        outcomes["move" if expected else "stay"] += 1
        users.append(user), horizons.append(horizon), answers.append(found)
    assert min(outcomes.values()) >= 20          # both answers were put to the test
    # all users in one pass (a city's report), with a user standing still and one not placed
    users += [User("still", names[3], position=(5e3, 5e3), velocity=(0.0, 0.0), t=100.0), User("off", None)]
    horizons += [20.0, 20.0]
    answers += [state.predict_handover(users[-2], 20.0), None]
    assert state.predict_handovers(users, horizons) == answers
