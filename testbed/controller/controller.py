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

    python -m testbed.controller CONFIG.json        # a ControllerConfig, written by the runner
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from testbed import ports
from testbed.controller import planners
from testbed.controller.config import ControllerConfig
from testbed.controller.database import Database
from testbed.controller.planners.base import Handover, Migrate
from testbed.controller.state import Service, SystemState, User
from testbed.deprecation import module_getattr
from testbed.events import EventLog
from testbed.net.namespaces import network_state
from testbed.registry import MIGRATION_MODES
from testbed.rpc import RpcClient, RpcError

BENCHMARK_LEAD_S = 1.0     # from sending the benchmark slots to the first: every order has arrived
BENCHMARK_GAP_S = 0.15     # between one server's run and the next's (its process starts)


def management_socket() -> str:
    """The controller's Unix socket for the runner and the dashboard, in its network's state."""
    return str(network_state() / "controller.sock")


__getattr__ = module_getattr(__name__, {"MANAGEMENT_SOCKET": ("testbed.controller.controller.management_socket()",
                                                              management_socket)})


class Controller:
    # What users, agents and the runner may call; anything else is refused.
    REMOTE = ("report", "handover_started", "handover_done", "server_report", "deploy", "start", "settle", "stop",
              "status", "operate")

    def __init__(self, config: ControllerConfig):
        self.config = config
        self.node = config.node
        self.spec = config.topology
        run_dir = config.run_dir
        self.db = Database(run_dir / "controller.sqlite" if run_dir else None)
        self.events = EventLog(run_dir / "events.jsonl" if run_dir else None, "controller")
        self.state = SystemState.build(self.spec, config.radio, config.report_period, calibration=config.calibration)
        self.planner = planners.build(config.planner.name, seed=config.seed, **config.planner.params)
        self.mode = config.migration.mode
        self.mode_options = config.migration.options()
        self.state.configure_migration(self.mode, self.mode_options, self.spec.network)
        self.agents = {server: RpcClient((address, ports.AGENT_RPC), timeout=600)
                       for server, address in config.agents.items()}
        self.placements = {p.service: p for p in config.services}
        self.endpoints: dict[str, dict] = {}
        self.handover_orders: dict[str, dict] = {}
        self.handovers_seen: dict[str, float] = {}     # user -> start of the last handover noticed
        self.settling = False                          # the trial is ending: no new decisions
        self.manual = False                            # the planner is off: only an operator acts
        self.paused: dict[str, bool] = {}              # users told to stand still
        self.lock = threading.RLock()
        self._stop = threading.Event()
        for name, user in config.users.items():
            self.state.users[name] = User(name, user.ap, tuple(user.position) if user.position else None,
                                          t=time.time())

    # -- Deployment -------------------------------------------------------------------
    def deploy(self) -> dict:
        """Measure every server's C_s, place every service (planner's choice), start it."""
        if self.config.benchmark_servers > 0:
            self._measure_compute(self.config.benchmark_servers)
        for name, placement in self.placements.items():
            user = self.state.users[placement.user]
            service = Service(name, placement.user, placement.app, "", cpus=placement.cpus,
                              memory_mb=placement.memory_mb, task_bytes=placement.task_bytes, quota=placement.quota)
            self.state.services[name] = service
            server = self.planner.initial_server(self.state, service, user)
            service.server = server
            instance = self.agents[server].call("deploy", spec=placement.container())
            service.image_bytes = float(instance["image_bytes"])
            self.endpoints[name] = {"endpoint": [instance["ip"], instance["port"]], "pending": [], "version": 0}
            self.db.placement(name, server, self.endpoints[name]["endpoint"])
            self.events.emit("controller.deployed", service=name, server=server, planner=self.planner.name,
                             endpoint=self.endpoints[name]["endpoint"])
        return {name: where["endpoint"] for name, where in self.endpoints.items()}

    def _measure_compute(self, seconds: float, rounds: int = 3) -> None:
        """Seed 002's C_s "measured using benchmarking software" (sysbench, once per server):
        each server's CPU benchmark in turn (not together: they share the host's cores), in
        ``rounds`` alternating short runs, relative to the server the topology calls fastest.

        Every server gets its time slots in one order sent to all at once (an order per run
        waits for a round trip over the WAN: the paper topology's four servers took 7.7 s,
        in slots 4.9 s); should two runs have overlapped all the same, they run again one by one."""
        names = sorted(self.state.servers)
        runs = self._benchmark_in_slots(names, seconds / rounds, rounds)
        overlap = longest_overlap(runs)
        if overlap > 0:
            self.events.emit("controller.compute_rerun", reason="benchmark runs overlapped", overlap_s=round(overlap, 4))
            runs = self._benchmark_in_turn(names, seconds / rounds, rounds)
        reference = max(self.state.servers, key=lambda name: (self.state.servers[name].compute, name))
        for name, measured in relative_compute(runs, reference, self.state.servers[reference].compute).items():
            server = self.state.servers[name]
            self.events.emit("controller.compute", server=name, configured=server.compute, measured=round(measured, 4),
                             ops_per_s=statistics.median(run["ops_per_s"] for run in runs[name]),
                             cpu_share=statistics.median(run["cpu_share"] for run in runs[name]))
            server.compute = measured

    def _benchmark_in_turn(self, names: list[str], seconds: float, rounds: int) -> dict[str, list[dict]]:
        """Each server's ``rounds`` runs, round by round, an order (and its round trip) per run."""
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for _ in range(rounds):
            for name in names:
                runs[name].append(self.agents[name].call("benchmark_cpu", seconds=seconds, timeout=60 + seconds))
        return runs

    def _benchmark_in_slots(self, names: list[str], seconds: float, rounds: int) -> dict[str, list[dict]]:
        """Each server's ``rounds`` runs in slots of their own, round by round, the first once
        every order has surely arrived (``BENCHMARK_LEAD_S``), each ``BENCHMARK_GAP_S`` after
        the one before ends (a run's process starts and its cgroup goes in that time)."""
        pitch, first = seconds + BENCHMARK_GAP_S, time.time() + BENCHMARK_LEAD_S
        slots = {name: [(first + (r * len(names) + i) * pitch, seconds) for r in range(rounds)]
                 for i, name in enumerate(names)}
        wait = 60 + BENCHMARK_LEAD_S + rounds * len(names) * pitch
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            asked = {name: pool.submit(self.agents[name].call, "benchmark_cpu_at", slots=slots[name], timeout=wait)
                     for name in names}
            return {name: future.result() for name, future in asked.items()}

    def _probes(self, started: float) -> None:
        """Seed 002's t0: once a service has served its user for ``probe.after``, two
        checkpoints in a row give the pre-migration size and its delta; again every
        ``probe.period``."""
        probe = self.config.probe
        wake = started + probe.after
        while not self._stop.wait(max(0.0, wake - time.time())):
            for name in sorted(self.state.services):
                with self.lock:
                    service = self.state.services[name]
                    if service.moving:
                        continue
                    server = service.server
                try:
                    result = self.agents[server].call("probe_checkpoints", service=name, options=self.mode_options,
                                                      timeout=120)
                except RpcError as exc:
                    self.events.emit("controller.probe_failed", service=name, error=str(exc))
                    continue
                if result.get("skipped"):
                    continue
                with self.lock:
                    service.full_bytes, service.delta_bytes = result["full_bytes"], max(1, result["delta_bytes"])
                    for seconds in result["checkpoint_seconds"]:
                        self.state.migration_model.observe_checkpoint(server, seconds, service.image_bytes,
                                                                      self.state.servers[server].compute)
                self.events.emit("controller.probe", service=name, server=server, full_bytes=result["full_bytes"],
                                 delta_bytes=result["delta_bytes"])
            if probe.period <= 0:
                return
            wake += probe.period

    # -- Monitor ----------------------------------------------------------------------
    def report(self, user: str, t: float, position=None, velocity=None, ap=None, rssi=None, e2e_ms=None,
               proc_ms=None, task_rate=None, sim_t=None) -> dict:
        with self.lock:
            state = self.state
            state.t = time.time()
            known = state.users.setdefault(user, User(user, ap))
            known.ap, known.t = ap, t
            known.position = tuple(position) if position else known.position
            known.velocity = tuple(velocity) if velocity else known.velocity
            known.rssi = rssi or {}
            known.e2e_ms = e2e_ms or {}
            known.task_rate = task_rate or {}
            for service in state.services_of(user):
                if proc_ms and service.name in proc_ms and not service.moving:
                    service.proc_ms = float(proc_ms[service.name])   # as measured on its current server
            order = self.handover_orders.get(user)
            if order and order["target"] == ap:
                self.handover_orders.pop(user, None)
            self._decide("report", user, lambda: self.planner.on_report(state, known))
        self.db.user_report({"user": user, "t": t, "sim_t": sim_t, "position": position, "velocity": velocity,
                             "ap": ap, "rssi": rssi, "e2e_ms": e2e_ms, "task_rate": task_rate})
        return self._reply(user)

    def handover_started(self, user: str, source: str | None, target: str, reason: str, start: float) -> None:
        """A user's own handover began (a notice sent just before its radio went down):
        the trigger of the planners that act on handovers, so that a pre-migration runs
        during the handover (seed 002, Fig. 6 b, c)."""
        with self.lock:
            state = self.state
            state.t = time.time()
            known = state.users.setdefault(user, User(user, target))
            known.ap = target
            self.handovers_seen[user] = start
            self.events.emit("controller.handover_notice", user=user, source=source, target=target,
                             reason=reason, start=start, phase="start")
            self._decide("handover", user, lambda: self.planner.on_handover(state, known, source, target))

    def handover_done(self, user: str, reason: str, start: float, end: float, **record) -> dict:
        """A user's handover ended; the planners act here only if its start went unnoticed."""
        with self.lock:
            state = self.state
            state.t = time.time()
            known = state.users.setdefault(user, User(user, record.get("to")))
            source, known.ap = record.get("from"), record.get("to")
            self.events.emit("controller.handover_notice", user=user, source=source, target=known.ap,
                             reason=reason, start=start, end=end, phase="end")
            if self.handovers_seen.get(user) != start:
                self._decide("handover", user, lambda: self.planner.on_handover(state, known, source, known.ap))
        return self._reply(user)

    def server_report(self, report: dict) -> bool:
        with self.lock:
            server = self.state.servers.get(report["server"])
            if server is not None:
                server.cpu_util = float(report.get("cpu_utilisation", 0.0))
                server.memory_used_mb = float(report.get("memory_bytes", 0)) / 2**20
                services = sum(s.get("cpu_cores") or 0.0 for s in report.get("services", {}).values())
                server.background_cores = max(0.0, server.cpu_util * server.cpus - services)
        self.db.server_report(report)
        return True

    def _set_endpoint(self, service: str, endpoint=None, pending=None) -> None:
        """Change where ``service`` is (or is about to be); every change gets a new version, so a
        user can tell a reply built before it from one built after (replies cross the WAN)."""
        where = self.endpoints[service]
        if endpoint:
            where["endpoint"] = endpoint
        if pending is not None:
            where["pending"] = pending
        where["version"] += 1

    def _reply(self, user: str) -> dict:
        with self.lock:
            services = {name: dict(self.endpoints[name]) for name in self.endpoints
                        if self.state.services[name].user == user}
            return {"services": services, "handover": self.handover_orders.get(user),
                    "paused": self.paused.get(user, False)}

    # -- Planner -----------------------------------------------------------------------
    def _decide(self, trigger: str, user: str | None, ask) -> None:
        if self.settling or self.manual:
            return
        actions = ask()
        if not actions:
            return
        estimates = next((a.estimates for a in actions if isinstance(a, Migrate)), {})
        explained = self.planner.explain()
        inputs = {"users": {n: asdict(u) for n, u in self.state.users.items()},
                  "services": {n: asdict(s) for n, s in self.state.services.items()},
                  "servers": {n: {"cpu_util": s.cpu_util, "memory_used_mb": s.memory_used_mb}
                              for n, s in self.state.servers.items()}}
        decision = self.db.decision(self.planner.name, trigger, user, inputs,
                                    [{"type": type(a).__name__, **asdict(a)} for a in actions],
                                    {**estimates, **({"plan": explained} if explained else {})})
        self.events.emit("controller.decision", decision=decision, planner=self.planner.name, trigger=trigger,
                         user=user, actions=[{"type": type(a).__name__, **asdict(a)} for a in actions])
        for action in actions:
            if isinstance(action, Handover):
                self.handover_orders[action.user] = {"target": action.target, "at": action.at}
            elif isinstance(action, Migrate):
                service = self.state.services[action.service]
                if service.moving or action.dest == service.server:
                    continue
                service.moving, service.moving_to = True, action.dest
                threading.Thread(target=self._migrate, args=(action, decision), daemon=True).start()

    def _sleep_until(self, when: float | None, server: str) -> None:
        if when is None:
            return
        lead = self.state.network.one_way(self.node, server)   # the order's trip to the agent
        self._stop.wait(max(0.0, when - lead - time.time()))

    def _migrate(self, action: Migrate, decision: int, mode: str | None = None) -> None:
        service = self.state.services[action.service]
        source, migration_id = service.server, uuid.uuid4().hex[:10]
        agent = self.agents[source]
        mode = mode or self.mode
        options = self.mode_options if mode == self.mode else MIGRATION_MODES.get(mode).Options().model_dump()
        record = {"migration": migration_id, "service": service.name, "source": source, "dest": action.dest,
                  "mode": mode, "ok": False}
        try:
            self._sleep_until(action.pre_at, source)
            prepared = agent.call("migrate", service=service.name, dest=action.dest, mode=mode,
                                  phase="prepare", migration_id=migration_id, options=options)
            with self.lock:   # the user can look for the service there from now on
                self._set_endpoint(service.name, pending=[prepared["dest_endpoint"]])
            record = agent.call("migrate", service=service.name, dest=action.dest, mode=mode, phase="all",
                                migration_id=migration_id, options=options, final_at=action.final_at)
        except RpcError as exc:
            record["error"] = str(exc)
        with self.lock:
            if record.get("ok"):
                service.server = action.dest
            self._set_endpoint(service.name, endpoint=record.get("new_endpoint"), pending=[])
            service.moving, service.moving_to = False, None
            self._learn(record)
        self.db.migration(decision, record)
        self.db.placement(service.name, service.server, self.endpoints[service.name]["endpoint"])
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
        period = self.config.monitor_period
        while not self._stop.wait(period):
            with self.lock:
                self.state.t = time.time()
                self._decide("tick", None, lambda: self.planner.on_tick(self.state))

    # -- the operator (the dashboard) -----------------------------------------------------
    def operate(self, action: str, **params) -> dict:
        """An operator's order, logged as a decision (trigger ``operator``) like a planner's:
        ``migrate`` (service, dest, mode), ``handover`` (user, ap), ``pause`` / ``resume``
        (user: it stands still until resumed), ``manual`` (on: the planner is off)."""
        with self.lock:
            actions, user = self._operator_actions(action, params)
            decision = self.db.decision("operator", "operator", user, {"action": action, **params}, actions, {})
            self.events.emit("controller.operator", decision=decision, action=action, **params)
            if action == "migrate":
                service = self.state.services[params["service"]]
                service.moving, service.moving_to = True, params["dest"]
                threading.Thread(target=self._migrate, args=(Migrate(service.name, params["dest"]), decision,
                                                             params.get("mode")), daemon=True).start()
            elif action == "handover":
                self.handover_orders[user] = {"target": params["ap"], "at": None}
            elif action in ("pause", "resume"):
                self.paused[user] = action == "pause"
            else:
                self.manual = bool(params["on"])
                self.events.emit("controller.manual", on=self.manual)
        return {"ok": True, "decision": decision}

    def _operator_actions(self, action: str, params: dict) -> tuple[list[dict], str | None]:
        """The order checked against the system (ValueError naming what is wrong) and written as actions."""
        def known(kind: str, name, names) -> None:
            if name not in names:
                raise ValueError(f"{action}: unknown {kind} {name!r} (known: {', '.join(sorted(names))})")

        if action == "migrate":
            known("service", params.get("service"), self.state.services)
            known("server", params.get("dest"), self.state.servers)
            service = self.state.services[params["service"]]
            if params.get("mode") is not None:
                known("migration mode", params["mode"], MIGRATION_MODES.names())
            if service.moving:
                raise ValueError(f"migrate: {service.name} is already moving (to {service.moving_to})")
            if service.server == params["dest"]:
                raise ValueError(f"migrate: {service.name} already runs on {params['dest']}")
            return [{"type": "Migrate", "service": service.name, "dest": params["dest"],
                     "mode": params.get("mode") or self.mode}], service.user
        if action == "handover":
            known("user", params.get("user"), self.state.users)
            known("base station", params.get("ap"), self.state.stations)
            return [{"type": "Handover", "user": params["user"], "target": params["ap"]}], params["user"]
        if action in ("pause", "resume"):
            known("user", params.get("user"), self.state.users)
            return [{"type": action.capitalize(), "user": params["user"]}], params["user"]
        if action == "manual":
            if not isinstance(params.get("on"), bool):
                raise ValueError("manual: 'on' must be true or false")
            return [{"type": "Manual", "on": params["on"]}], None
        raise ValueError(f"unknown operator action {action!r} (known: migrate, handover, pause, resume, manual)")

    # -- management ----------------------------------------------------------------------
    def status(self) -> dict:
        with self.lock:
            return {"planner": self.planner.name, "manual": self.manual, "paused": dict(self.paused),
                    "services": {n: {"server": s.server, "moving": s.moving,
                                                                   **self.endpoints.get(n, {})}
                                                               for n, s in self.state.services.items()},
                    "users": {n: {"ap": u.ap, "position": u.position} for n, u in self.state.users.items()}}

    def start(self) -> bool:
        """The users start now: periodic checks, and the checkpoint-size probes if the planner uses them."""
        threading.Thread(target=self._ticks, name="ticks", daemon=True).start()
        if self.planner.uses_checkpoint_sizes:
            threading.Thread(target=self._probes, args=(time.time(),), name="probes", daemon=True).start()
        return True

    def settle(self, timeout: float = 120.0) -> dict:
        """The trial's end: no new decisions; returns once the migrations under way are done
        (so that none is cut short by the teardown), or after ``timeout``."""
        with self.lock:
            self.settling = True
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                moving = sorted(n for n, s in self.state.services.items() if s.moving)
            if not moving:
                break
            time.sleep(0.1)
        self.events.emit("controller.settled", still_moving=moving)
        return {"still_moving": moving}

    def stop(self) -> bool:
        self._stop.set()
        return True

    def wait(self) -> None:
        """Until ``stop``."""
        self._stop.wait()


