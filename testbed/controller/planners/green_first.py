"""Seed 004's Algorithm I: services leave an overloaded ("red") node for the least-loaded green
node of the same site, else of another site, else the cloud; the app profile (CPU quota) must fit."""

from pydantic import Field

from testbed.config import Strict
from testbed.controller.planners.base import Migrate, Planner


class GreenFirstParams(Strict):
    threshold: float = Field(default=0.5, gt=0, le=1, description="a node over this CPU share is red (seed 004)")


class GreenFirstPlanner(Planner):
    name = "green-first"
    Params = GreenFirstParams

    @property
    def threshold(self) -> float:
        return self.params.threshold

    def red(self, state):
        return [n for n, s in sorted(state.servers.items()) if s.role == "edge" and s.cpu_util > self.threshold]

    def cloud(self, state):
        return next(n for n, s in sorted(state.servers.items()) if s.role == "cloud")

    def on_tick(self, state):
        # utilisation at 1 % resolution: idle servers are equally idle, whatever their noise
        load = {n: round(s.cpu_util, 2) for n, s in state.servers.items()}
        actions = []
        for node in self.red(state):
            site = state.servers[node].site
            for service in sorted((s for s in state.services.values() if s.server == node and not s.moving),
                                  key=lambda s: s.name):
                dest = self.choose(state, load, node, site, service.quota)
                load[dest] = load.get(dest, 0.0) + service.quota
                actions.append(Migrate(service.name, dest, estimates={"load_after": round(load[dest], 4)}))
        return actions

    def choose(self, state, load, node, site, quota):
        green = [n for n, s in state.servers.items()
                 if s.role == "edge" and n != node and load[n] <= self.threshold]
        for same_site in (True, False):
            pool = sorted((n for n in green if (state.servers[n].site == site) == same_site),
                          key=lambda n: (load[n], n))
            if pool and load[pool[0]] + quota <= self.threshold:
                return pool[0]
        return self.cloud(state)
