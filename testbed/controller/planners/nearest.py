"""Seed 002's nearest planner: on each handover, the edge server nearest to the user."""

from testbed.controller.planners.base import Migrate, Planner


class NearestPlanner(Planner):
    name = "nearest"

    def on_handover(self, state, user, source, target):
        where = user.position or state.stations[target].position
        dest = state.nearest_server(where)
        return [Migrate(s.name, dest) for s in state.services_of(user.name)
                if s.server != dest and not s.moving]
