"""Seed 000's equal-load baseline: spread containers over the least-loaded servers; never migrate."""

from testbed.controller.planners.base import Planner


class EqualLoadPlanner(Planner):
    name = "equal-load"

    def initial_server(self, state, service, user):
        load = {n: sum(1 for s in state.services.values() if s.server == n) / max(srv.cpus, 1e-9)
                for n, srv in state.servers.items() if srv.role == "edge"}
        return min(sorted(load), key=lambda n: (load[n], state.servers[n].cpu_util))
