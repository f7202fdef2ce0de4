"""Deployment-S (seed 002, Fig. 1): the services that run on this server.

Every other part of the agent (monitor, migration source and destination)
reads and changes the set of services through this one object.
"""

from __future__ import annotations

import threading

from testbed.containers.cgroups import CgroupError, CgroupMeter
from testbed.containers.server import Instance, ServerContainers
from testbed.events import EventLog
from testbed.migration.base import ContainerSpec


class Deployment:
    def __init__(self, containers: ServerContainers, events: EventLog):
        self.server = containers.server
        self.containers = containers
        self.events = events
        self.specs: dict[str, ContainerSpec] = {}
        self.instances: dict[str, Instance] = {}
        self.meters: dict[str, CgroupMeter | None] = {}
        self.lock = threading.RLock()

    def register(self, spec: ContainerSpec, instance: Instance) -> Instance:
        """``instance`` of ``spec`` runs here from now on."""
        try:
            meter = self.containers.meter(instance.container_id)
        except (CgroupError, OSError) as exc:     # reported as unknown, never as idle
            meter = None
            self.events.emit("monitor.unavailable", service=spec.service, server=self.server, reason=str(exc))
        with self.lock:
            self.specs[spec.service] = spec
            self.instances[spec.service] = instance
            self.meters[spec.service] = meter
        return instance

    def release(self, service: str, instance: Instance) -> None:
        """After a successful move: drop the stopped source container."""
        self.containers.remove(instance.container_id)
        with self.lock:
            if self.instances.get(service) == instance:
                self.instances.pop(service, None)
                self.meters.pop(service, None)

    def deploy(self, spec: ContainerSpec) -> Instance:
        """Start a fresh container of a service here."""
        if spec.service in self.instances:
            raise RuntimeError(f"{spec.service} already runs on {self.server}")
        container = self.containers.reserve(spec.service, spec.app, spec.image, spec.port, spec.limits, spec.env)
        instance = self.register(spec, self.containers.start(container, spec.port))
        self.events.emit("service.deployed", service=spec.service, app=spec.app, server=self.server,
                         endpoint=[instance.ip, instance.port],
                         thread_quota=self.containers.spread_threads(instance.container_id))
        return instance

    def remove(self, service: str) -> bool:
        with self.lock:
            instance = self.instances.pop(service, None)
            self.meters.pop(service, None)
        if instance is None:
            return False
        self.containers.remove(instance.container_id)
        self.events.emit("service.removed", service=service, server=self.server)
        return True

    def running(self) -> list[Instance]:
        with self.lock:
            return list(self.instances.values())
