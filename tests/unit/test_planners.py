"""Each planner's rule on a small constructed state of the paper topology."""

from __future__ import annotations

import pytest

from testbed.config import RadioSpec
from testbed.controller.planners import Handover, Migrate, build
from testbed.controller.state import Service, SystemState, User
from testbed.controller.planners.shareon import ShareOnParams, utilization_region

T0 = 1000.0


# A radio whose coverage ends: RSSI = -20 - 40 log10(d), below -75 dBm beyond 23.7 m.
COVERAGE = RadioSpec(exponent=4.0, sensitivity_dbm=-75)


def make_state(paper_spec, user_x=5.0, ap="ap1", host="edge1", velocity=(1.0, 0.0), utils=None, e2e_ms=50.0,
               proc_ms=0.0, sites=None, quota=0.1, full_bytes=5e6, radio=RadioSpec()) -> SystemState:
    state = SystemState.build(paper_spec, radio, report_period=0.5, t=T0)
    for name, server in state.servers.items():
        server.site = (sites or {}).get(name, "default")
        server.cpu_util = (utils or {}).get(name, 0.0)
    state.users["mu"] = User("mu", ap, (user_x, 5.0), velocity, t=T0, e2e_ms={"svc": e2e_ms})
    state.services["svc"] = Service("svc", "mu", "counter", host, cpus=1.0, memory_mb=512, proc_ms=proc_ms,
                                    image_bytes=170e6, full_bytes=full_bytes, delta_bytes=10e3, quota=quota)
    return state


def test_services_of_a_user_include_services_added_after_the_first_question(paper_spec):
    state = make_state(paper_spec)
    assert [s.name for s in state.services_of("mu")] == ["svc"] and state.services_of("other") == []
    state.services["face"] = Service("face", "mu", "face", "edge2", cpus=1.0, memory_mb=512)
    state.users["other"] = User("other", "ap2", (20.0, 5.0), (0.0, 0.0), t=T0)
    state.services["theirs"] = Service("theirs", "other", "counter", "edge2", cpus=1.0, memory_mb=512)
    assert [s.name for s in state.services_of("mu")] == ["svc", "face"]
    assert [s.name for s in state.services_of("other")] == ["theirs"]
    state.services["face"].server = "edge3"          # a migration: the index gives the service itself
    assert state.services_of("mu")[1].server == "edge3"


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
    # At x = 14 the user (1 m/s) will pass the hysteresis point (x = 16) within the lead;
    # the earliest a migration can be ready is later still, and by then ap1's coverage
    # (it ends at x = 23.2) does not last the 5 s look-ahead: staying is not a candidate
    # (3d), and the service follows the user to edge2 (100 ms RTT saved per task).
    state = make_state(paper_spec, user_x=14.0, radio=COVERAGE)
    planner = build("orchestrated")
    hysteresis, _ = state.predict_handover(state.users["mu"], horizon_s=10)
    assert 1.5 < hysteresis - T0 < 3.0
    actions = planner.on_report(state, state.users["mu"])
    migrate = next(a for a in actions if isinstance(a, Migrate))
    handover = next(a for a in actions if isinstance(a, Handover))
    t_ho = migrate.estimates["t_ho"]
    lead = planner.lead(state, state.services_of("mu"))
    assert t_ho == pytest.approx(max(hysteresis, T0 + lead))
    assert (migrate.dest, handover.target) == ("edge2", "ap2")
    assert planner.last_estimates["choice"] == {"svc": {"user": "mu", "station": "ap2", "server": "edge2"}}
    mig = migrate.estimates["migration"]
    lead = 1.1 * mig["pre_migration_s"] + 2 * 0.150       # + the prepare order's round trip cloud-edge1
    assert migrate.final_at == pytest.approx(max(t_ho, T0 + lead))
    assert migrate.pre_at == pytest.approx(migrate.final_at - lead)
    # the handover ends inside the migration's downtime: one window
    assert migrate.final_at <= handover.at
    assert handover.at + 0.5 <= migrate.final_at + mig["migration_s"] + 1e-9 or \
        handover.at == migrate.final_at
    assert migrate.estimates["downtime_s"] == pytest.approx(max(mig["migration_s"], 0.5))
    assert migrate.estimates["e2e_change_s"] == pytest.approx(0.0, abs=1e-3)     # vs staying with ap1 at t'
    assert planner.on_report(state, state.users["mu"]) == []     # planned once


