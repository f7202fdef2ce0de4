"""The agent of one server: Deployment-S, Resource Monitor and Migration (seed 002, Fig. 1).

It runs inside the server's namespace and listens on the server's address:
orders (RPC) on port 7100, migration state (file pushes) on 7101 and an rsync
daemon for application layers on 8730.  Source and destination agents of a
migration talk to each other directly, across the emulated WAN.

    python -m testbed.agent --host edge1 --address 10.255.0.2 --subnet 172.16.1.0/24 \
        --peers '{"edge2": "10.255.0.3"}' --run-dir runs/x
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import docker

from testbed import images, migration
from testbed.events import EventLog
from testbed.migration.base import Migration, ServiceSpec
from testbed.migration.delta import encoder
from testbed.migration.transfer import DataChannel, FileReceiver, rsync_push, rsyncd_config, start_rsyncd
from testbed.net.cgroups import CgroupError, CgroupMeter
from testbed.net.containers import SERVICE_LABEL, HOST_LABEL, HostContainers, Instance, remove_container
from testbed.rpc import RpcClient, RpcServer
from testbed.stopwatch import Stopwatch

RPC_PORT = 7100
DATA_PORT = 7101
RSYNC_PORT = 8730
MANAGEMENT_DIR = Path("/run/mec-testbed/agents")


def management_socket(host: str) -> str:
    """Unix socket on which the runner (outside the emulated network) manages an agent."""
    MANAGEMENT_DIR.mkdir(parents=True, exist_ok=True)
    return str(MANAGEMENT_DIR / f"{host}.sock")


class Agent:
    def __init__(self, host: str, address: str, subnet: str, peers: dict[str, str], run_dir: Path | None,
                 cpus: float = 2.0, congestion_control: str = "cubic", client=None):
        self.host = host
        self.address = address
        self.peers = dict(peers)
        self.cpus = cpus
        self.containers = HostContainers(host, subnet, client=client, congestion_control=congestion_control,
                                         inside=True)
        self.state_dir = self.containers.state_dir
        # A fresh server: no application layers, no half-received state from a past run.
        for stale in ("incoming", "outgoing", "layers", "probe"):
            shutil.rmtree(self.state_dir / stale, ignore_errors=True)
        self.inbox = self.state_dir / "incoming"
        self.layers_dir = self.state_dir / "layers"
        self.layers_dir.mkdir(parents=True, exist_ok=True)
        self.events = EventLog(Path(run_dir) / "events.jsonl" if run_dir else None, f"agent:{host}")
        self.specs: dict[str, ServiceSpec] = {}
        self.instances: dict[str, Instance] = {}
        self.meters: dict[str, CgroupMeter | None] = {}
        self.reserved: dict[str, tuple[str, object]] = {}   # service -> (migration id, container)
        self.migrations: dict[str, Migration] = {}
        self.arrived_by: dict[str, str] = {}                # service -> migration that brought it
        self._peer_clients: dict[str, RpcClient] = {}
        self._channels: dict[str, DataChannel] = {}
        self._lock = threading.RLock()

    # -- plumbing for migrations ----------------------------------------------------
    def peer(self, host: str) -> RpcClient:
        if host not in self.peers:
            raise KeyError(f"{self.host} knows no server {host!r} (peers: {', '.join(self.peers)})")
        with self._lock:
            if host not in self._peer_clients:
                self._peer_clients[host] = RpcClient((self.peers[host], RPC_PORT), timeout=300)
            return self._peer_clients[host]

    def channel(self, host: str) -> DataChannel:
        """The kept-open data connection(s) to ``host``'s receiver."""
        with self._lock:
            if host not in self._channels:
                self._channels[host] = DataChannel((self.peers[host], DATA_PORT))
            return self._channels[host]

    def on_arrival(self, order: dict):
        """An order that travelled with pushed state (only restoring is allowed)."""
        if order.get("method") != "restore":
            raise ValueError(f"unsupported order on arrival: {order.get('method')!r}")
        return self.restore(**order["params"])

    def instance_from(self, record: dict) -> Instance:
        return Instance(**record)

    def _register(self, spec: ServiceSpec, instance: Instance) -> Instance:
        try:
            meter = self.containers.meter(instance.container_id)
        except (CgroupError, OSError) as exc:     # reported as unknown, never as idle
            meter = None
            self.events.emit("monitor.unavailable", service=spec.service, host=self.host, reason=str(exc))
        with self._lock:
            self.specs[spec.service] = spec
            self.instances[spec.service] = instance
            self.meters[spec.service] = meter
        return instance

    def forget_source(self, service: str, instance: Instance) -> None:
        """After a successful move: drop the stopped source container."""
        self.containers.remove(instance.container_id)
        with self._lock:
            if self.instances.get(service) == instance:
                self.instances.pop(service, None)
                self.meters.pop(service, None)

    def resume(self, spec: ServiceSpec, instance: Instance, final_images: Path | None) -> Instance:
        """Bring the service back at this server after a failed move, with its state."""
        if self.containers.is_running(instance.container_id):
            return instance  # it never stopped (the failure came before the final checkpoint)
        if final_images is None or not final_images.exists():
            raise RuntimeError(f"{spec.service}: stopped at {self.host} and no checkpoint to resume from")
        container = self.containers.client.containers.get(instance.container_id)
        resumed = self.containers.restore(container, final_images, spec.port)
        self.events.emit("service.resumed", service=spec.service, endpoint=[resumed.ip, resumed.port])
        return self._register(spec, resumed)

    def fence(self, host: str, service: str) -> None:
        """The destination does not answer: remove its container of ``service`` ourselves
        (all servers share one Docker engine, so this cannot split the service in two)."""
        client = self.containers.client
        for container in client.containers.list(all=True, filters={"label": [f"{HOST_LABEL}={host}",
                                                                              f"{SERVICE_LABEL}={service}"]}):
            remove_container(client, container.id)
        self.events.emit("migration.fenced", host=host, service=service)

    # -- RPC: deployment ------------------------------------------------------------
    def ping(self) -> dict:
        return {"host": self.host, "time": time.time(), "services": sorted(self.instances)}

    def deploy(self, spec: dict) -> dict:
        """Start a fresh container of a service here (Deployment-S)."""
        service_spec = ServiceSpec.from_dict(spec)
        if service_spec.service in self.instances:
            raise RuntimeError(f"{service_spec.service} already runs on {self.host}")
        container = self.containers.reserve(service_spec.service, service_spec.app, service_spec.image,
                                            service_spec.port, service_spec.limits, service_spec.env)
        instance = self._register(service_spec, self.containers.start(container, service_spec.port))
        self._install_layer(service_spec.app)
        self.events.emit("service.deployed", service=service_spec.service, app=service_spec.app,
                         host=self.host, endpoint=[instance.ip, instance.port])
        return instance.record()

    def remove(self, service: str) -> bool:
        with self._lock:
            instance = self.instances.pop(service, None)
            self.meters.pop(service, None)
        if instance is None:
            return False
        self.containers.remove(instance.container_id)
        self.events.emit("service.removed", service=service, host=self.host)
        return True

    def instances_here(self) -> list[dict]:
        return [instance.record() for instance in self.instances.values()]

    def resources(self) -> dict:
        """Resource Monitor: CPU cores and memory of every service container here
        (None where unknown: no meter, the first sample, or the container just went)."""
        services = {}
        for service, meter in list(self.meters.items()):
            try:
                cpu, memory = (meter.cpu_cores(), meter.memory_bytes()) if meter else (None, None)
            except OSError:
                cpu, memory = None, None
            services[service] = {"cpu_cores": None if cpu is None else round(cpu, 4), "memory_bytes": memory}
        total_cpu = sum(s["cpu_cores"] or 0.0 for s in services.values())
        return {"host": self.host, "time": time.time(), "cpus": self.cpus,
                "cpu_utilisation": round(total_cpu / self.cpus, 4),
                "memory_bytes": sum(s["memory_bytes"] or 0 for s in services.values()),
                "services": services}

    # -- RPC: migration, source side -------------------------------------------------
    def migrate(self, service: str, dest: str, mode: str, phase: str = "all",
                migration_id: str | None = None, options: dict | None = None, final_at: float | None = None) -> dict:
        """Move ``service`` to ``dest``: phase 'prepare' (reserve the destination: its
        address is known from then on), 'pre', 'final', or 'all' (pre and final).
        ``options``: e.g. {"delta": "pages" | "rsync"} for precopy-delta.  With phase 'all',
        ``final_at`` (wall time) holds the migration phase until then: one order from
        the controller covers both phases, with no round trip between them."""
        with self._lock:
            current = self.migrations.get(service)
            if current is None or current.dest != dest or current.mode.name != mode:
                if service not in self.instances:
                    raise RuntimeError(f"{service} does not run on {self.host}")
                current = Migration(self, self.specs[service], self.instances[service], dest,
                                    migration.mode(mode), migration_id, options)
                self.migrations[service] = current
        self.events.emit("migration.order", migration=current.id, service=service, dest=dest, mode=mode,
                         phase=phase)
        if phase == "prepare":
            current.prepare_destination()
            return current.record
        if phase == "pre":
            return current.run_pre()
        if phase not in ("final", "all"):
            raise ValueError(f"unknown phase {phase!r}")
        if phase == "all":
            current.run_pre()
            if final_at is not None:
                time.sleep(max(0.0, final_at - time.time()))
        record, instance = current.run_final()
        with self._lock:
            self.migrations.pop(service, None)
            if not record["ok"]:
                self._register(current.spec, instance)
        return record

    def probe_checkpoints(self, service: str, delta: str = "pages", quiesce: float = 1.0) -> dict:
        """Seed 002's estimate at t0: two checkpoints in a row (service keeps running),
        each at a quiet moment as a migration's are; the first's size is the
        pre-migration size, their delta the migration size."""
        from testbed.migration.base import checkpoint_size

        instance = self.instances[service]
        workdir = self.state_dir / "probe" / service
        try:
            images, seconds = [], []
            for name in ("first", "second"):
                frozen, _ = self.containers.freeze_when_idle(instance, quiesce)
                started = time.monotonic()
                images.append(self.containers.checkpoint(instance, workdir / name, leave_running=True,
                                                         frozen=frozen))
                seconds.append(time.monotonic() - started)
            first, second = images
            delta = encoder(delta).encode(second, first, workdir / "delta" / "delta")
            result = {"service": service, "host": self.host, "full_bytes": checkpoint_size(first),
                      "delta_bytes": delta["bytes"], "checkpoint_seconds": seconds}
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        self.events.emit("checkpoint.probe", **result)
        return result

    # -- RPC: migration, destination side ---------------------------------------------
    def prepare(self, spec: dict, migration: str) -> dict:
        service_spec = ServiceSpec.from_dict(spec)
        with self._lock:
            old = self.reserved.pop(service_spec.service, None)
        if old is not None:
            self.containers.remove(old[1].id)
        container = self.containers.reserve(service_spec.service, service_spec.app, service_spec.image,
                                            service_spec.port, service_spec.limits, service_spec.env)
        with self._lock:
            self.reserved[service_spec.service] = (migration, container)
            self.specs[service_spec.service] = service_spec
        return {"ip": container.labels["org.mec-testbed.ip"], "port": service_spec.port,
                "container": container.id}

    def _take_reserved(self, service: str, migration: str):
        with self._lock:
            entry = self.reserved.get(service)
            if entry is None or entry[0] != migration:
                raise RuntimeError(f"no container reserved here for {service} (migration {migration})")
            return entry[1]

    def restore(self, service: str, migration: str, slot: str, base_slot: str | None = None,
                delta_encoder: str = "pages") -> dict:
        """Start the reserved container from the state in ``slot`` (or, if ``base_slot``
        is given, from that base with the delta in ``slot`` applied)."""
        steps = Stopwatch()
        container = self._take_reserved(service, migration)
        images_dir = self.inbox / service / slot
        if base_slot is not None:
            encoder(delta_encoder).apply(images_dir / "delta", self.inbox / service / base_slot)
            shutil.rmtree(images_dir, ignore_errors=True)
            images_dir = self.inbox / service / base_slot
            steps.lap("apply_delta")
        rw_layer = images_dir / "rootfs-diff.tar"
        if rw_layer.exists():
            self.containers.import_rw_layer(container, rw_layer)
            steps.lap("import_rw_layer")
        spec = self.specs[service]
        instance = self.containers.restore(container, images_dir, spec.port, steps)
        with self._lock:
            self.reserved.pop(service, None)
        self._register(spec, instance)
        self.arrived_by[service] = migration
        self.events.emit("service.restored", service=service, host=self.host, migration=migration,
                         endpoint=[instance.ip, instance.port], steps=steps.laps)
        self._install_layer(spec.app)
        return {**instance.record(), "restore_steps": steps.laps}

    def start_fresh(self, service: str, migration: str) -> dict:
        container = self._take_reserved(service, migration)
        spec = self.specs[service]
        instance = self.containers.start(container, spec.port)
        with self._lock:
            self.reserved.pop(service, None)
        self._register(spec, instance)
        self.arrived_by[service] = migration
        self.events.emit("service.started_fresh", service=service, host=self.host, migration=migration,
                         endpoint=[instance.ip, instance.port])
        return instance.record()

    def abort(self, service: str, migration: str) -> bool:
        """Undo this server's part of a failed migration (reserved or restored container)."""
        with self._lock:
            entry = self.reserved.pop(service, None)
            instance = self.instances.get(service)
        if entry is not None and entry[0] == migration:
            self.containers.remove(entry[1].id)
        if instance is not None and self.arrived_by.get(service) == migration:
            self.remove(service)
        shutil.rmtree(self.inbox / service, ignore_errors=True)
        self.events.emit("migration.aborted", service=service, host=self.host, migration=migration)
        return True

    # -- application layers (seed 001) --------------------------------------------------
    def _install_layer(self, app: str) -> None:
        """A server that runs an app holds its application layer."""
        target = self.layers_dir / app
        if (target / images.LAYER_MARKER).exists():
            return
        source = images.export_app_layer(app, self.containers.client)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for item in source.iterdir():
            os.link(item, target / item.name)

    def install_layer(self, app: str) -> bool:
        """Pre-install an app's application layer here (seed 001's "app found" case)."""
        self._install_layer(app)
        return True

    def has_layer(self, app: str) -> bool:
        return (self.layers_dir / app / images.LAYER_MARKER).exists()

    def app_layer_size(self, app: str) -> int:
        return sum(f.stat().st_size for f in (self.layers_dir / app).glob("*") if f.is_file())

    def sync_app_layer(self, app: str, dest: str) -> dict:
        self._install_layer(app)
        return rsync_push(self.layers_dir / app, self.peers[dest], "layers", app, RSYNC_PORT)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Agent of one emulated server.")
    parser.add_argument("--host", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--subnet", required=True)
    parser.add_argument("--peers", default="{}", help="JSON {server: address}")
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--cpus", type=float, default=2.0)
    parser.add_argument("--congestion-control", default="cubic")
    parser.add_argument("--controller", default=None, help="address:port to report resources to")
    parser.add_argument("--monitor-period", type=float, default=5.0)
    args = parser.parse_args(argv)

    agent = Agent(args.host, args.address, args.subnet, json.loads(args.peers), args.run_dir,
                  cpus=args.cpus, congestion_control=args.congestion_control,
                  client=docker.from_env(timeout=300))
    rpc = RpcServer((args.address, RPC_PORT), agent)
    management = RpcServer(management_socket(args.host), agent)
    receiver = FileReceiver((args.address, DATA_PORT), agent.inbox, on_arrival=agent.on_arrival)
    config = rsyncd_config(agent.state_dir / "rsyncd.conf", agent.layers_dir)
    rsyncd = start_rsyncd(config, args.address, RSYNC_PORT)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    rpc.serve_in_thread()
    management.serve_in_thread()
    receiver.serve_in_thread()
    agent.events.emit("agent.ready", host=args.host, address=args.address)
    if args.controller:
        threading.Thread(target=_report_resources, args=(agent, args.controller, args.monitor_period, stop),
                         daemon=True).start()
    stop.wait()
    rpc.shutdown()
    management.shutdown()
    receiver.shutdown()
    rsyncd.terminate()
    return 0


def _report_resources(agent: Agent, controller: str, period: float, stop: threading.Event) -> None:
    host, port = controller.rsplit(":", 1)
    client = RpcClient((host, int(port)), timeout=10)
    while not stop.wait(period):
        try:
            client.call("server_report", report=agent.resources())
        except Exception:  # the controller may be briefly unreachable; report next period
            pass


if __name__ == "__main__":
    sys.exit(main())
