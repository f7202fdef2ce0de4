"""The controller's view of the system: what every planner reads (``SystemState``).

The controller keeps one ``SystemState`` up to date from the users' and the
servers' reports; tests and the simulator build the same state with
``SystemState.build``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from testbed.config import CalibrationSpec, RadioSpec, TopologySpec, read_yaml
from testbed.config.experiment import DEFAULT_CALIBRATION
from testbed.config.topology import NetworkSettings
from testbed.controller.estimators import DEFAULT_RATES, MigrationTimeModel, PathEstimate
from testbed.mobility.base import Point
from testbed.radio import HysteresisHandover, PathLoss, handover_rule
from testbed.rates import RateTable, airtime_share
from testbed.registry import MIGRATION_MODES


def final_transfer_is_warm(mode: str, network: NetworkSettings) -> bool:
    """Does ``mode``'s delta follow its pre-copy on the window that one opened?  Yes when it
    pre-copies and the servers' TCP keeps an idle window (``server_slow_start_after_idle`` off)."""
    return MIGRATION_MODES.get(mode).pre_copies and not network.server_slow_start_after_idle


@dataclass
class Server:
    name: str
    role: str                     # "cloud" or "edge"
    position: Point | None
    cpus: float
    memory_mb: float
    compute: float
    site: str = "default"         # servers of one site share a network (seed 004)
    storage_mb: float = 65536.0
    cpu_util: float = 0.0         # fraction of its cpus in use (reported: services and any other load)
    memory_used_mb: float = 0.0
    background_cores: float = 0.0  # cores in use by anything but its services (reported)


@dataclass
class Station:
    name: str
    position: Point
    max_users: int
    uplink: str                   # the server the base station is wired to
    capacity_mbps: float | None = None   # shared by its users' airtime (radio link_rate rssi)


@dataclass
class User:
    name: str
    ap: str | None
    position: Point | None = None
    velocity: Point = (0.0, 0.0)
    rssi: dict[str, float] = field(default_factory=dict)
    e2e_ms: dict[str, float] = field(default_factory=dict)
    task_rate: dict[str, float] = field(default_factory=dict)   # tasks answered per second, per service
    t: float = 0.0


@dataclass
class Service:
    name: str
    user: str
    app: str
    server: str                   # where it runs now
    cpus: float
    memory_mb: float
    task_bytes: float = 100.0
    proc_ms: float = 0.0          # processing delay measured on ``server``
    image_bytes: float = 100e6
    full_bytes: float = 50e6      # checkpoint size estimate (probe at t0)
    delta_bytes: float = 1e6
    quota: float = 0.1            # CPU share of a node in the app profile (seed 004)
    moving: bool = False          # a migration is under way
    moving_to: str | None = None  # ... to this server (its resources are taken there already)


