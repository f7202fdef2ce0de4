"""Seed 002's joint placement (3a)-(3e) as a mixed-integer program.

For every user u the candidates are pairs (b', s') of a base station and a
server; z[u, b', s'] = 1 picks one.  Maximise

    sum  z * (gain - downtime_cost)            (3a: G - C, eqs. 1 and 2)

subject to one pair per user (3b), server capacities per resource (3c), only
base stations the user would hear above the receiver sensitivity (3d: such
pairs are not candidates at all) and at most N_b' users per base station (3e).
The LP relaxation (HiGHS) answers when it is integral and otherwise bounds
the branch and bound, run by HiGHS (``highspy``) or CBC (shipped with PuLP)
on the options that can still beat a good incumbent; ``brute_force``
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
    """Constraint rows as (indices, coefficients, lower, upper), built in one pass."""
    by_user: dict[str, list[int]] = {u: [] for u in problem.users}
    by_server: dict[str, list[int]] = {s: [] for s in problem.server_capacity}
    by_station: dict[str, list[int]] = {b: [] for b in problem.station_capacity}
    for i, option in enumerate(problem.options):
        by_user[option.user].append(i)
        if option.server in by_server:
            by_server[option.server].append(i)
        if option.station in by_station:
            by_station[option.station].append(i)
    rows = [(idx, [1.0] * len(idx), 1.0, 1.0) for idx in by_user.values()]          # (3b)
    for server, capacity in problem.server_capacity.items():                          # (3c)
        idx = by_server[server]
        if idx:
            for d, limit in enumerate(capacity):
                rows.append((idx, [problem.demand[problem.options[i].user][d] for i in idx], -np.inf, limit))
    for station, capacity in problem.station_capacity.items():                        # (3e)
        idx = by_station[station]
        if idx:
            rows.append((idx, [1.0] * len(idx), -np.inf, float(capacity)))
    return rows, by_user


def solve(problem: PlacementProblem, solver: str = "highs", time_limit: float = 30.0) -> Solution:
    """Optimal choice, or status "infeasible".

    The LP relaxation comes first (HiGHS): the problem is nearly an assignment
    problem, so its optimum is often integral and then it is the answer; an
    infeasible relaxation means an infeasible problem.  Otherwise the users it
    splits are placed by a small MIP for an incumbent, the options that cannot beat
    the incumbent are dropped (reduced costs), and ``solver`` runs the branch
    and bound on what is left, starting from the incumbent."""
    started = time.monotonic()
    relaxation = _relaxation(problem)
    if relaxation.status == "infeasible":
        return Solution("infeasible", seconds=time.monotonic() - started)
    if relaxation.integral and feasible(problem, relaxation.picked):
        choice = relaxation.picked
        return Solution("optimal", choice, sum(o.value for o in choice.values()), time.monotonic() - started)
    start = round_relaxation(problem, relaxation) if relaxation.status == "optimal" else None
    candidates = problem if start is None else without_hopeless_options(problem, relaxation, start)
    solution = _solve_model(candidates, solver, time_limit, start=start)
    solution.seconds = time.monotonic() - started
    return solution


@dataclass
class _Relaxation:
    status: str                     # "optimal", "infeasible" or HiGHS's word for anything else
    values: np.ndarray              # z per option, fractional
    bound: float                    # the LP optimum: no choice is worth more
    reduced_costs: np.ndarray       # >= 0: how much picking the option costs the bound at least
    picked: dict[str, Option] = field(default_factory=dict)    # per user the option with z > 0.5

    @property
    def integral(self) -> bool:
        return self.status == "optimal" and not np.any(np.minimum(self.values, 1 - self.values) > 1e-6)


def _relaxation(problem: PlacementProblem) -> _Relaxation:
    import highspy

    n = len(problem.options)
    rows, by_user = _rows(problem)
    if any(not by_user[u] for u in problem.users):
        return _Relaxation("infeasible", np.zeros(n), -np.inf, np.zeros(n))
    h = _highs_model(np.array([o.value for o in problem.options]), rows, integer=False, time_limit=30.0)
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        word = "infeasible" if status == highspy.HighsModelStatus.kInfeasible else str(status)
        return _Relaxation(word, np.zeros(n), np.inf, np.zeros(n))
    solution = h.getSolution()
    values = np.array(solution.col_value)
    choice = {problem.options[i].user: problem.options[i] for i in np.nonzero(values > 0.5)[0]}
    return _Relaxation("optimal", values, -h.getInfo().objective_function_value,
                       np.array(solution.col_dual), choice)


SHORTLIST = 8    # options per user the incumbent's small MIP looks at


def round_relaxation(problem: PlacementProblem, relaxation: _Relaxation) -> dict[str, Option] | None:
    """A feasible choice near the LP optimum, or None.

    Users the LP places whole, on a server and a base station no split user
    touches, stay where it puts them; the others are placed by a small MIP in
    the capacity left, each choosing among its SHORTLIST options of lowest
    reduced cost.  Only the incumbent's quality depends on this; the answer
    stays exact."""
    split = [problem.options[i] for i in np.nonzero(np.minimum(relaxation.values, 1 - relaxation.values) > 1e-6)[0]]
    busy_servers, busy_stations = {o.server for o in split}, {o.station for o in split}
    settled = {o.user: o for o in (problem.options[i] for i in np.nonzero(relaxation.values > 1 - 1e-6)[0])
               if o.server not in busy_servers and o.station not in busy_stations}
    if len(settled) == len(problem.users):
        return settled
    servers = {s: list(c) for s, c in problem.server_capacity.items()}
    stations = dict(problem.station_capacity)
    for user, option in settled.items():
        servers[option.server] = [c - d for c, d in zip(servers[option.server], problem.demand[user])]
        if option.station in stations:
            stations[option.station] -= 1
    candidates: dict[str, list[int]] = {u: [] for u in problem.users if u not in settled}
    for i, option in enumerate(problem.options):
        if option.user in candidates:
            candidates[option.user].append(i)
    shortlisted = sorted(i for idx in candidates.values()
                         for i in sorted(idx, key=lambda i: relaxation.reduced_costs[i])[:SHORTLIST])
    rest = PlacementProblem(list(candidates), [problem.options[i] for i in shortlisted], problem.demand,
                            {s: tuple(c) for s, c in servers.items()}, stations)
    placed = _solve_model(rest, "highs", time_limit=30.0)
    return {**settled, **placed.choice} if placed.feasible else None


def without_hopeless_options(problem: PlacementProblem, relaxation: _Relaxation,
                             incumbent: dict[str, Option]) -> PlacementProblem:
    """The problem without the options no choice better than ``incumbent`` can pick.

    By LP duality every feasible choice that picks option j is worth at most
    U - r_j, with U the LP optimum and r_j >= 0 the reduced cost of j there;
    when that is below the incumbent's value, j can go.  The relaxation is
    tight, so most options go and the branch and bound works on the rest."""
    slack = relaxation.bound - sum(o.value for o in incumbent.values())
    keep = relaxation.reduced_costs <= slack + 1e-7 * max(1.0, abs(relaxation.bound))
    kept = {id(o) for o in incumbent.values()}
    options = [o for o, k in zip(problem.options, keep) if k or id(o) in kept]
    return PlacementProblem(problem.users, options, problem.demand, problem.server_capacity, problem.station_capacity)


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


def _highs_model(values, rows, integer: bool, time_limit: float):
    """A HiGHS model minimising -values (HiGHS minimises) over 0 <= z <= 1 and ``rows``."""
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    n = len(values)
    inf = highspy.kHighsInf
    h.addVars(n, np.zeros(n), np.ones(n))
    h.changeColsCost(n, np.arange(n, dtype=np.int32), -values)
    if integer:
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
    return h


def _solve_highs(values, rows, time_limit, initial=None):
    import highspy

    h = _highs_model(values, rows, integer=True, time_limit=time_limit)
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
