"""A slower clock for every thread of a service: CPU bandwidth per thread.

A server of speed s < 1 (its compute over the fastest's) gives each container s x ``cpus``
host cores (``testbed.containers.server``).  That slows a service only as far as it keeps
those cores busy: detect on two threads, rarely both busy, took 1.13 times as long in
2 x (1 / 1.5) cores as in 2, where a server 1.5 times slower should take 1.5 times.  A
slower clock slows each thread.  cgroup v1 lets the threads of one process sit in different
cgroups of a hierarchy, so every thread of the container gets a child of the container's cpu
cgroup with s x period of quota each period: no thread runs more than s of the time,
whatever the others do, and the container's own quota still caps them together.

A thread created later starts in its creator's child and shares that quota until the next
``spread`` (the agent spreads at start, after a restore and on every resource report).
Before a checkpoint ``gather`` puts every thread back in the container's cgroup, so that
CRIU's images name that cgroup only, and a restore at another speed spreads afresh.
cgroup v2 would need the container's cgroup made "threaded", which Docker owns: there the
container's cores alone are scaled (``supported`` says why).
"""

from __future__ import annotations

import errno
from pathlib import Path

from testbed.containers.cgroups import CgroupError, ContainerCgroups

PREFIX = "thread-"


class ThreadQuota:
    def __init__(self, cgroups: ContainerCgroups, speed: float, period_us: int):
        self.speed = speed
        self.period_us = period_us
        self.reason = "cgroup v2: a thread cannot leave its process's cgroup there" if cgroups.v2 else None
        self.dir: Path | None = None if cgroups.v2 else cgroups.dir("cpu")

    @property
    def supported(self) -> bool:
        return self.dir is not None

    def quota_us(self) -> int:
        """s x period, and no more than the container's quota (v1 refuses a child more than its parent)."""
        quota = int(self.speed * self.period_us)
        container = int((self.dir / "cpu.cfs_quota_us").read_text())
        container_period = int((self.dir / "cpu.cfs_period_us").read_text())
        if container > 0:
            quota = min(quota, container * self.period_us // container_period)
        return max(1000, quota)

    def spread(self) -> int:
        """Every thread still in the container's own cgroup into a child of its own; children
        of threads that ended are removed.  Returns how many threads moved."""
        if self.dir is None:
            return 0
        quota, moved = self.quota_us(), 0
        for tid in _tids(self.dir / "tasks"):
            child = self.dir / f"{PREFIX}{tid}"
            try:
                child.mkdir(exist_ok=True)
                (child / "cpu.cfs_period_us").write_text(str(self.period_us))
                (child / "cpu.cfs_quota_us").write_text(str(quota))
                (child / "tasks").write_text(str(tid))
                moved += 1
            except OSError as exc:
                if exc.errno != errno.ESRCH:                # a thread that ended meanwhile
                    raise CgroupError(f"cannot give thread {tid} its quota in {child}: {exc}") from exc
                _remove(child)
        for child in self._children():
            if not _tids(child / "tasks"):
                _remove(child)
        return moved

    def gather(self) -> int:
        """Every thread back into the container's cgroup, the children removed.  Returns how
        many threads moved."""
        if self.dir is None:
            return 0
        moved = 0
        for child in self._children():
            for tid in _tids(child / "tasks"):
                try:
                    (self.dir / "tasks").write_text(str(tid))
                    moved += 1
                except OSError as exc:
                    if exc.errno != errno.ESRCH:
                        raise CgroupError(f"cannot move thread {tid} back to {self.dir}: {exc}") from exc
            _remove(child)
        return moved

    def threads(self) -> dict[str, int]:
        """How many threads have a quota of their own, and how many share the container's."""
        if self.dir is None:
            return {"own": 0, "shared": 0}
        return {"own": sum(len(_tids(c / "tasks")) for c in self._children()), "shared": len(_tids(self.dir / "tasks"))}

    def _children(self) -> list[Path]:
        return sorted(p for p in self.dir.glob(f"{PREFIX}*") if p.is_dir())


def _tids(tasks: Path) -> list[int]:
    try:
        return [int(line) for line in tasks.read_text().split()]
    except FileNotFoundError:
        return []


def _remove(child: Path) -> None:
    try:
        child.rmdir()
    except OSError:
        pass
