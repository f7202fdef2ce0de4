"""Seed 002's joint placement (3a)-(3e) as a mixed-integer program.

For every user u the candidates are pairs (b', s') of a base station and a
server for each of u's services; z[d, b', s'] = 1 picks one for service d.
Maximise

    sum  z * (gain - downtime_cost)            (3a: G - C, eqs. 1 and 2)

subject to one pair per service (3b), one base station per user (the services
of a user agree on b'), server capacities per resource (3c: CPU, memory,
storage, ...), only base stations the user would hear above the receiver
sensitivity (3d: such pairs are not candidates at all) and at most N_b' users
per base station (3e).  Staying (the current b and s) is a candidate like any
other.  With one service per user, d is the user.

Solvers (``solve(problem, solver=...)``), all exact (absolute gap ``GAP`` on
the objective):

* ``cbc``: CBC (shipped with PuLP) on the whole model, as the paper did;
* ``highs``: HiGHS's branch and bound on the whole model;
* ``fast``: every user's own best choice when together they fit (``decoupled``);
  else the LP relaxation (HiGHS); when it is integral it is the answer,
  otherwise an incumbent is built from it (a greedy repair, then a
  small MIP over each service's few best options), every option whose reduced
  cost says it cannot beat the incumbent is dropped (LP duality), and HiGHS's
  branch and bound proves the optimum on the rest, starting from the incumbent.

``brute_force`` enumerates every combination, for checking small instances.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

GAP = 1e-6               # absolute optimality gap on the objective (seconds of G - C)
SOLVERS = ("fast", "highs", "cbc")


class Option(NamedTuple):
    """One candidate (b', s') for one service: a z of the program.  (A named tuple: a city's
    decision makes thousands, and a tuple is made in a third of a frozen dataclass's time.)"""
    user: str
    station: str
    server: str
    gain: float          # seconds: estimated E2E change x tasks (eq. 1 summand)
    downtime: float      # seconds: estimated downtime of moving there (eq. 2 summand)
    service: str = ""    # the service it places ("": the user's only one)

    @property
    def value(self) -> float:
        return self.gain - self.downtime

    @property
    def key(self) -> str:
        """The container this option places: the service, or the user when it has one."""
        return self.service or self.user


class OptionTable(Sequence):
    """Options as columns, read as a list of ``Option``: a city's decision weighs thousands of
    options, and the fast solver builds, solves and picks from arrays; an ``Option`` is made
    only when one is read (and then kept, so that reading it again gives the same object).

    ``add`` one base station's options for one service (a block over servers) until the
    table is first read."""

    def __init__(self):
        self._names: dict[str, dict[str, int]] = {"user": {}, "station": {}, "server": {}, "service": {}}
        self._blocks: list[tuple] = []
        self._columns: dict[str, np.ndarray] | None = None
        self._made: dict[int, Option] = {}
        self._all: list[Option] | None = None
        self._lists: dict[str, list[str]] | None = None
        self._server_codes: dict[tuple, np.ndarray] = {}

    def add(self, user: str, station: str, servers, gains, downtimes, service: str = "") -> None:
        if self._columns is not None:
            raise RuntimeError("an option table takes no options after it is first read")
        servers = tuple(servers)
        if not len(servers) == len(gains) == len(downtimes):
            raise ValueError(f"{len(servers)} servers, {len(gains)} gains and {len(downtimes)} downtimes for "
                             f"{service or user} at {station}: one of each per server")
        if servers not in self._server_codes:       # a service's servers are the same at every station
            self._server_codes[servers] = np.array([self._code("server", s) for s in servers], dtype=np.int64)
        self._blocks.append((self._code("user", user), self._code("station", station),
                             self._code("service", service), self._server_codes[servers],
                             np.asarray(gains, dtype=float), np.asarray(downtimes, dtype=float)))

    def _code(self, kind: str, name: str) -> int:
        return self._names[kind].setdefault(name, len(self._names[kind]))

    def names(self, kind: str) -> list[str]:
        """The users, stations, servers or services the codes of ``column(kind)`` index."""
        if self._lists is None:
            self.column("gain")
            self._lists = {k: list(codes) for k, codes in self._names.items()}
        return self._lists[kind]

    def column(self, name: str) -> np.ndarray:
        """"user", "station", "server", "service" (codes), "gain" or "downtime", per option."""
        if self._columns is None:
            sizes = [len(block[3]) for block in self._blocks]
            each = lambda at: np.repeat(np.array([b[at] for b in self._blocks], dtype=np.int64), sizes)  # noqa: E731
            joined = lambda at, kind: (np.concatenate([b[at] for b in self._blocks]) if self._blocks  # noqa: E731
                                       else np.zeros(0, dtype=kind))
            self._columns = {"user": each(0), "station": each(1), "service": each(2),
                             "server": joined(3, np.int64), "gain": joined(4, float), "downtime": joined(5, float)}
            self._blocks = []
        return self._columns[name]

    def __len__(self) -> int:
        return len(self.column("gain"))

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i) + (len(self) if int(i) < 0 else 0)
        if self._all is not None:
            return self._all[i]
        if i not in self._made:
            if not 0 <= i < len(self):
                raise IndexError(i)
            self._made[i] = self._option(i)
        return self._made[i]

    def _option(self, i: int) -> Option:
        user, station, server, service = (self.names(kind)[self.column(kind)[i]]
                                          for kind in ("user", "station", "server", "service"))
        return Option(user, station, server, float(self.column("gain")[i]), float(self.column("downtime")[i]), service)

    def __iter__(self):
        if self._all is None:
            names = [self.names(k) for k in ("user", "station", "server", "service")]
            rows = zip(*(self.column(k).tolist() for k in ("user", "station", "server", "service", "gain", "downtime")))
            self._all = [self._made.get(i) or Option(names[0][u], names[1][b], names[2][s], gain, downtime, names[3][k])
                         for i, (u, b, s, k, gain, downtime) in enumerate(rows)]
        return iter(self._all)