def test_orchestrated_keeps_the_user_where_staying_is_best(paper_spec):
    """Staying is a candidate: with ap1 heard well at t' and nothing to gain for the
    counter (no processing, equal rates, co-located servers), the user stays; it is
    decided again ``replan_s`` later."""
    state = make_state(paper_spec, user_x=17.0)
    planner = build("orchestrated")
    assert planner.on_report(state, state.users["mu"]) == []
    assert planner.last_estimates["choice"] == {"svc": {"user": "mu", "station": "ap1", "server": "edge1"}}
    assert planner.on_report(state, state.users["mu"]) == []              # not decided again yet ...
    state.t = state.users["mu"].t = T0 + 6.0
    planner.on_report(state, state.users["mu"])
    lead = planner.lead(state, state.services_of("mu"))
    assert planner.planned["mu"] == pytest.approx(T0 + 6.0 + lead)        # ... but after replan_s


def test_orchestrated_can_consider_only_the_servers_nearest_its_stations(paper_spec):
    """``candidate_servers: 1``: the server nearest each candidate station and the service's own;
    the choice of the full problem is among them here, so it is unchanged."""
    due = {"mu": (T0 + 3.0, "ap2")}
    every, estimates = build("orchestrated").problem(make_state(paper_spec, user_x=14.0, radio=COVERAGE), due)
    assert {o.server for o in every.options} == {"cloud", "edge1", "edge2", "edge3"}
    # what each option rests on, read as a dict: one estimate per option, its downtime the option's
    assert sorted(estimates) == sorted((o.service, o.station, o.server) for o in every.options)
    assert all(estimates[(o.service, o.station, o.server)].downtime_s == o.downtime
               and estimates[(o.service, o.station, o.server)].t_ho == T0 + 3.0 for o in every.options)
    assert estimates.get(("svc", "ap9", "edge1")) is None and len(estimates) == len(every.options)
    state = make_state(paper_spec, user_x=14.0, radio=COVERAGE)
    planner = build("orchestrated", candidate_servers=1)
    nearby, _ = planner.problem(state, due)
    assert {o.station for o in nearby.options} == {o.station for o in every.options}
    assert {(o.station, o.server) for o in nearby.options} <= {("ap1", "edge1"), ("ap1", "edge2"),
                                                              ("ap2", "edge1"), ("ap2", "edge2")}
    assert {o.server for o in nearby.options} == {"edge1", "edge2"}
    planner.on_report(state, state.users["mu"])
    assert planner.last_estimates["choice"] == {"svc": {"user": "mu", "station": "ap2", "server": "edge2"}}


def test_orchestrated_leaves_a_user_no_station_covers_to_the_network(paper_spec):
    """mu3, beyond every station's coverage at t', has no candidate (3d): it gets the network's
    handover and its service stays; the joint problem places the others and is not infeasible
    (mu, at x = 22 by t', loses ap1 within the look-ahead and follows ap2 to edge2)."""
    state = make_state(paper_spec, user_x=14.0, radio=COVERAGE)
    state.users["mu3"] = User("mu3", "ap3", (80.0, 5.0), (2.0, 0.0), t=T0, e2e_ms={"svc3": 50.0})
    state.services["svc3"] = Service("svc3", "mu3", "counter", "edge3", cpus=1.0, memory_mb=512,
                                     image_bytes=170e6, full_bytes=5e6, delta_bytes=10e3)
    planner = build("orchestrated")
    actions = planner.plan(state, {"mu": (T0 + 8.0, "ap2"), "mu3": (T0 + 8.0, "ap2")})
    assert planner.last_solution.feasible and set(planner.last_estimates["choice"]) == {"svc"}
    assert any(isinstance(a, Migrate) and (a.service, a.dest) == ("svc", "edge2") for a in actions)
    assert [a for a in actions if getattr(a, "user", None) == "mu3"] == [Handover("mu3", "ap2", at=T0 + 8.0)]
    assert not any(isinstance(a, Migrate) and a.service == "svc3" for a in actions)
    assert "mu3" in planner.moved                    # not decided again before replan_s


