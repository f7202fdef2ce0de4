"""Cold migration: checkpoint (the container stops), transfer everything, restore."""

from testbed.migration.base import Migration, MigrationMode, checkpoint_size


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
        return m.send_and_restore("final", images)
