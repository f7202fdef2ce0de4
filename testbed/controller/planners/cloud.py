"""Seed 002's cloud planner: every service on the cloud, never migrated."""

from testbed.controller.planners.base import Planner


class CloudPlanner(Planner):
    name = "cloud"

    def initial_server(self, state, service, user):
        return next(s.name for s in state.servers.values() if s.role == "cloud")
