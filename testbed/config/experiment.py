"""Experiment files: what to run on a topology.

Planners, migration modes and mobility models are looked up in their
registries (``testbed.registry``) and their parameters validated by the
parameter class each one declares, so a typo in any of them is an error here,
before anything is built.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from testbed.config.apps import app_manifest, app_names
from testbed.config.base import (Bytes, ConfigError, Seconds, Strict, format_validation_error, nested_errors,
                                 read_yaml)
from testbed.config.city import SimSpec, mix_seed
from testbed.config.city import generate as generate_city
from testbed.config.overrides import apply_overrides, parse_override
from testbed.config.topology import TopologySpec
from testbed.rates import TABLES, RateTable
from testbed.registry import MIGRATION_MODES, MOBILITY_MODELS, PLANNERS


class PlannerSpec(Strict):
    name: str
    params: dict = {}

    @model_validator(mode="after")
    def _known_with_valid_params(self):
        planner = PLANNERS.get(self.name)            # ValueError names the known planners
        problems = nested_errors(planner.Params, self.params, "params")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def typed_params(self):
        """The parameters as the planner's own ``Params`` (defaults filled in)."""
        return PLANNERS.get(self.name).Params.model_validate(self.params)


class MigrationSpec(Strict):
    """``mode`` and that mode's options (its ``Options`` class, e.g. ``delta`` and
    ``quiesce`` for precopy-delta), written side by side."""

    model_config = ConfigDict(extra="allow")
    mode: str = "precopy-delta"

    @model_validator(mode="after")
    def _known_with_valid_options(self):
        mode = MIGRATION_MODES.get(self.mode)
        problems = nested_errors(mode.Options, self.model_extra or {}, "")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def options(self) -> dict:
        """The mode's options with every default filled in."""
        return MIGRATION_MODES.get(self.mode).Options.model_validate(self.model_extra or {}).model_dump()


class RadioSpec(Strict):
    tx_power_dbm: float = 20.0
    pl_d0_db: float = Field(default=40.0, description="path loss at the reference distance (2.4 GHz, 1 m)")
    d0_m: float = Field(default=1.0, gt=0)
    exponent: float = Field(default=3.0, gt=0, description="urban / indoor obstructed")
    shadowing_sigma_db: float = Field(default=0.0, ge=0)
    shadowing_decorrelation_m: float = Field(default=10.0, ge=0, description=(
        "Gudmundson's decorrelation distance (correlation exp(-d / d_c)); 0: a fresh draw every sample"))
    sensitivity_dbm: float = Field(default=-85.0, description="minimum RSSI to decode (3d)")
    hysteresis_db: float = Field(default=3.0, ge=0)
    handover_rule: Literal["hysteresis", "a3"] = Field(default="hysteresis", description=(
        "hysteresis: leave for a station stronger by hysteresis_db; a3: the same for time_to_trigger"))
    time_to_trigger: Seconds = Field(default=0.0, ge=0, description="a3: how long the condition must hold")
    handover_time: Seconds = Field(default=0.5, ge=0, description="seed 002: 500 ms (ref. [22])")
    link_rate: Literal["fixed", "rssi"] = Field(default="rssi", description=(
        "the radio link's rate: rssi: follows the user's SNR through rate_table (shared by the users of a "
        "base station); fixed: the radio link class's bandwidth"))
    rate_table: str | list[tuple[float, float]] = Field(
        default="802.11n", description="rate by SNR: a named table (testbed.rates) or [[snr_db, mbps], ...]")
    noise_floor_dbm: float = Field(default=-95.0, description="of the channel (20 MHz: -95 dBm)")

    @field_validator("rate_table")
    @classmethod
    def _known_table(cls, table):
        if isinstance(table, str) and table not in TABLES:
            raise ValueError(f"unknown rate table {table!r} (known: {', '.join(TABLES)}, or a list of "
                             "[snr_db, mbps] pairs)")
        if isinstance(table, list):
            if not table or any(b[0] <= a[0] or b[1] <= a[1] for a, b in zip(table, table[1:])):
                raise ValueError("a rate table lists [snr_db, mbps] pairs with both rising")
        return table

    def rates(self) -> RateTable:
        return RateTable.named(self.rate_table, self.noise_floor_dbm)


