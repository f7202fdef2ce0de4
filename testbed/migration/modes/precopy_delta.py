"""Seed 002's delta checkpoint: pre-copy the full state, then only its change.

Pre-migration: a full checkpoint while the container keeps running, shipped
ahead.  Migration: a second checkpoint (the container stops); only the
difference to the first crosses the WAN, computed at the source against its
copy of what the destination holds, by the delta encoder the experiment names
(``pages`` by default, or ``rsync``; see ``testbed.migration.delta``).  The
destination applies it to the first checkpoint and restores.  Without
soft-dirty tracking in the kernel this is how a delta is made (CRIU pre-dump
would need it).
"""

from pydantic import Field, field_validator

from testbed.migration.base import Migration, MigrationMode, MigrationOptions, checkpoint_size
from testbed.migration.delta import encoder
from testbed.migration.modes.cold import checkpoint_instance_layer
from testbed.registry import DELTA_ENCODERS


class DeltaOptions(MigrationOptions):
    delta: str = Field(default="pages", description="delta encoder (testbed.migration.delta)")

    @field_validator("delta")
    @classmethod
    def _known_encoder(cls, name):
        DELTA_ENCODERS.get(name)
        return name


class PrecopyDelta(MigrationMode):
    name = "precopy-delta"
    Options = DeltaOptions

    def pre(self, m: Migration):
        m.base_images = checkpoint_instance_layer(m, "pre", leave_running=True)
        m.size("pre_checkpoint", checkpoint_size(m.base_images))
        m.send("pre_transfer", "base", m.base_images)

    def final(self, m: Migration):
        images = checkpoint_instance_layer(m, "final", leave_running=False)
        m.size("final_checkpoint", checkpoint_size(images))
        with m.phase("delta"):
            delta = encoder(m.options.delta).encode(images, m.base_images, m.workdir / "delta" / "delta")
        m.size("delta", delta["bytes"])
        m.size("delta_raw", delta["raw_bytes"])
        m.record["delta_encoder"] = m.options.delta
        return m.send_and_restore("delta", m.workdir / "delta", [m.workdir / "delta" / "delta"],
                                  base_slot=f"{m.id}-base", delta_encoder=m.options.delta)
