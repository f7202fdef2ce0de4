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