class MobilitySpec(Strict):
    """``model`` and that model's parameters (its ``Params`` class), side by side."""

    model_config = ConfigDict(extra="allow")
    model: str = "round_trip"

    @field_validator("model")
    @classmethod
    def _known(cls, model):
        MOBILITY_MODELS.get(model)
        return model

    def parameters(self) -> dict:
        return dict(self.model_extra or {})


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TESTBED_ENV = {"MEC_PORT", "OMP_NUM_THREADS"}


class ServiceUse(Strict):
    """A service a user offloads tasks to; unset limits come from the app's manifest."""

    app: str
    cpus: float | None = Field(default=None, gt=0)
    memory: Bytes | None = Field(default=None, gt=0)
    quota: float = Field(default=0.1, gt=0, le=1, description="CPU share in the app profile (seed 004)")
    images: list[str] | None = Field(default=None, description="assets sent as tasks (default: the app's)")
    payload_bytes: int = Field(default=16, ge=0, le=65536, description="task size of an app without images")
    think_time: Seconds = Field(default=0.0, ge=0)
    env: dict[str, str | int | float] = Field(default={}, description=(
        "environment of the service's container: the app's own settings (e.g. detect's MEC_DETECT_ARENA)"))

    @field_validator("env")
    @classmethod
    def _env_names(cls, env):
        for name in env:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name (letters, digits, _)")
            if name in TESTBED_ENV:
                raise ValueError(f"{name} is set by the testbed (the container's port and cores)")
        return {name: str(value) for name, value in env.items()}

    @field_validator("app")
    @classmethod
    def _known_app(cls, app):
        if app not in app_names():
            raise ValueError(f"unknown app {app!r} (known: {', '.join(app_names())})")
        return app

    @model_validator(mode="after")
    def _manifest_defaults(self):
        manifest = app_manifest(self.app)
        if self.cpus is None:
            self.cpus = manifest.cpus
        if self.memory is None:
            self.memory = manifest.memory
        if self.images is None:
            self.images = list(manifest.test_images)
        return self


class UserSpec(Strict):
    mobility: MobilitySpec = MobilitySpec()
    services: list[ServiceUse] = Field(min_length=1)


class LoadSpec(Strict):
    """Background load on a server (seed 004's red node from real contention)."""

    server: str
    start: Seconds = Field(ge=0, description="after the users start")
    duration: Seconds = Field(gt=0)
    share: float = Field(gt=0, le=1, description="of the server's cores")


class ProbeSpec(Strict):
    """Seed 002's checkpoint-size estimate: two checkpoints of a service after it served
    its user for ``after`` (t0), again every ``period`` (0: once); only for planners
    that use the sizes."""

    after: Seconds = Field(default=5.0, ge=0)
    period: Seconds = Field(default=60.0, ge=0)


class CalibrationSpec(Strict):
    """Eq. (5)'s per-byte checkpoint and restore times at C = 1 and the destination's
    set-up time, measured on this testbed (benchmarks/migration.py); the estimator
    starts from them and learns from every migration of the run."""

    psi_s_per_byte: float = Field(gt=0, description="checkpoint seconds per byte of image, at C = 1")
    rho_s_per_byte: float = Field(gt=0, description="restore seconds per byte restored, at C = 1")
    setup_s: float = Field(ge=0, description="creating the container that will take the state")
    source: dict = Field(default={}, description="what measured it: command, date, machine")


