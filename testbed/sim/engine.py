"""The simulator: the emulated system's behaviour at city scale, in simulated time.

SimPy keeps the clock (seconds from the start).  Users, radio and load advance
in steps of ``sim.step`` as arrays (a fluid model: a user's tasks are a rate,
a server's queue its utilisation); handovers, planner decisions and
migrations are events.  The planners are the controller's own classes, asked
on the same triggers (a handover's start, a user's report, the monitor tick)
with the same ``SystemState``; their ``Migrate`` and ``Handover`` actions are
carried out with the phases the emulator measured (``testbed.sim.calibration``).

Wired links are shared by task traffic and migrations as fluids: a link's
tasks are a processor-sharing queue (a task of x bits takes x / (C (1 - rho))
over a link of C bit/s whose tasks offer rho C, and shares that with each
migration crossing it), and migrations split what the tasks leave.

What the fluid model does not do, and says so in docs/FIDELITY.md: no
per-packet TCP (a migration's transfers take the estimator's TCP model over the
bandwidth their path had when they began: the pre-copy a fresh connection's slow
start, the delta the window it left open, as the agents send them), no
shadowing (the mean path-loss model), a server's queue as M/M/c (Sakasegawa's approximation) rather than
processor sharing of real containers.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import simpy
from scipy.spatial import cKDTree

from testbed.config import ExperimentSpec, PlannerSpec
from testbed.config.experiment import service_name
from testbed.controller import planners
from testbed.controller.estimators import transfer_seconds
from testbed.controller.planners.base import Handover, Migrate, Planner
from testbed.controller.state import Service, SystemState, User
from testbed.mobility import build as build_mobility
from testbed.radio import handover_rule
from testbed.sim.calibration import SimCalibration
from testbed.sim.network import GraphNetwork
from testbed.sim.rows import Rows

CHUNK_STEPS = 600          # positions are drawn this many steps at a time (memory stays flat) ...
CHUNK_POINTS = 300_000     # ... or fewer, so that a chunk holds at most this many user positions
SETTLE_TIMEOUT_S = 120.0   # as the controller's settle: migrations under way may finish after the end
QUEUE_CAP = 0.98           # utilisation beyond which the M/M/c wait is held (an overloaded server)


@dataclass
class Trial:
    """What one simulated trial produced."""

    planner: str
    seed: int
    aggregates: Rows = field(default_factory=Rows)   # per user, service and interval
    migrations: Rows = field(default_factory=Rows)
    handovers: Rows = field(default_factory=Rows)
    decisions: int = 0
    offered_load: float = 0.0      # the users' work over the edge tier's compute (tasks/s x s at C = 1 / cores x C)
    requests: Rows = field(default_factory=Rows)     # with sim.per_request only
    wall_s: float = 0.0


class Simulation:
    def __init__(self, spec: ExperimentSpec, planner: PlannerSpec, calibration: SimCalibration, seed: int | None = None):
        self.spec, self.calibration = spec, calibration
        self.seed = spec.seed if seed is None else seed
        self.sim = spec.sim
        self.env = simpy.Environment()
        self.rng = np.random.default_rng(self.seed)
        self.delta_rng = np.random.default_rng([self.seed, 1])   # apart: a migration's draw moves no task's
        topology = spec.topology
        self.network = GraphNetwork(topology)
        self.state = SystemState.build(topology, spec.radio, spec.report_period, t=0.0, seed=self.seed,
                                       calibration=spec.calibration, network=self.network)
        self.planner: Planner = planners.build(planner.name, seed=self.seed, **planner.params)
        self.mode = spec.migration.mode
        self.state.configure_migration(self.mode, spec.migration.options(), topology.network)
        self.trial = Trial(planner.name, self.seed)
        self._k, self._servers_synced, self._accounted = 0, -1, 0.0
        self.settling = False
        self._radio_setup()
        self._users_setup()
        self._services_setup()

    # -- set-up ------------------------------------------------------------------------------
    def _radio_setup(self) -> None:
        radio = self.spec.radio
        self.radio = radio
        self.station_names = sorted(self.state.stations)
        self.station_index = {n: i for i, n in enumerate(self.station_names)}
        self.station_xy = np.array([self.state.stations[n].position for n in self.station_names], dtype=float)
        self.station_x, self.station_y = self.station_xy[:, 0].copy(), self.station_xy[:, 1].copy()
        self.tree = cKDTree(self.station_xy)
        self.neighbours = min(self.sim.neighbours, len(self.station_names))
        self.server_names = sorted(self.state.servers)
        self.server_index = {n: i for i, n in enumerate(self.server_names)}
        self.one_way = np.array([[self.network.one_way(b, s) for s in self.server_names] for b in self.station_names])
        self.capacity = np.array([self.state.stations[n].capacity_mbps or np.inf for n in self.station_names])
        rates = radio.rates()
        self.rate_snr = np.array([s for s, _ in rates.steps]) - 1e-9
        self.rate_mbps = np.array([0.0] + [m for _, m in rates.steps])
        self.noise_floor = rates.noise_floor_dbm
        self.user_decides = self.planner.handover == "rssi"
        self.controller = self.spec.topology.cloud()            # where the controller runs, as emulated
        radio_link = self.spec.topology.links.get(self.spec.topology.network.radio_link)
        self.radio_one_way = radio_link.delay if radio_link else 0.0
        self._links_setup()

    def _links_setup(self) -> None:
        """Which wired links each station-to-server path crosses (``pair_hops``, padded with the
        index ``len(links)``, a link that is never loaded), their bandwidth, and their load."""
        self.link_mbps = np.array(self.network.capacities(), dtype=float)
        hops = [[self.network.hops(b, s) for s in self.server_names] for b in self.station_names]
        longest = max((len(h) for row in hops for h in row), default=0)
        none = len(self.link_mbps)
        self.pair_hops = np.full((len(self.station_names), len(self.server_names), max(1, longest)), none)
        for i, row in enumerate(hops):
            for j, links in enumerate(row):
                self.pair_hops[i, j, :len(links)] = links
        self._offer_tasks(np.zeros(none))
        self.link_migrations = np.zeros(none)         # migrations crossing each link now

    def _migration_mbps(self, links: list[int]) -> float:
        """A migration's share of its path now: what the tasks leave of each link, split between
        the migrations crossing it."""
        if not links:
            return math.inf
        return float(min(self.link_left_mbps[i] / self.link_migrations[i] for i in links))

    def _offer_tasks(self, mbps: np.ndarray) -> None:
        """Per link, what the tasks' traffic (``mbps``) leaves for migrations (at least
        ``1 - QUEUE_CAP`` of each link)."""
        self.link_left_mbps = np.maximum(self.link_mbps - mbps, self.link_mbps * (1.0 - QUEUE_CAP))

    def _users_setup(self) -> None:
        self.user_names = list(self.spec.users)
        self.user_index = {n: i for i, n in enumerate(self.user_names)}
        self.mobility = [build_mobility(**self.spec.mobility_params(u)) for u in self.user_names]
        n = len(self.user_names)
        self.ap = np.full(n, -1)
        self.handover_from = np.zeros(n)         # the user's last handover: [from, until)
        self.handover_until = np.zeros(n)
        self.handover_target = np.full(n, -1)
        self.lost_from = np.full(n, -1)
        self.rules = [handover_rule(self.radio) for _ in range(n)] if self.radio.handover_rule == "a3" else None
        self.rule = handover_rule(self.radio)
        self.flagged = np.zeros(n, dtype=bool)
        self.chunk_steps = max(1, min(CHUNK_STEPS, CHUNK_POINTS // max(1, n)))
        self._chunk_index, self._ahead = -1, None
        self._heard_last: tuple = (None, {})
        for name in self.user_names:
            self.state.users[name] = User(name, None, t=0.0)

    def _services_setup(self) -> None:
        rows = []
        for u, user in enumerate(self.user_names):
            for index, use in enumerate(self.spec.users[user].services):
                app = self.calibration.app(use.app)
                rows.append((service_name(user, index, use.app), u, use, app))
        self.service_names = [r[0] for r in rows]
        self.service_index = {n: i for i, n in enumerate(self.service_names)}
        self.service_user = np.array([r[1] for r in rows], dtype=int)
        self.services_of_user = [[] for _ in self.user_names]
        for s, r in enumerate(rows):
            self.services_of_user[r[1]].append(s)
        computes = [self.state.servers[n].compute for n in self.server_names]
        # per service and server: the median processing time there (s), and the mean (lognormal)
        self.proc_median_s = np.array([[self.calibration.processing_ms(r[2].app, c) / 1e3 for c in computes]
                                       for r in rows]).reshape(len(rows), len(computes))
        self.proc_mean_s = self.proc_median_s * np.exp(np.array([r[3].proc_sigma for r in rows]) ** 2 / 2)[:, None]
        self.proc_sigma = np.array([r[3].proc_sigma for r in rows])
        self.think_s = np.array([r[2].think_time for r in rows])
        self.task_mbit = np.array([r[3].task_bytes for r in rows]) * 8 / 1e6
        self.overhead_s = np.array([r[3].overhead_ms / 1e3 for r in rows])
        self.overhead_per_rtt = np.array([r[3].overhead_per_rtt for r in rows])
        self.down_from = np.zeros(len(rows))
        self.down_until = np.zeros(len(rows))
        self.server_of = np.zeros(len(rows), dtype=int)
        self.proc_c1_s = np.array([r[3].proc_ms / 1e3 * math.exp(r[3].proc_sigma ** 2 / 2) for r in rows])
        self.e2e_s = self.proc_mean_s.min(axis=1) if len(rows) else np.zeros(0)
        self.proc_now_s = self.e2e_s.copy()
        for name, u, use, _ in rows:
            migration = self.calibration.migration_of(use.app)
            self.state.services[name] = Service(
                name, self.user_names[u], use.app, "", cpus=use.cpus, memory_mb=use.memory / 2**20,
                task_bytes=self.calibration.app(use.app).task_bytes, quota=use.quota,
                image_bytes=migration.image_bytes, full_bytes=migration.full_bytes,
                delta_bytes=max(1.0, migration.delta_bytes))
        self.service_memory = np.array([r[2].memory / 2**20 for r in rows])
        self.server_cpus = np.array([self.state.servers[s].cpus for s in self.server_names])
        self.compute = np.array([self.state.servers[s].compute for s in self.server_names])
        self.background = np.zeros(len(self.server_names))
        # the M/M/c wait (Sakasegawa): E[W] = E[S] rho^(sqrt(2 (c + 1)) - 1) / (c (1 - rho))
        self.queue_cores = np.maximum(1.0, np.floor(self.server_cpus))
        self.queue_exponent = np.sqrt(2 * (self.queue_cores + 1)) - 1
        self.moving = np.zeros(len(rows), dtype=bool)
        self._rows = np.arange(len(rows))
        self._active = np.zeros(len(rows))
        self._rates = np.zeros(len(rows))
        self._served = np.zeros(len(rows))
        self._sums = np.zeros((len(rows), 6))    # requests, e2e, proc, tx, downtime, coverage downtime
        self._interval_handovers = np.zeros(len(self.user_names))
        self._interval_migrations = np.zeros(len(rows))

    # -- positions and radio -------------------------------------------------------------------
    def _chunk(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk ``c``'s positions (steps x users x 2) and presence (steps x users)."""
        times = (c * self.chunk_steps + np.arange(self.chunk_steps)) * self.sim.step
        return (np.stack([m.positions(times) for m in self.mobility], axis=1),
                np.stack([m.present(times) for m in self.mobility], axis=1))

    def _nearest(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per step and user, the mean RSSI of its ``sim.neighbours`` nearest stations and their
        indices, nearest first.  A user's positions are asked in a row (they are near each other,
        which the tree's search likes)."""
        steps, users = xy.shape[:2]
        distance, index = self.tree.query(xy.transpose(1, 0, 2).reshape(-1, 2), k=self.neighbours)
        rssi = self.state.path_loss.mean_rssi_at(distance).reshape(users, steps, -1).transpose(1, 0, 2)
        return np.ascontiguousarray(rssi), np.ascontiguousarray(index.reshape(users, steps, -1).transpose(1, 0, 2))

    def _load_chunk(self, c: int) -> None:
        """Make chunk ``c`` current and start on the next: its positions now, its nearest stations
        on the other core while this chunk is simulated (the tree is the largest cost of a step,
        and it runs without the interpreter's lock)."""
        if self._ahead is not None and self._ahead[0] == c:
            _, self._xy, self._present, nearest = self._ahead
        else:
            self._xy, self._present = self._chunk(c)
            nearest = self._pool.submit(self._nearest, self._xy)
        xy, present = self._chunk(c + 1)
        self._ahead = (c + 1, xy, present, self._pool.submit(self._nearest, xy))
        self._near_rssi, self._near_index = nearest.result()
        self._chunk_index = c

    def _radio_rate(self, rssi: np.ndarray) -> np.ndarray:
        return self.rate_mbps[np.searchsorted(self.rate_snr, rssi - self.noise_floor, side="right")]

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> Trial:
        started = time.perf_counter()
        self.env.process(self._steps())
        if type(self.planner).on_tick is not Planner.on_tick:
            self.env.process(self._ticks())
        if self.planner.uses_checkpoint_sizes:
            self.env.process(self._probes())
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim-nearest") as self._pool:
            self.env.run(until=self.spec.duration)
            self.settling = True            # as the emulator's trial ends: no new decisions, moves finish
            deadline = self.spec.duration + SETTLE_TIMEOUT_S
            while self.moving.any() and self.env.peek() <= deadline:
                self.env.step()
        end = max(self.env.now, self.spec.duration)
        if end > self._accounted:
            self._load(self._accounted, end)
        self._flush(end)
        self.trial.wall_s = time.perf_counter() - started
        edges = [i for i, n in enumerate(self.server_names) if self.state.servers[n].role == "edge"]
        capacity = float(np.sum(self.server_cpus[edges] * self.compute[edges])) or 1.0
        work = self.sim.task_rate * self.proc_c1_s.sum() if self.sim.task_rate is not None \
            else float(self._served @ self.proc_c1_s) / self.spec.duration
        self.trial.offered_load = round(work / capacity, 4)
        return self.trial

    def _steps(self):
        step, k = self.sim.step, 0
        reports = type(self.planner).on_report is not Planner.on_report
        next_report, next_flush = 0.0, self.sim.interval
        deployed = False
        while True:
            now = self.env.now
            self.state.t = now
            self._k = k
            c, i = divmod(k, self.chunk_steps)
            if c != self._chunk_index:
                self._load_chunk(c)
            self.xy, self.present = self._xy[i], self._present[i]
            self.near_rssi, self.nearest = self._near_rssi[i], self._near_index[i]
            self._radio(now)
            if not deployed:
                self._deploy()
                deployed = True
            if reports and now >= next_report - 1e-9:
                self._report_all(now)
                next_report += self.spec.report_period
            self._load(self._accounted, now)
            if now >= next_flush - 1e-9:
                self._flush(next_flush)
                next_flush += self.sim.interval
            k += 1
            yield self.env.timeout(step)

    def _serving_rssi(self) -> np.ndarray:
        """Every user's RSSI from its base station (-inf without one)."""
        station = np.maximum(self.ap, 0)
        d = np.hypot(self.xy[:, 0] - self.station_x[station], self.xy[:, 1] - self.station_y[station])
        return np.where(self.ap >= 0, self.state.path_loss.mean_rssi_at(d), -np.inf)

    def _radio(self, now: float) -> None:
        """The users' own handover rule; the full rule runs only for users it might move."""
        done = (self.handover_target >= 0) & (self.handover_until <= now + 1e-9)
        for u in np.flatnonzero(done):
            self._attach(u, self.handover_target[u])
            self.handover_target[u] = -1
        idle = self.handover_target < 0
        gone = idle & ~self.present & (self.ap >= 0)
        for u in np.flatnonzero(gone):              # off the map (a trace's gap): no station
            self.lost_from[u], self.ap[u] = self.ap[u], -1
            self.state.users[self.user_names[u]].ap = None
        asking = idle & self.present
        ap, best, best_rssi, serving = self.ap, self.nearest[:, 0], self.near_rssi[:, 0], self._serving_rssi()
        sensitivity = self.radio.sensitivity_dbm
        flag = asking & np.where(ap >= 0, (serving < sensitivity)
                                 | ((best != ap) & (best_rssi >= serving + self.radio.hysteresis_db)),
                                 best_rssi >= sensitivity)
        candidates = np.flatnonzero(flag)
        if self.rules is not None:                  # A3 keeps time: ask it while its condition may hold
            candidates = np.union1d(candidates, np.flatnonzero(self.flagged & asking))
            self.flagged = flag
        for u in candidates:
            self._decide_radio(int(u), now)

    def _heard(self, u: int) -> dict[str, float]:
        """The stations user ``u`` hears this step (its nearest and its own), once a step: a
        handover asks twice, for the radio rule and for the planner's view of the user."""
        key = (self._k, u, self.ap[u])
        if self._heard_last[0] == key:
            return self._heard_last[1]
        heard = dict(zip(map(self.station_names.__getitem__, self.nearest[u].tolist()), self.near_rssi[u].tolist()))
        serving = self.ap[u]
        if serving >= 0 and self.station_names[serving] not in heard:
            heard[self.station_names[serving]] = self.state.path_loss.mean_rssi(
                tuple(self.station_xy[serving].tolist()), tuple(self.xy[u].tolist()))
        self._heard_last = (key, heard)
        return heard

    def _decide_radio(self, u: int, now: float) -> None:
        rule = self.rules[u] if self.rules is not None else self.rule
        serving = self.station_names[self.ap[u]] if self.ap[u] >= 0 else None
        action = rule.action(serving, self._heard(u), now, user_decides=self.user_decides)
        if action is None:
            return
        kind, target = action
        if kind == "lost":
            self.lost_from[u], self.ap[u] = self.ap[u], -1
            self.state.users[self.user_names[u]].ap = None
        elif kind == "attach":
            index = self.station_index[target]
            source = self.lost_from[u]
            self._attach(u, index)
            if source >= 0 and source != index:
                self._notify_handover(u, self.station_names[source], target, now)
        else:
            self._start_handover(u, self.station_index[target], now, "rssi" if kind == "handover" else "lost_signal")

    def _attach(self, u: int, station: int) -> None:
        self.ap[u] = station
        self.lost_from[u] = -1
        self.state.users[self.user_names[u]].ap = self.station_names[station]

    def _start_handover(self, u: int, target: int, now: float, reason: str) -> None:
        source = self.station_names[self.ap[u]] if self.ap[u] >= 0 else None
        self.handover_target[u] = target
        self.handover_from[u] = now
        self.handover_until[u] = now + self.radio.handover_time + self.calibration.handover_excess_s
        self._interval_handovers[u] += 1
        self.trial.handovers.append({"t": now, "user": self.user_names[u], "source": source,
                                     "target": self.station_names[target], "reason": reason})
        self.state.users[self.user_names[u]].ap = self.station_names[target]
        if reason != "commanded":
            self._notify_handover(u, source, self.station_names[target], now)

    # -- the planner --------------------------------------------------------------------------------
    def _sync_user(self, u: int, now: float) -> User:
        user = self.state.users[self.user_names[u]]
        user.t = now
        user.position = (float(self.xy[u, 0]), float(self.xy[u, 1]))
        user.velocity = self._velocity(u, now)
        sensitivity = self.radio.sensitivity_dbm
        user.rssi = {b: r for b, r in self._heard(u).items() if r >= sensitivity}
        user.e2e_ms, user.task_rate = {}, {}
        for s in self.services_of_user[u]:
            name = self.service_names[s]
            user.e2e_ms[name] = float(self.e2e_s[s] * 1e3)
            user.task_rate[name] = self._rate(s)
            self.state.services[name].proc_ms = float(self.proc_now_s[s] * 1e3)
        return user

    def _velocity(self, u: int, now: float) -> tuple[float, float]:
        """From the step's positions (the model's finite difference at a chunk's edge)."""
        k = self._k % self.chunk_steps
        if 0 < k < self.chunk_steps - 1:
            (x1, y1), (x0, y0) = self._xy[k + 1, u].tolist(), self._xy[k - 1, u].tolist()
            return (x1 - x0) / (2 * self.sim.step), (y1 - y0) / (2 * self.sim.step)
        return tuple(float(v) for v in self.mobility[u].velocity(now))

    def _sync_servers(self) -> None:
        if self._servers_synced == self._k:
            return                                  # once a step: the load changes only with the step
        self._servers_synced = self._k
        load = self._server_load()
        memory = np.bincount(self.server_of, weights=self.service_memory, minlength=len(self.server_names))
        for i, name in enumerate(self.server_names):
            server = self.state.servers[name]
            server.cpu_util = float(min(1.0, load[i]))
            server.memory_used_mb = float(memory[i])
            server.background_cores = float(self.background[i])

    def _notify_handover(self, u: int, source: str | None, target: str, now: float) -> None:
        user = self._sync_user(u, now)
        self._sync_servers()
        self._act("handover", self.planner.on_handover(self.state, user, source, target), self._notice_lag(u))

    def _notice_lag(self, u: int) -> float:
        """A user's notice or report travels from its base station to the controller."""
        station = self.ap[u] if self.ap[u] >= 0 else self.handover_target[u]
        if station < 0 or self.controller is None:
            return 0.0
        return self.network.one_way(self.station_names[station], self.controller)

    def _report_all(self, now: float) -> None:
        self._sync_servers()
        users = [u for u in range(len(self.user_names)) if self.present[u] and self.ap[u] >= 0
                 and self.handover_target[u] < 0]
        for u in users:
            self._sync_user(u, now)
        if type(self.planner).on_reports is not Planner.on_reports:    # one look at every user
            self._act("report", self.planner.on_reports(self.state, [self.state.users[self.user_names[u]]
                                                                     for u in users]),
                      max((self._notice_lag(u) for u in users), default=0.0))
            return
        for u in users:
            self._act("report", self.planner.on_report(self.state, self.state.users[self.user_names[u]]),
                      self._notice_lag(u))

    def _ticks(self):
        while True:
            yield self.env.timeout(self.spec.monitor_period)
            now = self.env.now
            for u in range(len(self.user_names)):
                if self.present[u]:
                    self._sync_user(u, now)
            self._sync_servers()
            self._act("tick", self.planner.on_tick(self.state))

    def _probes(self):
        """Seed 002's t0, as the controller does it: two checkpoints of every service once it has
        served for ``probe.after`` (again every ``probe.period``) give the sizes and teach the
        estimator the checkpoint time (the calibration's, on that server)."""
        probe = self.spec.probe
        yield self.env.timeout(probe.after)
        while True:
            for name, service in self.state.services.items():
                if service.moving:
                    continue
                calibration = self.calibration.migration_of(service.app)
                compute = self.state.servers[service.server].compute
                service.full_bytes, service.delta_bytes = calibration.full_bytes, max(1.0, calibration.delta_bytes)
                for _ in range(2):
                    self.state.migration_model.observe_checkpoint(service.server, calibration.checkpoint_s / compute,
                                                                  service.image_bytes, compute)
            if probe.period <= 0:
                return
            yield self.env.timeout(probe.period)

    def _deploy(self) -> None:
        for s, name in enumerate(self.service_names):
            u = self.service_user[s]
            user = self.state.users[self.user_names[u]]
            if user.position is None:
                user.position = (float(self.xy[u, 0]), float(self.xy[u, 1]))
            if user.ap is None:
                user.ap = self.station_names[self.nearest[u, 0]]
            service = self.state.services[name]
            service.server = self.planner.initial_server(self.state, service, user)
            self.server_of[s] = self.server_index[service.server]

    def _act(self, trigger: str, actions, lag: float = 0.0) -> None:
        """Carry out a decision; ``lag``: how long the trigger took to reach the controller."""
        if not actions or self.settling:
            return
        self.trial.decisions += 1
        for action in actions:
            if isinstance(action, Handover):
                self.env.process(self._commanded(self.user_index[action.user], self.station_index[action.target],
                                                 action.at))
            elif isinstance(action, Migrate):
                s = self.service_index[action.service]
                service = self.state.services[action.service]
                if service.moving or action.dest == service.server:
                    continue
                service.moving, service.moving_to = True, action.dest
                self.moving[s] = True
                self.env.process(self._migrate(s, action, trigger, lag))

    # -- migrations ------------------------------------------------------------------------------------
    def _migrate(self, s: int, action: Migrate, trigger: str, lag: float):
        service = self.state.services[action.service]
        source, dest = service.server, action.dest
        calibration = self.calibration.migration_of(service.app)
        decided = self.env.now
        # the controller's orders cross the network: the user's notice or report to it, then its
        # order to the source's agent, which prepares the destination and answers, then "go"
        control = self.network.one_way(self.controller, source) if self.controller else 0.0
        if action.pre_at is None:
            yield self.env.timeout(lag + control)
        elif action.pre_at > self.env.now:
            yield self.env.timeout(action.pre_at - self.env.now)
        links = self.network.hops(source, dest)
        self.link_migrations[links] += 1
        one_way = self.network.one_way(source, dest)
        c_source, c_dest = self.compute[self.server_index[source]], self.compute[self.server_index[dest]]
        checkpoint = calibration.checkpoint_s / c_source
        started = self.env.now
        if self.mode == "cold":
            yield self.env.timeout(calibration.setup_s + 2 * control)
            moved_bytes = service.full_bytes + service.delta_bytes
        else:
            yield self.env.timeout(calibration.setup_s + 2 * control + checkpoint)
            share = self.state.migration_model.precopy_share       # the path as it is when the transfer begins
            yield self.env.timeout(calibration.pre_efficiency * transfer_seconds(
                service.full_bytes, self._migration_mbps(links) * share, 2 * one_way))
            moved_bytes = self._delta_bytes(service, calibration)
        pre = self.env.now - started
        if action.final_at is not None and action.final_at > self.env.now:
            yield self.env.timeout(action.final_at - self.env.now)
        restore = calibration.restore_s / c_dest
        transfer = self.state.migration_model.final_transfer_seconds(moved_bytes, self._migration_mbps(links), one_way)
        downtime = max(0.0, checkpoint + transfer + restore + calibration.overhead_s)
        self.down_from[s], self.down_until[s] = self.env.now, self.env.now + downtime
        yield self.env.timeout(downtime)
        self.link_migrations[links] -= 1
        service.server, service.moving, service.moving_to = dest, False, None
        self.server_of[s] = self.server_index[dest]
        self.moving[s] = False
        self._interval_migrations[s] += 1
        model = self.state.migration_model          # the estimator learns, as the controller's does
        model.observe_setup(dest, calibration.setup_s)
        model.observe_checkpoint(source, checkpoint, service.image_bytes, c_source)
        model.observe_restore(dest, restore, service.image_bytes + service.full_bytes + service.delta_bytes, c_dest)
        self.trial.migrations.append({
            "service": service.name, "user": service.user, "app": service.app, "source": source, "dest": dest,
            "mode": self.mode, "trigger": trigger, "decided": decided, "start": started, "pre_migration_s": pre,
            "downtime_s": downtime, "end": self.env.now, "estimated_migration_s": action.estimates.get("migration_s")
            if isinstance(action.estimates.get("migration_s"), float) else None})

    def _delta_bytes(self, service, calibration) -> float:
        """The delta this migration moves: drawn from the sizes measured (``delta_quantiles``), or
        the service's as the probe found it."""
        quantiles = calibration.delta_quantiles
        if not quantiles:
            return service.delta_bytes
        return max(1.0, float(np.interp(self.delta_rng.uniform(), np.linspace(0, 1, len(quantiles)), quantiles)))

    # -- load and delay ------------------------------------------------------------------------------------
    def _rate(self, s: int) -> float:
        if self.sim.task_rate is not None:
            return self.sim.task_rate
        return 1.0 / float(self.e2e_s[s] + self.think_s[s])

    def _server_load(self, service_s: np.ndarray | None = None) -> np.ndarray:
        """Each server's utilisation: its services' work (tasks/s x seconds each) and its background
        load, over its cores (``service_s``: each service's mean processing time where it is)."""
        if service_s is None:
            service_s = self.proc_mean_s[self._rows, self.server_of]
        work = self._rates * self._active * service_s
        return (np.bincount(self.server_of, weights=work, minlength=len(self.server_names)) + self.background) \
            / self.server_cpus

    def _commanded(self, u: int, target: int, at: float | None):
        """The controller's handover order, carried out at its time (the user follows it)."""
        if at is not None and at > self.env.now:
            yield self.env.timeout(at - self.env.now)
        if self.handover_target[u] < 0 and self.present[u] and self.ap[u] >= 0 and target != self.ap[u]:
            self._start_handover(u, target, self.env.now, "commanded")

    def _load(self, start: float, now: float) -> None:
        """Account [start, now), which has just passed: each service's share of it out of service
        (a handover, a migration's downtime: intervals that began and ended within it count too),
        its requests and their delays at the placement of ``now``; then the load the planners see."""
        self._accounted = now
        step = now - start
        users = self.service_user
        present = self.present[users]
        attached = self.ap[users] >= 0
        if step > 0:
            handover = np.clip(np.minimum(now, self.handover_until[users]) - np.maximum(start, self.handover_from[users]),
                               0.0, step)
            down = np.clip(np.minimum(now, self.down_until) - np.maximum(start, self.down_from), 0.0, step)
            self._active = np.where(present & attached, 1.0 - np.minimum(step, handover + down) / step, 0.0)
        else:
            self._active = (present & attached).astype(float)
        self._rates = 1.0 / (self.e2e_s + self.think_s) if self.sim.task_rate is None \
            else np.full(len(users), self.sim.task_rate)
        for load in self.spec.load:
            i = self.server_index[load.server]
            on = load.start <= now < load.start + load.duration
            self.background[i] = load.share * self.server_cpus[i] if on else 0.0
        server = self.server_of
        service_s = self.proc_mean_s[self._rows, server]
        rho = np.minimum(self._server_load(service_s), QUEUE_CAP)
        waiting = rho ** self.queue_exponent / (self.queue_cores * (1 - rho))   # per server, x the service time
        proc = service_s * (1.0 + waiting[server])
        station = np.maximum(self.ap[users], 0)
        rssi = self._serving_rssi()[users]
        sharing = np.bincount(self.ap[self.ap >= 0], minlength=len(self.station_names))[station]
        radio = np.minimum(self._radio_rate(rssi), self.capacity[station]) / np.maximum(1, sharing)
        hops = self.pair_hops[station, server]
        offered = self._rates * self._active * self.task_mbit
        self._offer_tasks(np.bincount(hops.ravel(), weights=np.repeat(offered, hops.shape[1]),
                                      minlength=len(self.link_mbps) + 1)[:len(self.link_mbps)])
        per_task = np.append(self.link_left_mbps / (1.0 + self.link_migrations), np.inf)
        bandwidth = np.minimum(radio, per_task[hops].min(axis=1))
        rtt = 2 * (self.one_way[station, server] + self.radio_one_way)
        tx = self.task_mbit / np.maximum(bandwidth, 1e-6) + rtt
        e2e = proc + tx + self.overhead_s + self.overhead_per_rtt * rtt
        active = self._active > 0
        self.e2e_s = np.where(active, e2e, self.e2e_s)
        self.proc_now_s = np.where(active, proc, self.proc_now_s)
        requests = self._rates * step * self._active
        sums = self._sums
        sums[:, 0] += requests
        self._served += requests
        sums[:, 1] += requests * e2e
        sums[:, 2] += requests * proc
        sums[:, 3] += requests * tx
        sums[:, 4] += present * (1.0 - self._active) * step       # the user wants service and gets none
        sums[:, 5] += (present & ~attached) * step
        if self.sim.per_request:
            self._sample_requests(start, step, np.flatnonzero(active), proc, tx, service_s)

    def _sample_requests(self, start, step, active, proc, tx, service_s) -> None:
        """One row per request of the step: Poisson counts, lognormal processing around the step's mean."""
        counts = self.rng.poisson(self._rates[active] * step)
        for s, n in zip(active, counts):
            if n == 0:
                continue
            draws = self.rng.lognormal(0.0, self.proc_sigma[s], n) * self.proc_median_s[s, self.server_of[s]] \
                + (proc[s] - service_s[s])
            sent = start + np.sort(self.rng.uniform(0, step, n))
            for t, p in zip(sent, draws):
                self.trial.requests.append({"service": self.service_names[s], "sent": float(t),
                                            "e2e_ms": float((p + tx[s]) * 1e3), "proc_ms": float(p * 1e3)})

    def _flush(self, end: float) -> None:
        sums = self._sums
        for s, name in enumerate(self.service_names):
            count = sums[s, 0]
            u = self.service_user[s]
            if count == 0 and sums[s, 4] == 0 and not self._interval_migrations[s]:
                continue
            self.trial.aggregates.append({
                "t": float(end), "user": self.user_names[u], "service": name,
                "app": self.state.services[name].app, "server": self.server_names[self.server_of[s]],
                "requests": float(count), "e2e_mean_ms": float(sums[s, 1] / count * 1e3) if count else None,
                "processing_mean_ms": float(sums[s, 2] / count * 1e3) if count else None,
                "transmission_mean_ms": float(sums[s, 3] / count * 1e3) if count else None,
                "downtime_s": float(sums[s, 4]), "downtime_coverage_s": float(sums[s, 5]),
                "handovers": int(self._interval_handovers[u]), "migrations": int(self._interval_migrations[s])})
        sums[:] = 0
        self._interval_handovers[:] = 0
        self._interval_migrations[:] = 0
