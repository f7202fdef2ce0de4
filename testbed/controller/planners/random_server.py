"""Seed 002's random planner: on each handover, a server chosen at random (seeded)."""

from testbed.controller.planners.base import Migrate, Planner


class RandomPlanner(Planner):
    name = "random"

    def _pick(self, state):
        return self.rng.choice(sorted(state.servers))

    def initial_server(self, state, service, user):
        return self._pick(state)

    def on_handover(self, state, user, source, target):
        actions = []
        for service in state.services_of(user.name):
            dest = self._pick(state)
            if dest != service.server and not service.moving:
                actions.append(Migrate(service.name, dest))
        return actions
