"""Simulation-only settings (``sim:`` in an experiment file) and the city they generate.

An experiment runs in the emulator (``testbed run``) or in the simulator
(``testbed sim``) from the same file.  ``sim.city`` and ``sim.population``
replace a hand-written topology and user list with generated ones: base
stations on a grid or hexagonal layout over an area (or at the tower positions
of a CSV in OpenCellID's column layout), edge servers each serving the cells
nearest to it, a cloud behind the WAN, and ``users`` mobile users that each
run the population's services.  The result is an ordinary topology and user
list, validated by the same schema as hand-written ones.
"""

from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from testbed.config.base import Bytes, ConfigError, Seconds, Strict
from testbed.config.topology import LinkParams

CITY_LINKS = {
    "edge_edge": {"bandwidth": "100Mbps", "delay": "50ms"},
    "edge_cloud": {"bandwidth": "75Mbps", "delay": "150ms"},
    "ap_edge": {"bandwidth": "1Gbps", "delay": "1ms"},
    "wireless": {"bandwidth": "54Mbps", "delay": "1ms"},
}


class ServerClass(Strict):
    cpus: float = Field(default=4.0, gt=0)
    memory: Bytes = Field(default=16 * 1024**3, gt=0)
    storage: Bytes = Field(default=256 * 1024**3, gt=0)
    compute: list[float] = Field(default=[1.0], min_length=1, description=(
        "C_s of the servers in turn (e.g. [1.0, 1.5]: every other server 1.5 times faster)"))


class CitySpec(Strict):
    layout: Literal["grid", "hex"] = "hex"
    area: tuple[float, float] = Field(default=(5000.0, 5000.0), description="metres (width, height)")
    cell_spacing: float = Field(default=500.0, gt=0, description="metres between neighbouring base stations")
    towers: str | None = Field(default=None, description=(
        "CSV of tower positions in OpenCellID's layout (radio,mcc,net,area,cell,unit,lon,lat,...); "
        "replaces the layout; needs origin"))
    origin: tuple[float, float] | None = Field(default=None, description="lat, lon placed at (0, 0)")
    edge_servers: int = Field(default=10, ge=1, le=10_000)
    edge: ServerClass = ServerClass()
    edge_neighbours: int = Field(default=3, ge=1, description="edge-to-edge links per server (nearest ones)")
    cloud: ServerClass | None = ServerClass(cpus=64.0, memory=512 * 1024**3, compute=[1.5])
    max_users: int = Field(default=50, ge=1, description="users one base station serves (3e)")
    links: dict[str, LinkParams] = Field(default={k: LinkParams(**v) for k, v in CITY_LINKS.items()},
                                         description="edge_edge, edge_cloud, ap_edge and wireless classes")

    @model_validator(mode="after")
    def _links_and_origin(self):
        missing = sorted(set(CITY_LINKS) - set(self.links))
        if missing:
            raise ValueError(f"links: missing class(es) {', '.join(missing)}")
        if self.towers and self.origin is None:
            raise ValueError("towers: needs origin (lat, lon of the city's (0, 0))")
        return self


class PopulationSpec(Strict):
    users: int = Field(default=20, ge=1, le=100_000)
    mobility: dict = Field(default={"model": "sumo"}, description=(
        "every user's mobility model and parameters (seeded per user); ``sumo`` (the default): user k "
        "drives car k of SUMO traffic generated over the city's area; a ``trace`` model given "
        "``directory:`` instead of ``file:`` hands the directory's new_*.txt files out, one per user; "
        "an ``fcd`` model without ``vehicle:`` gives user k the k-th vehicle of the SUMO file"))
    services: list[dict] = Field(default=[{"app": "counter", "think_time": 0.05}], min_length=1)

    @field_validator("mobility")
    @classmethod
    def _known_model(cls, mobility):
        """Here, once, rather than once per generated user."""
        from testbed.registry import MOBILITY_MODELS

        MOBILITY_MODELS.get(mobility.get("model", "round_trip"))
        return mobility


