"""Seed 000's ShareOn: traffic-aware container migration (Algorithms 1 and 2).

Every monitor period each node's *utilisation region* is found (Alg. 1) from
its average available processing speed and RAM per container.  Containers
whose measured total latency exceeds the application's threshold are
shortlisted, highest traffic (requests per second) first, with the primary
cause of their slowness: processing, network or both (the part at least twice
the other, else both).  Their suitable neighbours are nodes in the MED or LOW
region (a processing cause), nodes geographically closer to the user than the
current one (a network cause), or both (both; either if none is both), that
promise a lower total latency, estimated as

    network:    t_m = d(user, node) * latency_per_metre + var(l)
    processing: t_p = t_p,avg(node) + utilisation * latency_factor

where var(l) is the moving average of the network latency's deviation seen
from the user's area (a ``area_m`` square) at that node (its standard
deviation, in seconds; the ``latency_variance`` parameter until observed).
Each node then decides for its own containers (Alg. 2): the best neighbour
whose migration cost (its checkpoint over the inter-edge bandwidth shared by
the migrations already chosen on that pair) stays below the cost threshold.
Hysteresis keeps a container from ping-ponging: a move must promise ``margin``
less latency than measured, and a container that moved stays ``min_dwell_s``.
"""

from __future__ import annotations

import math

from testbed.config import Strict
from testbed.controller.planners.base import Migrate, Planner
from testbed.controller.state import SystemState
from testbed.mobility.base import distance


class ShareOnParams(Strict):
    sp_th1: float = 0.5          # available processing speed per container (cores x compute): High below
    sp_th2: float = 1.0          # ... Med below, Low above
    m_th1: float = 512.0         # available RAM per container (MB)
    m_th2: float = 1024.0
    latency_per_metre: float = 1.5e-4      # l_d: s per metre between user and node (2 km ~ 300 ms)
    latency_variance: float = 0.0          # var(l) before any latency was observed there: s
    variance_weight: float = 0.2           # of each new observation in var(l)'s moving average (0: never learn)
    area_m: float = 500.0                  # the side of the user's geographic area for var(l)
    latency_factor: float = 0.2            # alpha_e: s at full utilisation
    app_threshold: float = 0.1             # t_app,th: s (100 ms in the paper's emulation)
    cost_threshold: float = 30.0           # C_m,th: s of migration
    margin: float = 0.1                    # hysteresis: a move must promise this fraction less latency
    min_dwell_s: float = 15.0              # hysteresis: a container that moved stays at least this long


def utilization_region(sp_avg: float, m_avg: float, p: ShareOnParams) -> str:
    """Algorithm 1, as written (High / Med / Low)."""
    if sp_avg <= p.sp_th1 or m_avg <= p.m_th1:
        return "HIGH"
    if (sp_avg > p.sp_th1 or m_avg > p.m_th1) and (sp_avg <= p.sp_th2 or m_avg <= p.m_th2):
        return "MED"
    return "LOW"


class LatencyModel:
    """Seed 000's estimates of a container's latency on a node, and var(l) learned from what was seen."""

    def __init__(self, params: ShareOnParams):
        self.p = params
        self.seen: dict[tuple, tuple[float, float]] = {}     # (area, node) -> (mean, mean squared deviation)

    def regions(self, state: SystemState, incoming: dict[str, int] | None = None) -> dict[str, str]:
        result = {}
        for name, server in state.servers.items():
            k = max(1, sum(1 for s in state.services.values() if s.server == name) + (incoming or {}).get(name, 0))
            speed = server.cpus * server.compute * (1 - server.cpu_util)
            ram = server.memory_mb - server.memory_used_mb
            result[name] = utilization_region(speed / k, ram / k, self.p)
        return result

    def _area(self, state, service):
        position = state.users[service.user].position
        if position is None:
            return state.users[service.user].ap
        return (math.floor(position[0] / self.p.area_m), math.floor(position[1] / self.p.area_m))

    def observe(self, state, service) -> None:
        """Fold the container's measured network latency into var(l) of its user's area and node."""
        measured = self.measured(state, service)
        if measured <= 0 or self.p.variance_weight <= 0:
            return
        network = max(0.0, measured - service.proc_ms / 1e3)
        key = (self._area(state, service), service.server)
        if key not in self.seen:
            self.seen[key] = (network, 0.0)
            return
        mean, square = self.seen[key]
        w = self.p.variance_weight
        self.seen[key] = ((1 - w) * mean + w * network, (1 - w) * square + w * (network - mean) ** 2)

    def variance(self, state, service, node: str) -> float:
        found = self.seen.get((self._area(state, service), node))
        return math.sqrt(found[1]) if found else self.p.latency_variance

    def network(self, state: SystemState, service, node: str) -> float:
        user = state.users[service.user]
        server = state.servers[node]
        variance = self.variance(state, service, node)
        if user.position is None or server.position is None:
            return variance + 2 * state.network.one_way(user.ap, node)
        return distance(user.position, server.position) * self.p.latency_per_metre + variance

    def processing(self, state: SystemState, service, node: str) -> float:
        here, there = state.servers[service.server], state.servers[node]
        average = service.proc_ms / 1e3 * here.compute / there.compute
        return average + there.cpu_util * self.p.latency_factor

    def total(self, state, service, node) -> float:
        return self.network(state, service, node) + self.processing(state, service, node)

    def measured(self, state, service) -> float:
        return (state.users[service.user].e2e_ms.get(service.name) or 0.0) / 1e3

    def cause(self, state, service) -> str:
        """The primary reason a container is slow: the part at least twice the other, else both."""
        processing = service.proc_ms / 1e3
        network = max(0.0, self.measured(state, service) - processing)
        if processing >= 2 * network:
            return "processing"
        if network >= 2 * processing:
            return "network"
        return "both"

    def closer(self, state, service, node: str) -> bool:
        user = state.users[service.user]
        here, there = state.servers[service.server], state.servers[node]
        if user.position is None or here.position is None or there.position is None:
            return state.network.one_way(user.ap, node) < state.network.one_way(user.ap, service.server)
        return distance(user.position, there.position) < distance(user.position, here.position)

    def migration_cost(self, state, service, source, dest, sharing: int) -> float:
        bandwidth = state.network.bandwidth(source, dest) * 1e6 / 8 / (sharing + 1)
        return service.full_bytes / bandwidth + state.network.one_way(source, dest)


