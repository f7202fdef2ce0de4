"""Cold migration: checkpoint (the container stops), transfer everything, restore."""

from testbed.migration.base import Migration, MigrationMode, checkpoint_size
from testbed.migration.transfer import push_files


def checkpoint_instance_layer(m: Migration, name: str, leave_running: bool):
    """Checkpoint the container and add its writable layer: the whole running state."""
    target = m.workdir / name
    m.containers.checkpoint(m.source_instance, target, leave_running=leave_running)
    if not leave_running:
        m.final_images = target
    m.containers.export_rw_layer(m.source_instance.container_id, target / "rootfs-diff.tar")
    return target


class Cold(MigrationMode):
    name = "cold"

    def final(self, m: Migration):
        with m.phase("final_checkpoint"):
            images = checkpoint_instance_layer(m, "final", leave_running=False)
        m.size("final_checkpoint", checkpoint_size(images))
        with m.phase("final_transfer"):
            sent = push_files(m.agent.data_address(m.dest), m.spec.service, m.id + "-final", images)
        m.count("during_downtime", sent["bytes"])
        with m.phase("restore"):
            result = m.peer.call("restore", service=m.spec.service, migration=m.id,
                                 slot=m.id + "-final", timeout=300)
        return m.agent.instance_from(result)
