"""Seed 000's processing-only baseline: slow containers go where processing is fastest."""

from testbed.controller.planners.base import Migrate
from testbed.controller.planners.shareon import ShareOnPlanner


class ProcessingOnlyPlanner(ShareOnPlanner):
    name = "processing-only"

    def on_tick(self, state):
        actions = []
        for service in sorted(state.services.values(), key=lambda s: s.name):
            if not self.settled(state, service) or not self.slow(state, service):
                continue
            best = min(sorted(state.servers), key=lambda n: (self.model.processing(state, service, n), n))
            if best != service.server:
                actions.append(self.moved(state, Migrate(service.name, best, estimates={
                    "processing_s": self.model.processing(state, service, best)})))
        return actions
