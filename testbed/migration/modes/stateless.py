"""Stateless migration (seed 004): a fresh container at the destination, no state carried."""

from testbed.containers.server import Instance
from testbed.migration.base import Migration, MigrationMode


class Stateless(MigrationMode):
    name = "stateless"
    carries_state = False

    def final(self, m: Migration):
        with m.phase("stop_source"):
            m.containers.stop(m.source_instance.container_id)
        with m.phase("restore"):
            result = m.peer.call("start_fresh", service=m.spec.service, migration=m.id, timeout=300)
        return Instance(**result)
