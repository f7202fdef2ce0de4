"""The one schema for topology files, and ``--set`` overrides.

Everything a researcher writes is validated here, before anything is created,
so the rest of the testbed trusts its inputs.  Errors name the file, the field
(as a dotted path, e.g. ``links.edge_edge.bandwidth``) and the reason.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from testbed import units

Mbps = Annotated[float, BeforeValidator(units.bandwidth_mbps)]
Seconds = Annotated[float, BeforeValidator(units.duration_s)]
Percent = Annotated[float, BeforeValidator(units.percent)]
Bytes = Annotated[float, BeforeValidator(units.size_bytes)]

# Interface names are "<node>-eth<N>" and Linux allows 15 characters.
NODE_NAME = re.compile(r"^[a-z][a-z0-9]{0,8}$")


class ConfigError(Exception):
    """A configuration file or override is wrong; the message says where and why."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LinkParams(Strict):
    """What a link does to traffic in each direction (Mininet's TCLink semantics:
    ``delay`` is one-way, so a ping over one link sees 2 x delay)."""

    bandwidth: Mbps = Field(gt=0, le=10_000, description="Mbit/s, shaped in each direction")
    delay: Seconds = Field(default=0.0, ge=0, le=10, description="one-way delay")
    jitter: Seconds = Field(default=0.0, ge=0, description="uniform +- jitter of the delay")
    loss: Percent = Field(default=0.0, ge=0, le=100, description="random loss, percent")
    queue: int = Field(default=1000, ge=1, le=1_000_000, description="queue length in packets")

    @model_validator(mode="after")
    def _jitter_below_delay(self):
        if self.jitter > self.delay:
            raise ValueError(f"jitter ({units.format_duration(self.jitter)}) exceeds delay "
                             f"({units.format_duration(self.delay)})")
        return self


class LinkOverride(Strict):
    bandwidth: Mbps | None = Field(default=None, gt=0, le=10_000)
    delay: Seconds | None = Field(default=None, ge=0, le=10)
    jitter: Seconds | None = Field(default=None, ge=0)
    loss: Percent | None = Field(default=None, ge=0, le=100)
    queue: int | None = Field(default=None, ge=1, le=1_000_000)


Role = Literal["cloud", "edge", "ap", "mu"]
Point = tuple[float, float]


class NodeSpec(Strict):
    role: Role
    position: Point | None = Field(default=None, description="metres (x, y)")
    cpus: float = Field(default=2.0, gt=0, description="cores available to services (server roles)")
    memory: Bytes = Field(default=4 * 1024**3, gt=0, description="memory for services (server roles)")
    compute: float = Field(default=1.0, gt=0, description="relative computational power C_s (eq. 4)")
    max_users: int = Field(default=10, ge=1, description="users one base station serves (3e)")
    site: str = Field(default="default", description="servers of one site share a network (seed 004)")
    path: list[Point] | None = Field(default=None, description="MU only: waypoints in metres")

    @model_validator(mode="after")
    def _role_fields(self):
        if self.role == "ap" and self.position is None:
            raise ValueError("a base station (role ap) needs a position")
        if self.role == "mu" and self.path is not None and len(self.path) < 2:
            raise ValueError("path needs at least two waypoints")
        if self.role != "mu" and self.path is not None:
            raise ValueError("only a mobile user (role mu) has a path")
        return self

    @property
    def is_server(self) -> bool:
        return self.role in ("cloud", "edge")


class ConnectionSpec(LinkOverride):
    a: str
    b: str
    link_class: str = Field(alias="class")

    @property
    def name(self) -> str:
        return f"{self.a}-{self.b}"


class NetworkSettings(Strict):
    backend: Literal["auto", "netem", "delayline"] = "auto"
    tcp_congestion_control: str = Field(default="cubic", pattern=r"^[a-z0-9_]+$")
    radio_link: str = Field(default="wireless", description="link class of every MU-AP radio link")


class TopologySpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    network: NetworkSettings = NetworkSettings()
    links: dict[str, LinkParams] = Field(description="link classes")
    nodes: dict[str, NodeSpec] = Field(min_length=1)
    connections: list[ConnectionSpec] = []

    @field_validator("nodes")
    @classmethod
    def _node_names(cls, nodes):
        for name in nodes:
            if not NODE_NAME.match(name):
                raise ValueError(f"node name {name!r} must be 1-9 lowercase letters/digits, "
                                 "starting with a letter (it becomes part of interface names)")
        return nodes

    @model_validator(mode="after")
    def _references(self):
        problems = []
        seen = set()
        for index, conn in enumerate(self.connections):
            where = f"connections.{index}"
            for end in ("a", "b"):
                name = getattr(conn, end)
                if name not in self.nodes:
                    problems.append(f"{where}.{end}: unknown node {name!r} "
                                    f"(defined: {', '.join(sorted(self.nodes))})")
            if conn.link_class not in self.links:
                problems.append(f"{where}.class: unknown link class {conn.link_class!r} "
                                f"(defined: {', '.join(sorted(self.links))})")
            if conn.a == conn.b:
                problems.append(f"{where}: a link from {conn.a!r} to itself")
            if conn.link_class in self.links:
                effective = self.link_params(conn)
                if effective.jitter > effective.delay:
                    problems.append(f"{where}.jitter: jitter exceeds the link's delay")
            pair = frozenset((conn.a, conn.b))
            if pair in seen:
                problems.append(f"{where}: a second link between {conn.a!r} and {conn.b!r}")
            seen.add(pair)
            for end in ("a", "b"):
                node = self.nodes.get(getattr(conn, end))
                if node is not None and node.role == "mu":
                    problems.append(f"{where}.{end}: the mobile user {getattr(conn, end)!r} reaches "
                                    "base stations by radio, not by a connection")
        aps = [n for n, s in self.nodes.items() if s.role == "ap"]
        mus = [n for n, s in self.nodes.items() if s.role == "mu"]
        if mus and not aps:
            problems.append("nodes: a mobile user needs at least one base station (role ap)")
        if mus and aps and self.network.radio_link not in self.links:
            problems.append(f"network.radio_link: unknown link class {self.network.radio_link!r} "
                            f"(defined: {', '.join(sorted(self.links))})")
        if not any(s.is_server for s in self.nodes.values()):
            problems.append("nodes: at least one server (role cloud or edge) is needed")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # Convenience views -------------------------------------------------
    def nodes_with_role(self, *roles: str) -> list[str]:
        return [name for name, spec in self.nodes.items() if spec.role in roles]

    def link_params(self, conn: ConnectionSpec) -> LinkParams:
        """Class parameters with the connection's own overrides applied."""
        overrides = {key: getattr(conn, key) for key in LinkOverride.model_fields
                      if getattr(conn, key) is not None}
        return self.links[conn.link_class].model_copy(update=overrides)


# ---------------------------------------------------------------------------
# Loading, overrides, error formatting

def _format_location(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) if loc else "(top level)"


