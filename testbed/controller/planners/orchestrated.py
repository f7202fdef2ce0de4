"""Seed 002's orchestrated planner: optimal placement and coordinated timing (Sec. IV).

On every report of a user it predicts, from position and velocity with the
mean path-loss model and relative hysteresis, when (t_ho) and to which base
station the user will hand over.  When that moment is close enough that the
pre-migration must start now, it solves (3a)-(3e) for t' = t_ho over every
(base station, server) pair the user will hear, with

* gain: eq. (4) times the tasks expected over ``horizon_s`` (eq. 1),
* cost: DT = max(T_mig, T_ho) (eq. 2), T_mig from eq. (5),

and schedules (Fig. 2, fourth timeline, 10 % margins): pre-migration at
t_ho - 1.1 T_pre, so it is done when the migration starts at t_ho; the
handover at t_ho + max(0, 0.9 T_mig - T_ho), so that it ends inside the
migration's downtime and the user sees one short window.
"""

from __future__ import annotations

from testbed.controller import milp
from testbed.controller.estimators import downtime, e2e_change
from testbed.controller.planners.base import Handover, Migrate, Planner


class OrchestratedPlanner(Planner):
    name = "orchestrated"
    handover = "controller"

    def __init__(self, seed: int = 0, horizon_s: float = 30.0, margin: float = 0.1, solver: str = "highs",
                 **params):
        super().__init__(seed, **params)
        self.horizon_s = horizon_s
        self.margin = margin
        self.solver = solver
        self.planned: dict[str, float] = {}     # user -> t_ho already planned for

    def estimate_migration(self, state, service, dest) -> dict:
        source = state.servers[service.host]
        target = state.servers[dest]
        return state.migration_model.estimate(
            service.host, dest, service.image_bytes, service.full_bytes, service.delta_bytes,
            state.network.bandwidth(service.host, dest), state.network.one_way(service.host, dest),
            source.compute, target.compute)

    def on_report(self, state, user):
        services = [s for s in state.services_of(user.name) if not s.moving]
        if not services or user.position is None:
            return []
        longest = max((self.estimate_migration(state, s, d)["pre_migration_s"]
                       for s in services for d in state.servers if d != s.host), default=0.0)
        control = max((state.network.one_way("cloud", s.host) for s in services if "cloud" in state.servers),
                      default=0.0)
        lead = (1 + self.margin) * longest + 3 * control + 2 * state.report_period_s
        predicted = state.predict_handover(user, horizon_s=lead + state.report_period_s)
        if predicted is None:
            return []
        t_ho, target = predicted
        if user.name in self.planned and abs(self.planned[user.name] - t_ho) < 5.0:
            return []                                   # already planned for this handover
        if t_ho - state.t > lead:
            return []                                   # a later report will plan it
        self.planned[user.name] = t_ho
        return self.plan(state, user, services, t_ho, target)

    def problem(self, state, user, services, t_ho, target: str):
        """The placement problem at t' = t_ho for one user (one service: its container D_u).

        Hysteresis says the user leaves its base station at t_ho, so staying is not a
        candidate; E2E changes are taken against the least the user must do: hand
        over to ``target`` and leave the service where it is."""
        service = services[0]
        rssi_then = state.predicted_rssi(user, t_ho)
        usable = {b: r for b, r in state.policy.usable(rssi_then).items() if b != user.ap}
        now_path = state.path(rssi_then[target], target, service.host)
        tasks = self.horizon_s / max(0.05, (user.e2e_ms.get(service.name) or 100.0) / 1e3)
        options, estimates = [], {}
        for station, rssi in sorted(usable.items()):
            for server in sorted(state.servers):
                new_path = state.path(rssi, station, server)
                gain = e2e_change(service.proc_ms / 1e3, service.task_bytes, now_path, new_path)
                t_ho_cost = state.handover_time_s
                mig = self.estimate_migration(state, service, server) if server != service.host else None
                dt = downtime(mig["migration_s"] if mig else None, t_ho_cost)
                options.append(milp.Option(user.name, station, server, gain * tasks, dt))
                estimates[(station, server)] = {"e2e_change_s": gain, "tasks": tasks, "downtime_s": dt,
                                                "migration": mig}
        others = {s: (srv.cpus * (1 - srv.cpu_util), srv.memory_mb - srv.memory_used_mb)
                  for s, srv in state.servers.items()}
        own = (service.cpus, service.memory_mb)
        capacity = {s: (c + (own[0] if s == service.host else 0), m + (own[1] if s == service.host else 0))
                    for s, (c, m) in others.items()}
        stations = {b: st.max_users - state.users_on(b) + (1 if b == user.ap else 0)
                    for b, st in state.stations.items()}
        problem = milp.PlacementProblem([user.name], options, {user.name: own}, capacity, stations)
        return problem, estimates

    def plan(self, state, user, services, t_ho, target):
        problem, estimates = self.problem(state, user, services, t_ho, target)
        solution = milp.solve(problem, solver=self.solver)
        self.last_solution = solution
        if not solution.feasible:
            return [Handover(user.name, target, at=t_ho)]
        choice = solution.choice[user.name]
        chosen = estimates[(choice.station, choice.server)]
        self.last_estimates = {"t_ho": t_ho, "station": choice.station, "server": choice.server, **chosen,
                               "objective": solution.objective, "solve_s": solution.seconds}
        service = services[0]
        actions = []
        t_mig = t_ho
        if choice.server != service.host:
            mig = chosen["migration"]
            # the controller's "prepare" order makes a round trip before the pre-migration
            control = 2 * state.network.one_way("cloud", service.host) if "cloud" in state.servers else 0.0
            lead = (1 + self.margin) * mig["pre_migration_s"] + control
            t_mig = max(t_ho, state.t + lead)
            pre_at = t_mig - lead
            actions.append(Migrate(service.name, choice.server, pre_at=pre_at, final_at=t_mig,
                                   estimates=self.last_estimates))
            t_trigger_ho = t_mig + max(0.0, (1 - self.margin) * mig["migration_s"] - state.handover_time_s)
        else:
            t_trigger_ho = t_ho
        if choice.station != user.ap:
            actions.append(Handover(user.name, choice.station, at=t_trigger_ho))
        return actions
