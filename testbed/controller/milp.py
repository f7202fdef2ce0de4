"""Seed 002's joint placement (3a)-(3e) as a mixed-integer program.

For every user u the candidates are pairs (b', s') of a base station and a
server; z[u, b', s'] = 1 picks one.  Maximise

    sum  z * (gain - downtime_cost)            (3a: G - C, eqs. 1 and 2)

subject to one pair per user (3b), server capacities per resource (3c), only
base stations the user would hear above the receiver sensitivity (3d: such
pairs are not candidates at all) and at most N_b' users per base station (3e).
Solved with HiGHS (``highspy``) or CBC (shipped with PuLP); ``brute_force``
enumerates every combination, for checking small instances.
"""

from __future__ import annotations

import itertools
import time
import warnings
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Option:
    user: str
    station: str
    server: str
    gain: float          # seconds: estimated E2E change x tasks (eq. 1 summand)
    downtime: float      # seconds: estimated downtime of moving there (eq. 2 summand)

    @property
    def value(self) -> float:
        return self.gain - self.downtime


@dataclass
class PlacementProblem:
    users: list[str]
    options: list[Option]
    demand: dict[str, tuple[float, ...]]              # user -> resources its container needs
    server_capacity: dict[str, tuple[float, ...]]     # server -> resources available
    station_capacity: dict[str, int]                   # base station -> max users


@dataclass
class Solution:
    status: str                                        # "optimal" or "infeasible"
    choice: dict[str, Option] = field(default_factory=dict)
    objective: float | None = None
    seconds: float = 0.0

    @property
    def feasible(self) -> bool:
        return self.status == "optimal"


def _rows(problem: PlacementProblem):
    """Constraint rows as (indices, coefficients, lower, upper)."""
    index = {id(o): i for i, o in enumerate(problem.options)}
    by_user: dict[str, list[int]] = {u: [] for u in problem.users}
    for i, option in enumerate(problem.options):
        by_user[option.user].append(i)
    rows = []
    for user in problem.users:                                        # (3b)
        idx = by_user[user]
        rows.append((idx, [1.0] * len(idx), 1.0, 1.0))
    dims = len(next(iter(problem.server_capacity.values()))) if problem.server_capacity else 0
    for server, capacity in problem.server_capacity.items():          # (3c)
        idx = [i for i, o in enumerate(problem.options) if o.server == server]
        for d in range(dims):
            coeffs = [problem.demand[problem.options[i].user][d] for i in idx]
            if idx:
                rows.append((idx, coeffs, -np.inf, capacity[d]))
    for station, capacity in problem.station_capacity.items():        # (3e)
        idx = [i for i, o in enumerate(problem.options) if o.station == station]
        if idx:
            rows.append((idx, [1.0] * len(idx), -np.inf, float(capacity)))
    del index
    return rows, by_user


def _without_station_limits(problem: PlacementProblem) -> PlacementProblem:
    """The relaxation without (3e): per user and server only the best base station counts."""
    best: dict[tuple[str, str], Option] = {}
    for option in problem.options:
        key = (option.user, option.server)
        kept = best.get(key)
        if kept is None or (option.value, kept.station) > (kept.value, option.station):
            best[key] = option
    return PlacementProblem(problem.users, list(best.values()), problem.demand, problem.server_capacity, {})


def solve(problem: PlacementProblem, solver: str = "highs", time_limit: float = 30.0) -> Solution:
    """Optimal choice, or status "infeasible".

    First the relaxation without station limits (3e) is solved: it has one
    candidate per user and server instead of one per base station and server.
    Its optimum is the problem's optimum whenever it happens to respect the
    station limits (which rarely bind); only otherwise is the full model solved,
    starting from the relaxed choice repaired to respect them (a good incumbent
    halves the branch and bound).  An infeasible relaxation means an infeasible
    problem."""
    started = time.monotonic()
    relaxed = _solve_model(_without_station_limits(problem), solver, time_limit)
    if not relaxed.feasible or feasible(problem, relaxed.choice):
        relaxed.seconds = time.monotonic() - started
        return relaxed
    full = _solve_model(problem, solver, time_limit, start=repair_station_limits(problem, relaxed.choice))
    full.seconds = time.monotonic() - started
    return full


def repair_station_limits(problem: PlacementProblem, choice: dict[str, Option]) -> dict[str, Option] | None:
    """Greedily move users off overfull base stations (same server, the station with
    room that costs least), or None if that gets stuck."""
    choice = dict(choice)
    load: dict[str, int] = {}
    for option in choice.values():
        load[option.station] = load.get(option.station, 0) + 1
    alternatives: dict[tuple[str, str], list[Option]] = {}
    for option in problem.options:
        alternatives.setdefault((option.user, option.server), []).append(option)

    def room(station: str) -> bool:
        return load.get(station, 0) < problem.station_capacity.get(station, len(problem.users))

    while True:
        overfull = sorted(b for b, n in load.items() if n > problem.station_capacity.get(b, len(problem.users)))
        if not overfull:
            return choice
        station, best = overfull[0], None
        for user, current in sorted(choice.items()):
            if current.station != station:
                continue
            for other in alternatives[(user, current.server)]:
                if other.station != station and room(other.station):
                    loss = current.value - other.value
                    if best is None or loss < best[0]:
                        best = (loss, user, other)
        if best is None:
            return None
        _, user, other = best
        load[station] -= 1
        load[other.station] = load.get(other.station, 0) + 1
        choice[user] = other


