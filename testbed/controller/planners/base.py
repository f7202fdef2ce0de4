"""What planners see (``SystemState``), what they answer (``Action``), and their interface.

A planner is one file with a ``Planner`` subclass registered in
``testbed.controller.planners.PLANNERS``.  It is called by the controller on
three triggers and answers with actions, which the controller executes and
logs with the planner's estimates:

* ``on_handover``: a user handed over by itself (RSSI), seed 002's trigger of
  the cloud, random and nearest planners;
* ``on_report``: a user's Local Monitor reported (every report period);
* ``on_tick``: the periodic resource check (seed 004: every 5 s; seed 000).
"""

from __future__ import annotations

import math
from abc import ABC
from dataclasses import dataclass, field

from testbed.controller.estimators import MigrationTimeModel, PathEstimate, wireless_rate_mbps
from testbed.mobility.base import Point, distance
from testbed.radio import HysteresisHandover, PathLoss


@dataclass
class Server:
    name: str
    role: str                     # "cloud" or "edge"
    position: Point | None
    cpus: float
    memory_mb: float
    compute: float
    site: str = "default"         # servers of one site share a network (seed 004)
    cpu_util: float = 0.0         # fraction of its cpus in use (reported)
    memory_used_mb: float = 0.0


@dataclass
class Station:
    name: str
    position: Point
    max_users: int
    uplink: str                   # the server the base station is wired to


@dataclass
class User:
    name: str
    ap: str | None
    position: Point | None = None
    velocity: Point = (0.0, 0.0)
    rssi: dict[str, float] = field(default_factory=dict)
    e2e_ms: dict[str, float] = field(default_factory=dict)
    t: float = 0.0


@dataclass
class Service:
    name: str
    user: str
    app: str
    host: str
    cpus: float
    memory_mb: float
    task_bytes: float = 100.0
    proc_ms: float = 0.0          # processing delay measured on ``host``
    image_bytes: float = 100e6
    full_bytes: float = 50e6      # checkpoint size estimate (probe at t0)
    delta_bytes: float = 1e6
    quota: float = 0.1            # CPU share of a node in the app profile (seed 004)
    moving: bool = False          # a migration is under way


class Network:
    """Paths between nodes of the emulated network (from its address plan)."""

    def __init__(self, plan):
        self.plan = plan

    def one_way(self, a: str, b: str) -> float:
        return 0.0 if a == b else self.plan.one_way_delay(a, b)

    def bandwidth(self, a: str, b: str) -> float:
        return math.inf if a == b else self.plan.bottleneck_mbps(a, b)


@dataclass
class SystemState:
    t: float
    servers: dict[str, Server]
    stations: dict[str, Station]
    users: dict[str, User]
    services: dict[str, Service]
    network: Network
    path_loss: PathLoss
    policy: HysteresisHandover
    migration_model: MigrationTimeModel
    handover_time_s: float = 0.5
    report_period_s: float = 0.5

    def users_on(self, station: str) -> int:
        return sum(1 for u in self.users.values() if u.ap == station)

    def services_of(self, user: str) -> list[Service]:
        return [s for s in self.services.values() if s.user == user]

    def nearest_server(self, position: Point, roles=("edge",)) -> str:
        candidates = [s for s in self.servers.values() if s.role in roles and s.position is not None]
        return min(candidates, key=lambda s: (distance(s.position, position), s.name)).name

    def path(self, rssi: float, station: str, server: str) -> PathEstimate:
        """What the user would see through ``station`` to ``server`` at this RSSI."""
        return PathEstimate(bandwidth_mbps=min(wireless_rate_mbps(rssi), self.network.bandwidth(station, server)),
                            rtt_s=2 * self.network.one_way(station, server),
                            compute=self.servers[server].compute)

    def predicted_position(self, user: User, at: float) -> Point:
        dt = max(0.0, at - user.t)
        return user.position[0] + user.velocity[0] * dt, user.position[1] + user.velocity[1] * dt

    def predicted_rssi(self, user: User, at: float) -> dict[str, float]:
        position = self.predicted_position(user, at)
        return {name: self.path_loss.rssi(name, st.position, position) for name, st in self.stations.items()}

    def predict_handover(self, user: User, horizon_s: float, step_s: float = 0.1) -> tuple[float, str] | None:
        """When and where relative hysteresis will move ``user`` within ``horizon_s`` (mean model)."""
        if user.position is None or user.ap is None:
            return None
        k = 0
        while k * step_s <= horizon_s:
            at = user.t + k * step_s
            target = self.policy.decide(user.ap, self.predicted_rssi(user, at))
            if target:
                return at, target
            k += 1
        return None


@dataclass
class Migrate:
    service: str
    dest: str
    pre_at: float | None = None     # wall time to start pre-migration (None: now)
    final_at: float | None = None   # wall time of the migration phase (None: once pre is done)
    estimates: dict = field(default_factory=dict)


@dataclass
class Handover:
    user: str
    target: str
    at: float | None = None


Action = Migrate | Handover


class Planner(ABC):
    name: str = "planner"
    handover: str = "rssi"          # who triggers handovers: the user ("rssi") or the controller

    def __init__(self, seed: int = 0, **params):
        import random

        self.rng = random.Random(seed)
        self.params = params

    def initial_server(self, state: SystemState, service: Service, user: User) -> str:
        """Where to deploy a new service (default: the edge nearest to the user)."""
        return state.nearest_server(user.position) if user.position else state.stations[user.ap].uplink

    def on_handover(self, state: SystemState, user: User, source: str, target: str) -> list[Action]:
        return []

    def on_report(self, state: SystemState, user: User) -> list[Action]:
        return []

    def on_tick(self, state: SystemState) -> list[Action]:
        return []
