"""Seed 002's orchestrated planner: joint optimal placement and coordinated timing (Sec. IV).

On every report it predicts, from each user's position and velocity with the
mean path-loss model and relative hysteresis, when (t_ho) each user will need
a handover.  Every user whose t_ho is close enough that a pre-migration must
start now is decided together: one MILP (3a)-(3e) (``testbed.controller.milp``)
over all of them and all their services, at t' = max(t_ho, the earliest a
migration could be ready), with

* candidates: every base station the user will hear above the sensitivity
  from t' until ``coverage_lookahead_s`` after (3d), staying included, times
  every server, for each service;
* gain: eq. (4) times the tasks the user sends over ``horizon_s`` (eq. 1),
  against the E2E of staying where it is at t';
* cost: DT = max(T_mig, T_ho) per service (eq. 2), T_mig from eq. (5);
* (3c): CPU, memory and storage left on each server by the services not being
  decided (and by any background load the Resource Monitor sees); (3e): the
  users a base station holds besides those being decided.

and schedules (Fig. 2, fourth timeline, 10 % margins): each service's
pre-migration early enough that it is done when its migration phase starts;
the migration phases so that they all end together; the handover so that it
ends inside the longest migration's downtime: t_ho + max(0, 0.9 T_mig - T_ho).
A user the MILP leaves where it is is decided again when its base station's
coverage is about to end, or ``replan_s`` later.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Literal, NamedTuple

import numpy as np
from pydantic import Field

from testbed.config import Strict
from testbed.controller import milp
from testbed.controller.estimators import downtime, e2e_change
from testbed.controller.planners.base import Handover, Migrate, Planner
from testbed.rates import TABLES, RateTable

RESOURCES = ("cpu", "memory", "storage")


def _needs(service) -> dict[str, float]:
    """What a service's container takes of each resource of (3c)."""
    return {"cpu": service.cpus, "memory": service.memory_mb,
            "storage": (service.image_bytes + service.full_bytes) / 2**20}


class OptionEstimate(NamedTuple):
    """What one option's value rests on (a migration's order carries its chosen option's as a dict)."""
    t_ho: float
    e2e_change_s: float
    tasks: float
    downtime_s: float
    rssi: float


class OptionEstimates(Mapping):
    """Each option's ``OptionEstimate``, by (service, station, server), made when asked: a city's
    decision weighs thousands of options and orders a few of them.  Read as a dict."""

    def __init__(self):
        self._rows: dict[tuple[str, str], tuple] = {}     # (service, station) -> what its servers share

    def add(self, service: str, station: str, servers: dict[str, int], t_prime: float, changes: np.ndarray,
            tasks: float, downtimes: np.ndarray, rssi: float) -> None:
        self._rows[(service, station)] = (servers, t_prime, changes, tasks, downtimes, rssi)

    def __getitem__(self, key: tuple[str, str, str]) -> OptionEstimate:
        service, station, server = key
        servers, t_prime, changes, tasks, downtimes, rssi = self._rows[(service, station)]
        at = servers[server]
        return OptionEstimate(t_prime, float(changes[at]), tasks, float(downtimes[at]), rssi)

    def __iter__(self):
        for (service, station), (servers, *_) in self._rows.items():
            for server in servers:
                yield service, station, server

    def __len__(self) -> int:
        return sum(len(servers) for servers, *_ in self._rows.values())


