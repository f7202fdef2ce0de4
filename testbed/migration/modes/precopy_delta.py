"""Seed 002's delta checkpoint: pre-copy the full state, then only its change.

Pre-migration: a full checkpoint while the container keeps running, shipped
ahead.  Migration: a second checkpoint (the container stops); only the
difference to the first crosses the WAN, computed at the source against its
copy of what the destination holds, by the delta encoder the experiment names
(``pages`` by default, or ``rsync``; see ``testbed.migration.delta``).  The
destination applies it to the first checkpoint and restores.  Without
soft-dirty tracking in the kernel this is how a delta is made (CRIU pre-dump
would need it).

Iterative pre-copy (option ``precopy_rounds`` > 1), as the literature's
pre-copy: after the full checkpoint, further rounds (the service still
running) each ship the delta since the round before, which the destination
applies to what it holds, while the deltas still shrink by ``min_shrink``; the
downtime's delta is then taken against the latest round.  The record lists
every round's size (``precopy_rounds``).

The pre-copy takes at most ``precopy_share`` of the path's bandwidth (TCP
pacing at the source's socket): a model service's checkpoint would otherwise
fill the link the user's own requests cross, and time them out.  The delta in
the downtime goes at full speed.

Option ``postcopy``: the downtime ends before the memory has come.  The final
checkpoint is a lazy one (``testbed.migration.modes.postcopy``); the service
resumes at the destination, which takes each page from the pre-copied
checkpoint it holds unless the page changed since, in which case the source
sends it (comparing what CRIU serves with its own copy of that checkpoint).
"""

import shutil

from pydantic import Field, field_validator, model_validator

from testbed.migration.base import Migration, MigrationMode, checkpoint_size
from testbed.migration.delta import encoder
from testbed.migration.modes.cold import checkpoint_instance_layer
from testbed.migration.modes.postcopy import PostcopyOptions, lazy_final
from testbed.registry import DELTA_ENCODERS


class DeltaOptions(PostcopyOptions):
    postcopy: bool = Field(default=False, description=(
        "resume at the destination before the memory has come, then send the pages changed since "
        "the pre-copy (post-copy after a pre-copy; page_timeout and prepaging_window_mb apply)"))
    prepaging_window_mb: float = Field(default=32.0, ge=0, description=(
        "with postcopy: MB of page requests in flight (most answers are a bitmap: the pages are here)"))
    delta: str = Field(default="pages", description="delta encoder (testbed.migration.delta)")
    precopy_rounds: int = Field(default=1, ge=1, le=10, description=(
        "most pre-copy rounds: the full checkpoint, then deltas since the round before"))
    precopy_share: float = Field(default=1.0, gt=0.0, le=1.0, description=(
        "share of the path's bandwidth the pre-copy may take (TCP pacing), e.g. 0.8 to leave the "
        "user's requests over the same link theirs; 1: as fast as the path goes (the paper)"))
    min_shrink: float = Field(default=0.2, ge=0.0, lt=1.0, description=(
        "another round only while each delta is at least this fraction smaller than the round before"))

    @field_validator("delta")
    @classmethod
    def _known_encoder(cls, name):
        DELTA_ENCODERS.get(name)
        return name

    @model_validator(mode="after")
    def _relay_for_postcopy(self):
        if self.postcopy and self.prepaging_window_mb <= 0:
            raise ValueError("prepaging_window_mb must be above 0 with postcopy (only the relay takes "
                             "unchanged pages from the pre-copy)")
        return self


class PrecopyDelta(MigrationMode):
    name = "precopy-delta"
    pre_copies = True
    Options = DeltaOptions

    def restores_lazily(self, options: DeltaOptions) -> bool:
        return options.postcopy

    def pre(self, m: Migration):
        m.base_images = checkpoint_instance_layer(m, "pre", leave_running=True)
        full = checkpoint_size(m.base_images)
        m.size("pre_checkpoint", full)
        pace = m.pace(m.options.precopy_share)
        sent = m.send("pre_transfer", "base", m.base_images, pace=pace)
        rounds = [{"round": 1, "checkpoint": full, "sent": sent["bytes"]}]
        m.record["precopy_rounds"] = rounds
        for number in range(2, m.options.precopy_rounds + 1):
            name = f"pre{number}"
            images = checkpoint_instance_layer(m, name, leave_running=True)
            delta_dir = m.workdir / f"{name}-delta"
            with m.phase(f"{name}_delta"):
                delta = encoder(m.options.delta).encode(images, m.base_images, delta_dir / "delta")
            sent = m.send_and_apply(f"{name}_transfer", f"{name}-delta", delta_dir, [delta_dir / "delta"],
                                    base_slot=f"{m.id}-base", delta_encoder=m.options.delta, pace=pace)
            shutil.rmtree(m.base_images, ignore_errors=True)
            shutil.rmtree(delta_dir, ignore_errors=True)
            m.base_images = images                      # what the destination holds now
            rounds.append({"round": number, "checkpoint": checkpoint_size(images), "delta": delta["bytes"],
                           "delta_raw": delta["raw_bytes"], "sent": sent["bytes"]})
            if delta["bytes"] > (1 - m.options.min_shrink) * (rounds[-2].get("delta") or full):
                break                                   # no longer shrinking: the downtime's delta next

    def final(self, m: Migration):
        if m.options.postcopy:
            return lazy_final(m, base_slot=f"{m.id}-base")
        images = checkpoint_instance_layer(m, "final", leave_running=False)
        m.size("final_checkpoint", checkpoint_size(images))
        with m.phase("delta"):
            delta = encoder(m.options.delta).encode(images, m.base_images, m.workdir / "delta" / "delta")
        m.size("delta", delta["bytes"])
        m.size("delta_raw", delta["raw_bytes"])
        m.record["delta_encoder"] = m.options.delta
        return m.send_and_restore("delta", m.workdir / "delta", [m.workdir / "delta" / "delta"],
                                  base_slot=f"{m.id}-base", delta_encoder=m.options.delta)