def format_validation_error(source: str, error: ValidationError) -> str:
    lines = [f"{source}: invalid configuration"]
    for item in error.errors():
        where = _format_location(item["loc"])
        message = item["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if item["type"] == "missing":
            message = "field required"
        elif item["type"] == "extra_forbidden":
            message = "unknown field"
        for part in message.split("; "):
            # Cross-field checks name their own field ("connections.1.b: ...").
            head = part.split(": ", 1)[0]
            if re.fullmatch(r"[A-Za-z_][\w.-]*", head) and ": " in part:
                lines.append(f"  {head if not item['loc'] else where + '.' + head}: {part.split(': ', 1)[1]}")
            else:
                lines.append(f"  {where}: {part}")
    return "\n".join(lines)


def read_yaml(path: Path) -> dict:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], object]:
    """'links.edge_edge.delay=30ms' -> (['links', 'edge_edge', 'delay'], '30ms')."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. links.edge_edge.delay=30ms")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".")]
    if not key.strip() or any(not part for part in path):
        raise ConfigError(f"--set {text!r}: empty key segment")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def _find_list_item(items: list, segment: str):
    if segment.isdigit():
        index = int(segment)
        if index < len(items):
            return index
        return None
    for index, item in enumerate(items):  # connections may be named "a-b"
        if isinstance(item, dict) and {item.get("a"), item.get("b")} == set(segment.split("-", 1)):
            return index
    return None


def apply_overrides(data: dict, overrides: list[str], source: str = "--set") -> dict:
    """Return a copy of ``data`` with each KEY=VALUE applied (before validation)."""
    result = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for depth, segment in enumerate(path):
            last = depth == len(path) - 1
            where = ".".join(path[: depth + 1])
            if isinstance(node, list):
                index = _find_list_item(node, segment)
                if index is None:
                    raise ConfigError(f"{source} {text!r}: no item {segment!r} at {where}")
                if last:
                    node[index] = value
                else:
                    node = node[index]
            elif isinstance(node, dict):
                if last:
                    node[segment] = value
                else:
                    if segment not in node or node[segment] is None:
                        node[segment] = {}
                    node = node[segment]
            else:
                raise ConfigError(f"{source} {text!r}: {'.'.join(path[:depth])} is a value, "
                                  f"not a section")
    return result


def validate_topology(data: dict, source: str) -> TopologySpec:
    try:
        return TopologySpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


def load_topology(path, overrides: list[str] | None = None) -> TopologySpec:
    data = read_yaml(Path(path))
    if overrides:
        data = apply_overrides(data, overrides)
    return validate_topology(data, str(path))


# ---------------------------------------------------------------------------
# Experiment files: what to run on a topology

MIGRATION_MODES = ("cold", "precopy-delta", "layered", "stateless")


class PlannerSpec(Strict):
    name: str
    params: dict = {}

    @field_validator("name")
    @classmethod
    def _known(cls, name):
        from testbed.controller.planners import PLANNERS

        if name not in PLANNERS:
            raise ValueError(f"unknown planner {name!r} (known: {', '.join(PLANNERS)})")
        return name


class MigrationSpec(Strict):
    mode: Literal["cold", "precopy-delta", "layered", "stateless"] = "precopy-delta"
    delta: Literal["pages", "rsync"] = "pages"
    # Longest wait (s) for a moment between two requests before a checkpoint; 0: any moment.
    quiesce: float = Field(default=1.0, ge=0, le=10)

    def options(self) -> dict:
        return {"delta": self.delta, "quiesce": self.quiesce}


class RadioSpec(Strict):
    tx_power_dbm: float = 20.0
    pl_d0_db: float = 40.0
    d0_m: float = Field(default=1.0, gt=0)
    exponent: float = Field(default=3.0, gt=0)
    shadowing_sigma_db: float = Field(default=0.0, ge=0)
    sensitivity_dbm: float = -85.0
    hysteresis_db: float = Field(default=3.0, ge=0)
    handover_time: Seconds = Field(default=0.5, ge=0)

    def params(self) -> dict:
        values = self.model_dump()
        values["handover_time_s"] = values.pop("handover_time")
        return values


class MobilitySpec(Strict):
    model: Literal["round_trip", "waypoints", "trace", "static"] = "round_trip"
    speed: float = Field(default=1.0, gt=0, description="m/s (round_trip, waypoints)")
    start: Point | None = Field(default=None, description="default: the user's path in the topology")
    end: Point | None = None
    points: list[Point] | None = None
    loop: bool = False
    file: str | None = Field(default=None, description="trace file (cabspotting format)")
    origin: tuple[float, float] | None = Field(default=None, description="lat, lon placed at offset")
    offset: Point = (0.0, 0.0)
    speedup: float = Field(default=1.0, gt=0)
    position: Point | None = Field(default=None, description="static: where the user stands")


class ServiceUse(Strict):
    app: str
    cpus: float = Field(default=1.0, gt=0)
    memory: Bytes = Field(default=1024 * 2**20, gt=0)
    quota: float = Field(default=0.1, gt=0, le=1, description="CPU share in the app profile (seed 004)")
    images: list[str] | None = Field(default=None, description="assets sent as tasks (default per app)")
    payload_bytes: int = Field(default=16, ge=0, le=65536, description="counter task size")
    think_time: Seconds = Field(default=0.0, ge=0)

    @field_validator("app")
    @classmethod
    def _known_app(cls, app):
        from testbed.images import app_names

        if app not in app_names():
            raise ValueError(f"unknown app {app!r} (known: {', '.join(app_names())})")
        return app


class UserSpec(Strict):
    mobility: MobilitySpec = MobilitySpec()
    services: list[ServiceUse] = Field(min_length=1)


class ExperimentSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    topology: TopologySpec
    seed: int = 0
    duration: Seconds = Field(gt=0)
    planners: list[PlannerSpec] = Field(min_length=1)
    migration: MigrationSpec = MigrationSpec()
    radio: RadioSpec = RadioSpec()
    users: dict[str, UserSpec] = Field(min_length=1)
    report_period: Seconds = Field(default=0.5, gt=0)
    monitor_period: Seconds = Field(default=5.0, gt=0)
    probe_interval: Seconds = Field(default=0.01, gt=0)

    @field_validator("planners", mode="before")
    @classmethod
    def _names(cls, value):
        return [{"name": v} if isinstance(v, str) else v for v in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _users_exist(self):
        problems = []
        for name, user in self.users.items():
            node = self.topology.nodes.get(name)
            if node is None or node.role != "mu":
                problems.append(f"users.{name}: not a mobile user (role mu) of topology {self.topology.name!r}")
                continue
            m = user.mobility
            if m.model == "round_trip" and (m.start is None or m.end is None) and not node.path:
                problems.append(f"users.{name}.mobility: round_trip needs start and end (or a path in the topology)")
            if m.model == "trace" and not m.file:
                problems.append(f"users.{name}.mobility.file: a trace needs a file")
            if m.model == "waypoints" and not (m.points or node.path):
                problems.append(f"users.{name}.mobility.points: waypoints needs points (or a path in the topology)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def mobility_params(self, user: str) -> dict:
        """Arguments of the user's mobility model (testbed.mobility.build)."""
        m = self.users[user].mobility
        path = self.topology.nodes[user].path or []
        if m.model == "round_trip":
            return {"name": "round_trip", "start": list(m.start or path[0]), "end": list(m.end or path[-1]),
                    "speed": m.speed}
        if m.model == "waypoints":
            return {"name": "waypoints", "points": [list(p) for p in (m.points or path)], "speeds": m.speed,
                    "loop": m.loop}
        if m.model == "trace":
            return {"name": "trace", "path": m.file, "origin": m.origin, "offset": list(m.offset),
                    "speedup": m.speedup}
        position = list(m.position or (path[0] if path else (0.0, 0.0)))
        return {"name": "waypoints", "points": [position, position], "speeds": 1.0}


