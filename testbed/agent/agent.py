"""``Agent``: the parts of a server's agent behind one remote interface."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from testbed.agent.config import AgentConfig
from testbed.agent.deployment import Deployment
from testbed.agent.destination import DestinationSide
from testbed.agent.layers import LayerStore
from testbed.agent.monitor import ResourceMonitor
from testbed.agent.source import SourceSide
from testbed.containers.server import ServerContainers, engine_pid
from testbed.containers.server_cgroup import ServerCgroup
from testbed.events import EventLog
from testbed.migration.base import ContainerSpec
from testbed.net.namespaces import network_socket


def management_socket(server: str) -> str:
    """Unix socket on which the runner (outside the emulated network) manages an agent."""
    return network_socket("agents", server)


class Agent:
    # What other processes may call (controller, peer agents, the runner); anything else is refused.
    REMOTE = ("ping", "deploy", "remove", "instances_here", "resources", "migrate", "probe_checkpoints",
              "prepare", "start_fresh", "abort", "install_layer", "has_layer", "benchmark_cpu",
              "benchmark_cpu_at", "load", "migrations_under_way")

    def __init__(self, config: AgentConfig, docker_client=None):
        self.config = config
        self.server = config.server
        self.cgroup = ServerCgroup(config.server, Path(f"/proc/{engine_pid()}/root"))
        self.cgroup.create(config.cpus * config.speed, int(config.memory))
        containers = ServerContainers(config.server, config.subnet, client=docker_client,
                                      congestion_control=config.congestion_control, inside=True,
                                      speed=config.speed, per_thread_quota=config.per_thread_quota,
                                      cgroup_parent=self.cgroup.parent,
                                      max_cores=self.cgroup.cores)
        state_dir = containers.state_dir
        # A fresh server: no application layers, no half-received state from a past run.
        for stale in ("incoming", "outgoing", "layers", "probe"):
            shutil.rmtree(state_dir / stale, ignore_errors=True)
        self.state_dir = state_dir
        self.inbox = state_dir / "incoming"
        self.events = EventLog(Path(config.run_dir) / "events.jsonl" if config.run_dir else None,
                               f"agent:{config.server}")
        self.deployment = Deployment(containers, self.events)
        self.layers = LayerStore(state_dir / "layers", containers.client)
        self.monitor = ResourceMonitor(self.deployment, config.cpus, config.speed, self.cgroup)
        self._load: list = []
        self.source = SourceSide(self.deployment, self.layers, config.peers, state_dir, config.peer_mbps)
        self.destination = DestinationSide(self.deployment, self.layers, self.inbox)

    # -- Deployment-S -------------------------------------------------------------------
    def ping(self) -> dict:
        return {"server": self.server, "time": time.time(), "services": sorted(self.deployment.instances)}

    def deploy(self, spec: dict) -> dict:
        """Start a fresh container of a service here; its record says where it answers
        and how large its image is."""
        container_spec = ContainerSpec.from_dict(spec)
        instance = self.deployment.deploy(container_spec)
        self.layers.install(container_spec.app)
        image = self.deployment.containers.client.images.get(container_spec.image)
        return {**instance.record(), "image_bytes": image.attrs["Size"]}

    def remove(self, service: str) -> bool:
        return self.deployment.remove(service)

    def instances_here(self) -> list[dict]:
        return [instance.record() for instance in self.deployment.running()]

    # -- Resource Monitor ------------------------------------------------------------------
    def resources(self) -> dict:
        return self.monitor.resources()

    # -- the server itself ----------------------------------------------------------------------
    def benchmark_cpu(self, seconds: float = 0.5) -> dict:
        """Seed 002's C_s measurement (sysbench in the paper): a CPU-bound loop given one of
        this server's cores; ``ops_per_s`` and ``cpu_share`` scale with the server's compute
        (see ``testbed.controller.controller.relative_compute``)."""
        result = {"server": self.server, **self.cgroup.benchmark(seconds, cores=self.config.speed),
                  "configured_compute": self.config.compute, "speed": self.config.speed}
        self.events.emit("server.benchmark", **result)
        return result

    def benchmark_cpu_at(self, slots: list[tuple[float, float]]) -> list[dict]:
        """``benchmark_cpu`` at given times: for each (wall time, seconds) slot, wait until
        it starts, then run.  Each result says when its loop ran (``start``, ``end``), so
        that the caller, who gave every server its own slots, can check none overlapped."""
        results = []
        for at, seconds in slots:
            time.sleep(max(0.0, at - time.time()))
            results.append(self.benchmark_cpu(seconds))
        return results

    def load(self, share: float, duration: float) -> dict:
        """Background load: busy loops using ``share`` of this server's cores for ``duration`` s
        (seed 004's red node from real contention); the Resource Monitor sees it."""
        if not 0 < share <= 1:
            raise ValueError(f"load share must be in (0, 1], got {share}")
        cores = share * self.config.cpus * self.config.speed
        processes = self.cgroup.burn(cores)
        self._load += processes
        self.events.emit("server.load", server=self.server, share=share, cores=round(cores, 4), duration=duration,
                         phase="start")

        def stop():
            self.cgroup.stop_load(processes)
            self.events.emit("server.load", server=self.server, share=share, phase="stop")

        timer = threading.Timer(duration, stop)
        timer.daemon = True
        timer.start()
        return {"server": self.server, "cores": cores, "processes": len(processes)}

    def shutdown(self) -> None:
        """Stop any load; the server's cgroup goes once its containers are gone (Stack, clean)."""
        for process in self._load:
            process.kill()

    # -- Migration: source side ---------------------------------------------------------------
    def migrate(self, service: str, dest: str, mode: str, phase: str = "all", migration_id: str | None = None,
                options: dict | None = None, final_at: float | None = None) -> dict:
        """Move ``service`` to ``dest``: phase 'prepare' (reserve the destination: its
        address is known from then on), 'pre', 'final', or 'all' (pre and final).
        ``options``: the mode's options (e.g. ``delta``, ``quiesce``).  With phase 'all',
        ``final_at`` (wall time) holds the migration phase until then: one order from
        the controller covers both phases, with no round trip between them."""
        return self.source.migrate(service, dest, mode, phase, migration_id, options, final_at)

    def migrations_under_way(self) -> dict[str, str]:
        """Service -> migration, for every migration of this server's services moving now
        (so a run that lost its controller can let them finish before the teardown)."""
        return self.source.migrations_under_way()

    def probe_checkpoints(self, service: str, options: dict | None = None) -> dict:
        """Seed 002's two checkpoints at t0 (sizes of the pre-migration state and its delta)."""
        return self.source.probe_checkpoints(service, options)

    # -- Migration: destination side --------------------------------------------------------------
    def prepare(self, spec: dict, migration: str, lazy: bool = False) -> dict:
        return self.destination.prepare(spec, migration, lazy)

    def start_fresh(self, service: str, migration: str) -> dict:
        return self.destination.start_fresh(service, migration)

    def abort(self, service: str, migration: str) -> bool:
        return self.destination.abort(service, migration)

    # -- application layers (seed 001) ---------------------------------------------------------
    def install_layer(self, app: str) -> bool:
        """Pre-install an app's application layer here (seed 001's "app found" case)."""
        self.layers.install(app)
        return True

    def has_layer(self, app: str) -> bool:
        return self.layers.has(app)
