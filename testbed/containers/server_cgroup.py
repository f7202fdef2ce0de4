"""An emulated server's share of the host: a cgroup that all its load runs under.

Every server gets ``/<controller>/mec-testbed/<prefix><server>`` (the prefix of
its network, ``tb-`` for network 0: ``/mec-testbed/tb-edge1``; cgroup v1: cpu,
cpuacct, memory; v2: one unified directory).  Its CPU bandwidth is the server's
``cpus`` times its *speed* (``compute / max compute`` of the topology) host
cores, and its memory limit the server's ``memory``: service containers
(Docker's ``cgroup_parent``), background load and the CPU benchmark all run
under it, so they contend with each other as on one machine, and a server of
compute 1.0 next to one of 2.0 processes at half the rate.

What this cannot model: the speed of one core (a single-threaded task on a
server slower than the fastest is slowed by CFS bandwidth throttling, in
slices of a 10 ms period, not by a slower clock;
a task that starts when its server was idle runs on a fresh quota for a moment, so
bursty requests on a throttled server come out up to about 10 % faster than its
compute says), cache and memory
bandwidth, and more cores than the host has (a server offering more than
the host's cores only contends with the others on the host's).

Paths are reached through the Docker engine's root (``/proc/<dockerd>/root``),
as ``testbed.containers.cgroups`` does: agents run in Mininet nodes, whose
mount namespace has no cgroup mounts.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

from testbed.containers.cgroups import CgroupError
from testbed.net.namespaces import ALL, current_network, name_prefix, network_of

PARENT = "mec-testbed"
PERIOD_US = 10_000        # as the containers' (testbed.containers.server.CPU_PERIOD_US)
CONTROLLERS_V1 = ("cpu", "cpuacct", "memory")


def hierarchy(engine_root: Path) -> Path:
    return Path(engine_root) / "sys" / "fs" / "cgroup"


def _v1_mount(root: Path, controller: str) -> Path:
    """The v1 hierarchy holding ``controller`` (``cpu``, or a co-mount such as ``cpu,cpuacct``)."""
    direct = root / controller
    if direct.is_dir():
        return direct
    for entry in sorted(root.iterdir()):
        if controller in entry.name.split(","):
            return entry
    raise CgroupError(f"no cgroup v1 hierarchy for {controller} under {root}")


class ServerCgroup:
    def __init__(self, server: str, engine_root: Path):
        self.server = server
        self.name = name_prefix() + server
        self.root = hierarchy(engine_root)
        self.v2 = (self.root / "cgroup.controllers").exists()
        if self.v2:
            self.dirs = {"": self.root / PARENT / self.name}
        else:
            self.dirs = {c: _v1_mount(self.root, c) / PARENT / self.name for c in CONTROLLERS_V1}
        self._last: tuple[float, int] | None = None
        self.cores: float | None = None        # the server's share of the host, once created

    @property
    def parent(self) -> str:
        """Docker's ``cgroup_parent`` for this server's containers."""
        return f"/{PARENT}/{self.name}"

    def _dir(self, controller: str, child: str | None = None) -> Path:
        base = self.dirs["" if self.v2 else controller]
        return base / child if child else base

    # -- set-up ---------------------------------------------------------------------------
    def create(self, cores: float, memory_bytes: int) -> None:
        """The server's cgroup with ``cores`` host cores of CPU bandwidth and its memory limit."""
        if self.v2:
            for path in (self.root / PARENT, self.dirs[""]):
                path.mkdir(exist_ok=True)
                (path.parent / "cgroup.subtree_control").write_text("+cpu +memory")
        for path in self.dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        self._limit(None, cores, memory_bytes)
        self.cores = cores

    def _limit(self, child: str | None, cores: float | None, memory_bytes: int | None = None) -> None:
        if child is not None and cores is not None and self.cores is not None:
            cores = min(cores, self.cores)        # a child cannot have more than its server
        quota = None if cores is None else max(1000, int(cores * PERIOD_US))
        if self.v2:
            directory = self._dir("", child)
            if quota is not None:
                (directory / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            if memory_bytes is not None:
                (directory / "memory.max").write_text(str(int(memory_bytes)))
            return
        if quota is not None:
            (self._dir("cpu", child) / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self._dir("cpu", child) / "cpu.cfs_quota_us").write_text(str(quota))
        if memory_bytes is not None:
            (self._dir("memory", child) / "memory.limit_in_bytes").write_text(str(int(memory_bytes)))

    def remove(self) -> None:
        """Remove the server's cgroup (its containers must be gone: the kernel refuses a busy one)."""
        for path in self.dirs.values():
            _rmdir_tree(path)

    # -- what runs in it ----------------------------------------------------------------------
    def run(self, child: str, args: list[str], cores: float, **popen) -> subprocess.Popen:
        """Start ``args`` in a child cgroup limited to ``cores`` host cores (from its first instruction)."""
        for controller in (("",) if self.v2 else ("cpu", "cpuacct", "memory")):
            self._dir(controller, child).mkdir(parents=True, exist_ok=True)
        self._limit(child, cores)
        procs = [self._dir(c, child) / "cgroup.procs" for c in (("",) if self.v2 else ("cpu", "cpuacct", "memory"))]

        def enter():
            for path in procs:
                path.write_text(str(os.getpid()))

        return subprocess.Popen(args, preexec_fn=enter, **popen)

    def usage_ns(self) -> int:
        if self.v2:
            stat = (self.dirs[""] / "cpu.stat").read_text()
            return int(next(line for line in stat.splitlines() if line.startswith("usage_usec")).split()[1]) * 1000
        return int((self.dirs["cpuacct"] / "cpuacct.usage").read_text())

    def memory_bytes(self) -> int:
        name = "memory.current" if self.v2 else "memory.usage_in_bytes"
        return int((self._dir("memory") / name).read_text())

    def cores_used(self) -> float | None:
        """Host cores the server used since the previous call (None on the first)."""
        usage, now = self.usage_ns(), time.monotonic()
        previous, self._last = self._last, (now, usage)
        if previous is None or now <= previous[0]:
            return None
        return (usage - previous[1]) / 1e9 / (now - previous[0])

    def benchmark(self, seconds: float, cores: float) -> dict:
        """A CPU-bound loop given ``cores`` of this server (its sysbench, as seed 002 measures
        C_s): operations per wall second, the share of a core the kernel granted it
        (CPU time over wall time), operations per CPU second (the host core's speed) and
        when the loop ran (``start``, ``end``: wall time)."""
        process = self.run("benchmark", [sys.executable, "-c", BENCHMARK, str(seconds)], cores,
                           stdout=subprocess.PIPE, text=True)
        out, _ = process.communicate(timeout=seconds + 30)
        self._remove_child("benchmark")
        count, cpu_s, wall_s, began = (float(word) for word in out.split())
        return {"ops_per_s": count / wall_s, "cpu_share": cpu_s / wall_s, "ops_per_cpu_s": count / max(cpu_s, 1e-9),
                "start": began, "end": began + wall_s}

    def burn(self, share_cores: float) -> list[subprocess.Popen]:
        """Background load: busy loops using ``share_cores`` host cores of this server."""
        count = max(1, math.ceil(share_cores))
        return [self.run("load", [sys.executable, "-c", "while True: pass"], share_cores,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(count)]

    def stop_load(self, processes: list[subprocess.Popen]) -> None:
        for process in processes:
            process.kill()
            process.wait()
        self._remove_child("load")

    def _remove_child(self, child: str) -> None:
        for controller in (("",) if self.v2 else ("cpu", "cpuacct", "memory")):
            _rmdir_tree(self._dir(controller, child))


BENCHMARK = """
import sys, time
began, start, cpu_start = time.time(), time.perf_counter(), time.process_time()
deadline = start + float(sys.argv[1])
count = 0
while time.perf_counter() < deadline:
    for _ in range(1000):
        count += 1
print(count, time.process_time() - cpu_start, time.perf_counter() - start, repr(began))
"""


def _rmdir_tree(path: Path) -> None:
    """rmdir a cgroup and its children, deepest first (cgroup directories hold no files to delete)."""
    if not path.is_dir():
        return
    for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            child.rmdir()
        except OSError:
            pass
    try:
        path.rmdir()
    except OSError:
        pass


def _tops(engine_root: Path) -> list[Path]:
    root = hierarchy(engine_root)
    if (root / "cgroup.controllers").exists():
        return [root / PARENT]
    return [mount / PARENT for mount in sorted(root.iterdir()) if mount.is_dir() and not mount.is_symlink()]


def _server_dirs(engine_root: Path, network: int | str | None) -> list[Path]:
    """Server cgroups of ``network`` (default: this process's; ``ALL``: every one)."""
    network = current_network() if network is None else network
    return [path for top in _tops(engine_root) if top.is_dir() for path in sorted(top.iterdir())
            if path.is_dir() and (network == ALL or network_of(path.name) == network)]


def remove_all(engine_root: Path, network: int | str | None = None) -> list[str]:
    """Every server cgroup of ``network`` on this host, in every hierarchy (Docker makes the
    parent in each one for its containers); returns the cgroups that went."""
    removed = set()
    for path in _server_dirs(engine_root, network):
        removed.add(path.name)
        _rmdir_tree(path)
    for top in _tops(engine_root):
        if network == ALL and top.is_dir():
            _rmdir_tree(top)
    return sorted(removed)


def leftover(engine_root: Path, network: int | str | None = None) -> list[str]:
    """Server cgroups of ``network`` still on this host (``testbed clean`` finds them)."""
    return sorted({path.name for path in _server_dirs(engine_root, network)})
