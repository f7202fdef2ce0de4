"""Seed 000's ShareOn: traffic-aware container migration (Algorithms 1 and 2).

Every monitor period each node's *utilisation region* is found (Alg. 1) from
its average available processing speed and RAM per container.  Containers
whose measured total latency exceeds the application's threshold are
candidates if a MED or LOW node promises a lower total latency, estimated as

    network:    t_m = d(user, node) * latency_per_metre + latency_variance
    processing: t_p = t_p,avg(node) + utilisation * latency_factor

and each goes to the best such node whose migration cost (its checkpoint over
the inter-edge bandwidth shared by the migrations already chosen on that
pair) stays below the cost threshold (Alg. 2).
"""

from __future__ import annotations

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
    latency_variance: float = 0.0          # var(l): s
    latency_factor: float = 0.2            # alpha_e: s at full utilisation
    app_threshold: float = 0.1             # t_app,th: s (100 ms in the paper's emulation)
    cost_threshold: float = 30.0           # C_m,th: s of migration


def utilization_region(sp_avg: float, m_avg: float, p: ShareOnParams) -> str:
    """Algorithm 1, as written (High / Med / Low)."""
    if sp_avg <= p.sp_th1 or m_avg <= p.m_th1:
        return "HIGH"
    if (sp_avg > p.sp_th1 or m_avg > p.m_th1) and (sp_avg <= p.sp_th2 or m_avg <= p.m_th2):
        return "MED"
    return "LOW"


class LatencyModel:
    """Seed 000's estimates of a container's latency on a node."""

    def __init__(self, params: ShareOnParams):
        self.p = params

    def regions(self, state: SystemState) -> dict[str, str]:
        result = {}
        for name, server in state.servers.items():
            k = max(1, sum(1 for s in state.services.values() if s.server == name))
            speed = server.cpus * server.compute * (1 - server.cpu_util)
            ram = server.memory_mb - server.memory_used_mb
            result[name] = utilization_region(speed / k, ram / k, self.p)
        return result

    def network(self, state: SystemState, service, node: str) -> float:
        user = state.users[service.user]
        server = state.servers[node]
        if user.position is None or server.position is None:
            return self.p.latency_variance + 2 * state.network.one_way(user.ap, node)
        return distance(user.position, server.position) * self.p.latency_per_metre + self.p.latency_variance

    def processing(self, state: SystemState, service, node: str) -> float:
        here, there = state.servers[service.server], state.servers[node]
        average = service.proc_ms / 1e3 * here.compute / there.compute
        return average + there.cpu_util * self.p.latency_factor

    def total(self, state, service, node) -> float:
        return self.network(state, service, node) + self.processing(state, service, node)

    def measured(self, state, service) -> float:
        return (state.users[service.user].e2e_ms.get(service.name) or 0.0) / 1e3

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

    def candidates(self, state: SystemState) -> dict[str, list[str]]:
        """Algorithm 2, first part: slow containers and the favourable nodes that would help."""
        regions = self.model.regions(state)
        favourable = [n for n, r in sorted(regions.items()) if r in ("MED", "LOW")]
        chosen = {}
        for service in sorted(state.services.values(), key=lambda s: s.name):
            if service.moving:
                continue
            measured = self.model.measured(state, service)
            if measured <= self.p.app_threshold:
                continue
            better = [n for n in favourable if n != service.server and self.model.total(state, service, n) < measured]
            if better:
                chosen[service.name] = sorted(better, key=lambda n: (self.model.total(state, service, n), n))
        return chosen

    def on_tick(self, state):
        actions, sharing = [], {}
        for name, nodes in self.candidates(state).items():
            service = state.services[name]
            for node in nodes:
                pair = (service.server, node)
                cost = self.model.migration_cost(state, service, service.server, node, sharing.get(pair, 0))
                if cost < self.p.cost_threshold:
                    sharing[pair] = sharing.get(pair, 0) + 1
                    actions.append(Migrate(name, node, estimates={"migration_cost_s": cost,
                                                                  "latency_s": self.model.total(state, service, node)}))
                    break
        return actions
