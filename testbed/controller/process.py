"""The central controller (seed 002, Fig. 1), a process on the cloud server.

* Deployment: places each service (planner's choice) by ordering an agent;
* Monitor: takes the users' Local Monitor reports, their handover notices and
  the servers' resource reports (all over the emulated network);
* Planner: one of ``testbed.controller.planners``, asked on every trigger;
* Central Database: ``controller.sqlite`` in the run directory.

Orders travel to agents over the emulated network; actions timed by the
planner are sent early by the controller-to-agent one-way delay so they take
effect on time.  The user learns where its services are (and where they are
about to be) in the replies to its reports.

    python -m testbed.controller CONFIG.json
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import docker

from testbed.config import validate_topology
from testbed.controller import planners
from testbed.controller.database import Database
from testbed.controller.estimators import MigrationTimeModel
from testbed.controller.planners.base import (Handover, Migrate, Network, Server, Service, Station, SystemState,
                                              User)
from testbed.events import EventLog
from testbed.net import addressing
from testbed.radio import HysteresisHandover, PathLoss, RadioParams
from testbed.rpc import RpcClient, RpcError, RpcServer

RPC_PORT = 7200
MANAGEMENT_SOCKET = "/run/mec-testbed/controller.sock"


def build_state(spec, plan, radio: RadioParams, report_period: float) -> SystemState:
    servers = {name: Server(name, node.role, node.position, node.cpus, node.memory / 2**20, node.compute,
                            site=node.site)
               for name, node in spec.nodes.items() if node.is_server}
    stations = {}
    for name in spec.nodes_with_role("ap"):
        uplinks = [c.b if c.a == name else c.a for c in spec.connections if name in (c.a, c.b)]
        uplink = next((u for u in uplinks if spec.nodes[u].is_server), uplinks[0] if uplinks else None)
        stations[name] = Station(name, spec.nodes[name].position, spec.nodes[name].max_users, uplink)
    return SystemState(time.time(), servers, stations, {}, {}, Network(plan), PathLoss(radio), HysteresisHandover(radio),
                       MigrationTimeModel(), handover_time_s=radio.handover_time_s, report_period_s=report_period)


class Controller:
    def __init__(self, config: dict):
        self.config = config
        self.node = config.get("node", "cloud")
        self.spec = validate_topology(config["topology"], "controller topology")
        self.plan = addressing.plan(self.spec)
        self.radio = RadioParams(**config.get("radio", {}))
        run_dir = Path(config["run_dir"]) if config.get("run_dir") else None
        self.db = Database(run_dir / "controller.sqlite" if run_dir else None)
        self.events = EventLog(run_dir / "events.jsonl" if run_dir else None, "controller")
        self.state = build_state(self.spec, self.plan, self.radio, float(config.get("report_period", 0.5)))
        planner = config.get("planner", {"name": "cloud"})
        self.planner = planners.build(planner["name"], seed=int(config.get("seed", 0)), **planner.get("params", {}))
        self.mode = config.get("migration", {}).get("mode", "precopy-delta")
        self.mode_options = config.get("migration", {}).get("options", {})
        self.agents = {host: RpcClient((address, 7100), timeout=600) for host, address in config["agents"].items()}
        self.specs = {s["service"]: s for s in config.get("services", [])}
        self.endpoints: dict[str, dict] = {}
        self.handover_orders: dict[str, dict] = {}
        self.lock = threading.RLock()
        self._stop = threading.Event()
        for name, user in config.get("users", {}).items():
            self.state.users[name] = User(name, user.get("ap"), tuple(user["position"]) if user.get("position")
                                          else None, t=time.time())

    # -- Deployment -------------------------------------------------------------------
    def deploy(self) -> dict:
        """Place every service (planner's choice), start it, probe its checkpoint sizes."""
        client = docker.from_env()
        for name, spec in self.specs.items():
            user = self.state.users[spec["user"]]
            service = Service(name, spec["user"], spec["app"], "", cpus=spec["limits"]["cpus"],
                              memory_mb=spec["limits"]["memory_mb"], task_bytes=float(spec.get("task_bytes", 100)),
                              quota=float(spec.get("quota", 0.1)),
                              image_bytes=float(client.images.get(spec["image"]).attrs["Size"]))
            self.state.services[name] = service
            host = self.planner.initial_server(self.state, service, user)
            service.host = host
            agent_spec = {k: spec[k] for k in ("service", "app", "image", "port", "limits")}
            instance = self.agents[host].call("deploy", spec=agent_spec)
            self.endpoints[name] = {"endpoint": [instance["ip"], instance["port"]], "pending": []}
            self.db.placement(name, host, self.endpoints[name]["endpoint"])
            if self.config.get("probe", True):
                probe = self.agents[host].call("probe_checkpoints", service=name,
                                               delta=self.mode_options.get("delta", "pages"),
                                               quiesce=self.mode_options.get("quiesce", 1.0))
                service.full_bytes, service.delta_bytes = probe["full_bytes"], max(1, probe["delta_bytes"])
                for seconds in probe["checkpoint_seconds"]:
                    self.state.migration_model.observe_checkpoint(host, seconds, service.image_bytes,
                                                                  self.state.servers[host].compute)
            self.events.emit("controller.deployed", service=name, host=host, planner=self.planner.name,
                             endpoint=self.endpoints[name]["endpoint"], full_bytes=service.full_bytes,
                             delta_bytes=service.delta_bytes)
        return {name: where["endpoint"] for name, where in self.endpoints.items()}

    # -- Monitor ----------------------------------------------------------------------
    def report(self, user: str, t: float, position=None, velocity=None, ap=None, rssi=None, e2e_ms=None,
               proc_ms=None, sim_t=None) -> dict:
        with self.lock:
            state = self.state
            state.t = time.time()
            known = state.users.setdefault(user, User(user, ap))
            known.ap, known.t = ap, t
            known.position = tuple(position) if position else known.position
            known.velocity = tuple(velocity) if velocity else known.velocity
            known.rssi = rssi or {}
            known.e2e_ms = e2e_ms or {}
            for service in state.services_of(user):
                if proc_ms and service.name in proc_ms and not service.moving:
                    service.proc_ms = float(proc_ms[service.name])   # as measured on its current host
            order = self.handover_orders.get(user)
            if order and order["target"] == ap:
                self.handover_orders.pop(user, None)
            self._decide("report", user, lambda: self.planner.on_report(state, known))
        self.db.user_report({"user": user, "t": t, "sim_t": sim_t, "position": position, "velocity": velocity,
                             "ap": ap, "rssi": rssi, "e2e_ms": e2e_ms})
        return self._reply(user)

    def handover_done(self, user: str, reason: str, start: float, end: float, **record) -> dict:
        with self.lock:
            state = self.state
            state.t = time.time()
            known = state.users.setdefault(user, User(user, record.get("to")))
            source, known.ap = record.get("from"), record.get("to")
            self.events.emit("controller.handover_notice", user=user, source=source, target=known.ap,
                             reason=reason, start=start, end=end)
            self._decide("handover", user, lambda: self.planner.on_handover(state, known, source, known.ap))
        return self._reply(user)

    def server_report(self, report: dict) -> bool:
        with self.lock:
            server = self.state.servers.get(report["host"])
            if server is not None:
                server.cpu_util = float(report.get("cpu_utilisation", 0.0))
                server.memory_used_mb = float(report.get("memory_bytes", 0)) / 2**20
        self.db.server_report(report)
        return True

    def _reply(self, user: str) -> dict:
        with self.lock:
            services = {name: dict(self.endpoints[name]) for name in self.endpoints
                        if self.state.services[name].user == user}
            return {"services": services, "handover": self.handover_orders.get(user)}

    # -- Planner -----------------------------------------------------------------------
    def _decide(self, trigger: str, user: str | None, ask) -> None:
        actions = ask()
        if not actions:
            return
        estimates = [a.estimates for a in actions if isinstance(a, Migrate)]
        inputs = {"users": {n: asdict(u) for n, u in self.state.users.items()},
                  "services": {n: asdict(s) for n, s in self.state.services.items()},
                  "servers": {n: {"cpu_util": s.cpu_util, "memory_used_mb": s.memory_used_mb}
                              for n, s in self.state.servers.items()}}
        decision = self.db.decision(self.planner.name, trigger, user, inputs,
                                    [{"type": type(a).__name__, **asdict(a)} for a in actions],
                                    estimates[0] if estimates else {})
        self.events.emit("controller.decision", decision=decision, planner=self.planner.name, trigger=trigger,
                         user=user, actions=[{"type": type(a).__name__, **asdict(a)} for a in actions])
        for action in actions:
            if isinstance(action, Handover):
                self.handover_orders[action.user] = {"target": action.target, "at": action.at}
            elif isinstance(action, Migrate):
                service = self.state.services[action.service]
                if service.moving or action.dest == service.host:
                    continue
                service.moving = True
                threading.Thread(target=self._migrate, args=(action, decision), daemon=True).start()

    def _sleep_until(self, when: float | None, host: str) -> None:
        if when is None:
            return
        lead = self.state.network.one_way(self.node, host)   # the order's trip to the agent
        self._stop.wait(max(0.0, when - lead - time.time()))

    def _migrate(self, action: Migrate, decision: int) -> None:
        service = self.state.services[action.service]
        source, migration_id = service.host, uuid.uuid4().hex[:10]
        agent = self.agents[source]
        record = {"migration": migration_id, "service": service.name, "source": source, "dest": action.dest,
                  "mode": self.mode, "ok": False}
        try:
            self._sleep_until(action.pre_at, source)
            prepared = agent.call("migrate", service=service.name, dest=action.dest, mode=self.mode,
                                  phase="prepare", migration_id=migration_id, options=self.mode_options)
            with self.lock:   # the user can look for the service there from now on
                self.endpoints[service.name]["pending"] = [prepared["dest_endpoint"]]
            record = agent.call("migrate", service=service.name, dest=action.dest, mode=self.mode, phase="all",
                                migration_id=migration_id, options=self.mode_options, final_at=action.final_at)
        except RpcError as exc:
            record["error"] = str(exc)
        with self.lock:
            if record.get("ok"):
                service.host = action.dest
            if record.get("new_endpoint"):
                self.endpoints[service.name]["endpoint"] = record["new_endpoint"]
            self.endpoints[service.name]["pending"] = []
            service.moving = False
            self._learn(record)
        self.db.migration(decision, record)
        self.db.placement(service.name, service.host, self.endpoints[service.name]["endpoint"])
        self.events.emit("controller.migration", decision=decision, **{k: v for k, v in record.items()
                                                                       if k != "trace"})

    def _learn(self, record: dict) -> None:
        """Feed measured checkpoint and restore times to psi and rho (eq. 5)."""
        service = self.state.services[record["service"]]
        phases = record.get("phases", {})
        model = self.state.migration_model
        if "prepare" in phases:
            model.observe_setup(record["dest"], phases["prepare"]["seconds"])
        if "final_checkpoint" in phases:
            model.observe_checkpoint(record["source"], phases["final_checkpoint"]["seconds"], service.image_bytes,
                                     self.state.servers[record["source"]].compute)
        if "restore" in phases and record.get("ok"):
            restored = service.image_bytes + service.full_bytes + service.delta_bytes
            model.observe_restore(record["dest"], phases["restore"]["seconds"], restored,
                                  self.state.servers[record["dest"]].compute)

    def _ticks(self) -> None:
        period = float(self.config.get("monitor_period", 5.0))
        while not self._stop.wait(period):
            with self.lock:
                self.state.t = time.time()
                self._decide("tick", None, lambda: self.planner.on_tick(self.state))

    # -- management ----------------------------------------------------------------------
    def status(self) -> dict:
        with self.lock:
            return {"planner": self.planner.name, "services": {n: {"host": s.host, "moving": s.moving,
                                                                   **self.endpoints.get(n, {})}
                                                               for n, s in self.state.services.items()},
                    "users": {n: {"ap": u.ap, "position": u.position} for n, u in self.state.users.items()}}

    def start(self) -> bool:
        threading.Thread(target=self._ticks, name="ticks", daemon=True).start()
        return True

    def stop(self) -> bool:
        self._stop.set()
        return True


def main(argv=None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    config = json.loads(Path(argv[0]).read_text())
    controller = Controller(config)
    network = RpcServer((config["address"], int(config.get("port", RPC_PORT))), controller)
    management = RpcServer(config.get("management", MANAGEMENT_SOCKET), controller)
    network.serve_in_thread()
    management.serve_in_thread()
    signal.signal(signal.SIGTERM, lambda *_: controller.stop())
    controller.events.emit("controller.ready", planner=controller.planner.name, address=config["address"])
    controller._stop.wait()
    time.sleep(0.1)
    network.shutdown()
    management.shutdown()
    controller.db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
