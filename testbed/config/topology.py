"""Topology files: nodes with roles and positions, link classes, connections."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from testbed import units
from testbed.config.base import Bytes, ConfigError, Mbps, Percent, Seconds, Strict, format_validation_error, read_yaml
from testbed.config.overrides import apply_overrides
from testbed.registry import LINK_BACKENDS

# Interface names are "<node>-eth<N>" and Linux allows 15 characters.
NODE_NAME = re.compile(r"^[a-z][a-z0-9]{0,8}$")


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
    storage: Bytes = Field(default=64 * 1024**3, gt=0, description="disk for images and state (server roles, (3c))")
    compute: float = Field(default=1.0, gt=0, description="relative computational power C_s (eq. 4)")
    max_users: int = Field(default=10, ge=1, description="users one base station serves (3e)")
    capacity: Mbps | None = Field(default=None, gt=0, le=10_000, description=(
        "base station only: the rate its attached users share by airtime (radio link_rate rssi); "
        "none: each user's own rate from the rate table"))
    site: str = Field(default="default", description="servers of one site share a network (seed 004)")
    path: list[Point] | None = Field(default=None, description="MU only: waypoints in metres")

    @model_validator(mode="after")
    def _role_fields(self):
        if self.role == "ap" and self.position is None:
            raise ValueError("a base station (role ap) needs a position")
        if self.role == "mu" and self.path is not None and len(self.path) < 2:
            raise ValueError("path needs at least two waypoints")
        if self.role != "ap" and self.capacity is not None:
            raise ValueError("only a base station (role ap) has a capacity")
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
    backend: str = Field(default="auto", description="auto, or a link backend (testbed.net.links)")
    tcp_congestion_control: str = Field(default="cubic", pattern=r"^[a-z0-9_]+$")
    server_slow_start_after_idle: bool = Field(default=False, description=(
        "whether the servers' TCP (the agents': migration transfers, not the services') restarts from "
        "the initial window after an idle moment, as Linux does by default. Off, the migration channel "
        "keeps the window its pre-copy opened, and the final transfer does not slow-start again "
        "(0.6 MB on 100 Mbps / 50 ms: 0.37 s -> 0.1 s)"))
    radio_link: str = Field(default="wireless", description="link class of every MU-AP radio link")
    keep_cores_awake: bool = Field(default=True, description=(
        "hold the host's cores awake while the network runs (PM QoS cpu_dma_latency 0, testbed.net.awake): "
        "a core that halts between tasks wakes slowly, so a server whose tasks arrive far apart (the cloud) "
        "would process 8-17 % slower than its compute says. Off: the host's own idle policy"))
    per_thread_quota: bool = Field(default=True, description=(
        "on a server slower than the fastest, give every thread of a service its own CPU quota (speed x "
        "period, testbed.containers.thread_quota): a slower clock per thread, so a service on two threads "
        "slows as its server's compute says, not only as far as it fills its cores. cgroup v1 only. Off: "
        "only the container's cores are scaled"))

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, backend):
        if backend != "auto":
            try:
                LINK_BACKENDS.get(backend)
            except ValueError as exc:
                raise ValueError(f"{exc} or 'auto'") from None
        return backend


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

    def servers(self) -> list[str]:
        """Cloud and edge servers, in file order."""
        return self.nodes_with_role("cloud", "edge")

    def cloud(self) -> str | None:
        return next(iter(self.nodes_with_role("cloud")), None)

    def link_params(self, conn: ConnectionSpec) -> LinkParams:
        """Class parameters with the connection's own overrides applied."""
        overrides = {key: getattr(conn, key) for key in LinkOverride.model_fields
                     if getattr(conn, key) is not None}
        return self.links[conn.link_class].model_copy(update=overrides)


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
