"""Simulator benchmark: simulated time against wall time and peak memory, by city size.

    .venv/bin/python benchmarks/sim.py [--users 50,500,5000] [--servers 10,50,200] [--hours 1]
                                       [--planners nearest] [--target] [--mobility sumo]

Each row is one trial of ``experiments/city.yaml`` with its users, edge servers and
duration overridden, run in a fresh process (its peak memory is its own).  ``--target``
adds the issue's target row: 500 users, 50 edge servers, 24 simulated hours, each planner.
``--mobility``: the city's SUMO cars (its default; generating the traffic is set-up time,
once per size and duration, then cached) or ``random_waypoint`` at 5-15 m/s.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, report  # noqa: E402

CITY = ROOT / "experiments" / "city.yaml"


MOBILITY = {"sumo": "{model: sumo}", "random_waypoint": "{model: random_waypoint, speed: [5, 15], pause: [0, 60]}"}


def one(users: int, servers: int, hours: float, planner: str, mobility: str, queue) -> None:
    from testbed.config import load_experiment
    from testbed.sim import Simulation, calibration, summarise

    started = time.perf_counter()
    spec = load_experiment(CITY, [f"sim.population.users={users}", f"sim.city.edge_servers={servers}",
                                  f"duration={hours * 3600:g}s", f"planners=[{planner}]",
                                  f"sim.population.mobility={MOBILITY[mobility]}"])
    trial = Simulation(spec, spec.planners[0], calibration.load(spec.sim.calibration, CITY.parent)).run()
    summary = summarise(trial, spec.duration)
    set_up = time.perf_counter() - started - trial.wall_s
    queue.put({"users": users, "edge servers": servers, "base stations": len(spec.topology.nodes_with_role("ap")),
               "simulated h": hours, "planner": planner, "mobility": mobility, "set-up s": round(set_up, 2),
               "wall s": round(trial.wall_s, 2), "sim/wall": summary["speedup"],
               "peak MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               "handovers": summary["handovers"], "migrations": summary["migrations"],
               "decisions": summary["decisions"], "E2E ms": round(summary["e2e_mean_ms"] or 0, 1),
               "downtime s/user": round(summary["downtime_per_user_s"] or 0, 2)})


def run(users, servers, hours, planner, mobility) -> dict:
    queue = multiprocessing.get_context("spawn").Queue()
    process = multiprocessing.get_context("spawn").Process(target=one,
                                                           args=(users, servers, hours, planner, mobility, queue))
    process.start()
    process.join()
    if process.exitcode != 0:
        return {"users": users, "edge servers": servers, "simulated h": hours, "planner": planner,
                "mobility": mobility, "wall s": f"failed ({process.exitcode})"}
    return queue.get()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="50,500,5000")
    parser.add_argument("--servers", default="10,50,200")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--planners", default="nearest")
    parser.add_argument("--target", action="store_true", help="add 500 users x 50 servers x 24 h per planner")
    parser.add_argument("--target-planners", default="cloud,nearest,random,shareon,orchestrated")
    parser.add_argument("--mobility", choices=sorted(MOBILITY), default="sumo")
    args = parser.parse_args()
    rows = []
    for planner in args.planners.split(","):
        for users in map(int, args.users.split(",")):
            for servers in map(int, args.servers.split(",")):
                rows.append(run(users, servers, args.hours, planner, args.mobility))
    if args.target:
        for planner in args.target_planners.split(","):
            rows.append(run(500, 50, 24.0, planner, args.mobility))
    report("sim", "Simulator: simulated time vs wall time and peak memory (2-core machine)", rows,
           ["Target: 500 users, 50 edge servers, 24 simulated hours in at most 60 s and 2 GB."])


if __name__ == "__main__":
    main()
