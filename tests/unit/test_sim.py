"""The simulator's pure parts: the generated city, trace readers, the calibration fit, and a
small city run end to end (seconds, deterministic for a seed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from testbed.config import ConfigError, load_experiment, load_experiment_with_source, load_topology
from testbed.controller.estimators import transfer_seconds, warm_transfer_seconds
from testbed.mobility.random_waypoint import RandomWaypoint
from testbed.mobility.trace import TraceError, TraceReplay
from testbed.sim import Simulation, calibration, summarise
from testbed.sim.network import GraphNetwork

ROOT = Path(__file__).resolve().parents[2]

CALIBRATION = {
    "apps": {"counter": {"proc_ms": 1.0, "proc_sigma": 0.3, "task_bytes": 16, "requests": 100}},
    "migration": {"counter": {"setup_s": 0.44, "checkpoint_s": 0.1, "restore_s": 0.35, "pre_efficiency": 1.0,
                              "overhead_s": 0.05, "image_bytes": 169e6, "full_bytes": 6.7e6, "delta_bytes": 6000,
                              "migrations": 5}},
    "handover_excess_s": 0.0,
}


def city_file(tmp_path: Path, users: int = 20, duration: str = "600s", planners=("nearest", "cloud"),
              task_bytes: int = 16) -> Path:
    path = tmp_path / "city.yaml"
    calibration_ = {**CALIBRATION, "apps": {"counter": {**CALIBRATION["apps"]["counter"], "task_bytes": task_bytes}}}
    path.write_text(yaml.safe_dump({
        "name": "city-test", "seed": 3, "duration": duration, "planners": list(planners),
        "radio": {"tx_power_dbm": 30, "pl_d0_db": 40, "exponent": 3.0, "sensitivity_dbm": -85,
                  "hysteresis_db": 3, "handover_time": "500ms"},
        "report_period": "5s",
        "sim": {"calibration": calibration_,
                "city": {"area": [2000, 2000], "cell_spacing": 400, "edge_servers": 5},
                "population": {"users": users, "mobility": {"model": "random_waypoint", "speed": [5, 15]},
                               "services": [{"app": "counter", "think_time": "50ms"}]}}}))
    return path


# -- the city ----------------------------------------------------------------------------------

def test_a_generated_city_is_an_ordinary_validated_topology(tmp_path):
    spec = load_experiment(city_file(tmp_path), ["sim.population.users=7", "links.edge_edge.delay=30ms"])
    topology = spec.topology
    stations, edges = topology.nodes_with_role("ap"), topology.nodes_with_role("edge")
    assert len(edges) == 5 and topology.cloud() == "cloud"
    assert len(spec.users) == 7 and all(topology.nodes[u].role == "mu" for u in spec.users)
    rows = int(2000 // (400 * math.sqrt(3) / 2)) + 1
    assert len(stations) == sum(int((2000 - (200 if j % 2 else 0)) // 400) + 1 for j in range(rows))
    for station in stations:     # every base station is wired to exactly one edge server
        uplinks = [c for c in topology.connections if station in (c.a, c.b)]
        assert len(uplinks) == 1 and uplinks[0].link_class == "ap_edge"
    assert topology.links["edge_edge"].delay == pytest.approx(0.030)      # a topology key after generation
    seeds = {spec.users[u].mobility.parameters()["seed"] for u in spec.users}
    assert len(seeds) == 7
    again = tmp_path / "effective.yaml"              # the effective experiment reloads as it is (a record)
    again.write_text(yaml.safe_dump(load_experiment_with_source(city_file(tmp_path))[1]))
    assert len(load_experiment(again).users) == 20


def test_a_city_with_its_own_topology_is_refused(tmp_path):
    path = city_file(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["topology"] = str(ROOT / "topologies" / "paper.yaml")
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="replaces topology and users"):
        load_experiment(path)


def test_an_unknown_mobility_model_of_the_population_is_named_once(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_experiment(city_file(tmp_path), ["sim.population.mobility={model: sumoo}"])
    message = str(raised.value)
    assert "population.mobility: unknown mobility model 'sumoo'" in message
    assert message.count("sumoo") == 1                      # not once per generated user


@pytest.mark.parametrize("override, line", [
    ("sim.population.mobility={model: random_waypoint, area: [0, -5, 0, 10]}",
     "sim.population.mobility.area: x min, x max, y min, y max with min <= max"),
    ("sim.population.mobility.speedd=3", "sim.population.mobility.speedd: unknown field"),
    ("sim.city.edge_servers=0", "sim.city.edge_servers: Input should be greater than or equal to 1"),
])
def test_a_bad_city_or_population_field_is_named_once_with_the_file(tmp_path, override, line):
    path = city_file(tmp_path)
    with pytest.raises(ConfigError) as raised:
        load_experiment(path, [override])
    message = str(raised.value)
    assert message.startswith(f"{path}: invalid configuration")
    assert line in message and len(message.splitlines()) == 2    # not once per generated user


def test_towers_from_an_opencellid_csv_and_a_bad_row_named(tmp_path):
    from testbed.config.city import read_towers

    good = tmp_path / "towers.csv"
    good.write_text("radio,mcc,net,area,cell,unit,lon,lat,range\n"
                    "LTE,310,410,1,1,,-122.4194,37.7749,1000\n"
                    "LTE,310,410,1,2,,-122.4094,37.7749,1000\n")
    points = read_towers(good, (37.7749, -122.4194))
    assert points[0] == pytest.approx((0.0, 0.0), abs=1e-6)
    assert points[1][0] == pytest.approx(880, rel=0.01) and points[1][1] == pytest.approx(0.0, abs=1e-6)
    bad = tmp_path / "bad.csv"
    bad.write_text("LTE,310,410,1,1,,-122.4194,37.7749,1000\nLTE,310,410,1,2,,east,37.77,1000\n")
    with pytest.raises(ConfigError, match=r"bad.csv:2: expected lon and lat"):
        read_towers(bad, (37.7749, -122.4194))


def test_graph_paths_agree_with_the_emulators_address_plan():
    from testbed.net import addressing

    topology = load_topology(ROOT / "topologies" / "paper.yaml")
    plan, graph = addressing.plan(topology), GraphNetwork(topology)
    servers, stations = topology.servers(), topology.nodes_with_role("ap")
    for a in servers + stations:
        for b in servers:
            if a != b:
                assert graph.one_way(a, b) == pytest.approx(plan.one_way_delay(a, b))
                assert graph.bandwidth(a, b) == pytest.approx(plan.bottleneck_mbps(a, b))


# -- mobility ------------------------------------------------------------------------------------

def test_random_waypoint_is_seeded_stays_in_its_area_and_keeps_its_speeds():
    times = np.arange(0, 3600, 1.0)
    a = RandomWaypoint(area=(0, 1000, 0, 500), speed=(5, 15), pause=(0, 10), seed=4).positions(times)
    b = RandomWaypoint(area=(0, 1000, 0, 500), speed=(5, 15), pause=(0, 10), seed=4).positions(times)
    c = RandomWaypoint(area=(0, 1000, 0, 500), speed=(5, 15), pause=(0, 10), seed=5).positions(times)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a[:, 0].min() >= 0 and a[:, 0].max() <= 1000 and a[:, 1].min() >= 0 and a[:, 1].max() <= 500
    speeds = np.linalg.norm(np.diff(a, axis=0), axis=1)
    assert speeds.max() <= 15 + 1e-6 and (speeds > 4.99).mean() > 0.5


def test_a_trace_is_split_at_long_gaps_and_its_map_is_configurable(tmp_path):
    path = tmp_path / "new_cab.txt"
    # newest first: fixes at 0, 60, 120 s, then nothing for an hour, then 3720 and 3780 s
    stamps = [0, 60, 120, 3720, 3780]
    lines = [f"{52.0 + k * 0.001:.5f} {4.0 + k * 0.001:.5f} 0 {1_000_000 + t}" for k, t in enumerate(stamps)]
    path.write_text("\n".join(reversed(lines)) + "\n")
    amsterdam = (51.0, 53.0, 3.0, 6.0)
    trace = TraceReplay(path, bounds=amsterdam, max_gap=300)
    present = trace.present(np.array([30.0, 119.0, 1000.0, 3000.0, 3750.0, 4000.0]))
    assert present.tolist() == [True, True, False, False, True, False]
    with pytest.raises(TraceError, match=r"new_cab.txt:1: fix .* outside the map"):
        TraceReplay(path)                                   # the default map is San Francisco's


# -- calibration ------------------------------------------------------------------------------------

def test_the_fit_recovers_known_processing_and_migration_parameters():
    rng = np.random.default_rng(7)
    computes = rng.choice([1.0, 1.5, 2.0], 4000)
    at_one = rng.lognormal(math.log(120.0), 0.25, 4000)
    requests = pd.DataFrame({"app": "face", "proc_ms": at_one / computes, "compute": computes})
    fitted = calibration.fit_processing(requests)["face"]
    assert fitted["proc_ms"] == pytest.approx(120.0, rel=0.05)
    assert fitted["proc_sigma"] == pytest.approx(0.25, rel=0.05)

    rows = []
    for k in range(30):
        c_src, c_dst = [1.0, 1.5][k % 2], [2.0, 1.0][k % 2]
        bandwidth, rtt, full, delta = [100.0, 75.0][k % 2], [0.1, 0.3][k % 2], 50e6 + k * 1e6, 2e5 + k * 1e4
        checkpoint, restore = 0.8 / c_src, 1.2 / c_dst
        warm = k % 3 != 0          # most deltas follow the pre-copy on its open window, some on a fresh one
        moved = (warm_transfer_seconds if warm else transfer_seconds)(delta, bandwidth, rtt)
        rows.append({"app": "face", "mode": "precopy-delta", "compute_source": c_src, "compute_dest": c_dst,
                     "bandwidth_mbps": bandwidth, "rtt_s": rtt, "warm": warm,
                     "sizes": {"image": 9e8, "pre_checkpoint": full, "delta": delta},
                     "phases": {"prepare": {"seconds": 0.5}, "final_checkpoint": {"seconds": checkpoint},
                                "restore": {"seconds": restore},
                                "pre_transfer": {"seconds": 1.3 * transfer_seconds(full, bandwidth, rtt)},
                                "migration": {"seconds": checkpoint + moved + restore + 0.07}}})
    migration = calibration.fit_migrations(pd.DataFrame(rows))["face"]
    for key, expected in {"setup_s": 0.5, "checkpoint_s": 0.8, "restore_s": 1.2, "pre_efficiency": 1.3,
                          "overhead_s": 0.07}.items():
        assert migration[key] == pytest.approx(expected, rel=0.05), key
    assert migration["overhead_from"] == "agent"
    deltas = [row["sizes"]["delta"] for row in rows]
    assert migration["delta_quantiles"][0] == min(deltas) and migration["delta_quantiles"][-1] == max(deltas)
    assert migration["delta_quantiles"][5] == pytest.approx(np.median(deltas))

    # the user saw each outage 0.12 s shorter than the agents' downtime phase: the fit takes the user's
    for row in rows[::3]:
        row["seen_s"] = row["phases"]["migration"]["seconds"] - 0.12
    migration = calibration.fit_migrations(pd.DataFrame(rows))["face"]
    assert migration["overhead_from"] == "user"
    assert migration["overhead_s"] == pytest.approx(0.07 - 0.12, abs=1e-9)


def test_the_outage_a_migration_caused_is_the_users_unless_a_handover_touches_it():
    def request(sent, ok, error=None):
        return {"planner": "nearest", "repetition": 1, "user": "mu", "service": "counter-mu", "sent": sent,
                "received": sent + 0.01, "ok": ok, "error": error}

    failing = [request(10.05 + 0.05 * k, False, "ConnectionResetError") for k in range(5)]        # 10.05-10.25
    after_handover = [request(20.3 + 0.05 * k, False, "ConnectionResetError") for k in range(3)]  # 20.3-20.4
    log = [request(9.9, True), *failing, request(10.3, True), request(20.0, True), *after_handover,
           request(20.5, True)]
    trial = ("nearest", 1)
    seen = calibration._outages_seen(pd.DataFrame(log), {(trial, "mu"): [(19.7, 20.25)]})
    assert seen(trial, "counter-mu", {"start": 10.0, "end": 10.4}) == pytest.approx(0.25)
    assert seen(trial, "counter-mu", {"start": 20.25, "end": 20.6}) is None        # 0.05 s after a handover
    assert seen(trial, "counter-mu", {"start": 30.0, "end": 30.4}) is None         # no outage then
    assert seen(trial, "counter-mu", None) is None


def test_a_calibration_without_the_app_is_refused_by_name():
    found = calibration.load(CALIBRATION)
    with pytest.raises(ConfigError, match="no app 'face'"):
        found.app("face")


# -- a small city ------------------------------------------------------------------------------------

def run(tmp_path, planner: str, overrides=(), **keys):
    spec = load_experiment(city_file(tmp_path, planners=(planner,), **keys), list(overrides))
    return Simulation(spec, spec.planners[0], calibration.load(spec.sim.calibration)).run(), spec


def test_a_small_city_runs_in_seconds_and_is_the_same_for_a_seed(tmp_path):
    first, spec = run(tmp_path, "nearest")
    again, _ = run(tmp_path, "nearest")
    other, _ = run(tmp_path, "nearest", ["seed=4"])          # other walks
    assert first.wall_s < 10
    assert first.aggregates == again.aggregates and first.migrations == again.migrations
    assert first.aggregates != other.aggregates
    assert {row["user"] for row in first.aggregates} == set(spec.users)
    assert first.handovers and first.migrations


def test_the_controllers_planners_decide_in_the_simulator(tmp_path):
    from testbed.controller.planners.nearest import NearestPlanner

    nearest, spec = run(tmp_path, "nearest")
    cloud, _ = run(tmp_path, "cloud")
    simulation = Simulation(spec, spec.planners[0], calibration.load(spec.sim.calibration))
    assert type(simulation.planner) is NearestPlanner          # the class, not a copy
    assert spec.migration.mode == "precopy-delta"               # estimated as the controller does
    assert simulation.state.migration_model.warm_final_transfer
    assert not cloud.migrations and len(cloud.handovers) == len(nearest.handovers)
    summary_nearest, summary_cloud = summarise(nearest, spec.duration), summarise(cloud, spec.duration)
    # the cloud is 150 ms away each way: every request pays 300 ms; the nearest edge is 0-100 ms away
    assert summary_cloud["e2e_mean_ms"] > 300
    assert summary_nearest["e2e_mean_ms"] < summary_cloud["e2e_mean_ms"] / 2
    for move in nearest.migrations:   # nearest follows each handover to the new station's own server
        assert move["trigger"] == "handover" and move["downtime_s"] > 0
    # every handover costs its user the handover time (0.5 s), on top of any time out of coverage
    downtime = sum(row["downtime_s"] - row["downtime_coverage_s"] for row in cloud.aggregates)
    assert downtime == pytest.approx(0.5 * len(cloud.handovers), rel=0.05)


def _downtime_alone(simulation, network, move, delta: float, transfer) -> float:
    """A simulated migration's downtime when it has its path to itself: checkpoint and restore at
    the servers' compute, the calibration's overhead, and ``transfer`` of ``delta`` over the path."""
    fixed = simulation.calibration.migration_of("counter")
    source, dest = move["source"], move["dest"]
    return fixed.checkpoint_s / simulation.compute[simulation.server_index[source]] \
        + fixed.restore_s / simulation.compute[simulation.server_index[dest]] + fixed.overhead_s \
        + transfer(delta, network.bandwidth(source, dest), 2 * network.one_way(source, dest))


def test_a_delta_follows_its_pre_copy_on_the_open_window_unless_the_servers_restart_it(tmp_path):
    """As the agents send it: the migration phase's transfer pays no handshake or slow start after a
    pre-copy, unless the servers' TCP restarts an idle window (then it is a fresh connection's)."""
    delta = 20e6
    big = {**CALIBRATION, "migration": {"counter": {**CALIBRATION["migration"]["counter"], "delta_bytes": delta}}}
    trials = {}
    for restarts in (False, True):
        spec = load_experiment(city_file(tmp_path, planners=("nearest",), duration="300s"),
                               [f"network.server_slow_start_after_idle={str(restarts).lower()}"])
        simulation = Simulation(spec, spec.planners[0], calibration.load(big))
        assert simulation.state.migration_model.warm_final_transfer is not restarts
        trials[restarts] = (simulation, simulation.run())
    simulation, warm = trials[False]
    cold = trials[True][1]
    assert warm.migrations and len(warm.migrations) == len(cold.migrations)
    network = GraphNetwork(simulation.spec.topology)
    expected = {model: [_downtime_alone(simulation, network, move, delta, transfer) for move in warm.migrations]
                for model, transfer in (("warm", warm_transfer_seconds), ("cold", transfer_seconds))}
    # a move alone on its path has all of its bandwidth (the counter's tasks take next to nothing);
    # moves crossing the same link at once share it and take longer
    for moves, model in ((warm.migrations, "warm"), (cold.migrations, "cold")):
        alone = [m["downtime_s"] == pytest.approx(e, rel=0.01) for m, e in zip(moves, expected[model])]
        assert sum(alone) > len(moves) / 2, model
        assert all(m["downtime_s"] >= e * 0.99 for m, e in zip(moves, expected[model])), model
    assert min(expected["cold"][k] - expected["warm"][k] for k in range(len(warm.migrations))) > 0.2


def test_each_migration_draws_its_delta_from_the_sizes_measured(tmp_path):
    """Measured deltas come in two sizes (the same images before both checkpoints, or not: FIDELITY,
    Yolo's delta); each simulated migration draws its own from the calibration's quantiles."""
    small, large = 0.5e6, 20e6
    quantiles = [small] * 5 + [large] * 6                   # 40 % small, 50 % large, 10 % between
    two = {**CALIBRATION, "migration": {"counter": {**CALIBRATION["migration"]["counter"], "delta_bytes": large,
                                                    "delta_quantiles": quantiles}}}
    spec = load_experiment(city_file(tmp_path, planners=("nearest",), duration="300s"), [])
    simulation = Simulation(spec, spec.planners[0], calibration.load(two))
    moves = simulation.run().migrations
    network = GraphNetwork(spec.topology)
    sizes = {name: sum(move["downtime_s"] == pytest.approx(
        _downtime_alone(simulation, network, move, size, warm_transfer_seconds), rel=0.01) for move in moves)
        for name, size in (("small", small), ("large", large))}
    assert sizes["small"] >= len(moves) / 5 and sizes["large"] >= len(moves) / 5, (sizes, len(moves))
    with pytest.raises(ConfigError, match="delta_quantiles"):
        calibration.load({**two, "migration": {"counter": {**two["migration"]["counter"],
                                                           "delta_quantiles": [large, small]}}})


def test_reports_taken_together_decide_as_reports_taken_in_turn(tmp_path, monkeypatch):
    """The orchestrated planner looks at every user once per report instant (``on_reports``);
    taking the same reports one by one (``on_report``) gives the same run."""
    from testbed.controller.planners.base import Planner
    from testbed.controller.planners.orchestrated import OrchestratedPlanner

    together, _ = run(tmp_path, "orchestrated", duration="300s")
    assert together.migrations and together.decisions
    monkeypatch.setattr(OrchestratedPlanner, "on_reports", Planner.on_reports)
    in_turn, _ = run(tmp_path, "orchestrated", duration="300s")
    assert together.aggregates == in_turn.aggregates and together.migrations == in_turn.migrations
    assert together.decisions == in_turn.decisions


def test_tasks_and_migrations_share_the_wired_links(tmp_path):
    """Tasks on a loaded link wait as in a processor-sharing queue, and a migration gets what the
    tasks leave of its path."""
    wide = ["links.edge_cloud.bandwidth=10Gbps"]
    light, _ = run(tmp_path, "cloud", duration="120s")
    light_wide, _ = run(tmp_path, "cloud", wide, duration="120s")
    heavy, _ = run(tmp_path, "cloud", duration="120s", task_bytes=1_000_000, users=40)
    heavy_wide, _ = run(tmp_path, "cloud", wide, duration="120s", task_bytes=1_000_000, users=40)
    e2e = {name: summarise(trial, 120)["e2e_mean_ms"] for name, trial in
           [("light", light), ("light_wide", light_wide), ("heavy", heavy), ("heavy_wide", heavy_wide)]}
    # the radio (54 Mbit/s at best) is every path's bottleneck: a wider cloud link changes nothing
    # unless the tasks load it
    assert e2e["light"] == pytest.approx(e2e["light_wide"], rel=0.01), e2e
    assert e2e["heavy"] > 1.1 * e2e["heavy_wide"], e2e

    quiet, _ = run(tmp_path, "nearest", duration="300s")
    busy, _ = run(tmp_path, "nearest", duration="300s", task_bytes=1_000_000)
    def moves(trial):                  # in the order they began (they end in another order when slower)
        return sorted(trial.migrations, key=lambda m: (m["start"], m["service"]))

    assert [(m["service"], m["dest"], round(m["start"], 3)) for m in moves(quiet)] == \
        [(m["service"], m["dest"], round(m["start"], 3)) for m in moves(busy)]       # the same walks
    slower = [b["pre_migration_s"] / q["pre_migration_s"] for q, b in zip(moves(quiet), moves(busy))]
    # the user's own tasks cross the path its service moves along (station, new edge, old edge), and
    # so do others': the transfer (about a third of the pre-migration here) gets what they leave
    assert min(slower) >= 1.0 and np.median(slower) > 1.01 and max(slower) > 1.05, slower


def test_a_trials_rows_are_kept_as_columns_and_read_back_as_dicts_and_a_frame():
    from testbed.sim.rows import Rows

    rows, same = Rows(), Rows()
    for table in (rows, same):
        for k in range(3):
            table.append({"t": float(k), "user": f"u{k}", "e2e_ms": None if k == 1 else 10.0 * k})
    assert len(rows) == 3 and rows and not Rows() and rows == same
    assert list(rows)[1] == {"t": 1.0, "user": "u1", "e2e_ms": None}
    frame = rows.frame()
    assert list(frame.columns) == ["t", "user", "e2e_ms"] and frame["e2e_ms"].isna().tolist() == [False, True, False]
    assert pd.DataFrame(rows).equals(frame)                          # as a list of dicts was
    with pytest.raises(ValueError, match=r"row with fields \['t'\], not \['e2e_ms', 't', 'user'\]"):
        rows.append({"t": 4.0})
    assert len(rows) == 3


# -- SUMO vehicle traces ---------------------------------------------------------------------------------

def test_fcd_samples_replay_and_bad_samples_are_named(tmp_path):
    from testbed.mobility.fcd import FcdError, FcdReplay, read_fcd

    path = tmp_path / "fcd.xml"
    steps = []
    for t in range(0, 6):
        vehicles = [f'<vehicle id="a" x="{10.0 * t}" y="0.0"/>']
        if t >= 2:
            vehicles.append(f'<vehicle id="b" x="0.0" y="{5.0 * t}"/>')
        steps.append(f'<timestep time="{t}.00">' + "".join(vehicles) + "</timestep>")
    path.write_text('<?xml version="1.0"?>\n<fcd-export>\n' + "\n".join(steps) + "\n</fcd-export>\n")
    read_fcd.cache_clear()
    a, b = FcdReplay(path, 0), FcdReplay(path, "b")
    assert a.position(2.5) == pytest.approx((25.0, 0.0)) and b.position(3.0) == pytest.approx((0.0, 15.0))
    assert b.present(np.array([1.0, 2.0, 5.0, 6.0])).tolist() == [False, True, True, False]
    with pytest.raises(FcdError, match="holds 2 vehicles"):
        FcdReplay(path, 2)
    bad = tmp_path / "bad.xml"
    bad.write_text('<fcd-export>\n<timestep time="0">\n<vehicle id="a" x="east" y="0"/>\n</timestep>\n</fcd-export>\n')
    with pytest.raises(FcdError, match=r"bad.xml:3: vehicle x='east' is not a number"):
        read_fcd(str(bad))


def test_fcd_parquet_replays_like_xml_and_bad_rows_and_columns_are_named(tmp_path):
    from testbed.mobility.fcd import FcdError, FcdReplay, read_fcd

    rows = [(t, vid, x, y) for t in range(6) for vid, x, y in [("b", 0.0, 5.0 * t), ("a", 10.0 * t, 0.0)]
            if vid == "a" or t >= 2]
    frame = pd.DataFrame(rows, columns=["timestep_time", "vehicle_id", "vehicle_x", "vehicle_y"])
    path = tmp_path / "fcd.parquet"
    frame.to_parquet(path)
    read_fcd.cache_clear()
    assert list(read_fcd(str(path))) == ["a", "b"]                  # in the order vehicles first appear
    a, b = FcdReplay(path, 0), FcdReplay(path, "b")
    assert a.position(2.5) == pytest.approx((25.0, 0.0)) and b.position(3.0) == pytest.approx((0.0, 15.0))
    assert b.present(np.array([1.0, 2.0, 5.0, 6.0])).tolist() == [False, True, True, False]
    frame.loc[3, "vehicle_x"] = np.nan
    frame.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(FcdError, match=r"bad.parquet: row 3: not a vehicle's time and position"):
        read_fcd(str(tmp_path / "bad.parquet"))
    frame.drop(columns=["vehicle_y"]).to_parquet(tmp_path / "short.parquet")
    with pytest.raises(FcdError, match=r"short.parquet: no column vehicle_y"):
        read_fcd(str(tmp_path / "short.parquet"))


@pytest.fixture
def sumo_cache(tmp_path, monkeypatch):
    pytest.importorskip("sumo", reason="eclipse-sumo is not installed (setup.sh installs it)")
    from testbed.mobility import sumo

    monkeypatch.setattr(sumo, "CACHE", tmp_path / "sumo-cache")
    return tmp_path / "sumo-cache"


def test_sumo_generates_vehicle_traces_offline_that_a_city_runs_on(tmp_path, sumo_cache):
    from testbed.mobility import sumo

    fcd = sumo.generate(tmp_path / "traces", grid=3, length=400, period=10, duration=300, seed=2)
    again = sumo.generate(tmp_path / "again", grid=3, length=400, period=10, duration=300, seed=2)
    assert pd.read_parquet(fcd).equals(pd.read_parquet(again)) and len(pd.read_parquet(fcd)) > 100     # seeded
    with pytest.warns(DeprecationWarning, match="testbed.mobility.sumo.generate"):
        from testbed.sim import sumo as moved
        assert moved.generate is sumo.generate
    path = city_file(tmp_path, users=10, duration="300s", planners=("nearest",))
    data = yaml.safe_load(path.read_text())
    data["sim"]["city"] = {"area": [800, 800], "cell_spacing": 400, "edge_servers": 2}
    data["sim"]["population"]["mobility"] = {"model": "fcd", "file": str(fcd)}
    path.write_text(yaml.safe_dump(data))
    spec = load_experiment(path)
    assert spec.users["u3"].mobility.parameters()["vehicle"] == 2
    trial = Simulation(spec, spec.planners[0], calibration.load(spec.sim.calibration)).run()
    assert trial.handovers and {row["user"] for row in trial.aggregates} <= set(spec.users)


def test_a_city_drives_its_users_in_sumo_cars_by_default_on_the_map_all_along(tmp_path, sumo_cache):
    from testbed.mobility import build

    path = city_file(tmp_path, users=12, duration="10min", planners=("nearest",))
    data = yaml.safe_load(path.read_text())
    del data["sim"]["population"]["mobility"]                         # the default
    path.write_text(yaml.safe_dump(data))
    spec = load_experiment(path)
    params = [spec.mobility_params(u) for u in spec.users]
    assert {p["model"] for p in params} == {"sumo"} and [p["vehicle"] for p in params] == list(range(12))
    assert {(p["vehicles"], p["duration"], p["seed"]) for p in params} == {(12, 600.0, params[0]["seed"])}
    cars = [build(**p) for p in params]
    assert len(list(sumo_cache.glob("*/fcd.parquet"))) == 1           # one city's traffic, made once
    times = np.arange(0.0, 600.0, 1.0)
    for car in cars:
        here = car.positions(times)
        assert car.present(times)[60:].all()                         # persistent: driving to the end
        assert np.ptp(here[:, 0]) + np.ptp(here[:, 1]) > 1000         # and going places
        assert np.diff(car.times).max() <= 5.0                         # a position every 5 s (sample)
        off_road = np.minimum(np.abs(car.xy[:, 0] - np.round(car.xy[:, 0] / 500) * 500),
                              np.abs(car.xy[:, 1] - np.round(car.xy[:, 1] / 500) * 500))
        assert off_road.max() < 10                                    # on the 500 m road grid
    assert len({tuple(np.round(c.positions(np.array([300.0]))[0])) for c in cars}) == 12
    trial = Simulation(spec, spec.planners[0], calibration.load(spec.sim.calibration)).run()
    assert trial.handovers and trial.migrations
    data["scenarios"] = {"longer": {"duration": "20min"}}                # each scenario's cars drive its duration
    path.write_text(yaml.safe_dump(data))
    longer = load_experiment(path).variants()["longer"]
    assert longer.mobility_params("u1")["duration"] == 1200.0 and longer.mobility_params("u1")["vehicle"] == 0
    glimpse = load_experiment(path, ["duration=1s", "sim.population.users=100", "scenarios={}"])
    starts = [build(**glimpse.mobility_params(u)).times[0] for u in glimpse.users]     # a car each, though
    assert len(starts) == 100 and max(starts) > 6.0               # some depart after so short a run ends
    with pytest.raises(ConfigError, match=r"users.u12.mobility.vehicle: 11 of 5 cars"):
        load_experiment(path, ["sim.population.mobility={model: sumo, vehicles: 5}"])


def test_predicted_rssi_lists_the_heard_stations_and_answers_any_other(tmp_path):
    """A city has hundreds of stations: the prediction holds those above the sensitivity (all that
    the handover rule and the planners look at) and computes any other one asked for by name."""
    from testbed.controller.state import User

    spec = load_experiment(city_file(tmp_path))
    state = Simulation(spec, spec.planners[0], calibration.load(spec.sim.calibration)).state
    rng = np.random.default_rng(3)
    for x, y in rng.uniform(0, 2000, (20, 2)):
        user = User("u1", None, (float(x), float(y)), (10.0, 0.0), t=0.0)
        heard = state.predicted_rssi(user, 3.0)
        full = {name: state.path_loss.mean_rssi(st.position, (x + 30.0, y)) for name, st in state.stations.items()}
        assert set(heard) == {n for n, r in full.items() if r >= spec.radio.sensitivity_dbm}
        for name in ("b1", next(iter(heard), "b2")):
            assert heard[name] == pytest.approx(full[name])
        assert state.policy.usable(heard) == state.policy.usable(full)