class Columns(NamedTuple):
    """A problem's options as codes: each option's value, and the index of its user (in
    ``users``), container (``keys``), base station (``stations``) and server (``servers``)."""
    value: np.ndarray
    user: np.ndarray
    key: np.ndarray
    station: np.ndarray
    server: np.ndarray
    users: list[str]
    keys: list[str]
    stations: list[str]
    servers: list[str]


@dataclass
class PlacementProblem:
    users: list[str]
    options: Sequence[Option]                         # a list, or an ``OptionTable``
    demand: dict[str, tuple[float, ...]]              # service (or user) -> resources its container needs
    server_capacity: dict[str, tuple[float, ...]]     # server -> resources available
    station_capacity: dict[str, int]                   # base station -> max users
    _services: dict | None = field(default=None, init=False, repr=False, compare=False)
    _columns: Columns | None = field(default=None, init=False, repr=False, compare=False)

    def services(self) -> dict[str, list[str]]:
        """Per user, the services placed (keys of ``demand``), in the order first seen (found
        once: every step of a solve asks; a problem's options are not changed after it is made)."""
        if self._services is None:
            found: dict[str, list[str]] = {u: [] for u in self.users}
            c = self.columns()
            keys, first = np.unique(c.key, return_index=True)
            for at in np.argsort(first).tolist():
                found.setdefault(c.users[c.user[first[at]]], []).append(c.keys[keys[at]])
            self._services = found
        return self._services

    def columns(self) -> Columns:
        """The options as ``Columns`` (made once; from an ``OptionTable`` without reading an option)."""
        if self._columns is None:
            self._columns = _columns_of(self.options)
        return self._columns