class SweepSpec(Strict):
    """A parameter sweep of this experiment (``testbed sweep``): every point of ``grid`` times
    ``repeat`` repetitions is one trial."""

    grid: dict[str, list] = Field(default={}, description="KEY: [v1, v2, ...], keys as --set takes them")
    repeat: int = Field(default=1, ge=1, le=1000)
    parallel: int = Field(default=1, ge=1, le=1024, description="trials at once on the local cluster")

    @field_validator("grid")
    @classmethod
    def _values(cls, grid):
        for key, values in grid.items():
            if not values:
                raise ValueError(f"{key}: no value to sweep")
        return grid


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
    report_period: Seconds = Field(default=0.5, gt=0, description="the users' Local Monitor")
    monitor_period: Seconds = Field(default=5.0, gt=0, description="the servers' Resource Monitor")
    probe_interval: Seconds = Field(default=0.01, gt=0, description="the client's retries during an outage")
    probe: ProbeSpec = ProbeSpec()
    calibration: CalibrationSpec = Field(description="eq. (5)'s constants (default: calibration/default.yaml)")
    benchmark_servers: Seconds = Field(default=0.5, ge=0, description=(
        "each server's CPU benchmark before a trial, for C_s (seed 002's sysbench); 0: the topology's compute"))
    load: list[LoadSpec] = []
    capture: bool = Field(default=True, description="tcpdump on the users and servers: downtime on the wire too")
    repeat: int = Field(default=1, ge=1, le=1000, description="trials of each planner (and scenario), each on a "
                                                             "fresh network with its own seed")
    sim: SimSpec = Field(default=SimSpec(), description="how `testbed sim` runs it (the emulator ignores this)")
    sweep: SweepSpec = Field(default=SweepSpec(), description="what `testbed sweep` varies (a run ignores this)")
    scenarios: dict[str, dict] = Field(default={}, description=(
        "named variants of this experiment, each merged into it (mappings merge, lists and values replace); "
        "every planner runs in each"))

    @field_validator("scenarios")
    @classmethod
    def _scenario_names(cls, scenarios):
        for name in scenarios:
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ValueError(f"scenario name {name!r}: letters, digits, - and _ only")
        return scenarios

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
            model = MOBILITY_MODELS.get(user.mobility.model)
            where = f"users.{name}.mobility"
            found = nested_errors(model.Params, user.mobility.parameters(), where)
            if not found:
                try:
                    model.arguments(model.Params.model_validate(user.mobility.parameters()), node.path)
                except ValueError as exc:
                    found = [f"{where}: {exc}"]
            problems += found
        for index, load in enumerate(self.load):
            node = self.topology.nodes.get(load.server)
            if node is None or not node.is_server:
                problems.append(f"load.{index}.server: {load.server!r} is not a server of topology "
                                f"{self.topology.name!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def variants(self) -> dict[str, "ExperimentSpec"]:
        """Every scenario as its own experiment (or this one, named after it, if it has none)."""
        if not self.scenarios:
            return {self.name: self}
        base = self.model_dump(mode="json", by_alias=True, exclude={"scenarios"})
        return {name: ExperimentSpec.model_validate(merge(base, changes)) for name, changes in self.scenarios.items()}

    def mobility_params(self, user: str) -> dict:
        """The user's mobility model and its arguments (``testbed.mobility.build``); a model with a
        ``duration`` the file leaves out moves for this experiment's (each scenario's own)."""
        mobility = self.users[user].mobility
        model = MOBILITY_MODELS.get(mobility.model)
        parameters = mobility.parameters()
        if "duration" in model.Params.model_fields and "duration" not in parameters:
            parameters = {**parameters, "duration": f"{self.duration!r}s"}
        params = model.Params.model_validate(parameters)
        return {"model": mobility.model, **model.arguments(params, self.topology.nodes[user].path)}


DEFAULT_CALIBRATION = Path(__file__).resolve().parents[2] / "calibration" / "default.yaml"


def merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` merged in: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in changes.items():
        merged[key] = merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def service_name(user: str, index: int, app: str) -> str:
    """The name of ``user``'s ``index``-th service (in the emulator and the simulator)."""
    return f"{app}-{user}" if index == 0 else f"{app}{index}-{user}"


def derive_seed(seed: int, repetition: int) -> int:
    """The seed of repetition ``repetition`` (1, 2, ...) of an experiment seeded ``seed``: the
    seed itself for the first, a stable hash of both for the others."""
    return seed if repetition == 1 else mix_seed(seed, repetition)


def schema_default(field: str):
    """The default an experiment file gets for a top-level ``field`` (declared once, above)."""
    return ExperimentSpec.model_fields[field].default


def _top_level_fields(model) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def _split_overrides(overrides: list[str], source: str) -> tuple[list[str], list[str]]:
    """KEY=VALUE lines for the experiment, and those for its topology (the first segment
    is a topology field)."""
    experiment_keys, topology_keys = [], []
    for text in overrides:
        head = parse_override(text)[0][0]
        if head in _top_level_fields(ExperimentSpec):
            experiment_keys.append(text)
        elif head in _top_level_fields(TopologySpec):
            topology_keys.append(text)
        else:
            raise ConfigError(f"{source} {text!r}: {head!r} is neither an experiment nor a topology field")
    return experiment_keys, topology_keys


def load_experiment(path, overrides: list[str] | None = None) -> ExperimentSpec:
    return load_experiment_with_source(path, overrides)[0]


def _chosen_scenarios(defined, names: list[str], path: Path) -> dict:
    """The file's scenarios named on the command line, in the order named."""
    defined = defined if isinstance(defined, dict) else {}
    unknown = [name for name in names if name not in defined]
    if unknown:
        raise ConfigError(f"--scenario {unknown[0]!r}: {path} defines "
                          + (", ".join(defined) if defined else "no scenarios"))
    return {name: defined[name] for name in dict.fromkeys(names)}


def load_experiment_with_source(path, overrides: list[str] | None = None,
                                scenarios: list[str] | None = None) -> tuple[ExperimentSpec, dict]:
    """An experiment file; ``topology`` is a path (relative to the file) or inline.
    Returns the validated spec and the effective input (overrides applied, topology
    inline), which is what a run records: it loads again as an experiment file.

    ``--set`` keys apply to the experiment, or to its topology when the first
    segment is a topology field (``links.edge_edge.delay=30ms``).  The file's own
    ``set:`` list is applied the same way, first, so a scenario can change a shared
    topology without copying it; the command line's keys win.  ``scenarios``: run only
    these of the file's scenarios (``--scenario``; the record keeps only them)."""
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
    calibration = data.get("calibration", str(DEFAULT_CALIBRATION))
    if isinstance(calibration, str):            # inlined, so the record is complete
        data["calibration"] = read_yaml((path.parent / calibration).resolve())
    passes = [(source, *_split_overrides(keys, source))
              for keys, source in ((own, f"{path}: set:"), (list(overrides or []), "--set"))]
    for source, experiment_keys, _ in passes:
        data = apply_overrides(data, experiment_keys, source)
    if scenarios:
        data["scenarios"] = _chosen_scenarios(data.get("scenarios"), scenarios, path)
    data = generate_city(data, path.parent, str(path))  # a sim.city becomes the topology and users
    for source, _, topology_keys in passes:
        if topology_keys and isinstance(data.get("topology"), dict):
            data["topology"] = apply_overrides(data["topology"], topology_keys, source)
    if isinstance(data.get("topology"), dict):
        try:
            TopologySpec.model_validate(data["topology"])
        except ValidationError as exc:
            raise ConfigError(format_validation_error(topology_source, exc)) from None
    try:
        spec = ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None
    for name, changes in spec.scenarios.items():          # each scenario must be a valid experiment too
        try:
            ExperimentSpec.model_validate(merge(data | {"scenarios": {}}, changes))
        except ValidationError as exc:
            raise ConfigError(format_validation_error(f"{path}: scenarios.{name}", exc)) from None
    return spec, data
