"""Seed 000's processing-only baseline: slow containers go where processing is fastest."""

from testbed.controller.planners.base import Migrate
from testbed.controller.planners.shareon import ShareOnPlanner


class ProcessingOnlyPlanner(ShareOnPlanner):
    name = "processing-only"

    def on_tick(self, state):
        actions = []
        for service in sorted(state.services.values(), key=lambda s: s.name):
            if service.moving or self.model.measured(state, service) <= self.p.app_threshold:
                continue
            best = min(sorted(state.servers), key=lambda n: (self.model.processing(state, service, n), n))
            if best != service.server:
                actions.append(Migrate(service.name, best, estimates={
                    "processing_s": self.model.processing(state, service, best)}))
        return actions
