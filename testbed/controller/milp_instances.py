"""Joint placement instances in the shape of a city, and an independent model to check answers.

``city_instance`` makes the problem the orchestrated planner solves when many
users hand over at once: base stations and servers on a grid-sized area,
users clustered in hotspots, some with two services, most of their services
near them (earlier decisions placed them) and some far.  Every user's current
placement is a candidate and is feasible, and the capacities leave little room
beyond it, so (3c) and (3e) bind; gains have both signs.

``reference_solution`` builds (3a)-(3e) from their definition with PuLP, a
second formulation written apart from ``milp._rows``, solved by CBC with no
gap: the benchmark and the tests compare every solver against it.
"""

from __future__ import annotations

import math
import random
import warnings

from testbed.controller.milp import GAP, Option, PlacementProblem, Solution


def city_instance(users: int, stations: int = 30, servers: int = 30, seed: int = 0, side_m: float = 3000.0,
                  hearing_m: float = 600.0, second_service: float = 0.3, hotspots: int = 4,
                  spare_cores: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)) -> PlacementProblem:
    rng = random.Random(seed)

    def anywhere():
        return rng.uniform(0, side_m), rng.uniform(0, side_m)

    centres = [anywhere() for _ in range(hotspots)]

    def somewhere():
        if rng.random() < 0.6:                         # most users crowd around a few hotspots
            cx, cy = rng.choice(centres)
            return min(side_m, max(0.0, rng.gauss(cx, 250))), min(side_m, max(0.0, rng.gauss(cy, 250)))
        return anywhere()

    bs = {f"b{i}": anywhere() for i in range(stations)}
    sv = {f"s{i}": anywhere() for i in range(servers)}
    compute = {s: rng.choice([1.0, 1.0, 1.5, 2.0]) for s in sv}
    used = {s: (0.0, 0.0, 0.0) for s in sv}          # cores, memory MB, storage MB of what runs there
    attached = {b: 0 for b in bs}
    options, demand, plan = [], {}, []
    names = [f"u{i}" for i in range(users)]
    for user in names:
        here = somewhere()
        heard = sorted(b for b in bs if math.dist(bs[b], here) <= hearing_m)
        heard = heard or sorted(bs, key=lambda b: math.dist(bs[b], here))[:2]
        current_b = rng.choice(heard)                  # where it was attached before it moved here
        attached[current_b] += 1
        for service in [f"{user}-a"] + ([f"{user}-b"] if rng.random() < second_service else []):
            demand[service] = (rng.choice([0.5, 1.0, 2.0]), rng.choice([512.0, 1024.0, 2048.0]),
                               rng.uniform(200.0, 1500.0))
            nearby = sorted(sv, key=lambda s: math.dist(sv[s], here))[:3]
            current_s = rng.choice(nearby) if rng.random() < 0.8 else rng.choice(sorted(sv))   # placed before
            used[current_s] = tuple(u + d for u, d in zip(used[current_s], demand[service]))
            plan.append((user, here, heard, current_b, service, current_s))
    for user, here, heard, current_b, service, current_s in plan:
        proc, tasks = rng.uniform(0.02, 0.1), rng.uniform(100, 600)

        def delay(b, s):   # propagation (distance) and processing (compute): eq. (4)'s terms
            return (math.dist(here, bs[b]) + math.dist(bs[b], sv[s])) * 1e-4 + proc / compute[s]

        now = delay(current_b, current_s)
        for b in heard:
            for s in sv:
                handover = 0.5 if b != current_b else 0.0
                migration = 0.0 if s == current_s else 0.4 + math.dist(sv[s], sv[current_s]) * 2e-4 \
                    + demand[service][2] * 8 / 100 / 1000
                options.append(Option(user, b, s, (now - delay(b, s)) * tasks, max(handover, migration), service))
    # the current placement fits; beyond it servers have a few cores to spare and base stations a user or two
    # (memory and storage: 64 GB, or what runs there and 2 GB more where a hotspot needs more)
    capacity = {s: (used[s][0] + rng.choice(spare_cores), max(64 * 1024.0, used[s][1] + 2048.0),
                    max(64 * 1024.0, used[s][2] + 2048.0)) for s in sv}
    station_capacity = {b: attached[b] + rng.randint(0, 2) for b in bs}
    return PlacementProblem(names, options, demand, capacity, station_capacity)


def reference_solution(problem: PlacementProblem, time_limit: float = 600.0) -> Solution:
    """(3a)-(3e) written from their definition and solved by CBC with no gap."""
    import pulp

    model = pulp.LpProblem("reference", pulp.LpMaximize)
    z = {i: model.add_variable(f"z_{i}", cat="Binary") for i in range(len(problem.options))}
    station = {}
    for user in problem.users:
        for b in {o.station for o in problem.options if o.user == user}:
            station[user, b] = model.add_variable(f"x_{user}_{b}", cat="Binary")
    model += pulp.lpSum(o.value * z[i] for i, o in enumerate(problem.options))
    services = {}
    for i, option in enumerate(problem.options):
        services.setdefault(option.key, []).append(i)
    for key, idx in services.items():
        model += pulp.lpSum(z[i] for i in idx) == 1
        user = problem.options[idx[0]].user
        for (u, b), x in station.items():
            if u == user:
                model += pulp.lpSum(z[i] for i in idx if problem.options[i].station == b) == x
    for user in problem.users:
        model += pulp.lpSum(x for (u, _), x in station.items() if u == user) == 1
    dims = len(next(iter(problem.demand.values())))
    for server, limits in problem.server_capacity.items():
        on = [i for i, o in enumerate(problem.options) if o.server == server]
        for d in range(dims):
            model += pulp.lpSum(problem.demand[problem.options[i].key][d] * z[i] for i in on) <= limits[d]
    for b, limit in problem.station_capacity.items():
        model += pulp.lpSum(x for (_, sb), x in station.items() if sb == b) <= limit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        status = model.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, gapRel=0.0, gapAbs=GAP / 10))
    if pulp.LpStatus[status] != "Optimal" or model.sol_status != pulp.LpSolutionOptimal:
        return Solution("infeasible" if pulp.LpStatus[status] == "Infeasible" else "not solved to optimality",
                        solver="reference")
    choice = {problem.options[i].key: problem.options[i] for i, var in z.items() if (var.value() or 0) > 0.5}
    return Solution("optimal", choice, sum(o.value for o in choice.values()), solver="reference")
