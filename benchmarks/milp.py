"""MILP benchmark: solve time of the placement problem (3a)-(3e) as it grows.

    .venv/bin/python benchmarks/milp.py [--repeats 5]

Random instances in the shape of a city deployment: 30 base stations and 30
servers on a 3 km x 3 km grid, users scattered over it; a user hears the base
stations within 600 m (3d), each holds up to 20 users (3e), each server has 16
cores / 32 GB for containers of 1-2 cores / 1-2 GB (3c).  Gains follow eq. (4)
from distances, downtimes eq. (5)-like from distances between servers.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import percentile, report  # noqa: E402

from testbed.controller.milp import Option, PlacementProblem, solve  # noqa: E402


def instance(users: int, stations: int = 30, servers: int = 30, seed: int = 0) -> PlacementProblem:
    rng = random.Random(seed)

    def point():
        return rng.uniform(0, 3000), rng.uniform(0, 3000)

    bs = {f"b{i}": point() for i in range(stations)}
    sv = {f"s{i}": point() for i in range(servers)}
    names = [f"u{i}" for i in range(users)]
    options = []
    demand = {}
    for user in names:
        here = point()
        host = min(sv, key=lambda s: math.dist(sv[s], here) + rng.uniform(0, 1500))
        heard = [b for b in bs if math.dist(bs[b], here) <= 600] or [min(bs, key=lambda b: math.dist(bs[b], here))]
        now = math.dist(sv[host], here) * 1e-4                     # s of E2E through the current server
        for b in heard:
            for s in sv:
                then = (math.dist(sv[s], bs[b]) + math.dist(bs[b], here)) * 1e-4
                gain = (now - then) * 200                            # eq. (4) x tasks over the horizon
                downtime = 0.0 if s == host else 0.5 + math.dist(sv[s], sv[host]) * 2e-4
                options.append(Option(user, b, s, gain, downtime))
        demand[user] = (rng.choice([1, 2]), rng.choice([1024, 2048]))
    capacity = {s: (16, 32768) for s in sv}
    return PlacementProblem(names, options, demand, capacity, {b: 20 for b in bs})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--solvers", default="highs,cbc")
    args = parser.parse_args()
    rows = []
    for solver in args.solvers.split(","):
        for users in (10, 50, 200):
            times, sizes, status = [], [], set()
            for seed in range(args.repeats):
                problem = instance(users, seed=seed)
                solution = solve(problem, solver=solver)
                times.append(solution.seconds)
                sizes.append(len(problem.options))
                status.add(solution.status)
            rows.append({"solver": solver, "users": users, "base_stations": 30, "servers": 30,
                         "binary_variables": int(statistics.mean(sizes)), "status": ",".join(sorted(status)),
                         "median_s": round(statistics.median(times), 4), "max_s": round(max(times), 4),
                         "p95_s": round(percentile(times, 95), 4)})
            print(rows[-1], flush=True)
    report("milp", "Placement MILP (3a)-(3e): solve time incl. model building", rows,
           ["Target: 200 users in at most 1 s on this machine.",
            "The LP relaxation and the incumbent come from HiGHS in both rows; `solver` runs the final "
            "branch and bound on the options that can still beat the incumbent."])


if __name__ == "__main__":
    main()