class StationRssi(dict):
    """Predicted RSSI of the stations heard above the sensitivity; another station's, when asked
    for by name, is computed then (its value is below the sensitivity)."""

    def __init__(self, state: "SystemState", position: Point):
        super().__init__()
        self._state, self._position = state, position

    def __missing__(self, station: str) -> float:
        return self._state.path_loss.mean_rssi(self._state.stations[station].position, self._position)


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
    rates: RateTable = DEFAULT_RATES        # the radio's rate by RSSI (eq. 4's B_ub)
    shared_radio: bool = False              # users of a base station share its airtime
    _stations_xy: tuple | None = field(default=None, init=False, repr=False, compare=False)
    _station_index: tuple = field(default=(None, None, None), init=False, repr=False, compare=False)  # names, rank, tree
    _servers_xy: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _links: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _by_user: tuple = field(default=(-1, {}), init=False, repr=False, compare=False)

    @classmethod
    def build(cls, spec: TopologySpec, radio: RadioSpec, report_period: float, t: float | None = None,
              seed: int = 0, calibration: CalibrationSpec | None = None, network=None) -> "SystemState":
        """The state of a topology with no users or services yet (eq. (5)'s constants from
        ``calibration``, by default the testbed's own file; paths from the emulated network's
        address plan unless ``network`` answers them, as the simulator's does)."""
        from testbed.net import addressing

        if calibration is None:
            calibration = CalibrationSpec.model_validate(read_yaml(DEFAULT_CALIBRATION))
        servers = {name: Server(name, node.role, node.position, node.cpus, node.memory / 2**20, node.compute,
                                site=node.site, storage_mb=node.storage / 2**20)
                   for name, node in spec.nodes.items() if node.is_server}
        stations = {}
        for name in spec.nodes_with_role("ap"):
            uplinks = [c.b if c.a == name else c.a for c in spec.connections if name in (c.a, c.b)]
            uplink = next((u for u in uplinks if spec.nodes[u].is_server), uplinks[0] if uplinks else None)
            stations[name] = Station(name, spec.nodes[name].position, spec.nodes[name].max_users, uplink,
                                     spec.nodes[name].capacity)
        return cls(time.time() if t is None else t, servers, stations, {}, {},
                   network or Network(addressing.plan(spec)),
                   PathLoss(radio, seed), handover_rule(radio), MigrationTimeModel.from_calibration(calibration),
                   handover_time_s=radio.handover_time, report_period_s=report_period, rates=radio.rates(),
                   shared_radio=radio.link_rate == "rssi")

    def configure_migration(self, mode: str, options: dict, network: NetworkSettings) -> None:
        """Eq. (5) for how ``mode`` moves a service (``options``: its options): the pre-copy's
        share of the path, and whether the delta follows on the window the pre-copy opened
        (the servers' TCP keeps it unless ``network.server_slow_start_after_idle``)."""
        self.migration_model.precopy_share = options.get("precopy_share", 1.0)
        self.migration_model.warm_final_transfer = final_transfer_is_warm(mode, network)

    def users_on(self, station: str) -> int:
        return sum(1 for u in self.users.values() if u.ap == station)

    def services_of(self, user: str) -> list[Service]:
        """A user's services.  Asked at every handover and decision (tens of thousands an
        hour in a city), so answered from an index of names by user, rebuilt when a
        service was added (services are added, never removed or given to another user)."""
        count, by_user = self._by_user
        if count != len(self.services):
            by_user = {}
            for name, service in self.services.items():
                by_user.setdefault(service.user, []).append(name)
            self._by_user = (len(self.services), by_user)
        return [self.services[name] for name in by_user.get(user, ())]

    def cloud(self) -> str | None:
        return next((name for name, s in sorted(self.servers.items()) if s.role == "cloud"), None)

    def nearest_server(self, position: Point, roles=("edge",)) -> str:
        """The server of ``roles`` nearest to ``position`` (of two as near, the first by name)."""
        key = (tuple(roles), len(self.servers))
        if key not in self._servers_xy:        # servers do not move: their positions as one array
            names = sorted(s.name for s in self.servers.values() if s.role in roles and s.position is not None)
            self._servers_xy[key] = (names, np.array([self.servers[n].position for n in names],
                                                     dtype=float).reshape(-1, 2))
        names, xy = self._servers_xy[key]
        if not names:
            raise ValueError(f"no server with a position among roles {', '.join(roles)}")
        return names[int(np.argmin(np.hypot(xy[:, 0] - position[0], xy[:, 1] - position[1])))]

    def path(self, rssi: float, station: str, server: str, rates: RateTable | None = None,
             sharing: int = 1) -> PathEstimate:
        """Eq. (4)'s path from a user at ``rssi`` through ``station`` to ``server``; with a
        shared radio, the station's airtime is split among ``sharing`` users (rates: the
        radio's table unless given)."""
        return self.paths(rssi, station, [server], rates, sharing)[server]

    def paths(self, rssi: float, station: str, servers, rates: RateTable | None = None,
              sharing: int = 1) -> dict[str, PathEstimate]:
        """``path`` to each of ``servers`` (the radio's rate found once)."""
        together = self.path_arrays(rssi, station, tuple(servers), rates, sharing)
        return {server: PathEstimate(float(bandwidth), float(rtt), float(compute)) for server, bandwidth, rtt, compute
                in zip(servers, together.bandwidth_mbps, together.rtt_s, together.compute)}

    def path_arrays(self, rssi: float, station: str, servers: tuple[str, ...], rates: RateTable | None = None,
                    sharing: int = 1) -> PathEstimate:
        """``paths`` as one estimate whose fields are arrays in the order of ``servers`` (eq. (4)
        then weighs every server at once: a city's decision weighs thousands of options)."""
        rate = (rates or self.rates).rate_mbps(rssi)
        if self.shared_radio:
            rate = airtime_share(rate, sharing, self.stations[station].capacity_mbps)
        key = (id(self.network), station, servers)
        if key not in self._links:          # the wired part: fixed for the network's life
            self._links[key] = (np.array([self.network.bandwidth(station, s) for s in servers], dtype=float),
                                np.array([2 * self.network.one_way(station, s) for s in servers], dtype=float))
        bandwidth, rtt = self._links[key]
        return PathEstimate(bandwidth_mbps=np.minimum(rate, bandwidth), rtt_s=rtt,
                            compute=np.array([self.servers[s].compute for s in servers], dtype=float))

    def predicted_position(self, user: User, at: float) -> Point:
        dt = max(0.0, at - user.t)
        return user.position[0] + user.velocity[0] * dt, user.position[1] + user.velocity[1] * dt

    def predicted_rssi(self, user: User, at: float) -> dict[str, float]:
        """The mean model's RSSI where ``user`` will be at ``at`` (shadowing is not predictable):
        the stations it would hear above the sensitivity; any other station's is computed when
        asked for by name (a city has hundreds, of which a user hears a few)."""
        position = self.predicted_position(user, at)
        names, xy = self._station_array()
        d = np.hypot(xy[:, 0] - position[0], xy[:, 1] - position[1])
        radius = self.path_loss.distance_for_rssi(self.policy.params.sensitivity_dbm) * (1 + 1e-9)
        heard = StationRssi(self, position)
        for index in np.flatnonzero(d <= radius).tolist():
            heard[names[index]] = self.path_loss.mean_rssi(self.stations[names[index]].position, position)
        return heard

    def _station_array(self) -> tuple[list[str], np.ndarray]:
        if self._stations_xy is None or len(self._stations_xy[0]) != len(self.stations):
            names = list(self.stations)
            self._stations_xy = (names, np.array([self.stations[n].position for n in names], dtype=float))
        return self._stations_xy

    def predict_handover(self, user: User, horizon_s: float, step_s: float = 0.1) -> tuple[float, str] | None:
        """When and where the handover rule will move ``user`` within ``horizon_s`` (mean model,
        every ``step_s`` along its straight line; a time to trigger counts from the user's last
        report).  All steps at once, over the stations it could hear on the way."""
        return self.predict_handovers([user], [horizon_s], step_s)[0]

    def predict_handovers(self, users: list[User], horizons_s: list[float],
                          step_s: float = 0.1) -> list[tuple[float, str] | None]:
        """``predict_handover`` of each of ``users`` over its own horizon, all in one pass (a
        city's controller asks for hundreds at every report).  A3's time to trigger keeps state:
        its rule reads each user's steps in turn."""
        found: list[tuple[float, str] | None] = [None] * len(users)
        asked = [i for i, u in enumerate(users) if u.position is not None and u.ap is not None and horizons_s[i] >= 0]
        if not asked:
            return found
        names, xy = self._station_array()
        rank, tree = self._station_lookup()
        horizons = np.array([horizons_s[i] for i in asked], dtype=float)
        steps = np.arange(max(0, int(horizons.max() / step_s) + 2)) * step_s
        in_horizon = steps[None, :] <= horizons[:, None]                        # (users, steps)
        pos = np.array([users[i].position for i in asked], dtype=float)
        vel = np.array([users[i].velocity for i in asked], dtype=float)
        t0 = np.array([users[i].t for i in asked], dtype=float)
        radius = self.path_loss.distance_for_rssi(self.policy.params.sensitivity_dbm) * (1 + 1e-9)
        # the stations each user's straight line passes within the radius of, in name order: of
        # those within reach of where it is (a tree finds them), those its line comes near
        end = np.where(in_horizon.any(axis=1), steps[np.maximum(in_horizon.sum(axis=1) - 1, 0)], 0.0)
        speed2 = (vel ** 2).sum(axis=1)
        reach = (radius + np.sqrt(speed2) * end) * (1 + 1e-9) + 1e-9
        near = tree.query_ball_point(pos, reach)
        user = np.repeat(np.arange(len(asked)), [len(n) for n in near])
        pair_station = np.fromiter((s for n in near for s in n), np.int64, len(user))
        rel = xy[pair_station] - pos[user]
        along = np.clip((rel * vel[user]).sum(axis=1) / np.where(speed2 > 0, speed2, 1.0)[user], 0.0, end[user])
        along = np.where(speed2[user] > 0, along, 0.0)
        closest = np.hypot(rel[:, 0] - vel[user, 0] * along, rel[:, 1] - vel[user, 1] * along)
        kept = closest <= radius * (1 + 1e-6) + 1e-6
        user, pair_station = user[kept], pair_station[kept]
        by_name = np.lexsort((rank[pair_station], user))
        user, pair_station = user[by_name], pair_station[by_name]
        counts = np.bincount(user, minlength=len(asked))
        width = int(counts.max()) if len(counts) else 0
        if width == 0:
            return found
        column = np.arange(len(user)) - np.repeat(np.cumsum(counts) - counts, counts)
        station = np.zeros((len(asked), width), dtype=np.int64)                 # (users, width): indices into names
        valid = np.zeros((len(asked), width), dtype=bool)
        station[user, column], valid[user, column] = pair_station, True
        at_x = pos[:, 0, None] + vel[:, 0, None] * steps[None, :]                # (users, steps)
        at_y = pos[:, 1, None] + vel[:, 1, None] * steps[None, :]
        d = np.hypot(xy[station, 0][:, None, :] - at_x[:, :, None], xy[station, 1][:, None, :] - at_y[:, :, None])
        rssi = np.where((d <= radius) & valid[:, None, :], self.path_loss.mean_rssi_at(d), -np.inf)
        if self.policy.params.handover_rule == "a3":
            for row, i in enumerate(asked):
                heard, now = valid[row], in_horizon[row]
                found[i] = handover_rule(self.policy.params).first_decision(
                    users[i].ap, [names[j] for j in station[row, heard].tolist()], rssi[row][now][:, heard],
                    t0[row] + steps[now])
            return found
        index = {n: i for i, n in enumerate(names)}
        own = np.array([index.get(users[i].ap, -1) for i in asked])
        mine = (station == own[:, None]) & valid
        own_column = np.where(mine.any(axis=1), np.argmax(mine, axis=1), -1)
        moves, best = handover_rule(self.policy.params).moves(rssi, own_column)
        moves &= in_horizon
        first = np.argmax(moves, axis=1)
        rows = np.flatnonzero(moves.any(axis=1))
        times = (t0[rows] + steps[first[rows]]).tolist()
        targets = station[rows, best[rows, first[rows]]].tolist()
        for row, t, target in zip(rows.tolist(), times, targets):
            found[asked[row]] = (t, names[target])
        return found

    def _station_lookup(self) -> tuple[np.ndarray, cKDTree]:
        """Each station's place (in ``_station_array``) in name order, as ``best`` breaks ties,
        and a tree of their positions."""
        names, xy = self._station_array()
        if self._station_index[0] is not names:
            rank = np.empty(len(names), dtype=np.int64)
            rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
            self._station_index = (names, rank, cKDTree(xy))
        return self._station_index[1], self._station_index[2]
