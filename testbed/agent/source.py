"""The Migration module's source side (seed 002, Fig. 1): moving services away from here.

``SourceSide`` is the ``MigrationSource`` a ``Migration`` works through: the
peers it may talk to, where checkpoints are made, and the three outcomes for
the source container (released after a move, resumed after a failure, or the
destination's half fenced off when the destination does not answer).
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

from testbed import ports
from testbed.agent.deployment import Deployment
from testbed.agent.layers import LayerStore
from testbed.containers.server import (SERVER_LABEL, SERVICE_LABEL, Instance, network_filters, remove_container,
                                      server_state_dir)
from testbed.migration.base import ContainerSpec, Migration, checkpoint_size, mode
from testbed.migration.delta import encoder
from testbed.migration.modes.precopy_delta import DeltaOptions
from testbed.migration.transfer import DataChannel
from testbed.rpc import RpcClient


class SourceSide:
    def __init__(self, deployment: Deployment, layers: LayerStore, peers: dict[str, str], state_dir: Path,
                 peer_mbps: dict[str, float] | None = None):
        self.deployment = deployment
        self.server = deployment.server
        self.containers = deployment.containers
        self.events = deployment.events
        self.layers = layers
        self.peers = dict(peers)
        self.peer_mbps = dict(peer_mbps or {})
        self.outgoing = state_dir / "outgoing"
        self.probes = state_dir / "probe"
        self.migrations: dict[str, Migration] = {}
        self.under_way: dict[str, str] = {}       # service -> migration whose pre or final phase runs now
        self._peer_clients: dict[str, RpcClient] = {}
        self._channels: dict[str, DataChannel] = {}
        self._lock = threading.RLock()
        self._checkpointing: dict[str, threading.Lock] = {}    # service -> held while it is checkpointed

    def _checkpoint_lock(self, service: str) -> threading.Lock:
        with self._lock:
            return self._checkpointing.setdefault(service, threading.Lock())

    # -- MigrationSource ------------------------------------------------------------
    def peer(self, server: str) -> RpcClient:
        if server not in self.peers:
            raise KeyError(f"{self.server} knows no server {server!r} (peers: {', '.join(self.peers)})")
        with self._lock:
            if server not in self._peer_clients:
                self._peer_clients[server] = RpcClient((self.peers[server], ports.AGENT_RPC), timeout=300)
            return self._peer_clients[server]

    def channel(self, server: str) -> DataChannel:
        """The kept-open data connection(s) to ``server``'s receiver."""
        with self._lock:
            if server not in self._channels:
                self._channels[server] = DataChannel((self.peers[server], ports.AGENT_DATA))
            return self._channels[server]

    def path_mbps(self, server: str) -> float | None:
        return self.peer_mbps.get(server)

    def address_towards(self, server: str) -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((self.peers[server], 9))      # no packet is sent: the route picks the address
            return probe.getsockname()[0]

    def release(self, service: str, instance: Instance) -> None:
        self.deployment.release(service, instance)

    def resume(self, spec: ContainerSpec, instance: Instance, final_images: Path | None) -> Instance:
        if self.containers.is_running(instance.container_id):
            return instance  # it never stopped (the failure came before the final checkpoint)
        if final_images is None or not final_images.exists():
            raise RuntimeError(f"{spec.service}: stopped at {self.server} and no checkpoint to resume from")
        container = self.containers.client.containers.get(instance.container_id)
        resumed = self.containers.restore(container, final_images, spec.port)
        self.events.emit("service.resumed", service=spec.service, endpoint=[resumed.ip, resumed.port])
        return self.deployment.register(spec, resumed)

    def fence(self, server: str, service: str) -> None:
        """All servers share one Docker engine and one state root, so removing the destination's
        container and half-received state ourselves cannot split the service in two."""
        client = self.containers.client
        for container in client.containers.list(all=True, filters=network_filters(f"{SERVER_LABEL}={server}",
                                                                                  f"{SERVICE_LABEL}={service}")):
            remove_container(client, container.id)
        shutil.rmtree(server_state_dir(server) / "incoming" / service, ignore_errors=True)
        self.events.emit("migration.fenced", server=server, service=service)

    def sync_app_layer(self, app: str, dest: str) -> dict:
        return self.layers.sync_to(app, self.peers[dest])

    def app_layer_size(self, app: str) -> int:
        return self.layers.size(app)

    # -- orders ---------------------------------------------------------------------
    def migrate(self, service: str, dest: str, mode_name: str, phase: str, migration_id: str | None,
                options: dict | None, final_at: float | None) -> dict:
        with self._lock:
            current = self.migrations.get(service)
            if current is None or current.dest != dest or current.mode.name != mode_name:
                with self.deployment.lock:
                    if service not in self.deployment.instances:
                        raise RuntimeError(f"{service} does not run on {self.server}")
                    spec, instance = self.deployment.specs[service], self.deployment.instances[service]
                current = Migration(self, spec, instance, dest, mode(mode_name), migration_id, options)
                self.migrations[service] = current
        self.events.emit("migration.order", migration=current.id, service=service, dest=dest, mode=mode_name,
                         phase=phase)
        if phase == "prepare":
            current.prepare_destination()
            return current.record
        if phase not in ("pre", "final", "all"):
            raise ValueError(f"unknown phase {phase!r} (prepare, pre, final or all)")
        with self._lock:
            self.under_way[service] = current.id
        try:
            return self._run(service, current, phase, final_at)
        finally:
            with self._lock:
                self.under_way.pop(service, None)

    def migrations_under_way(self) -> dict[str, str]:
        with self._lock:
            return dict(self.under_way)

    def _run(self, service: str, current: Migration, phase: str, final_at: float | None) -> dict:
        busy = self._checkpoint_lock(service)      # a probe under way finishes first
        if phase in ("pre", "all"):
            with busy:
                current.run_pre()
            if current.record["ok"] is False:        # undone: the service never stopped here
                with self._lock:
                    self.migrations.pop(service, None)
                return current.record
            if phase == "pre":
                return current.record
        if phase == "all" and final_at is not None:
            time.sleep(max(0.0, final_at - time.time()))
        with busy:
            record, instance = current.run_final()
        with self._lock:
            self.migrations.pop(service, None)
        if not record["ok"]:
            self.deployment.register(current.spec, instance)
        return record

    def probe_checkpoints(self, service: str, options: dict | None) -> dict:
        """Seed 002's estimate at t0: two checkpoints in a row (the service keeps
        running), each at a quiet moment as a migration's are; the first's size is
        the pre-migration size, their delta the migration size."""
        settings = DeltaOptions.model_validate({k: v for k, v in (options or {}).items() if k in DeltaOptions.model_fields})
        instance = self.deployment.instances[service]
        busy = self._checkpoint_lock(service)
        if service in self.migrations or not busy.acquire(blocking=False):
            return {"service": service, "server": self.server, "skipped": "a migration is under way"}
        workdir = self.probes / service
        try:
            taken, seconds, began = [], [], time.time()
            for name in ("first", "second"):
                frozen, _ = self.containers.freeze_when_idle(instance, settings.quiesce)
                started = time.monotonic()
                taken.append(self.containers.checkpoint(instance, workdir / name, leave_running=True,
                                                        frozen=frozen))
                seconds.append(time.monotonic() - started)
            frozen_until = time.time()
            first, second = taken
            delta = encoder(settings.delta).encode(second, first, workdir / "delta" / "delta")
            result = {"service": service, "server": self.server, "full_bytes": checkpoint_size(first),
                      "delta_bytes": delta["bytes"], "checkpoint_seconds": seconds,
                      "window": [began, frozen_until]}
        finally:
            busy.release()
            shutil.rmtree(workdir, ignore_errors=True)
        self.events.emit("checkpoint.probe", **result)
        return result
