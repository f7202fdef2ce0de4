"""Seed 004's Algorithm II (energy-saving): services leave an overloaded node for the *busiest*
edge node their profile still fits on, so that lightly loaded nodes can be switched off; else the cloud."""

from testbed.controller.planners.green_first import GreenFirstPlanner


class EcoPlanner(GreenFirstPlanner):
    name = "eco"

    def choose(self, state, load, node, site, quota):
        edges = sorted((n for n, s in state.servers.items() if s.role == "edge" and n != node),
                       key=lambda n: (-load[n], n))
        for candidate in edges:
            if load[candidate] + quota <= self.threshold:
                return candidate
        return self.cloud(state)