def test_orchestrated_lets_a_service_stay_on_a_server_already_over_capacity(paper_spec):
    """edge1 (1 core) already runs another user's service of 1 core besides svc: (3c) keeps what
    it runs, so svc may stay, and nothing may move in."""
    state = make_state(paper_spec, user_x=17.0)
    state.servers["edge1"].cpus = 1.0
    state.users["mu9"] = User("mu9", "ap3", (60.0, 5.0), (0.0, 0.0), t=T0, e2e_ms={"svc9": 50.0})
    state.services["svc9"] = Service("svc9", "mu9", "counter", "edge1", cpus=1.0, memory_mb=512,
                                     image_bytes=170e6, full_bytes=5e6, delta_bytes=10e3)
    planner = build("orchestrated")
    problem, _ = planner.problem(state, {"mu": (T0 + 3.0, "ap2")})
    assert problem.server_capacity["edge1"][0] == 1.0               # svc's own core, no more
    assert planner.problem(state, {"mu9": (T0 + 3.0, "ap3")})[0].server_capacity["edge1"][0] == 1.0
    state.services["svc9"].server = "edge3"                         # svc is alone: 1 core, its own
    state.services["svc"].server = "edge2"
    assert planner.problem(state, {"mu": (T0 + 3.0, "ap2")})[0].server_capacity["edge1"][0] == 1.0
    state.services["svc9"].server = "edge1"                         # edge1 full with svc9: svc cannot come
    assert planner.problem(state, {"mu": (T0 + 3.0, "ap2")})[0].server_capacity["edge1"][0] == 0.0
    state.services["svc"].server = "edge1"
    assert planner.on_report(state, state.users["mu"]) == []
    assert planner.last_estimates["choice"] == {"svc": {"user": "mu", "station": "ap1", "server": "edge1"}}


def test_orchestrated_waits_while_the_handover_is_far(paper_spec):
    state = make_state(paper_spec, user_x=2.0)
    assert build("orchestrated").on_report(state, state.users["mu"]) == []


def test_orchestrated_respects_station_capacity(paper_spec):
    # ap2 full: the user cannot be placed behind it, so no migration to edge2 via ap2
    state = make_state(paper_spec, user_x=14.0, radio=COVERAGE)
    state.stations["ap2"].max_users = 0
    planner = build("orchestrated")
    actions = planner.on_report(state, state.users["mu"])
    assert not any(isinstance(a, Migrate) and a.dest == "edge2" for a in actions)


def test_orchestrated_decides_users_jointly(paper_spec):
    """Two users near the hysteresis point and ap2 holds one more user only.  mu (x = 14)
    loses ap1 within the look-ahead and must take ap2; mu2 (x = 12, its service on edge2,
    whose migration, with a 5 MB delta, costs more downtime than a handover) would take ap2
    too if decided alone.  Together (3e), mu2 stays with ap1 and its service comes to edge1
    instead."""
    state = make_state(paper_spec, user_x=14.0, radio=COVERAGE)
    state.users["mu2"] = User("mu2", "ap1", (12.0, 5.0), (1.0, 0.0), t=T0, e2e_ms={"svc2": 50.0})
    state.services["svc2"] = Service("svc2", "mu2", "counter", "edge2", cpus=1.0, memory_mb=512,
                                     image_bytes=170e6, full_bytes=8e6, delta_bytes=5e6)
    state.stations["ap2"].max_users = 1
    planner = build("orchestrated")
    actions = planner.on_report(state, state.users["mu"])
    plan = planner.last_estimates
    assert set(plan["users"]) == {"mu", "mu2"} and plan["status"] == "optimal"
    assert plan["choice"] == {"svc": {"user": "mu", "station": "ap2", "server": "edge2"},
                              "svc2": {"user": "mu2", "station": "ap1", "server": "edge1"}}
    assert plan["per_user_differs"] is True
    moves = sorted((type(a).__name__, getattr(a, "user", None) or a.service, getattr(a, "target", None)
                    or a.dest) for a in actions)
    assert moves == [("Handover", "mu", "ap2"), ("Migrate", "svc", "edge2"), ("Migrate", "svc2", "edge1")]


def test_orchestrated_places_every_service_of_a_user(paper_spec):
    """Two services of one user, edge2 has room for one: (3a) keeps the one it can move
    with the user and places the other where (3a) prefers; the user has one station."""
    state = make_state(paper_spec, user_x=14.0, radio=COVERAGE)
    state.services["svc2"] = Service("svc2", "mu", "counter", "edge1", cpus=1.0, memory_mb=512,
                                     image_bytes=170e6, full_bytes=5e6, delta_bytes=10e3)
    state.users["mu"].e2e_ms["svc2"] = 50.0
    state.servers["edge2"].cpus = 1.5
    planner = build("orchestrated")
    planner.on_report(state, state.users["mu"])
    choice = planner.last_estimates["choice"]
    assert set(choice) == {"svc", "svc2"}
    assert {c["station"] for c in choice.values()} == {"ap2"}
    assert sorted(c["server"] for c in choice.values()).count("edge2") == 1


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


