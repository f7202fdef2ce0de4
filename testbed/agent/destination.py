"""The Migration module's destination side: taking services over from a peer.

A peer first reserves a container here (``prepare``: its address is fixed and
its network wired before any downtime), pushes state into the inbox, and then
orders a restore (carried with the last push, see ``on_arrival``) or a fresh
start; ``abort`` undoes this side of a failed migration.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from testbed.agent.deployment import Deployment
from testbed.agent.layers import LayerStore
from testbed.containers.lazy import EarlyConnection
from testbed.containers.server import IP_LABEL
from testbed.migration.base import ContainerSpec
from testbed.migration.delta import encoder
from testbed.stopwatch import Stopwatch


class DestinationSide:
    ARRIVAL_ORDERS = ("restore", "apply_delta")     # what a push may order on arrival

    def __init__(self, deployment: Deployment, layers: LayerStore, inbox: Path):
        self.deployment = deployment
        self.server = deployment.server
        self.containers = deployment.containers
        self.events = deployment.events
        self.layers = layers
        self.inbox = inbox
        self.reserved: dict[str, tuple[str, object]] = {}   # service -> (migration id, container)
        self.arrived_by: dict[str, str] = {}                # service -> migration that brought it
        self.early: dict[str, EarlyConnection] = {}        # service -> its post-copy's page server, reached
        self._lock = threading.RLock()

    def on_arrival(self, order: dict):
        """An order that travelled with pushed state (restoring, or a pre-copy round's delta)."""
        if order.get("method") not in self.ARRIVAL_ORDERS:
            raise ValueError(f"unsupported order on arrival: {order.get('method')!r}")
        return getattr(self, order["method"])(**order["params"])

    def ahead_of_arrival(self, order: dict) -> None:
        """An order seen before its push's files: a post-copy's relay reaches the source's
        page server now, while the checkpoint is still on its way (see ``EarlyConnection``)."""
        params = order.get("params") or {}
        if order.get("method") == "restore" and params.get("lazy_from") and params.get("prepaging_window", 0) > 0:
            self._drop_early(params["service"])
            with self._lock:
                self.early[params["service"]] = EarlyConnection(params["lazy_from"])

    def _take_early(self, service: str) -> EarlyConnection | None:
        with self._lock:
            return self.early.pop(service, None)

    def _drop_early(self, service: str) -> None:
        """Close a post-copy's early connection that no restore took (its files never came)."""
        early = self._take_early(service)
        if early is not None:
            early.close()

    def apply_delta(self, service: str, migration: str, slot: str, base_slot: str,
                    delta_encoder: str = "pages") -> dict:
        """An iterative pre-copy round: bring the state held in ``base_slot`` up to date."""
        self._take_reserved(service, migration)            # only for the migration that reserved
        steps = Stopwatch()
        self._apply_delta(service, slot, base_slot, delta_encoder)
        steps.lap("apply_delta")
        return {"steps": steps.laps}

    def _apply_delta(self, service: str, slot: str, base_slot: str, delta_encoder: str) -> Path:
        """The delta in ``slot`` applied to the state in ``base_slot`` (which it returns)."""
        delta_dir, base = self.inbox / service / slot, self.inbox / service / base_slot
        encoder(delta_encoder).apply(delta_dir / "delta", base)
        shutil.rmtree(delta_dir, ignore_errors=True)
        return base

    def prepare(self, spec: dict, migration: str, lazy: bool = False) -> dict:
        """Reserve a container for ``spec``'s service (``lazy``: one a post-copy can restore)."""
        container_spec = ContainerSpec.from_dict(spec)
        with self._lock:
            old = self.reserved.pop(container_spec.service, None)
        self._drop_early(container_spec.service)
        if old is not None:
            self.containers.remove(old[1].id)
        # State left by an earlier migration of this service that was fenced off from here.
        shutil.rmtree(self.inbox / container_spec.service, ignore_errors=True)
        container = self.containers.reserve(container_spec.service, container_spec.app, container_spec.image,
                                            container_spec.port, container_spec.limits, container_spec.env,
                                            lazy=lazy)
        with self._lock:
            self.reserved[container_spec.service] = (migration, container)
        with self.deployment.lock:
            self.deployment.specs[container_spec.service] = container_spec
        return {"ip": container.labels[IP_LABEL], "port": container_spec.port,
                "container": container.id}

    def _take_reserved(self, service: str, migration: str):
        with self._lock:
            entry = self.reserved.get(service)
            if entry is None or entry[0] != migration:
                raise RuntimeError(f"no container reserved here for {service} (migration {migration})")
            return entry[1]

    def restore(self, service: str, migration: str, slot: str, base_slot: str | None = None,
                delta_encoder: str = "pages", lazy_from: tuple[str, int] | None = None,
                prepaging_window: int = 0, lazy_base_slot: str | None = None) -> dict:
        """Start the reserved container from the state in ``slot`` (or, if ``base_slot``
        is given, from that base with the delta in ``slot`` applied; ``lazy_from``: the
        source's page server, for a post-copy, pre-paged with ``prepaging_window``, and
        the pages unchanged since the pre-copy in ``lazy_base_slot`` taken from there)."""
        steps = Stopwatch()
        early = self._take_early(service)
        try:
            container = self._take_reserved(service, migration)
            images_dir = self.inbox / service / slot
            if base_slot is not None:
                images_dir = self._apply_delta(service, slot, base_slot, delta_encoder)
                steps.lap("apply_delta")
            rw_layer = images_dir / "rootfs-diff.tar"
            if rw_layer.exists():
                self.containers.import_rw_layer(container, rw_layer)
                steps.lap("import_rw_layer")
            spec = self.deployment.specs[service]
            lazy_base = self.inbox / service / lazy_base_slot if lazy_base_slot is not None else None
            upstream = early.take() if early is not None else None     # ahead_of_arrival: lazy, relayed
            instance = self.containers.restore(container, images_dir, spec.port, steps, lazy_from=lazy_from,
                                               prepaging_window=prepaging_window, lazy_base=lazy_base,
                                               lazy_upstream=upstream)
        finally:
            if early is not None:
                early.close()           # unless the relay has taken it
        with self._lock:
            self.reserved.pop(service, None)
            self.arrived_by[service] = migration
        self.deployment.register(spec, instance)
        shutil.rmtree(self.inbox / service, ignore_errors=True)    # the engine holds its own copy now
        self.events.emit("service.restored", service=service, server=self.server, migration=migration,
                         endpoint=[instance.ip, instance.port], steps=steps.laps)
        self.layers.install(spec.app)
        return {**instance.record(), "restore_steps": steps.laps, **steps.notes}

    def start_fresh(self, service: str, migration: str) -> dict:
        container = self._take_reserved(service, migration)
        spec = self.deployment.specs[service]
        instance = self.containers.start(container, spec.port)
        with self._lock:
            self.reserved.pop(service, None)
            self.arrived_by[service] = migration
        self.deployment.register(spec, instance)
        self.events.emit("service.started_fresh", service=service, server=self.server, migration=migration,
                         endpoint=[instance.ip, instance.port])
        return instance.record()

    def abort(self, service: str, migration: str) -> bool:
        """Undo this server's part of a failed migration (reserved or restored container)."""
        with self._lock:
            entry = self.reserved.pop(service, None)
            arrived = self.arrived_by.get(service) == migration
        self._drop_early(service)
        if entry is not None and entry[0] == migration:
            self.containers.remove(entry[1].id)
        if arrived and service in self.deployment.instances:
            self.deployment.remove(service)
        shutil.rmtree(self.inbox / service, ignore_errors=True)
        self.events.emit("migration.aborted", service=service, server=self.server, migration=migration)
        return True