class OrchestratedParams(Strict):
    horizon_s: float = Field(default=30.0, gt=0, description="the gain counts the tasks of this long (eq. 1)")
    margin: float = Field(default=0.1, ge=0, lt=1, description="Fig. 2's 10 % error margins")
    solver: Literal["fast", "highs", "cbc"] = Field(
        default="fast", description="cbc: CBC on the whole model (the paper); highs: HiGHS on the whole model; "
                                    "fast: LP relaxation, reduced-cost pruning, HiGHS (all exact)")
    replan_s: float = Field(default=5.0, ge=0, description="a predicted handover this close to a planned one is "
                                                            "that one; a user left in place is decided again after")
    coverage_lookahead_s: float = Field(default=5.0, ge=0, description="(3d): a base station must stay above the "
                                                                        "sensitivity this long after t'")
    lead_reports: float = Field(default=2.0, ge=0, description="plan this many report periods before it must start")
    lead_control_trips: float = Field(default=3.0, ge=0, description="... plus this many controller-to-agent trips")
    prediction_step_s: float = Field(default=0.1, gt=0, description="time step of the handover prediction")
    resources: list[Literal["cpu", "memory", "storage"]] = Field(default=list(RESOURCES),
                                                                  description="the resources of (3c)")
    rate_table: str | list[tuple[float, float]] | None = Field(
        default=None, description="eq. (4)'s radio rates (testbed.rates); none: the experiment's radio")
    noise_floor_dbm: float | None = Field(default=None, description="none: the experiment's radio")
    candidate_servers: int | None = Field(default=None, ge=1, description=(
        "consider, for each candidate base station, only this many servers nearest to it (by one-way delay) "
        "and the service's own; none: every server, as the paper (a city's MILP then has every user x "
        "station x server)"))
    airtime_sharing: bool = Field(default=False, description=(
        "eq. (4) with a base station's rate shared by its users, as the emulated radio shares it (not in the "
        "paper, whose B depends on the user's RSSI only)"))

    def rates(self, radio: RateTable) -> RateTable:
        if self.rate_table is None and self.noise_floor_dbm is None:
            return radio
        table = self.rate_table if self.rate_table is not None else list(radio.steps)
        if isinstance(table, str) and table not in TABLES:
            raise ValueError(f"unknown rate table {table!r} (known: {', '.join(TABLES)})")
        floor = self.noise_floor_dbm if self.noise_floor_dbm is not None else radio.noise_floor_dbm
        return RateTable.named(table, floor)


