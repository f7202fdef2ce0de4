"""Each planner's rule on a small constructed state of the paper topology."""

from __future__ import annotations

import pytest

from testbed.controller.estimators import MigrationTimeModel
from testbed.controller.planners import Handover, Migrate, build
from testbed.controller.planners.base import Network, Server, Service, Station, SystemState, User
from testbed.controller.planners.shareon import ShareOnParams, utilization_region
from testbed.net import addressing
from testbed.radio import HysteresisHandover, PathLoss, RadioParams

T0 = 1000.0


def make_state(paper_spec, user_x=5.0, ap="ap1", host="edge1", velocity=(1.0, 0.0), utils=None, e2e_ms=50.0,
               proc_ms=0.0, sites=None, quota=0.1, full_bytes=5e6) -> SystemState:
    plan = addressing.plan(paper_spec)
    servers = {}
    for name in paper_spec.nodes_with_role("cloud", "edge"):
        node = paper_spec.nodes[name]
        servers[name] = Server(name, node.role, node.position, node.cpus, node.memory / 2**20, node.compute,
                               site=(sites or {}).get(name, "default"), cpu_util=(utils or {}).get(name, 0.0))
    stations = {}
    for conn in paper_spec.connections:
        for ap_name, other in ((conn.a, conn.b), (conn.b, conn.a)):
            if paper_spec.nodes[ap_name].role == "ap":
                stations[ap_name] = Station(ap_name, paper_spec.nodes[ap_name].position,
                                            paper_spec.nodes[ap_name].max_users, other)
    params = RadioParams()
    user = User("mu", ap, (user_x, 5.0), velocity, t=T0, e2e_ms={"svc": e2e_ms})
    service = Service("svc", "mu", "counter", host, cpus=1.0, memory_mb=512, proc_ms=proc_ms,
                      image_bytes=170e6, full_bytes=full_bytes, delta_bytes=10e3, quota=quota)
    return SystemState(T0, servers, stations, {"mu": user}, {"svc": service}, Network(plan), PathLoss(params),
                       HysteresisHandover(params), MigrationTimeModel(), handover_time_s=0.5,
                       report_period_s=0.5)


def test_cloud_places_on_the_cloud_and_never_moves(paper_spec):
    state = make_state(paper_spec)
    planner = build("cloud")
    assert planner.initial_server(state, state.services["svc"], state.users["mu"]) == "cloud"
    assert planner.on_handover(state, state.users["mu"], "ap1", "ap2") == []
    assert planner.on_report(state, state.users["mu"]) == [] and planner.on_tick(state) == []


def test_random_is_seeded_and_picks_among_all_servers(paper_spec):
    state = make_state(paper_spec, user_x=20, ap="ap2")
    picks = [a.dest for a in build("random", seed=7).on_handover(state, state.users["mu"], "ap1", "ap2")]
    again = [a.dest for a in build("random", seed=7).on_handover(state, state.users["mu"], "ap1", "ap2")]
    assert picks == again
    many = set()
    planner = build("random", seed=1)
    for _ in range(60):
        many.add(planner._pick(state))
    assert many == set(state.servers)


def test_nearest_follows_the_user_to_the_closest_edge(paper_spec):
    state = make_state(paper_spec, user_x=20.0, ap="ap2")
    [action] = build("nearest").on_handover(state, state.users["mu"], "ap1", "ap2")
    assert action == Migrate("svc", "edge2")
    state = make_state(paper_spec, user_x=2.0, ap="ap1")
    assert build("nearest").on_handover(state, state.users["mu"], "ap2", "ap1") == []   # already there
    assert build("nearest").initial_server(state, state.services["svc"], state.users["mu"]) == "edge1"


def test_orchestrated_plans_one_window_around_the_predicted_handover(paper_spec):
    # The user walks at 1 m/s from x = 15 towards ap2 (x = 30); hysteresis (3 dB, n = 3)
    # hands it over at about x = 16.7, i.e. in ~1.7 s: close enough that it must plan now.
    state = make_state(paper_spec, user_x=15.0)
    planner = build("orchestrated")
    actions = planner.on_report(state, state.users["mu"])
    migrate = next(a for a in actions if isinstance(a, Migrate))
    handover = next(a for a in actions if isinstance(a, Handover))
    t_ho = planner.last_estimates["t_ho"]
    assert 1.2 < t_ho - T0 < 2.2
    assert (migrate.dest, handover.target) == ("edge2", "ap2")
    mig = planner.last_estimates["migration"]
    lead = 1.1 * mig["pre_migration_s"] + 2 * 0.150       # + the prepare order's round trip cloud-edge1
    assert migrate.final_at == pytest.approx(max(t_ho, T0 + lead))
    assert migrate.pre_at == pytest.approx(migrate.final_at - lead)
    # the handover ends inside the migration's downtime: one window
    assert migrate.final_at <= handover.at
    assert handover.at + 0.5 <= migrate.final_at + mig["migration_s"] + 1e-9 or \
        handover.at == migrate.final_at
    assert planner.last_estimates["downtime_s"] == pytest.approx(max(mig["migration_s"], 0.5))
    assert planner.on_report(state, state.users["mu"]) == []     # planned once


