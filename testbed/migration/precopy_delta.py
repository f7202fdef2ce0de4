"""Seed 002's delta checkpoint: pre-copy the full state, then only its change.

Pre-migration: a full checkpoint while the container keeps running, shipped
ahead.  Migration: a second checkpoint (the container stops); only the
difference to the first crosses the WAN, as an rsync batch (rsync's delta
algorithm, computed at the source against its copy of what the destination
holds).  The destination replays the batch onto the first checkpoint and
restores.  Without soft-dirty tracking in the kernel this is how a delta is
made (CRIU pre-dump would need it).
"""

from testbed.migration.base import Migration, MigrationMode, checkpoint_size
from testbed.migration.cold import checkpoint_instance_layer
from testbed.migration.transfer import delta_batch, push_files


class PrecopyDelta(MigrationMode):
    name = "precopy-delta"

    def pre(self, m: Migration):
        with m.phase("pre_checkpoint"):
            m.base_images = checkpoint_instance_layer(m, "pre", leave_running=True)
        m.size("pre_checkpoint", checkpoint_size(m.base_images))
        with m.phase("pre_transfer"):
            sent = push_files(m.agent.data_address(m.dest), m.spec.service, m.id + "-base", m.base_images)
        m.count("before_downtime", sent["bytes"])

    def final(self, m: Migration):
        with m.phase("final_checkpoint"):
            images = checkpoint_instance_layer(m, "final", leave_running=False)
        m.size("final_checkpoint", checkpoint_size(images))
        with m.phase("delta"):
            batch = delta_batch(images, m.base_images, m.workdir / "delta" / "batch")
        m.size("delta", batch["bytes"])
        with m.phase("final_transfer"):
            sent = push_files(m.agent.data_address(m.dest), m.spec.service, m.id + "-delta",
                              m.workdir / "delta", [m.workdir / "delta" / "batch"])
        m.count("during_downtime", sent["bytes"])
        with m.phase("restore"):
            result = m.peer.call("restore", service=m.spec.service, migration=m.id, slot=m.id + "-base",
                                 delta_slot=m.id + "-delta", timeout=300)
        return m.agent.instance_from(result)