def _solve_model(problem: PlacementProblem, solver: str, time_limit: float,
                 start: dict[str, Option] | None = None) -> Solution:
    """``start``: a feasible choice to begin from (HiGHS only)."""
    started = time.monotonic()
    rows, by_user = _rows(problem)
    if any(not by_user[u] for u in problem.users):
        return Solution("infeasible", seconds=time.monotonic() - started)
    values = np.array([o.value for o in problem.options])
    if solver == "highs":
        initial = None
        if start is not None:
            picked = {id(o) for o in start.values()}
            initial = np.array([1.0 if id(o) in picked else 0.0 for o in problem.options])
        chosen, objective, status = _solve_highs(values, rows, time_limit, initial)
    elif solver == "cbc":
        chosen, objective, status = _solve_cbc(values, rows, time_limit)
    else:
        raise ValueError(f"unknown solver {solver!r} (highs or cbc)")
    seconds = time.monotonic() - started
    if status != "optimal":
        return Solution(status, seconds=seconds)
    choice = {problem.options[i].user: problem.options[i] for i in chosen}
    return Solution("optimal", choice, objective, seconds)


def _solve_highs(values, rows, time_limit, initial=None):
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    n = len(values)
    inf = highspy.kHighsInf
    h.addVars(n, np.zeros(n), np.ones(n))
    h.changeColsCost(n, np.arange(n, dtype=np.int32), -values)       # HiGHS minimises
    h.changeColsIntegrality(n, np.arange(n, dtype=np.int32),
                            np.array([highspy.HighsVarType.kInteger] * n))
    starts, indices, coefficients = [], [], []
    for idx, coeffs, _, _ in rows:
        starts.append(len(indices))
        indices.extend(idx)
        coefficients.extend(coeffs)
    lowers = np.array([-inf if lower == -np.inf else lower for _, _, lower, _ in rows], dtype=np.float64)
    uppers = np.array([upper for _, _, _, upper in rows], dtype=np.float64)
    h.addRows(len(rows), lowers, uppers, len(indices), np.array(starts, dtype=np.int32),
              np.array(indices, dtype=np.int32), np.array(coefficients, dtype=np.float64))
    if initial is not None:
        incumbent = highspy.HighsSolution()
        incumbent.col_value = initial.tolist()
        incumbent.value_valid = True
        h.setSolution(incumbent)
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        return [], None, "infeasible" if status == highspy.HighsModelStatus.kInfeasible else str(status)
    x = np.array(h.getSolution().col_value)
    return [int(i) for i in np.nonzero(x > 0.5)[0]], float(values @ (x > 0.5)), "optimal"


def _solve_cbc(values, rows, time_limit):
    import pulp

    model = pulp.LpProblem("placement", pulp.LpMaximize)
    z = [model.add_variable(f"z{i}", cat="Binary") for i in range(len(values))]
    model += pulp.lpDot(values.tolist(), z)
    for r, (idx, coeffs, lower, upper) in enumerate(rows):
        expr = pulp.lpDot(coeffs, [z[i] for i in idx])
        if lower == upper:
            model += expr == upper, f"r{r}"
        else:
            model += expr <= upper, f"r{r}"
    with warnings.catch_warnings():  # PuLP 3.3 deprecates the name of the CBC it bundles
        warnings.simplefilter("ignore", DeprecationWarning)
        cbc = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit)
    status = model.solve(cbc)
    if pulp.LpStatus[status] != "Optimal":
        return [], None, "infeasible" if pulp.LpStatus[status] == "Infeasible" else pulp.LpStatus[status]
    chosen = [i for i, var in enumerate(z) if (var.value() or 0) > 0.5]
    return chosen, float(sum(values[i] for i in chosen)), "optimal"


def feasible(problem: PlacementProblem, choice: dict[str, Option]) -> bool:
    """Does a full choice (one option per user) respect (3b), (3c) and (3e)?"""
    if set(choice) != set(problem.users):
        return False
    dims = len(next(iter(problem.server_capacity.values()))) if problem.server_capacity else 0
    for server, capacity in problem.server_capacity.items():
        for d in range(dims):
            if sum(problem.demand[u][d] for u, o in choice.items() if o.server == server) > capacity[d] + 1e-9:
                return False
    for station, capacity in problem.station_capacity.items():
        if sum(1 for o in choice.values() if o.station == station) > capacity:
            return False
    return True


def brute_force(problem: PlacementProblem) -> Solution:
    started = time.monotonic()
    per_user = [[o for o in problem.options if o.user == u] for u in problem.users]
    best, best_value = None, None
    for combo in itertools.product(*per_user):
        choice = {o.user: o for o in combo}
        if not feasible(problem, choice):
            continue
        value = sum(o.value for o in combo)
        if best_value is None or value > best_value + 1e-12:
            best, best_value = choice, value
    if best is None:
        return Solution("infeasible", seconds=time.monotonic() - started)
    return Solution("optimal", best, best_value, time.monotonic() - started)
