"""Path loss, RSSI and the hysteresis handover, against values computed here."""

import math

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
