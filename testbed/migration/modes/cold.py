"""Cold migration: checkpoint (the container stops), transfer everything, restore."""

from testbed.migration.base import Migration, MigrationMode, checkpoint_size
from testbed.stopwatch import Stopwatch


def checkpoint_instance_layer(m: Migration, name: str, leave_running: bool):
    """Checkpoint the container and add its writable layer: the whole running state.

    Timed as phases ``<name>_quiesce`` (waiting, still serving, for a moment
    between two requests; option ``quiesce``, seconds, 0 to take any moment)
    and ``<name>_checkpoint`` (frozen, being dumped)."""
    target = m.workdir / name
    frozen = quiesce(m, name)
    steps = Stopwatch()
    with m.phase(f"{name}_checkpoint"):
        m.containers.checkpoint(m.source_instance, target, leave_running=leave_running, frozen=frozen, steps=steps)
        if not leave_running:
            m.final_images = target
        m.containers.export_rw_layer(m.source_instance.container_id, target / "rootfs-diff.tar")
        steps.lap("rw_layer")
    m.record.setdefault("checkpoint_steps", {})[name] = steps.laps
    return target


def quiesce(m: Migration, name: str):
    """Phase ``<name>_quiesce``: wait (still serving) for a moment between two requests, then
    freeze the container; the record says whether the moment came.  Returns the freezer."""
    with m.phase(f"{name}_quiesce"):
        frozen, idle = m.containers.freeze_when_idle(m.source_instance, m.options.quiesce)
    m.record.setdefault("quiesced", {})[name] = idle
    return frozen


class Cold(MigrationMode):
    name = "cold"

    def final(self, m: Migration):
        images = checkpoint_instance_layer(m, "final", leave_running=False)
        m.size("final_checkpoint", checkpoint_size(images))
        return m.send_and_restore("final", images)