def longest_overlap(runs: dict[str, list[dict]]) -> float:
    """The longest time (s) any two benchmark runs (``start``, ``end``) ran together; 0: none did."""
    spans = sorted((run["start"], run["end"]) for server_runs in runs.values() for run in server_runs)
    longest, ended = 0.0, -float("inf")
    for start, end in spans:
        longest = max(longest, min(end, ended) - start)
        ended = max(ended, end)
    return longest


def relative_compute(runs: dict[str, list[dict]], reference: str, reference_compute: float) -> dict[str, float]:
    """Each server's C_s from its benchmark runs, scaled so that ``reference`` has ``reference_compute``.

    A server's rate is the share of a core the kernel granted its benchmark (median over its
    runs) times the host core's speed pooled over every run of every server.  Not the raw
    operations per wall second: on a shared VM the core's speed itself drifts by up to 2x
    between consecutive 0.3 s runs (measured: 10-19 M loop steps/s at 100 % CPU), and
    the servers, emulated on one host, all have that core; what differs between them is
    the CPU bandwidth each gets, which the kernel's accounting measures exactly.
    """
    core_speed = statistics.median(run["ops_per_cpu_s"] for server_runs in runs.values() for run in server_runs)
    rate = {name: statistics.median(run["cpu_share"] for run in server_runs) * core_speed
            for name, server_runs in runs.items()}
    return {name: reference_compute * rate[name] / rate[reference] for name in runs}