def _columns_of(options: Sequence[Option]) -> Columns:
    if isinstance(options, OptionTable):
        users, services = options.names("user"), options.names("service")
        user, service = options.column("user"), options.column("service")
        width = max(1, len(services))
        pairs, key = np.unique(user * width + service, return_inverse=True)      # a container per (user, service)
        key_at: dict[str, int] = {}
        code = np.array([key_at.setdefault(services[p % width] or users[p // width], len(key_at))
                         for p in pairs.tolist()], dtype=np.int64)
        return Columns(options.column("gain") - options.column("downtime"), user, code[key.reshape(-1)],
                       options.column("station"), options.column("server"), users, list(key_at),
                       options.names("station"), options.names("server"))
    codes: dict[str, dict[str, int]] = {"user": {}, "key": {}, "station": {}, "server": {}}
    n = len(options)

    def column(kind: str, of) -> np.ndarray:
        return np.fromiter((codes[kind].setdefault(of(o), len(codes[kind])) for o in options), np.int64, n)

    user, key = column("user", lambda o: o.user), column("key", lambda o: o.key)
    station, server = column("station", lambda o: o.station), column("server", lambda o: o.server)
    return Columns(np.fromiter((o.gain - o.downtime for o in options), float, n), user, key, station, server,
                   list(codes["user"]), list(codes["key"]), list(codes["station"]), list(codes["server"]))


@dataclass
class Solution:
    status: str                                        # "optimal", "infeasible" or the solver's word
    choice: dict[str, Option] = field(default_factory=dict)    # per service (or user) the option picked
    objective: float | None = None
    seconds: float = 0.0
    solver: str = ""

    @property
    def feasible(self) -> bool:
        return self.status == "optimal"


def _groups(labels: np.ndarray) -> dict[int, np.ndarray]:
    """The indices of each label present, in order (one stable sort instead of a loop)."""
    order = np.argsort(labels, kind="stable")
    present, starts = np.unique(labels[order], return_index=True)
    return {int(label): order[a:b] for label, a, b in zip(present, starts, [*starts[1:], len(labels)])}


def _recode(codes: np.ndarray, new: list[int]) -> np.ndarray:
    """``codes`` with each code i replaced by ``new[i]``."""
    return np.array(new, dtype=np.int64)[codes]


def _rows(problem: PlacementProblem):
    """Constraint rows as (indices, coefficients, lower, upper), arrays built by grouping the
    options' labels (a city re-solves thousands of times); and the options of each service
    (an empty array: the service has none)."""
    services = problem.services()
    keys = [k for user_keys in services.values() for k in user_keys]
    key_at = {k: i for i, k in enumerate(keys)}
    c = problem.columns()
    stations = sorted(set(c.stations) | set(problem.station_capacity))
    station_at = {b: i for i, b in enumerate(stations)}
    servers = list(problem.server_capacity)
    server_at = {s: i for i, s in enumerate(servers)}
    key_of = _recode(c.key, [key_at[k] for k in c.keys])
    station_of = _recode(c.station, [station_at[b] for b in c.stations])
    server_of = _recode(c.server, [server_at.get(s, len(servers)) for s in c.servers])
    none = np.zeros(0, dtype=np.int64)
    of_key = _groups(key_of)
    by_key = {k: of_key.get(i, none) for i, k in enumerate(keys)}
    rows = [(idx, np.ones(len(idx)), 1.0, 1.0) for idx in by_key.values()]                # (3b)
    pairs = _groups(key_of * len(stations) + station_of)                                    # one b' per user
    for user_keys in services.values():
        for key in user_keys[1:]:
            mine, lead = key_at[key], key_at[user_keys[0]]
            for b in np.union1d(station_of[by_key[key]], station_of[by_key[user_keys[0]]]):
                here = pairs.get(mine * len(stations) + int(b), none)
                theirs = pairs.get(lead * len(stations) + int(b), none)
                rows.append((np.concatenate([here, theirs]),
                             np.concatenate([np.ones(len(here)), -np.ones(len(theirs))]), 0.0, 0.0))
    if keys:                                                                                # (3c)
        demand = np.array([problem.demand[k] for k in keys], dtype=float)[key_of]
        for s, idx in _groups(server_of).items():
            if s < len(servers):
                server = servers[s]
                for d, limit in enumerate(problem.server_capacity[server]):
                    rows.append((idx, demand[idx, d], -np.inf, limit))
    first = np.zeros(len(keys), dtype=bool)                                                 # (3e): one per user
    first[[key_at[user_keys[0]] for user_keys in services.values() if user_keys]] = True
    for b, idx in _groups(np.where(first[key_of], station_of, len(stations))).items():
        station = stations[b] if b < len(stations) else None
        if station in problem.station_capacity:
            rows.append((idx, np.ones(len(idx)), -np.inf, float(problem.station_capacity[station])))
    return rows, by_key


def solve(problem: PlacementProblem, solver: str = "fast", time_limit: float = 60.0) -> Solution:
    """The optimal choice (within ``GAP``), or status "infeasible", or the solver's word for
    running out of time (then with the best choice it had, if any: ``feasible`` is False)."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r} ({', '.join(SOLVERS)})")
    started = time.monotonic()
    if solver == "fast":
        solution = _solve_fast(problem, time_limit)
    else:
        solution = _solve_model(problem, solver, time_limit)
    solution.seconds = time.monotonic() - started
    solution.solver = solver
    return solution


def _solve_fast(problem: PlacementProblem, time_limit: float) -> Solution:
    choice = decoupled(problem)
    if choice is not None:
        return Solution("optimal", choice, sum(o.value for o in choice.values()))
    relaxation = _relaxation(problem)
    if relaxation.status == "infeasible":
        return Solution("infeasible")
    if relaxation.integral and feasible(problem, relaxation.picked):
        choice = relaxation.picked
        return Solution("optimal", choice, sum(o.value for o in choice.values()))
    if relaxation.status != "optimal":
        return _solve_model(problem, "highs", time_limit)
    start = improve(problem, relaxation, round_relaxation(problem, relaxation))
    if start is None:
        return _solve_model(problem, "highs", time_limit)
    return _solve_model(without_hopeless_options(problem, relaxation, start), "highs", time_limit, start=start,
                        proof=True)


def decoupled(problem: PlacementProblem) -> dict[str, Option] | None:
    """Every user's best choice on its own, (3c) and (3e) left out, when together they respect
    both: then it is the joint optimum (the coupling constraints only take choices away), found
    without a solver.  None when they break a limit or a user has no base station offering all
    its services.  Where the limits rarely bind, most decisions end here.  (On arrays:
    ties go to the option, and the base station, seen first.)"""
    services, c = problem.services(), problem.columns()
    if any(not keys for keys in services.values()):
        return None
    if not services:
        return {}
    n, width = len(c.value), max(1, len(c.stations))
    group = c.key * width + c.station                       # a container at a base station
    ranked = np.lexsort((np.arange(n), -c.value, group))
    first = np.ones(n, dtype=bool)
    first[1:] = group[ranked][1:] != group[ranked][:-1]
    best = ranked[first]                                    # its best option
    pair = c.user[best] * width + c.station[best]           # a user at a base station: its containers' best
    pairs, at, count = np.unique(pair, return_inverse=True, return_counts=True)
    total = np.bincount(at.reshape(-1), weights=c.value[best], minlength=len(pairs))
    every, first_at = np.unique(c.user * width + c.station, return_index=True)
    seen = first_at[np.searchsorted(every, pairs)]          # the user's first option at the station
    wanted = np.array([len(services.get(u, ())) for u in c.users], dtype=np.int64)
    user = pairs // width
    complete = np.nonzero(count == wanted[user])[0]
    if len({c.users[u] for u in user[complete].tolist()}) < len(services):
        return None                                         # a user with no station offering all its services
    ranked = complete[np.lexsort((seen[complete], -total[complete], user[complete]))]
    top = ranked[np.r_[True, user[ranked][1:] != user[ranked][:-1]]]
    picked = best[np.isin(pair, pairs[top])]
    stations_used = Counter(c.stations[b] for b in (pairs[top] % width).tolist())
    if any(count > problem.station_capacity.get(station, count) for station, count in stations_used.items()):
        return None
    keys = [c.keys[k] for k in c.key[picked].tolist()]
    demand = np.array([problem.demand[k] for k in keys], dtype=float)
    for s in np.unique(c.server[picked]).tolist():
        capacity = problem.server_capacity.get(c.servers[s])
        if capacity is not None and np.any(demand[c.server[picked] == s].sum(axis=0) > np.asarray(capacity) + 1e-9):
            return None
    return {key: problem.options[i] for key, i in zip(keys, picked.tolist())}


@dataclass
class _Relaxation:
    status: str                     # "optimal", "infeasible" or HiGHS's word for anything else
    values: np.ndarray              # z per option, fractional
    bound: float                    # the LP optimum: no choice is worth more
    reduced_costs: np.ndarray       # >= 0: how much picking the option costs the bound at least
    picked: dict[str, Option] = field(default_factory=dict)    # per service the option with z > 0.5

    @property
    def integral(self) -> bool:
        return self.status == "optimal" and not np.any(np.minimum(self.values, 1 - self.values) > 1e-6)


def _relaxation(problem: PlacementProblem) -> _Relaxation:
    """The LP relaxation (HiGHS).  Its gap comes from the server capacities (3c) alone:
    without them the problem is a transportation problem with an integral relaxation."""
    import highspy

    n = len(problem.options)
    rows, by_key = _rows(problem)
    if not by_key or any(not len(idx) for idx in by_key.values()) or set(problem.services()) - set(problem.users):
        return _Relaxation("infeasible", np.zeros(n), -np.inf, np.zeros(n))
    if any(not keys for keys in problem.services().values()):
        return _Relaxation("infeasible", np.zeros(n), -np.inf, np.zeros(n))
    h = _highs_model(problem.columns().value, rows, integer=False, time_limit=60.0)
    h.setOptionValue("presolve", "off")     # it removes little here and takes most of the time (2-3x)
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        word = "infeasible" if status == highspy.HighsModelStatus.kInfeasible else str(status)
        return _Relaxation(word, np.zeros(n), np.inf, np.zeros(n))
    solution = h.getSolution()
    values = np.array(solution.col_value)
    choice = {problem.options[i].key: problem.options[i] for i in np.nonzero(values > 0.5)[0]}
    return _Relaxation("optimal", values, -h.getInfo().objective_function_value,
                       np.array(solution.col_dual), choice)


def round_relaxation(problem: PlacementProblem, relaxation: _Relaxation) -> dict[str, Option] | None:
    """A feasible choice near the LP optimum, or None.

    Users the LP places whole (every service) stay where it puts them; each
    other user, in turn, takes the base station and servers of least reduced
    cost that still fit (all its services at one station).  Only the
    incumbent's quality depends on this; the answer stays exact."""
    fractional = np.minimum(relaxation.values, 1 - relaxation.values) > 1e-6
    split_users = {problem.options[i].user for i in np.nonzero(fractional)[0]}
    chosen = {problem.options[i].key: problem.options[i] for i in np.nonzero(relaxation.values > 1 - 1e-6)[0]
              if problem.options[i].user not in split_users}
    left = {s: list(c) for s, c in problem.server_capacity.items()}
    seats = dict(problem.station_capacity)
    services = problem.services()
    for key, option in chosen.items():
        left[option.server] = [c - d for c, d in zip(left[option.server], problem.demand[key])]
    for user, keys in services.items():
        if user not in split_users and keys and option_station(chosen, keys) in seats:
            seats[option_station(chosen, keys)] -= 1
    if any(min(c) < -1e-9 for c in left.values()) or any(v < 0 for v in seats.values()):
        return None
    by_key: dict[str, list[int]] = {}
    for i, option in enumerate(problem.options):
        if option.user in split_users:
            by_key.setdefault(option.key, []).append(i)
    cost = relaxation.reduced_costs
    for user in sorted(sorted(split_users), key=lambda u: -max(relaxation.values[i] for k in services[u] for i in by_key[k])):
        keys = services[user]
        stations = sorted(sorted({problem.options[i].station for i in by_key[keys[0]]}),
                          key=lambda b: min(cost[i] for i in by_key[keys[0]] if problem.options[i].station == b))
        for station in stations:
            if seats.get(station, 1) < 1:
                continue
            trial = {s: list(c) for s, c in left.items()}
            picks = {}
            for key in keys:
                fitting = [i for i in sorted(by_key[key], key=lambda i: cost[i])
                           if problem.options[i].station == station
                           and all(c >= d - 1e-9 for c, d in zip(trial[problem.options[i].server], problem.demand[key]))]
                if not fitting:
                    break
                picks[key] = problem.options[fitting[0]]
                server = picks[key].server
                trial[server] = [c - d for c, d in zip(trial[server], problem.demand[key])]
            if len(picks) == len(keys):
                chosen.update(picks)
                left = trial
                if station in seats:
                    seats[station] -= 1
                break
        else:
            return None
    return chosen if feasible(problem, chosen) else None


SHORTLIST = 6    # options per service the incumbent's small MIP looks at
IMPROVE_S = 30.0 # seconds for that MIP; out of time, its best choice is the incumbent


def improve(problem: PlacementProblem, relaxation: _Relaxation,
            start: dict[str, Option] | None) -> dict[str, Option] | None:
    """A better incumbent: users the LP places whole on servers and stations no split
    user touches stay there; the others are placed by a small MIP over each of their
    services' SHORTLIST options of least reduced cost (and ``start``'s, and staying, which
    has no downtime: the current placement fits, so the small MIP rarely is infeasible).
    The closer the incumbent to the optimum, the more options the reduced costs rule out."""
    fractional = np.minimum(relaxation.values, 1 - relaxation.values) > 1e-6
    split_users = {problem.options[i].user for i in np.nonzero(fractional)[0]}
    touched = [o for o in problem.options if o.user in split_users]
    busy = {o.server for o in touched} | {o.station for o in touched}
    whole = [problem.options[i] for i in np.nonzero(relaxation.values > 1 - 1e-6)[0]]
    free = {o.user for o in whole} - split_users - {o.user for o in whole if o.server in busy or o.station in busy}
    settled = {o.key: o for o in whole if o.user in free}
    servers = {s: list(c) for s, c in problem.server_capacity.items()}
    stations = dict(problem.station_capacity)
    for key, option in settled.items():
        servers[option.server] = [c - d for c, d in zip(servers[option.server], problem.demand[key])]
    services = problem.services()
    for user in free:
        station = option_station(settled, services[user])
        if station in stations:
            stations[station] -= 1
    picked = {id(o) for o in (start or {}).values()}
    by_key: dict[str, list[int]] = {}
    for i, option in enumerate(problem.options):
        if option.user not in free:
            by_key.setdefault(option.key, []).append(i)
    keep = {i for idx in by_key.values() for i in sorted(idx, key=lambda i: relaxation.reduced_costs[i])[:SHORTLIST]}
    keep |= {i for idx in by_key.values() for i in idx if id(problem.options[i]) in picked}
    keep |= {i for idx in by_key.values() for i in idx if problem.options[i].downtime == 0}    # staying
    rest = PlacementProblem([u for u in problem.users if u not in free], [problem.options[i] for i in sorted(keep)],
                            problem.demand, {s: tuple(c) for s, c in servers.items()}, stations)
    rest_start = {k: o for k, o in (start or {}).items() if o.user not in free} if start else None
    if rest_start is not None and not feasible(rest, rest_start):
        rest_start = None
    found = _solve_model(rest, "highs", time_limit=IMPROVE_S, start=rest_start, proof=True, search=True)
    if not found.choice:
        return start
    better = {**settled, **found.choice}
    if start is None or sum(o.value for o in better.values()) >= sum(o.value for o in start.values()):
        return better
    return start


def option_station(choice: dict[str, Option], keys: list[str]) -> str | None:
    """The base station a user's chosen options put it at."""
    return choice[keys[0]].station if keys and keys[0] in choice else None


def without_hopeless_options(problem: PlacementProblem, relaxation: _Relaxation,
                             incumbent: dict[str, Option]) -> PlacementProblem:
    """The problem without the options no choice better than ``incumbent`` can pick.

    By LP duality every feasible choice that picks option j is worth at most
    U - r_j, with U the LP optimum and r_j >= 0 the reduced cost of j there;
    when that is below the incumbent's value, j can go.  The relaxation is
    tight, so most options go and the branch and bound works on the rest."""
    slack = relaxation.bound - sum(o.value for o in incumbent.values())
    keep = relaxation.reduced_costs <= slack + GAP / 10 + 1e-9 * max(1.0, abs(relaxation.bound))
    kept = {id(o) for o in incumbent.values()}
    options = [o for o, k in zip(problem.options, keep) if k or id(o) in kept]
    return PlacementProblem(problem.users, options, problem.demand, problem.server_capacity, problem.station_capacity)


def _solve_model(problem: PlacementProblem, solver: str, time_limit: float,
                 start: dict[str, Option] | None = None, proof: bool = False, search: bool = False) -> Solution:
    """Branch and bound over every option of ``problem``; ``start``: a feasible choice
    to begin from (HiGHS only); ``proof``: the problem is already reduced around a good
    start, so HiGHS skips presolve and primal heuristics (most of its time here), but for
    its sub-MIPs (RINS, RENS) when ``search``: they find ``improve`` its incumbent."""
    rows, by_key = _rows(problem)
    if not by_key or any(not len(idx) for idx in by_key.values()) or any(not k for k in problem.services().values()):
        return Solution("infeasible")
    values = problem.columns().value
    if solver == "highs":
        initial = None
        if start is not None:
            picked = {id(o) for o in start.values()}
            initial = np.array([1.0 if id(o) in picked else 0.0 for o in problem.options])
        chosen, objective, status = _solve_highs(values, rows, time_limit, initial, proof, search)
    elif solver == "cbc":
        chosen, objective, status = _solve_cbc(values, rows, time_limit)
    else:
        raise ValueError(f"unknown solver {solver!r} (highs or cbc)")
    choice = {problem.options[i].key: problem.options[i] for i in chosen}
    return Solution(status, choice, objective)


_highs_banner_shown = False
_highs_banner_lock = threading.Lock()


def _hide_highs_banner() -> None:
    """HiGHS prints its banner to the C stdout when a process makes its first model, before
    any option can turn output off: make that first one here with stdout closed, so a
    command's output (tables, JSON) stays only its own.  (Locked: two threads swapping
    stdout at once could leave it closed.)"""
    global _highs_banner_shown
    import highspy

    with _highs_banner_lock:
        if _highs_banner_shown:
            return
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 1)
                highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _highs_banner_shown = True


def _highs_model(values, rows, integer: bool, time_limit: float):
    """A HiGHS model minimising -values (HiGHS minimises) over 0 <= z <= 1 and ``rows``."""
    import highspy

    _hide_highs_banner()
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", GAP / 10)
    n = len(values)
    inf = highspy.kHighsInf
    h.addVars(n, np.zeros(n), np.ones(n))
    h.changeColsCost(n, np.arange(n, dtype=np.int32), -values)
    if integer:
        h.changeColsIntegrality(n, np.arange(n, dtype=np.int32),
                                np.array([highspy.HighsVarType.kInteger] * n))
    lengths = np.array([len(idx) for idx, _, _, _ in rows], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(rows) else np.zeros(0, dtype=np.int64)
    indices = np.concatenate([idx for idx, _, _, _ in rows]) if len(rows) else np.zeros(0, dtype=np.int64)
    coefficients = np.concatenate([c for _, c, _, _ in rows]) if len(rows) else np.zeros(0)
    lowers = np.array([-inf if lower == -np.inf else lower for _, _, lower, _ in rows], dtype=np.float64)
    uppers = np.array([upper for _, _, _, upper in rows], dtype=np.float64)
    h.addRows(len(rows), lowers, uppers, len(indices), np.array(starts, dtype=np.int32),
              np.array(indices, dtype=np.int32), np.array(coefficients, dtype=np.float64))
    return h


def _solve_highs(values, rows, time_limit, initial=None, proof=False, search=False):
    import highspy

    h = _highs_model(values, rows, integer=True, time_limit=time_limit)
    if proof:
        h.setOptionValue("presolve", "off")
        h.setOptionValue("mip_heuristic_effort", 0.0)
    if proof and not search:
        for heuristic in ("rins", "rens", "feasibility_jump"):      # they run at effort 0 too
            h.setOptionValue(f"mip_heuristic_run_{heuristic}", False)
    if initial is not None:
        incumbent = highspy.HighsSolution()
        incumbent.col_value = initial.tolist()
        incumbent.value_valid = True
        h.setSolution(incumbent)
    h.run()
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:
        return [], None, "infeasible"
    solved = status == highspy.HighsModelStatus.kOptimal
    if not solved and h.getInfo().primal_solution_status != 2:        # 2: a feasible solution
        return [], None, str(status)
    x = np.array(h.getSolution().col_value)
    return [int(i) for i in np.nonzero(x > 0.5)[0]], float(values @ (x > 0.5)), "optimal" if solved else str(status)


def _solve_cbc(values, rows, time_limit):
    import pulp

    model = pulp.LpProblem("placement", pulp.LpMaximize)
    z = [model.add_variable(f"z{i}", cat="Binary") for i in range(len(values))]
    model += pulp.lpDot(values.tolist(), z)
    for r, (idx, coeffs, lower, upper) in enumerate(rows):
        expr = pulp.lpDot(np.asarray(coeffs).tolist(), [z[i] for i in idx])
        if lower == upper:
            model += expr == upper, f"r{r}"
        else:
            model += expr <= upper, f"r{r}"
    with warnings.catch_warnings():  # PuLP 3.3 deprecates the name of the CBC it bundles
        warnings.simplefilter("ignore", DeprecationWarning)
        cbc = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, gapRel=0.0, gapAbs=GAP / 10)
    status = model.solve(cbc)
    if pulp.LpStatus[status] == "Infeasible":
        return [], None, "infeasible"
    if pulp.LpStatus[status] != "Optimal" or model.sol_status != pulp.LpSolutionOptimal:   # e.g. out of time
        return [], None, "not solved to optimality"
    chosen = [i for i, var in enumerate(z) if (var.value() or 0) > 0.5]
    return chosen, float(sum(values[i] for i in chosen)), "optimal"


def feasible(problem: PlacementProblem, choice: dict[str, Option]) -> bool:
    """Does a full choice (one option per service) respect (3b), (3c), (3e) and one
    base station per user?"""
    services = problem.services()
    if set(choice) != {k for keys in services.values() for k in keys} or any(not k for k in services.values()):
        return False
    for user, keys in services.items():
        if len({choice[k].station for k in keys}) != 1:
            return False
    used: dict[str, list[float]] = {}
    for key, option in choice.items():
        if option.server in problem.server_capacity:
            load = used.setdefault(option.server, [0.0] * len(problem.server_capacity[option.server]))
            for d, amount in enumerate(problem.demand[key]):
                load[d] += amount
    if any(amount > limit + 1e-9 for server, load in used.items()
           for amount, limit in zip(load, problem.server_capacity[server])):
        return False
    users_at = Counter(choice[keys[0]].station for keys in services.values())
    return all(users_at[station] <= capacity for station, capacity in problem.station_capacity.items())


def brute_force(problem: PlacementProblem) -> Solution:
    started = time.monotonic()
    services = problem.services()
    keys = [k for user in problem.users for k in services.get(user, [])]
    per_key = [[o for o in problem.options if o.key == k] for k in keys]
    best, best_value = None, None
    if keys and all(services.get(u) for u in problem.users):
        for combo in itertools.product(*per_key):
            choice = {o.key: o for o in combo}
            if not feasible(problem, choice):
                continue
            value = sum(o.value for o in combo)
            if best_value is None or value > best_value + 1e-12:
                best, best_value = choice, value
    if best is None:
        return Solution("infeasible", seconds=time.monotonic() - started, solver="brute force")
    return Solution("optimal", best, best_value, time.monotonic() - started, solver="brute force")