class ShareOnPlanner(Planner):
    uses_checkpoint_sizes = True
    name = "shareon"
    Params = ShareOnParams

    def __init__(self, seed: int = 0, params: ShareOnParams | None = None):
        super().__init__(seed, params)
        self.p = self.params
        self.model = LatencyModel(self.p)
        self.moved_at: dict[str, float] = {}

    def settled(self, state: SystemState, service) -> bool:
        """Hysteresis: not moving, and not moved within the dwell time."""
        return not service.moving and state.t - self.moved_at.get(service.name, -math.inf) >= self.p.min_dwell_s

    def slow(self, state: SystemState, service) -> bool:
        return self.model.measured(state, service) > self.p.app_threshold

    def moved(self, state: SystemState, action: Migrate) -> Migrate:
        self.moved_at[action.service] = state.t
        return action

    def candidates(self, state: SystemState, incoming: dict[str, int] | None = None) -> dict[str, list[str]]:
        """Algorithm 2, first part: slow containers (highest traffic first) and the suitable
        neighbours that promise a lower latency, best first."""
        regions = self.model.regions(state, incoming)
        favourable = {n for n, r in regions.items() if r in ("MED", "LOW")}
        traffic = self._traffic(state)
        chosen = {}
        slow = [s for s in state.services.values() if self.settled(state, s) and self.slow(state, s)]
        for service in sorted(slow, key=lambda s: (-self._rate(state, s), s.name)):
            measured = self.model.measured(state, service)
            cause = self.model.cause(state, service)
            others = [n for n in sorted(state.servers) if n != service.server]
            near = {n for n in others if self.model.closer(state, service, n)}
            if cause == "processing":
                suitable = [n for n in others if n in favourable]
            elif cause == "network":
                suitable = [n for n in others if n in near and regions[n] != "HIGH"]
            else:
                suitable = [n for n in others if n in favourable and n in near] or \
                           [n for n in others if n in favourable or (n in near and regions[n] != "HIGH")]
            better = [n for n in suitable if self.model.total(state, service, n) < (1 - self.p.margin) * measured]
            if better:
                chosen[service.name] = sorted(better, key=lambda n: (self.model.total(state, service, n),
                                                                      traffic.get(n, 0.0), n))
        return chosen

    @staticmethod
    def _rate(state, service) -> float:
        return state.users[service.user].task_rate.get(service.name) or 0.0

    def _traffic(self, state) -> dict[str, float]:
        """Requests per second at each node: the primary metric."""
        traffic: dict[str, float] = {}
        for service in state.services.values():
            traffic[service.server] = traffic.get(service.server, 0.0) + self._rate(state, service)
        return traffic

    def on_tick(self, state):
        for service in state.services.values():
            if not service.moving:
                self.model.observe(state, service)
        actions, sharing, incoming = [], {}, {}
        chosen = self.candidates(state)
        by_node: dict[str, list[str]] = {}
        for name in chosen:                               # each node decides for its own containers
            by_node.setdefault(state.services[name].server, []).append(name)
        for node in sorted(by_node):
            for name in by_node[node]:
                service = state.services[name]
                for dest in chosen[name]:
                    pair = (service.server, dest)
                    cost = self.model.migration_cost(state, service, service.server, dest, sharing.get(pair, 0))
                    if cost < self.p.cost_threshold:
                        sharing[pair] = sharing.get(pair, 0) + 1
                        incoming[dest] = incoming.get(dest, 0) + 1
                        actions.append(self.moved(state, Migrate(name, dest, estimates={
                            "migration_cost_s": cost, "latency_s": self.model.total(state, service, dest),
                            "cause": self.model.cause(state, service)})))
                        break
        return actions