def test_orchestrated_waits_while_the_handover_is_far(paper_spec):
    state = make_state(paper_spec, user_x=2.0)
    assert build("orchestrated").on_report(state, state.users["mu"]) == []


def test_orchestrated_respects_station_capacity(paper_spec):
    # ap2 full: the user cannot be placed behind it, so no migration to edge2 via ap2
    state = make_state(paper_spec, user_x=15.0)
    state.stations["ap2"].max_users = 0
    planner = build("orchestrated")
    actions = planner.on_report(state, state.users["mu"])
    assert not any(isinstance(a, Migrate) and a.dest == "edge2" for a in actions)


@pytest.mark.parametrize("sp,m,region", [(0.4, 2000, "HIGH"), (2.0, 400, "HIGH"), (0.8, 2000, "MED"),
                                         (2.0, 800, "MED"), (2.0, 2000, "LOW")])
def test_shareon_algorithm_1(sp, m, region):
    assert utilization_region(sp, m, ShareOnParams()) == region


def test_shareon_moves_a_slow_container_to_a_favourable_node(paper_spec):
    # edge1 is saturated (HIGH), the container is slow (measured 400 ms > 100 ms);
    # edge2 is idle and closer to the user, so ShareOn picks it
    state = make_state(paper_spec, user_x=25.0, ap="ap2", utils={"edge1": 0.95, "edge2": 0.1, "edge3": 0.1},
                       e2e_ms=400.0, proc_ms=80.0)
    [action] = build("shareon").on_tick(state)
    assert action.dest == "edge2"
    fast = make_state(paper_spec, utils={"edge1": 0.95}, e2e_ms=40.0)
    assert build("shareon").on_tick(fast) == []                       # under the threshold: stays


def test_shareon_baselines(paper_spec):
    state = make_state(paper_spec, user_x=25.0, ap="ap2", utils={"edge1": 0.95, "edge2": 0.7, "edge3": 0.0},
                       e2e_ms=400.0, proc_ms=80.0)
    assert [a.dest for a in build("bandwidth-only").on_tick(state)] == ["edge2"]   # 100 Mbps beats 75
    assert [a.dest for a in build("processing-only").on_tick(state)] == ["cloud"]  # C = 1.5, idle
    user = state.users["mu"]
    assert build("nearest-edge").initial_server(state, state.services["svc"], user) == "edge2"
    assert build("nearest-edge").on_tick(state) == []
    state.services["svc"].host = "edge2"
    assert build("equal-load").initial_server(state, state.services["svc"], user) == "edge3"  # empty, idle
    assert build("equal-load").on_tick(state) == []


def test_green_first_prefers_the_least_loaded_green_node_of_its_site(paper_spec):
    sites = {"edge1": "a", "edge2": "b", "edge3": "a"}
    state = make_state(paper_spec, utils={"edge1": 0.8, "edge2": 0.1, "edge3": 0.3}, sites=sites, quota=0.15)
    [action] = build("green-first").on_tick(state)
    assert action.dest == "edge3"                                     # same site, fits: 0.3 + 0.15 <= 0.5
    state = make_state(paper_spec, utils={"edge1": 0.8, "edge2": 0.1, "edge3": 0.45}, sites=sites, quota=0.15)
    assert [a.dest for a in build("green-first").on_tick(state)] == ["edge2"]   # other site
    state = make_state(paper_spec, utils={"edge1": 0.8, "edge2": 0.45, "edge3": 0.45}, sites=sites, quota=0.15)
    assert [a.dest for a in build("green-first").on_tick(state)] == ["cloud"]
    assert build("green-first").on_tick(make_state(paper_spec, utils={"edge1": 0.4})) == []   # not red


def test_eco_packs_onto_the_busiest_node_that_fits(paper_spec):
    state = make_state(paper_spec, utils={"edge1": 0.8, "edge2": 0.1, "edge3": 0.3}, quota=0.15)
    assert [a.dest for a in build("eco").on_tick(state)] == ["edge3"]   # busiest that fits
    state = make_state(paper_spec, utils={"edge1": 0.8, "edge2": 0.1, "edge3": 0.4}, quota=0.15)
    assert [a.dest for a in build("eco").on_tick(state)] == ["edge2"]
    state = make_state(paper_spec, utils={"edge1": 0.8, "edge2": 0.4, "edge3": 0.4}, quota=0.15)
    assert [a.dest for a in build("eco").on_tick(state)] == ["cloud"]


def test_unknown_planner():
    with pytest.raises(ValueError, match="unknown planner 'oracle'"):
        build("oracle")
