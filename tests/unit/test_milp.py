"""The placement MILP against brute force on random small instances."""

import random

import pytest

from testbed.controller.milp import (Option, PlacementProblem, _without_station_limits, brute_force, feasible,
                                    repair_station_limits, solve)


def random_problem(seed: int) -> PlacementProblem:
    rng = random.Random(seed)
    users = [f"u{i}" for i in range(3)]
    stations = [f"b{i}" for i in range(3)]
    servers = [f"s{i}" for i in range(4)]
    options = []
    for user in users:
        heard = [b for b in stations if rng.random() < 0.7]            # (3d): only BSs above sensitivity
        for b in heard:
            for s in servers:
                options.append(Option(user, b, s, gain=rng.uniform(-2, 5), downtime=rng.choice([0, rng.uniform(0, 3)])))
    demand = {u: (rng.choice([1, 2]), rng.choice([256, 1024])) for u in users}
    capacity = {s: (rng.choice([1, 2, 4]), rng.choice([512, 2048])) for s in servers}
    stations_cap = {b: rng.choice([1, 1, 2, 3]) for b in stations}
    return PlacementProblem(users, options, demand, capacity, stations_cap)


@pytest.mark.parametrize("solver", ["highs", "cbc"])
def test_milp_equals_brute_force_on_random_instances(solver):
    compared = infeasible = 0
    for seed in range(80):
        problem = random_problem(seed)
        exact = brute_force(problem)
        found = solve(problem, solver=solver)
        assert found.status == exact.status, seed
        if not exact.feasible:
            infeasible += 1
            assert found.choice == {}
            continue
        compared += 1
        assert found.objective == pytest.approx(exact.objective, abs=1e-6), seed
        assert feasible(problem, found.choice), seed
        assert set(found.choice) == set(problem.users)
        assert all(option in problem.options for option in found.choice.values())
    assert compared >= 50 and infeasible >= 1, (compared, infeasible)


def test_infeasible_is_reported_not_answered():
    problem = PlacementProblem(["u0", "u1"], [Option("u0", "b0", "s0", 1, 0), Option("u1", "b0", "s0", 1, 0)],
                               {"u0": (1,), "u1": (1,)}, {"s0": (4,)}, {"b0": 1})
    solution = solve(problem)
    assert solution.status == "infeasible" and not solution.feasible and solution.choice == {}
    no_option = PlacementProblem(["u0"], [], {"u0": (1,)}, {"s0": (4,)}, {"b0": 1})
    assert solve(no_option).status == "infeasible"


def test_gain_against_downtime():
    # moving to s1 gains 3 s of E2E over the horizon but costs 2 s of downtime: worth it
    options = [Option("u", "b0", "s0", 0.0, 0.0), Option("u", "b1", "s1", 3.0, 2.0)]
    problem = PlacementProblem(["u"], options, {"u": (1,)}, {"s0": (2,), "s1": (2,)}, {"b0": 5, "b1": 5})
    assert solve(problem).choice["u"].server == "s1"
    options[1] = Option("u", "b1", "s1", 3.0, 4.0)                      # now it is not
    assert solve(PlacementProblem(["u"], options, {"u": (1,)}, {"s0": (2,), "s1": (2,)},
                                  {"b0": 5, "b1": 5})).choice["u"].server == "s0"


def test_repair_moves_users_off_full_stations_and_keeps_their_servers():
    repaired_some = 0
    for seed in range(80):
        problem = random_problem(seed)
        relaxed = solve(_without_station_limits(problem))
        if not relaxed.feasible or feasible(problem, relaxed.choice):
            continue
        repaired = repair_station_limits(problem, relaxed.choice)
        if repaired is None:
            continue
        repaired_some += 1
        assert feasible(problem, repaired), seed
        assert {u: o.server for u, o in repaired.items()} == {u: o.server for u, o in relaxed.choice.items()}
        assert sum(o.value for o in repaired.values()) <= brute_force(problem).objective + 1e-9
    assert repaired_some >= 3, repaired_some
