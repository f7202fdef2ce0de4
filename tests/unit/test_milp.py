"""The placement MILP against brute force on random small instances."""

import random

import pytest

from testbed.controller.milp import (Option, PlacementProblem, _relaxation, brute_force, feasible, round_relaxation,
                                    solve, without_hopeless_options)


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


def test_rounding_is_feasible_and_pruning_keeps_the_optimum():
    """The incumbent from the rounded LP respects every constraint, and dropping the
    options that cannot beat it (reduced costs) never drops the optimum."""
    fractional = pruned = 0
    for seed in range(200):
        problem = random_problem(seed)
        relaxation = _relaxation(problem)
        if relaxation.status != "optimal" or relaxation.integral:
            continue
        fractional += 1
        incumbent = round_relaxation(problem, relaxation)
        if incumbent is None:
            continue
        exact = brute_force(problem)
        assert feasible(problem, incumbent), seed
        assert sum(o.value for o in incumbent.values()) <= exact.objective + 1e-9, seed
        assert relaxation.bound >= exact.objective - 1e-9, seed
        smaller = without_hopeless_options(problem, relaxation, incumbent)
        pruned += len(smaller.options) < len(problem.options)
        assert brute_force(smaller).objective == pytest.approx(exact.objective), seed
    assert fractional >= 5 and pruned >= 3, (fractional, pruned)


def test_pruned_answer_equals_the_full_model_on_larger_instances():
    """Where brute force cannot go: the LP-first, pruned solve against one branch and
    bound over every option, on instances whose relaxation is fractional."""
    from testbed.controller.milp import _solve_model

    fractional = compared = 0
    for seed in range(12):
        rng = random.Random(seed)
        users, stations, servers = [f"u{i}" for i in range(40)], [f"b{i}" for i in range(8)], [f"s{i}" for i in range(8)]
        options = [Option(u, b, s, gain=rng.uniform(0, 10), downtime=rng.uniform(0, 4))
                   for u in users for b in rng.sample(stations, 3) for s in servers]
        problem = PlacementProblem(users, options, {u: (rng.choice([1, 2]),) for u in users},
                                   {s: (rng.choice([8, 10, 12]),) for s in servers}, {b: 7 for b in stations})
        fractional += not _relaxation(problem).integral
        found, full = solve(problem), _solve_model(problem, "highs", 60.0)
        assert found.status == full.status, seed
        if not full.feasible:
            continue
        compared += 1
        assert found.objective == pytest.approx(full.objective, rel=1e-4), seed   # HiGHS's own MIP gap
        assert feasible(problem, found.choice), seed
    assert fractional >= 3 and compared >= 8, (fractional, compared)