def _top_level_fields(model) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def _apply_experiment_overrides(data: dict, overrides: list[str], source: str) -> dict:
    """KEY=VALUE applied to the experiment, or to its (inline) topology when the
    first segment is a topology field."""
    experiment_keys, topology_keys = [], []
    for text in overrides:
        head = parse_override(text)[0][0]
        if head in _top_level_fields(ExperimentSpec):
            experiment_keys.append(text)
        elif head in _top_level_fields(TopologySpec):
            topology_keys.append(text)
        else:
            raise ConfigError(f"{source} {text!r}: {head!r} is neither an experiment nor a topology field")
    data = apply_overrides(data, experiment_keys, source)
    if topology_keys and isinstance(data.get("topology"), dict):
        data["topology"] = apply_overrides(data["topology"], topology_keys, source)
    return data


def load_experiment(path, overrides: list[str] | None = None) -> ExperimentSpec:
    return load_experiment_with_source(path, overrides)[0]


def load_experiment_with_source(path, overrides: list[str] | None = None) -> tuple[ExperimentSpec, dict]:
    """An experiment file; ``topology`` is a path (relative to the file) or inline.
    Returns the validated spec and the effective input (overrides applied, topology
    inline), which is what a run records: it loads again as an experiment file.

    ``--set`` keys apply to the experiment, or to its topology when the first
    segment is a topology field (``links.edge_edge.delay=30ms``).  The file's own
    ``set:`` list is applied the same way, first, so a scenario can change a shared
    topology without copying it; the command line's keys win."""
    path = Path(path)
    data = read_yaml(path)
    own = data.pop("set", [])
    if not isinstance(own, list) or not all(isinstance(item, str) for item in own):
        raise ConfigError(f"{path}: set: expected a list of KEY=VALUE strings, e.g. [nodes.edge1.cpus=0.5]")
    topology = data.get("topology")
    topology_source = str(path)
    if isinstance(topology, str):
        topology_path = (path.parent / topology).resolve()
        topology_source = str(topology_path)
        data["topology"] = read_yaml(topology_path)
    for keys, source in ((own, f"{path}: set:"), (list(overrides or []), "--set")):
        data = _apply_experiment_overrides(data, keys, source)
    if isinstance(data.get("topology"), dict):
        try:
            TopologySpec.model_validate(data["topology"])
        except ValidationError as exc:
            raise ConfigError(format_validation_error(topology_source, exc)) from None
    try:
        return ExperimentSpec.model_validate(data), data
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None
