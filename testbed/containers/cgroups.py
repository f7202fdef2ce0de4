"""A container's cgroups, read from inside a Mininet node.

Mininet's ``mnexec -n`` gives every node its own mount namespace with a fresh
sysfs, so ``/sys/fs/cgroup`` is empty there, and an agent that looked there
would see no CPU or memory in use at all.  runc's state.json names each
controller's directory; the Docker engine's root (``/proc/<dockerd>/root``)
shows it from any mount namespace.  cgroup v1 (a directory per controller) and
v2 (one unified directory) alike.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


class CgroupError(RuntimeError):
    pass


class ContainerCgroups:
    def __init__(self, runc_state: Path, engine_root: Path):
        try:
            self.paths: dict[str, str] = json.loads(Path(runc_state).read_text())["cgroup_paths"]
        except (OSError, ValueError, KeyError) as exc:
            raise CgroupError(f"no cgroup paths in {runc_state}: {exc}") from exc
        self.engine_root = Path(engine_root)
        self.v2 = set(self.paths) == {""}        # v2: one unified directory, named ""

    def dir(self, v1_controller: str) -> Path:
        """The directory of a v1 controller (e.g. ``cpuacct``), or the unified one on v2."""
        path = self.paths.get("" if self.v2 else v1_controller)
        if not path:
            raise CgroupError(f"no {v1_controller} cgroup among {sorted(self.paths)}")
        directory = self.engine_root / path.lstrip("/")
        if not directory.is_dir():
            raise CgroupError(f"{directory} does not exist")
        return directory


class CgroupMeter:
    """CPU and memory of one container from its cgroup, without ``docker stats``
    (which takes a second or two per call)."""

    def __init__(self, cgroups: ContainerCgroups):
        self.v2 = cgroups.v2
        self.cpu_file = cgroups.dir("cpuacct") / ("cpu.stat" if self.v2 else "cpuacct.usage")
        self.memory_file = cgroups.dir("memory") / ("memory.current" if self.v2 else "memory.usage_in_bytes")
        self.last: tuple[float, int] | None = None

    def cpu_usage_ns(self) -> int:
        text = self.cpu_file.read_text()
        if not self.v2:
            return int(text)
        usage = next(line for line in text.splitlines() if line.startswith("usage_usec"))
        return int(usage.split()[1]) * 1000

    def memory_bytes(self) -> int:
        return int(self.memory_file.read_text())

    def anonymous_bytes(self) -> int:
        """Memory that only the processes hold (no page cache): what a leak makes grow."""
        key = "anon" if self.v2 else "total_rss"
        for line in (self.memory_file.parent / "memory.stat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
        raise CgroupError(f"no {key} in {self.memory_file.parent / 'memory.stat'}")

    def cpu_cores(self) -> float | None:
        """Cores used since the previous call (None on the first)."""
        usage, now = self.cpu_usage_ns(), time.monotonic()
        previous, self.last = self.last, (now, usage)
        if previous is None or now <= previous[0]:
            return None
        return (usage - previous[1]) / 1e9 / (now - previous[0])