class SimSpec(Strict):
    """How ``testbed sim`` runs this experiment (the emulator ignores it)."""

    city: CitySpec | None = None
    population: PopulationSpec | None = None
    step: Seconds = Field(default=1.0, gt=0, description="the fluid model's step: positions, radio, load")
    interval: Seconds = Field(default=60.0, gt=0, description="per-user aggregates are written every interval")
    per_request: bool = Field(default=False, description="also write one row per simulated request")
    task_rate: float | None = Field(default=None, gt=0, description=(
        "tasks per second per service (Poisson); none: closed loop, each user's next task after the reply "
        "plus the app's think time"))
    neighbours: int = Field(default=6, ge=1, description="base stations a user hears (the nearest)")
    calibration: str | dict = Field(default="calibration/sim-default.yaml", description=(
        "the emulator's measurements the simulator uses (``testbed sim calibrate``); a path relative "
        "to the repository or the experiment file, or inline"))

    @model_validator(mode="after")
    def _population_with_city(self):
        if (self.city is None) != (self.population is None):
            raise ValueError("city and population go together (a generated city needs its users)")
        return self


# -- generation ----------------------------------------------------------------------------

def station_positions(city: CitySpec, base: Path) -> list[tuple[float, float]]:
    if city.towers:
        return read_towers(base / city.towers, city.origin)
    width, height = city.area
    s = city.cell_spacing
    points = []
    if city.layout == "grid":
        for i in range(int(width // s) + 1):
            for j in range(int(height // s) + 1):
                points.append((i * s, j * s))
    else:
        row_height = s * math.sqrt(3) / 2
        for j in range(int(height // row_height) + 1):
            shift = s / 2 if j % 2 else 0.0
            for i in range(int((width - shift) // s) + 1):
                points.append((shift + i * s, j * row_height))
    return points


def read_towers(path: Path, origin: tuple[float, float]) -> list[tuple[float, float]]:
    """Tower positions in metres from an OpenCellID CSV (header optional); bad rows name their line."""
    from testbed.mobility.trace import project

    points = []
    try:
        handle = open(path, newline="")
    except OSError as exc:
        raise ConfigError(f"sim.city.towers: cannot read {path}: {exc.strerror}") from None
    with handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or (number == 1 and row[0].strip().lower() == "radio"):
                continue
            try:
                lon, lat = float(row[6]), float(row[7])
            except (IndexError, ValueError):
                raise ConfigError(f"{path}:{number}: expected lon and lat in columns 7 and 8 "
                                  f"(OpenCellID layout), got {','.join(row)[:80]!r}") from None
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ConfigError(f"{path}:{number}: ({lat}, {lon}) is not a latitude and longitude")
            points.append(project(lat, lon, origin))
    if not points:
        raise ConfigError(f"{path}: no tower")
    return points


def _spread(count: int, width: float, height: float) -> list[tuple[float, float]]:
    """``count`` points on a near-square grid over the area (cell centres)."""
    columns = max(1, round(math.sqrt(count * width / max(height, 1e-9))))
    rows = math.ceil(count / columns)
    return [((k % columns + 0.5) * width / columns, (k // columns + 0.5) * height / rows) for k in range(count)]


def city_topology(name: str, city: CitySpec, users: int, base: Path) -> dict:
    """A topology file's content for the city, with ``users`` mobile users u1..uN."""
    stations = station_positions(city, base)
    xs, ys = [p[0] for p in stations], [p[1] for p in stations]
    x0, y0 = min(xs), min(ys)
    servers = [(x0 + x, y0 + y) for x, y in _spread(city.edge_servers, max(xs) - x0 or 1.0, max(ys) - y0 or 1.0)]
    nodes: dict[str, dict] = {}
    connections: list[dict] = []
    edge = city.edge
    for k, position in enumerate(servers):
        nodes[f"e{k + 1}"] = {"role": "edge", "position": list(position), "cpus": edge.cpus, "memory": edge.memory,
                              "storage": edge.storage, "compute": edge.compute[k % len(edge.compute)]}
    linked = set()
    for k, position in enumerate(servers):
        nearest = sorted((math.dist(position, other), j) for j, other in enumerate(servers) if j != k)
        for _, j in nearest[:city.edge_neighbours]:
            pair = (min(k, j), max(k, j))
            if pair not in linked:
                linked.add(pair)
                connections.append({"a": f"e{pair[0] + 1}", "b": f"e{pair[1] + 1}", "class": "edge_edge"})
    if city.cloud is not None:
        centre = ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2)
        nodes["cloud"] = {"role": "cloud", "position": [centre[0], centre[1] + 20_000], "cpus": city.cloud.cpus,
                          "memory": city.cloud.memory, "storage": city.cloud.storage,
                          "compute": city.cloud.compute[0]}
        connections += [{"a": f"e{k + 1}", "b": "cloud", "class": "edge_cloud"} for k in range(len(servers))]
    for k, position in enumerate(stations):
        name = f"b{k + 1}"
        nodes[name] = {"role": "ap", "position": list(position), "max_users": city.max_users}
        nearest = min(range(len(servers)), key=lambda j: (math.dist(position, servers[j]), j))
        connections.append({"a": name, "b": f"e{nearest + 1}", "class": "ap_edge"})
    for k in range(users):
        nodes[f"u{k + 1}"] = {"role": "mu"}
    return {"name": name, "description": f"generated city: {len(stations)} base stations, {len(servers)} edge "
                                         f"servers{', a cloud' if city.cloud else ''}",
            "links": {k: v.model_dump(mode="json") for k, v in city.links.items()}, "nodes": nodes,
            "connections": connections}


def city_users(population: PopulationSpec, city: CitySpec, base: Path, seed: int = 0) -> dict[str, dict]:
    """Every user's entry of ``users:``: the population's mobility (traces handed out one per
    user from a directory; a random waypoint over the city's area; a car of the city's SUMO
    traffic, one per user) and services."""
    mobility = dict(population.mobility)
    files: list[Path] = []
    if "directory" in mobility:
        directory = base / mobility.pop("directory")
        files = sorted(directory.glob("new_*.txt"))
        if len(files) < population.users:
            raise ConfigError(f"sim.population.mobility.directory: {directory} holds {len(files)} new_*.txt "
                              f"trace(s) for {population.users} users")
    if mobility.get("model") == "fcd" and "file" in mobility:
        mobility["file"] = str(base / mobility["file"])
    if mobility.get("model") in ("random_waypoint", "sumo") and "area" not in mobility:
        mobility["area"] = [0.0, city.area[0], 0.0, city.area[1]]
    if mobility.get("model") == "sumo":              # one city's traffic, the same for every user
        mobility.setdefault("vehicles", population.users)
        mobility.setdefault("seed", mix_seed(seed, 1))
    users = {}
    for k in range(population.users):
        own = dict(mobility)
        if files:
            own["file"] = str(files[k])
        if own.get("model") in ("fcd", "sumo"):
            own.setdefault("vehicle", k)                      # the k-th vehicle of the file
        if own.get("model") == "random_waypoint":
            own.setdefault("seed", mix_seed(seed, k + 2))     # the user's own, from the experiment's
        users[f"u{k + 1}"] = {"mobility": own, "services": [dict(s) for s in population.services]}
    return users


def _check_population_mobility(mobility: dict, source: str) -> None:
    """The population's mobility parameters, checked once on the first generated user (the others
    differ only in what the generation gave each), rather than one error per user."""
    from testbed.config.base import format_problems, nested_errors
    from testbed.registry import MOBILITY_MODELS

    model = MOBILITY_MODELS.get(mobility.get("model", "round_trip"))
    found = nested_errors(model.Params, {k: v for k, v in mobility.items() if k != "model"},
                          "sim.population.mobility")
    if found:
        raise ConfigError(format_problems(source, found))


def mix_seed(seed: int, index: int) -> int:
    """A stable seed from two numbers (a repetition's, a generated user's)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def generate(data: dict, base: Path, source: str = "sim") -> dict:
    """The experiment ``data`` with the topology and users its ``sim.city`` describes, in place of
    ``sim.city`` and ``sim.population`` (unchanged without one).  The generated users are seeded
    by the experiment's seed through their index.  ``source``: the file, for error messages."""
    sim = data.get("sim")
    if not isinstance(sim, dict) or not sim.get("city"):
        return data
    from pydantic import ValidationError

    from testbed.config.base import format_validation_error

    try:
        spec = SimSpec.model_validate(sim)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, "sim")) from None
    if "topology" in data or "users" in data:
        raise ConfigError(f"{source}: sim.city: a generated city replaces topology and users; remove them "
                          "from the file")
    data = dict(data)
    data["topology"] = city_topology(f"{data.get('name', 'city')}-city", spec.city, spec.population.users, base)
    data["users"] = city_users(spec.population, spec.city, base, int(data.get("seed", 0)))
    _check_population_mobility(data["users"]["u1"]["mobility"], source)
    # the effective experiment is an ordinary one from here on (a record reloads as it is)
    data["sim"] = {k: v for k, v in sim.items() if k not in ("city", "population")}
    return data
