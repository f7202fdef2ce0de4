"""Seed 000's bandwidth-only baseline: slow containers go where the inter-edge bandwidth is largest."""

from testbed.controller.planners.base import Migrate
from testbed.controller.planners.shareon import ShareOnPlanner


class BandwidthOnlyPlanner(ShareOnPlanner):
    name = "bandwidth-only"

    def on_tick(self, state):
        actions = []
        for service in sorted(state.services.values(), key=lambda s: s.name):
            if not self.settled(state, service) or not self.slow(state, service):
                continue
            others = [n for n in sorted(state.servers) if n != service.server]
            best = max(others, key=lambda n: (state.network.bandwidth(service.server, n),
                                              -state.network.one_way(service.server, n), n))
            actions.append(self.moved(state, Migrate(service.name, best, estimates={
                "bandwidth_mbps": state.network.bandwidth(service.server, best)})))
        return actions
