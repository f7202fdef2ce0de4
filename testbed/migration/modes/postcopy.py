"""Post-copy migration (CRIU lazy pages): the service resumes before its memory has arrived.

At the source, CRIU dumps everything but the memory pages and keeps the stopped
processes to serve those pages from a page server on the source's address.  The
small images and the writable layer cross the WAN; the destination's agent
starts CRIU's lazy-pages daemon, which fetches each page the service touches
over the emulated network when it faults, and restores under the post-copy
runtime (``testbed.containers.lazy`` and ``criu``).  Once the service runs, the
destination pulls the rest ahead of the faults (``prepaging_window_mb``;
``testbed.containers.prepaging``).  Recorded: the time to resume (the
``restore`` phase) and the time until the last page arrived (``postcopy_pages``,
after the downtime), with the bytes that crossed then (``bytes.after_downtime``).

The source must live until the last page has gone.  When the page server fails
first, the migration fails and its record says so (``ok`` False,
``postcopy_lost``): the restored copy, which cannot run without the missing
pages, is removed, and the processes at the source, whole (CRIU had only
stopped them), run on there.  A source server lost outright takes the pages
still there with it: the service is lost.  Should CRIU put every page into the
checkpoint (seen once, cause unknown), the move was a stop-and-copy and its record
says so (``postcopy_eager``).

After a pre-copy (``precopy-delta`` with option ``postcopy``, ``lazy_final``
with a base), both ends hold the pre-copied checkpoint and only the pages that
changed since cross: the source compares each page CRIU serves with it
(``testbed.containers.prepaging.serve_delta``), as the kernel here cannot track
written pages (soft-dirty).
"""

from pydantic import Field

from testbed.containers.criu_images import PAGE
from testbed.containers.lazy import free_address
from testbed.migration.base import Migration, MigrationMode, MigrationOptions, checkpoint_size
from testbed.migration.modes.cold import quiesce


class PostcopyOptions(MigrationOptions):
    """What a post-copy needs (this mode, and ``precopy-delta`` with ``postcopy``)."""

    page_timeout: float = Field(default=600.0, gt=0, description=(
        "longest wait (s) for the last page after the restore; the migration fails past it"))
    prepaging_window_mb: float = Field(default=2.0, ge=0, description=(
        "MB of page requests the destination keeps in flight to pull every page ahead of the "
        "faults (about the link's bandwidth-delay product fills it); 0: CRIU's own pace, "
        "pages on fault and one 64 kB-4 MB background request per round trip"))


class Postcopy(MigrationMode):
    name = "postcopy"
    lazy_restore = True
    Options = PostcopyOptions

    def final(self, m: Migration):
        return lazy_final(m)


def lazy_final(m: Migration, base_slot: str | None = None):
    """The downtime of a post-copy: a lazy checkpoint, its small images and the writable
    layer to the destination, the restore, then the pages (phase ``postcopy_pages``).
    ``base_slot``: the destination holds ``m.base_images`` there (pre-copied)."""
    page_server = free_address(m.source.address_towards(m.dest))
    target = m.workdir / "final"
    frozen = quiesce(m, "final")
    base = m.base_images if base_slot is not None else None
    with m.phase("final_checkpoint"):
        lazy = m.containers.checkpoint_lazy(m.source_instance, target, page_server, frozen=frozen, base=base)
    try:
        with m.phase("final_rw_layer"):
            m.containers.export_rw_layer(m.source_instance.container_id, target / "rootfs-diff.tar")
        m.size("final_checkpoint", checkpoint_size(target))
        instance = m.send_and_restore("final", target, lazy_from=page_server,
                                      prepaging_window=int(m.options.prepaging_window_mb * 1e6),
                                      **({"lazy_base_slot": base_slot} if base_slot is not None else {}))
    except Exception:
        lazy.abandon()          # the processes run on at the source (and are resumed there)
        raise
    with m.phase("postcopy_pages"):
        pages = lazy.wait(m.options.page_timeout)
    m.size("lazy_pages", pages["lazy_bytes"])
    if not pages["lazy_bytes"]:
        # CRIU's dump log counts no lazy page: the memory went into the checkpoint, so this
        # move was a stop-and-copy; say so rather than let it pass for a post-copy
        m.record["postcopy_eager"] = True
    if not pages["ok"]:
        m.record["postcopy_lost"] = True
        raise RuntimeError(f"post-copy of {m.spec.service}: the pages did not all arrive ({pages['error']})")
    sent = pages.get("sent")
    if sent:
        m.size("lazy_changed", sent["changed_pages"] * PAGE)
        m.count("after_downtime", sent["bytes"])
    else:
        m.count("after_downtime", pages["lazy_bytes"])
    return instance