class OrchestratedPlanner(Planner):
    uses_checkpoint_sizes = True
    name = "orchestrated"
    handover = "controller"
    Params = OrchestratedParams

    def __init__(self, seed: int = 0, params: OrchestratedParams | None = None):
        super().__init__(seed, params)
        self.planned: dict[str, float] = {}     # user -> t' last decided for
        self.moved: set[str] = set()            # users the last decision moved (not left in place)
        self.last_solution: milp.Solution | None = None
        self._last_decision: tuple | None = None     # (due, problem): what ``last_estimates`` tells of
        self._last_record: dict | None = None
        self._estimated_at: tuple | None = None
        self._estimates: dict[tuple, dict] = {}
        self._nearest: dict[tuple, list[str]] = {}
        self._pre_transfers_to: dict[tuple, dict[str, float]] = {}    # per source and size: fixed per network
        self._final_transfers_to: dict[tuple, np.ndarray] = {}

    # -- when ---------------------------------------------------------------------------
    def estimate_migration(self, state, service, dest) -> dict:
        """Eq. (5) for moving ``service`` to ``dest``; remembered until the model learns more
        (a decision asks for every service x server, and the services of a city share sizes)."""
        model, source, target = state.migration_model, state.servers[service.server], state.servers[dest]
        memo = self._memo(state)
        key = (service.server, dest, service.image_bytes, service.full_bytes, service.delta_bytes,
               source.compute, target.compute)
        if key not in memo:
            memo[key] = model.estimate(
                service.server, dest, service.image_bytes, service.full_bytes, service.delta_bytes,
                state.network.bandwidth(service.server, dest), state.network.one_way(service.server, dest),
                source.compute, target.compute)
        return memo[key]

    def _longest_pre_migration(self, state, service) -> float:
        """The longest pre-migration of ``service`` to any other server (every report asks)."""
        memo = self._memo(state)
        key = ("longest", service.server, service.image_bytes, service.full_bytes)
        if key not in memo:
            memo[key] = state.migration_model.longest_pre_migration(
                service.server, service.image_bytes, state.servers[service.server].compute,
                self._pre_transfers(state, service.server, service.full_bytes))
        return memo[key]

    def _migration_seconds(self, state, service, servers: tuple[str, ...]) -> list[float | None]:
        """T_mig of moving ``service`` to each of ``servers`` (None for its own), as
        ``estimate_migration``'s, for all at once."""
        model, source = state.migration_model, service.server
        key = (id(state.network), source, servers, service.delta_bytes)
        if key not in self._final_transfers_to:
            self._final_transfers_to[key] = np.array([model.final_transfer_seconds(service.delta_bytes,
                                                                          state.network.bandwidth(source, dest),
                                                                          state.network.one_way(source, dest))
                                             for dest in servers], dtype=float)
        seconds = model.migration_seconds(
            source, list(servers), service.image_bytes, service.full_bytes, service.delta_bytes,
            self._final_transfers_to[key], state.servers[source].compute,
            np.array([state.servers[dest].compute for dest in servers], dtype=float)).tolist()
        return [None if dest == source else t for dest, t in zip(servers, seconds)]

    def _pre_transfers(self, state, source: str, full_bytes: float) -> dict[str, float]:
        """Pre-transfer seconds from ``source`` to every other server: nothing learned goes into
        them, so they are found once per network."""
        model = state.migration_model
        key = (id(state.network), source, full_bytes, model.precopy_share)
        if key not in self._pre_transfers_to:
            self._pre_transfers_to[key] = {
                dest: model.pre_transfer_seconds(full_bytes, state.network.bandwidth(source, dest),
                                                 state.network.one_way(source, dest))
                for dest in state.servers if dest != source}
        return self._pre_transfers_to[key]

    def _memo(self, state) -> dict:
        """Estimates made since the migration model last learned (then they all start over)."""
        model = state.migration_model
        if self._estimated_at != (id(model), model.version):
            self._estimated_at, self._estimates = (id(model), model.version), {}
        return self._estimates

    def _control(self, state, services) -> float:
        cloud = state.cloud()
        return max((state.network.one_way(cloud, s.server) for s in services), default=0.0) if cloud else 0.0

    def lead(self, state, services) -> float:
        """How long before t' a plan must be made: the longest pre-migration, the orders'
        trips and the reports that may pass before the next decision."""
        memo = self._memo(state)
        key = ("lead", id(state.network), state.report_period_s,
               tuple((s.server, s.image_bytes, s.full_bytes) for s in services))
        if key not in memo:
            longest = max((self._longest_pre_migration(state, s) for s in services), default=0.0)
            memo[key] = ((1 + self.params.margin) * longest
                         + self.params.lead_control_trips * self._control(state, services)
                         + self.params.lead_reports * state.report_period_s)
        return memo[key]

    def due(self, state, user, slack: float = 0.0) -> tuple[float, str] | None:
        """(t', target) if ``user`` must be decided now (or within ``slack`` s), else None.

        A handover predicted within the lead makes a user due, at t' = the predicted
        time or the earliest a migration could be ready, whichever is later.  A user the
        last decision left in place is due again only when its base station stops being a
        candidate at the new t' (its coverage ends), or ``replan_s`` later."""
        found = self._due(state, user, slack)
        return found[:2] if found is not None else None

    def _due(self, state, user, slack: float) -> tuple[float, str, bool] | None:
        """``due``, and whether the user is due now (with no slack): the handover prediction for
        ``slack`` finds the same first handover as the one for none when that one is due."""
        return self._due_users(state, [user], slack).get(user.name)

    def _due_users(self, state, users, slack: float) -> dict[str, tuple[float, str, bool]]:
        """``_due`` of each of ``users`` that is due, their handovers predicted in one pass."""
        open_ = [(u, lead) for u in users if (lead := self._open_lead(state, u)) is not None]
        predicted = state.predict_handovers([u for u, _ in open_], [lead + state.report_period_s + slack
                                                                   for _, lead in open_],
                                            step_s=self.params.prediction_step_s)
        return {u.name: f for (u, lead), p in zip(open_, predicted)
                if (f := self._due_from(state, u, slack, lead, p)) is not None}

    def _open_lead(self, state, user) -> float | None:
        """The user's lead, or None when it cannot be due (no service, not placed, a service
        moving, or its move under way)."""
        services = state.services_of(user.name)
        if not services or user.position is None or user.ap is None or any(s.moving for s in services):
            return None
        last = self.planned.get(user.name)
        if last is not None and user.name in self.moved and state.t < last + self.params.replan_s:
            return None                                 # its move is under way
        return self.lead(state, services)

    def _due_from(self, state, user, slack: float, lead: float,
                  predicted: tuple[float, str] | None) -> tuple[float, str, bool] | None:
        """``_due`` once the user's handover is predicted."""
        if predicted is None:
            return None
        t_ho, target = predicted
        if t_ho - state.t > lead + slack:
            return None                                 # a later report will decide it
        t_prime = max(t_ho, state.t + lead)
        last = self.planned.get(user.name)
        if last is not None and t_prime - last < self.params.replan_s \
                and user.ap in self._candidates(state, user, t_prime):
            return None                                 # decided lately, and staying still holds
        return t_prime, target, t_ho - state.t <= lead

    def on_report(self, state, user):
        """Decide when ``user`` is due, together with every user that is or would be by its next
        report (their reports arrive one by one, a report period apart at most)."""
        if self.due(state, user) is None:
            return []
        due = {u.name: when for u in state.users.values()
               if (when := self.due(state, u, slack=state.report_period_s)) is not None}
        return self.plan(state, due)

    def on_reports(self, state, users):
        """Reports that arrive together: the same decision as ``on_report`` taking them in turn
        (the first due user's plan takes in every user due by the next report, and leaves none
        of them due again), with one handover prediction per user instead of two."""
        reporting = {u.name for u in users}
        found = self._due_users(state, list(state.users.values()), state.report_period_s)
        if not any(now for name, (_, _, now) in found.items() if name in reporting):
            return []
        return self.plan(state, {name: (t_prime, target) for name, (t_prime, target, _) in found.items()})

    # -- where ----------------------------------------------------------------------------
    def _candidates(self, state, user, t_prime: float, heard: dict[str, float] | None = None) -> dict[str, float]:
        """(3d): stations heard above the sensitivity at t' and ``coverage_lookahead_s`` later
        (``heard``: the RSSI predicted at t', when the caller has it)."""
        now = state.policy.usable(heard if heard is not None else state.predicted_rssi(user, t_prime))
        later = state.policy.usable(state.predicted_rssi(user, t_prime + self.params.coverage_lookahead_s))
        return {b: rssi for b, rssi in now.items() if b in later}

    def problem(self, state, due: dict[str, tuple[float, str]]):
        """The joint placement problem at t' of every user in ``due`` that has a candidate base
        station (3d); a user with none is left out (no choice of the others can place it)."""
        rates = self.params.rates(state.rates)
        deciding = {s.name for u in due for s in state.services_of(u)}
        options, estimates, demand = milp.OptionTable(), OptionEstimates(), {}
        for name, (t_prime, target) in sorted(due.items()):
            user = state.users[name]
            rssi = state.predicted_rssi(user, t_prime)
            stations = self._candidates(state, user, t_prime, rssi)
            if not stations:
                continue
            baseline = user.ap if user.ap in state.policy.usable(rssi) else target
            for service in sorted(state.services_of(name), key=lambda s: s.name):
                demand[service.name] = self._demand(service)
                now_path = state.path(rssi[baseline], baseline, service.server, rates,
                                      self._sharing(state, name, baseline))
                tasks = self._tasks(user, service)
                servers = tuple(self._servers(state, service, stations))
                at = {server: i for i, server in enumerate(servers)}
                migration_s = np.array([m or 0.0 for m in self._migration_seconds(state, service, servers)])
                for station in sorted(stations):
                    paths = state.path_arrays(stations[station], station, servers, rates,
                                              self._sharing(state, name, station))
                    changes = e2e_change(service.proc_ms / 1e3, service.task_bytes, now_path, paths)
                    handover = state.handover_time_s if station != user.ap else None
                    downtimes = downtime(migration_s, handover)
                    options.add(name, station, servers, changes * tasks, downtimes, service.name)
                    estimates.add(service.name, station, at, t_prime, changes, tasks, downtimes, stations[station])
        capacity = self._capacities(state, deciding)
        staying = Counter(u.ap for u in state.users.values() if u.name not in due)
        here = Counter(state.users[u].ap for u in due)
        # a station already over its limit keeps the users it has (none more comes): staying stays possible
        stations = {b: max(st.max_users - staying[b], min(here[b], st.max_users)) for b, st in state.stations.items()}
        placed = sorted(options.names("user"))
        return milp.PlacementProblem(placed, options, demand, capacity, stations), estimates

    def _servers(self, state, service, stations) -> list[str]:
        """The servers ``service`` may go to: every one, or the ``candidate_servers`` nearest to
        each candidate station and its own."""
        k = self.params.candidate_servers
        if k is None or k >= len(state.servers):
            return sorted(state.servers)
        chosen = {service.server}
        for station in stations:
            key = (id(state.network), station, k)
            if key not in self._nearest:
                self._nearest[key] = sorted(state.servers, key=lambda s: (state.network.one_way(station, s), s))[:k]
            chosen.update(self._nearest[key])
        return sorted(chosen)

    def _sharing(self, state, user: str, station: str) -> int:
        """The users whose airtime ``user`` would share at ``station``: those there now, and itself."""
        if not self.params.airtime_sharing:
            return 1
        return 1 + sum(1 for u in state.users.values() if u.ap == station and u.name != user)

    def _tasks(self, user, service) -> float:
        """n-hat of eq. (1): the user's measured task rate times the horizon."""
        rate = user.task_rate.get(service.name)
        if not rate:
            rate = 1.0 / max(0.05, (user.e2e_ms.get(service.name) or 100.0) / 1e3)
        return rate * self.params.horizon_s

    def _demand(self, service) -> tuple[float, ...]:
        return tuple(_needs(service)[r] for r in self.params.resources)

    def _capacities(self, state, deciding: set[str]) -> dict[str, tuple[float, ...]]:
        """What (3c) leaves the services being decided on each server: its resources less those
        of the services staying.  A server already over its capacity keeps what it runs (the
        services being decided there may stay; none moves in): the current placement stays feasible."""
        limits = {name: {"cpu": info.cpus, "memory": info.memory_mb, "storage": info.storage_mb}
                  for name, info in state.servers.items()}
        left = {name: {**limit, "cpu": limit["cpu"] - state.servers[name].background_cores}
                for name, limit in limits.items()}
        held = {name: dict.fromkeys(limit, 0.0) for name, limit in limits.items()}
        for service in state.services.values():
            needs = _needs(service)
            if service.name in deciding:
                if service.server in held:
                    for r, amount in needs.items():
                        held[service.server][r] += amount
                continue
            for server in {service.server, service.moving_to} & left.keys():
                for r, amount in needs.items():
                    left[server][r] -= amount
        return {name: tuple(max(0.0, left[name][r], min(held[name][r], limits[name][r])) for r in self.params.resources)
                for name in state.servers}

    def per_user_choices(self, problem: milp.PlacementProblem) -> dict[str, milp.Option]:
        """What solving each user alone (the capacities as they are) would choose: for the record.
        A user with one service takes its best option that fits, found without a solver."""
        chosen, by_user = {}, {}
        for option in problem.options:
            by_user.setdefault(option.user, []).append(option)
        for user in problem.users:
            options = by_user.get(user, [])
            if len({o.key for o in options}) == 1:
                fitting = [o for o in options if problem.station_capacity.get(o.station, 1) >= 1
                           and all(d <= c + 1e-9 for d, c in zip(problem.demand[o.key],
                                                                 problem.server_capacity.get(o.server, ())))]
                if fitting:
                    best = max(fitting, key=lambda o: o.value)
                    chosen[best.key] = best
                continue
            alone = milp.PlacementProblem([user], options, problem.demand, problem.server_capacity,
                                          problem.station_capacity)
            chosen.update(milp.solve(alone, solver=self.params.solver).choice)
        return chosen

    # -- the plan ------------------------------------------------------------------------------
    def plan(self, state, due: dict[str, tuple[float, str]]):
        problem, estimates = self.problem(state, due)
        solution = milp.solve(problem, solver=self.params.solver)
        self.last_solution = solution
        self._last_decision, self._last_record = (dict(due), problem), None
        for name, (t_prime, _) in due.items():
            self.planned[name] = t_prime
        # a user no candidate station covers, or all when nothing fits: the network's own handover,
        # services stay (and the user is not decided again before ``replan_s``)
        unplaced = set(due) if not solution.feasible else set(due) - set(problem.users)
        self.moved |= unplaced
        actions = [Handover(name, target, at=t_prime) for name, (t_prime, target) in sorted(due.items())
                   if name in unplaced]
        if not solution.feasible:
            return actions
        for name, (t_prime, _) in sorted(due.items()):
            if name in unplaced:
                continue
            user = state.users[name]
            chosen = {s.name: solution.choice[s.name] for s in state.services_of(name)}
            station = next(iter(chosen.values())).station
            moving = {k: o for k, o in chosen.items() if o.server != state.services[k].server}
            t_handover = t_prime
            if moving:
                migrations, start, longest = self._migrations(state, moving, t_prime, estimates)
                actions += migrations
                t_handover = start + max(0.0, (1 - self.params.margin) * longest - state.handover_time_s)
            if station != user.ap:
                actions.append(Handover(name, station, at=t_handover))
            if moving or station != user.ap:
                self.moved.add(name)
            else:
                self.moved.discard(name)
        return actions

    def _migrations(self, state, moving: dict[str, milp.Option], t_prime: float, estimates):
        """One user's migrations: pre-migrations early enough, migration phases ending together.
        Returns them, when the first migration phase starts, and the longest's estimate."""
        services = [state.services[k] for k in moving]
        control = 2 * self._control(state, services)       # the "prepare" order's round trip
        plans = {}
        for key, option in moving.items():
            mig = self.estimate_migration(state, state.services[key], option.server)
            plans[key] = (mig, (1 + self.params.margin) * mig["pre_migration_s"] + control)
        longest = max(mig["migration_s"] for mig, _ in plans.values())
        start = max(t_prime, state.t + max(lead for _, lead in plans.values()))
        actions = []
        for key, option in sorted(moving.items()):
            mig, lead = plans[key]
            final_at = start + (longest - mig["migration_s"])
            actions.append(Migrate(key, option.server, pre_at=final_at - lead, final_at=final_at,
                                   estimates={"station": option.station, "server": option.server,
                                              **estimates[(key, option.station, option.server)]._asdict(),
                                              "migration": mig}))
        return actions, start, longest

    @property
    def last_estimates(self) -> dict:
        """The last decision as the run records it, made when asked (a simulated city decides
        thousands of times and records none of them; the per-user answer costs a solve per user)."""
        if self._last_record is None and self._last_decision is not None:
            (due, problem), solution = self._last_decision, self.last_solution
            alone = self.per_user_choices(problem) if len(due) > 1 else {}
            self._last_record = {
                "users": {n: {"t_ho": t, "target": b} for n, (t, b) in due.items()}, "status": solution.status,
                "objective": solution.objective, "solve_s": solution.seconds, "solver": solution.solver,
                "options": len(problem.options),
                "choice": {k: {"user": o.user, "station": o.station, "server": o.server}
                           for k, o in solution.choice.items()},
                "per_user_differs": bool(alone) and any(alone.get(k) != o for k, o in solution.choice.items())}
        return self._last_record or {}

    def explain(self) -> dict:
        return self.last_estimates
