"""Mobility models: exact positions, trace replay and its errors, the synthetic generator."""

import math

import pytest

from testbed.mobility import build
from testbed.mobility.round_trip import RoundTrip
from testbed.mobility.synthetic import random_waypoint_fixes, write_cabspotting
from testbed.mobility.trace import TraceError, TraceReplay, project, read_fixes
from testbed.mobility.waypoints import Waypoints


@pytest.mark.parametrize("t,expected", [(0, (0, 5)), (10, (10, 5)), (60, (60, 5)), (61, (59, 5)),
                                         (90, (30, 5)), (120, (0, 5)), (130, (10, 5))])
def test_round_trip_positions_are_exact(t, expected):
    model = RoundTrip((0, 5), (60, 5), speed=1.0)
    assert model.position(t) == pytest.approx(expected)


def test_round_trip_at_half_a_metre_per_second_on_a_diagonal():
    model = build("round_trip", start=(0, 0), end=(30, 40), speed=0.5)   # 50 m each way
    assert model.position(50) == pytest.approx((15, 20))
    assert model.position(100) == pytest.approx((30, 40))
    assert model.position(150) == pytest.approx((15, 20))
    assert model.velocity(20) == pytest.approx((0.3, 0.4))
    assert model.velocity(150) == pytest.approx((-0.3, -0.4))


def test_waypoints_with_speeds_per_leg():
    model = Waypoints([(0, 0), (10, 0), (10, 20)], speeds=[1.0, 2.0])
    assert model.position(5) == pytest.approx((5, 0))
    assert model.position(15) == pytest.approx((10, 10))
    assert model.position(100) == pytest.approx((10, 20))
    assert model.duration() == pytest.approx(20)
    looping = Waypoints([(0, 0), (10, 0)], speeds=1.0, loop=True)
    assert looping.position(25) == pytest.approx((5, 0))


def test_bad_mobility_parameters():
    with pytest.raises(ValueError, match="speed"):
        RoundTrip((0, 0), (1, 0), speed=0)
    with pytest.raises(ValueError, match="unknown mobility model"):
        build("teleport")


def write(tmp_path, text):
    path = tmp_path / "cab.txt"
    path.write_text(text)
    return path


def test_cabspotting_trace_replays_to_the_expected_positions(tmp_path):
    # newest first, as in the data set; 0.001 deg of latitude = 111.19 m
    path = write(tmp_path, "37.75200 -122.39000 0 1213084700\n"
                           "37.75100 -122.39000 1 1213084650\n"
                           "37.75000 -122.39000 1 1213084600\n")
    model = TraceReplay(path)
    metre_per_mdeg = 6_371_000 * math.radians(0.001)
    assert model.position(0) == pytest.approx((0, 0), abs=1e-6)
    assert model.position(50) == pytest.approx((0, metre_per_mdeg), rel=1e-6)
    assert model.position(75) == pytest.approx((0, 1.5 * metre_per_mdeg), rel=1e-6)
    assert model.position(1000) == pytest.approx((0, 2 * metre_per_mdeg), rel=1e-6)
    east = project(37.75, -122.389, (37.75, -122.39))
    assert east[0] == pytest.approx(metre_per_mdeg * math.cos(math.radians(37.75)), rel=1e-9)


@pytest.mark.parametrize("text,line,reason", [
    ("37.75 -122.39 0 1213084700\n37.75 -122.39 zero 1213084600\n", 2, "unreadable"),
    ("37.75 -122.39 0 1213084700\n37.75 -122.39 1\n", 2, "expected 4 fields"),
    ("37.75 -122.39 0 1213084700\n\n48.85 2.35 0 1213084600\n", 3, "outside the map"),
])
def test_bad_trace_lines_are_rejected_with_their_number(tmp_path, text, line, reason):
    with pytest.raises(TraceError, match=rf"cab.txt:{line}: .*{reason}"):
        read_fixes(write(tmp_path, text))


def test_synthetic_traces_are_seeded_and_in_cabspotting_format(tmp_path):
    area = (0, 2000, 0, 1000)
    a = random_waypoint_fixes(seed=3, duration=600, area=area)
    b = random_waypoint_fixes(seed=3, duration=600, area=area)
    c = random_waypoint_fixes(seed=4, duration=600, area=area)
    assert a == b and a != c
    assert all(0 <= x <= 2000 and 0 <= y <= 1000 for _, x, y in a)
    origin = (37.7749, -122.4194)
    path = write_cabspotting(tmp_path / "synthetic.txt", a, origin)
    model = TraceReplay(path, origin=origin)
    for t, x, y in a[::7]:
        assert model.position(t) == pytest.approx((x, y), abs=0.6)   # 5-decimal degrees ~ 1 m