def test_shareon_finds_the_primary_cause_and_picks_neighbours_by_it(paper_spec):
    # processing-bound (proc 300 of 400 ms) on a saturated edge1: a favourable node, even a farther one
    state = make_state(paper_spec, user_x=5.0, utils={"edge1": 0.95, "edge2": 0.95, "edge3": 0.0},
                       e2e_ms=400.0, proc_ms=300.0)
    planner = build("shareon")
    assert planner.model.cause(state, state.services["svc"]) == "processing"
    [action] = planner.on_tick(state)
    assert action.dest in ("edge3", "cloud") and action.estimates["cause"] == "processing"
    # network-bound (proc 10 of 400 ms): only nodes closer to the user than edge1 qualify
    state = make_state(paper_spec, user_x=55.0, ap="ap3", e2e_ms=400.0, proc_ms=10.0)
    planner = build("shareon")
    assert planner.model.cause(state, state.services["svc"]) == "network"
    assert planner.candidates(state)["svc"][0] == "edge3"
    assert "cloud" not in planner.candidates(state)["svc"]          # 2 km away: not closer
    # both (proc 150, network 250): a node that is favourable and closer
    state = make_state(paper_spec, user_x=55.0, ap="ap3", utils={"edge1": 0.95}, e2e_ms=400.0, proc_ms=150.0)
    assert build("shareon").model.cause(state, state.services["svc"]) == "both"


def test_shareon_hysteresis_keeps_a_moved_container_and_asks_for_a_margin(paper_spec):
    state = make_state(paper_spec, user_x=25.0, ap="ap2", utils={"edge1": 0.95, "edge2": 0.1, "edge3": 0.1},
                       e2e_ms=400.0, proc_ms=80.0)
    planner = build("shareon", min_dwell_s=15.0)
    [action] = planner.on_tick(state)
    state.services["svc"].server = action.dest                    # it moved; still slow by the report
    state.users["mu"].position = (55.0, 5.0)                      # and the user went on towards edge3
    state.t = T0 + 10
    assert planner.on_tick(state) == []                           # within the dwell time: stays
    state.t = T0 + 16
    assert planner.on_tick(state) != []
    # a promise within the margin is not worth a move: measured 10 % above the best estimate
    state = make_state(paper_spec, user_x=25.0, ap="ap2", utils={"edge1": 0.95}, e2e_ms=400.0, proc_ms=80.0)
    planner = build("shareon", margin=0.0, app_threshold=0.01)
    best = min(planner.model.total(state, state.services["svc"], n) for n in planner.candidates(state)["svc"])
    state.users["mu"].e2e_ms["svc"] = best * 1.05 * 1e3
    assert planner.on_tick(state) != []
    assert build("shareon", margin=0.1, app_threshold=0.01).on_tick(state) == []
    # bandwidth-only keeps the dwell time too
    state = make_state(paper_spec, user_x=25.0, ap="ap2", e2e_ms=400.0, proc_ms=80.0)
    baseline = build("bandwidth-only")
    [action] = baseline.on_tick(state)
    state.services["svc"].server = action.dest
    assert baseline.on_tick(state) == []


def test_shareon_learns_the_latency_variance_of_an_area_and_node(paper_spec):
    planner = build("shareon", latency_variance=0.0, variance_weight=0.5)
    state = make_state(paper_spec, user_x=25.0, ap="ap2", e2e_ms=100.0, proc_ms=0.0)
    service = state.services["svc"]
    before = planner.model.network(state, service, "edge1")
    for e2e in (100.0, 300.0, 100.0, 300.0):
        state.users["mu"].e2e_ms["svc"] = e2e
        planner.model.observe(state, service)
    variance = planner.model.variance(state, service, "edge1")
    assert 0.05 < variance < 0.2                                 # deviations of about 100 ms, in seconds
    assert planner.model.network(state, service, "edge1") == pytest.approx(before + variance)
    assert planner.model.variance(state, service, "edge2") == 0.0        # not seen there: the parameter


def test_shareon_baselines(paper_spec):
    state = make_state(paper_spec, user_x=25.0, ap="ap2", utils={"edge1": 0.95, "edge2": 0.7, "edge3": 0.0},
                       e2e_ms=400.0, proc_ms=80.0)
    assert [a.dest for a in build("bandwidth-only").on_tick(state)] == ["edge2"]   # 100 Mbps beats 75
    assert [a.dest for a in build("processing-only").on_tick(state)] == ["cloud"]  # C = 1.5, idle
    user = state.users["mu"]
    assert build("nearest-edge").initial_server(state, state.services["svc"], user) == "edge2"
    assert build("nearest-edge").on_tick(state) == []
    state.services["svc"].server = "edge2"
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
