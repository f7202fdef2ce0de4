"""What the simulator takes from the emulator: per app, the processing time and the
migration's phases as they were measured on this testbed.

``testbed sim calibrate RUN...`` fits a calibration from run records and
writes it with its provenance; ``calibration/sim-default.yaml`` is one measured
here.  The fit (``fit``) works on plain tables so that it can be tested on
hand-made records with known parameters:

* processing: ``proc_ms`` times the compute of the server that answered
  (C_s as configured: the share of the CPU the emulator gives it) is lognormal at
  C = 1: its median and log-standard deviation; and the median on servers of each
  C_s, which the simulator uses for servers of that C_s (a single task on the
  emulator does not always slow down as 1 / C_s: it may run on a whole core);
* migration (C_s as measured at the trial's set-up): set-up, final checkpoint
  (at C = 1), restore (at C = 1), the
  pre-transfer's time against the TCP model of ``transfer_seconds`` over the
  path (``pre_efficiency``), and what the outage the user saw holds beyond
  checkpoint, delta transfer (on the window the pre-copy opened where the run's
  mode and servers keep it: ``warm``, as the simulator moves it) and restore
  (``overhead_s``; the agents' downtime phase when no migration stands apart
  from a handover); sizes of the image, the pre-migration checkpoint and the
  delta, and the delta's quantiles (deltas come in two sizes);
* handover: how much longer its radio outage lasted than configured.
"""

from __future__ import annotations

import json
import math
import statistics
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from testbed import assets
from testbed.config import ConfigError, Strict, read_yaml
from testbed.controller.estimators import transfer_seconds, warm_transfer_seconds


class AppCalibration(Strict):
    proc_ms: float = Field(gt=0, description="median processing time at C = 1 (scaled as 1 / C)")
    proc_sigma: float = Field(ge=0, description="standard deviation of log(processing time)")
    by_compute: dict[float, float] = Field(default={}, description=(
        "median processing time measured on servers of each C_s: used instead of the 1 / C scaling "
        "for servers of that C_s (the emulator's single task does not always scale with C_s)"))
    task_bytes: float = Field(ge=0, description="a task's size on the wire")
    overhead_ms: float = Field(default=0.0, description=(
        "what a request took beyond processing, propagation and transmission at the radio's rate "
        "on average (TCP's windows after idle, the service's framing, the hosts' stacks): this, plus"))
    overhead_per_rtt: float = Field(default=0.0, description="... this many times the path's round trip")
    requests: int = Field(ge=0, description="how many measured requests the fit used")


class MigrationCalibration(Strict):
    setup_s: float = Field(ge=0)
    checkpoint_s: float = Field(ge=0, description="final checkpoint at C = 1")
    restore_s: float = Field(ge=0, description="at C = 1")
    pre_efficiency: float = Field(gt=0, description="measured pre-transfer / the TCP model's time")
    overhead_s: float = Field(description=(
        "the outage beyond checkpoint, delta transfer and restore: as the user saw it (its client's log) "
        "when the runs show migrations apart from handovers, else the agents' downtime phase"))
    overhead_from: Literal["user", "agent"] = Field(default="agent", description=(
        "what overhead_s was fitted to: the user's outage or the agents' downtime phase"))
    image_bytes: float = Field(ge=0)
    full_bytes: float = Field(ge=0, description="the pre-migration checkpoint")
    delta_bytes: float = Field(ge=0)
    delta_quantiles: list[float] = Field(default=[], description=(
        "the delta's quantiles at 0, 10, ..., 100 % of the migrations measured: each simulated migration "
        "draws its delta from them (measured here, deltas come in two sizes: a third of them small); "
        "empty: every delta is delta_bytes"))
    mode: str = "precopy-delta"
    migrations: int = Field(ge=0)

    @field_validator("delta_quantiles")
    @classmethod
    def _rising_sizes(cls, quantiles: list[float]) -> list[float]:
        falling = any(b < a for a, b in zip(quantiles, quantiles[1:]))
        if len(quantiles) == 1 or any(q < 0 for q in quantiles) or falling:
            raise ValueError("expected none, or two or more sizes in bytes, each at least the one before")
        return quantiles


class SimCalibration(Strict):
    apps: dict[str, AppCalibration]
    migration: dict[str, MigrationCalibration] = Field(description="per app")
    handover_excess_s: float = Field(default=0.0, description=(
        "how much longer a handover's radio outage lasted than configured (radio.handover_time)"))
    source: dict = {}

    def app(self, name: str) -> AppCalibration:
        if name not in self.apps:
            raise ConfigError(f"the simulator's calibration has no app {name!r} (has: {', '.join(sorted(self.apps))}); "
                              "calibrate from a run that used it: testbed sim calibrate RUN")
        return self.apps[name]

    def processing_ms(self, app: str, compute: float) -> float:
        """Median processing time of ``app`` on a server of ``compute``: as measured on servers
        of that C_s, else the C = 1 median scaled by 1 / C."""
        found = self.app(app)
        for measured_at, median in found.by_compute.items():
            if abs(measured_at - compute) <= 1e-6 * max(1.0, compute):
                return median
        return found.proc_ms / compute

    def migration_of(self, app: str) -> MigrationCalibration:
        if app not in self.migration:
            raise ConfigError(f"the simulator's calibration has no migration of app {app!r} "
                              f"(has: {', '.join(sorted(self.migration))})")
        return self.migration[app]


def load(source: str | dict, base: Path | None = None) -> SimCalibration:
    """A calibration from a file (relative to ``base``, then to the repository) or inline."""
    from pydantic import ValidationError

    from testbed.config.base import format_validation_error

    if isinstance(source, dict):
        data, where = source, "sim.calibration"
    else:
        repository = Path(__file__).resolve().parents[2]
        candidates = [p for p in ((base / source) if base else None, repository / source, Path(source)) if p]
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            raise ConfigError(f"sim.calibration: no file {source!r}")
        data, where = read_yaml(path), str(path)
    try:
        return SimCalibration.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(where, exc)) from None


def _finite(values) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _median(values) -> float:
    values = _finite(values)
    return float(statistics.median(values)) if values else 0.0


def _quantiles(values) -> list[float]:
    """Quantiles at 0, 10, ..., 100 % (none for no value)."""
    values = _finite(values)
    return np.quantile(values, np.linspace(0, 1, 11)).tolist() if values else []


MIN_SAMPLES = 20    # requests on servers of one C_s before their own median counts


def fit_processing(requests: pd.DataFrame) -> dict[str, dict]:
    """Per app, lognormal processing time at C = 1 from rows with ``app``, ``proc_ms`` and the
    ``compute`` of the server that answered, and the median on servers of each C_s."""
    result = {}
    for app, rows in requests.groupby("app"):
        rows = rows[rows["proc_ms"] > 0]
        if rows.empty:
            continue
        logs = (rows["proc_ms"] * rows["compute"]).astype(float).map(math.log)
        by_compute = {float(c): float(group["proc_ms"].median()) for c, group in rows.groupby("compute")
                      if len(group) >= MIN_SAMPLES}
        result[str(app)] = {"proc_ms": float(math.exp(logs.mean())), "proc_sigma": float(logs.std(ddof=1) or 0.0),
                            "by_compute": by_compute, "requests": int(len(rows))}
        if "modelled_ms" in rows:
            result[str(app)].update(_overhead(rows.dropna(subset=["modelled_ms"])))
    return result


def _overhead(rows: pd.DataFrame) -> dict:
    """The mean residual on each path's round trip (the simulator's E2E is a mean: TCP's occasional
    window restarts belong in it), then a line through them, weighted by requests."""
    if rows.empty:
        return {"overhead_ms": 0.0, "overhead_per_rtt": 0.0}
    residual = rows["e2e_ms"] - rows["proc_ms"] - rows["modelled_ms"]
    groups = residual.groupby(rows["rtt_ms"].round(1)).agg(["mean", "size"])
    if len(groups) < 2:
        return {"overhead_ms": float(residual.mean()), "overhead_per_rtt": 0.0}
    slope, intercept = np.polyfit(groups.index.to_numpy(float), groups["mean"].to_numpy(float), 1,
                                  w=np.sqrt(groups["size"].to_numpy(float)))
    return {"overhead_ms": float(intercept), "overhead_per_rtt": float(slope)}


def fit_migrations(migrations: pd.DataFrame) -> dict[str, dict]:
    """Per app from rows with ``app``, ``mode``, ``phases`` and ``sizes`` (as the agents record
    them), ``compute_source``, ``compute_dest``, ``bandwidth_mbps`` and ``rtt_s`` of the path,
    ``warm`` (optional): the delta followed the pre-copy on its open window, and ``seen_s``
    (optional): the outage the user saw, or None where it cannot be told apart."""
    result = {}
    for app, rows in migrations.groupby("app"):
        setup, checkpoint, restore, efficiency, overhead, image, full, delta = ([] for _ in range(8))
        overhead_seen = []
        for row in rows.to_dict("records"):
            phases, sizes = row["phases"], row["sizes"]
            seconds = {name: phase["seconds"] for name, phase in phases.items() if phase.get("ok", True)}
            if "prepare" in seconds:
                setup.append(seconds["prepare"])
            if "final_checkpoint" in seconds:
                checkpoint.append(seconds["final_checkpoint"] * row["compute_source"])
            if "restore" in seconds:
                restore.append(seconds["restore"] * row["compute_dest"])
            full_bytes = sizes.get("pre_checkpoint", sizes.get("final_checkpoint", 0))
            if "pre_transfer" in seconds and full_bytes:
                efficiency.append(seconds["pre_transfer"] / transfer_seconds(full_bytes, row["bandwidth_mbps"],
                                                                             row["rtt_s"]))
            if {"migration", "final_checkpoint", "restore"} <= seconds.keys():
                final = warm_transfer_seconds if row.get("warm") is True else transfer_seconds
                moved = final(sizes.get("delta", full_bytes), row["bandwidth_mbps"], row["rtt_s"])
                overhead.append(seconds["migration"] - seconds["final_checkpoint"] - seconds["restore"] - moved)
                if row.get("seen_s") is not None and math.isfinite(row["seen_s"]):
                    overhead_seen.append(row["seen_s"] - seconds["final_checkpoint"] - seconds["restore"] - moved)
            image.append(sizes.get("image"))
            full.append(full_bytes)
            delta.append(sizes.get("delta"))
        result[str(app)] = {"setup_s": _median(setup), "checkpoint_s": _median(checkpoint),
                            "restore_s": _median(restore), "pre_efficiency": _median(efficiency) or 1.0,
                            "overhead_s": _median(overhead_seen) if overhead_seen else _median(overhead),
                            "overhead_from": "user" if overhead_seen else "agent", "image_bytes": _median(image),
                            "full_bytes": _median(full), "delta_bytes": _median(delta),
                            "delta_quantiles": _quantiles(delta),
                            "mode": str(rows["mode"].iloc[0]), "migrations": int(len(rows))}
    return result


def fit(requests: pd.DataFrame, migrations: pd.DataFrame, handovers: list[float],
        task_bytes: dict[str, float]) -> dict:
    apps = {app: {**found, "task_bytes": float(task_bytes.get(app, 0.0))}
            for app, found in fit_processing(requests).items()}
    return {"apps": apps, "migration": fit_migrations(migrations),
            "handover_excess_s": _median(handovers)}


# -- run records -> the fit's tables -----------------------------------------------------------

def _trial_keys(frame: pd.DataFrame) -> list[str]:
    return [k for k in ("scenario", "planner", "repetition") if k in frame]


def tables_of_run(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[float], dict[str, float]]:
    """The fit's inputs from one run record (its Parquet tables and effective configuration)."""
    from testbed.config import ExperimentSpec
    from testbed.controller.state import final_transfer_is_warm
    from testbed.sim.network import GraphNetwork

    run_dir = Path(run_dir)
    missing = [name for name in ("requests", "events", "migrations") if not (run_dir / f"{name}.parquet").exists()]
    if missing:
        raise ConfigError(f"{run_dir}: not a finished run record (no {', '.join(m + '.parquet' for m in missing)})")
    spec = ExperimentSpec.model_validate(read_yaml(run_dir / "config.yaml"))
    requests = pd.read_parquet(run_dir / "requests.parquet")
    events = pd.read_parquet(run_dir / "events.parquet")
    migrations = pd.read_parquet(run_dir / "migrations.parquet")
    task_bytes = {}
    for variant in spec.variants().values():
        for user in variant.users.values():
            for use in user.services:
                task_bytes.setdefault(use.app, assets.task_bytes(use))
    keys = _trial_keys(events)
    compute, where_ip, handovers, configured_handover, radio_out = {}, {}, [], {}, {}
    for row in events.to_dict("records"):
        trial = tuple(row[k] for k in keys)
        data = json.loads(row["data"])
        if row["kind"] == "controller.compute":
            compute[(trial, data["server"])] = float(data["measured"])
        elif row["kind"] == "controller.deployed":
            where_ip[(trial, data["endpoint"][0])] = data["server"]
        elif row["kind"] == "controller.migration" and data.get("ok") and data.get("new_endpoint"):
            where_ip[(trial, data["new_endpoint"][0])] = data["dest"]
        elif row["kind"] == "handover.start":
            configured_handover[(trial, data.get("user"), data.get("sim_t"))] = float(data.get("duration") or 0.0)
        elif row["kind"] == "handover.end" and data.get("end") and data.get("start"):
            planned = configured_handover.get((trial, data.get("user"), data.get("sim_t")))
            if planned is not None:
                handovers.append(float(data["end"]) - float(data["start"]) - planned)
            radio_out.setdefault((trial, data.get("user")), []).append((float(data["start"]), float(data["end"])))
    configured = {name: node.compute for variant in spec.variants().values()
                  for name, node in variant.topology.nodes.items() if node.is_server}

    def compute_of(trial, server):
        return compute.get((trial, server), configured.get(server, 1.0))

    ok = requests[requests["ok"].astype(bool)] if not requests.empty else requests
    ok = _with_radio_rate(ok, run_dir)
    network = GraphNetwork(spec.topology)
    radio = spec.topology.links.get(spec.topology.network.radio_link)
    radio_one_way = radio.delay if radio else 0.0
    rows = []
    for row in ok.to_dict("records"):
        trial = tuple(row[k] for k in _trial_keys(ok))
        endpoint = json.loads(row["endpoint"]) if isinstance(row.get("endpoint"), str) else None
        server = where_ip.get((trial, endpoint[0])) if endpoint else None
        if server is None or not row.get("proc_ms"):
            continue
        modelled = None                          # the simulator's network part of this request
        if row.get("ap") in spec.topology.nodes and row.get("mbps") and row["mbps"] == row["mbps"]:
            bandwidth = min(float(row["mbps"]), network.bandwidth(row["ap"], server))
            rtt = 2 * (network.one_way(row["ap"], server) + radio_one_way)
            modelled = 1e3 * (rtt + task_bytes.get(row["app"], 0.0) * 8 / (bandwidth * 1e6))
        rows.append({"app": row["app"], "proc_ms": float(row["proc_ms"]), "e2e_ms": float(row["e2e_ms"]),
                     "modelled_ms": modelled, "rtt_ms": 1e3 * rtt if modelled is not None else None,
                     "compute": configured[server]})   # the C_s the emulator enforces
    seen = _outages_seen(requests, radio_out)
    moved = []
    for row in migrations.to_dict("records"):
        if not row.get("ok"):
            continue
        record = json.loads(row["record"])
        trial = tuple(row[k] for k in _trial_keys(migrations))
        source, dest = record["source"], record["dest"]
        moved.append({"app": record.get("app"), "mode": record.get("mode"), "phases": record.get("phases", {}),
                      "sizes": record.get("sizes", {}), "compute_source": compute_of(trial, source),
                      "compute_dest": compute_of(trial, dest), "bandwidth_mbps": network.bandwidth(source, dest),
                      "rtt_s": 2 * network.one_way(source, dest),
                      "warm": final_transfer_is_warm(record.get("mode"), spec.topology.network),
                      "seen_s": seen(trial, row["service"], record.get("phases", {}).get("migration"))})
    return (pd.DataFrame(rows, columns=["app", "proc_ms", "e2e_ms", "modelled_ms", "rtt_ms", "compute"]),
            pd.DataFrame(moved),
            handovers, task_bytes)


def _outages_seen(requests: pd.DataFrame, radio_out: dict):
    """A function giving the outage a migration's user saw (seconds), from its client's log: the one
    outage that overlaps the migration's downtime phase, or None when there is none, several, or
    it touches one of the user's handovers (then it is not the migration's alone)."""
    from testbed.records import outages, requests_frame

    keys = _trial_keys(requests)
    found: dict = {}
    if not requests.empty:
        for key, rows in requests.groupby(keys + ["service"], sort=False):
            frame = requests_frame(rows.to_dict("records"))
            found[tuple(key)] = (str(frame["user"].iloc[0]), outages(frame))

    def seen(trial: tuple, service: str, phase: dict | None) -> float | None:
        user, outages_of = found.get((*trial, service), (None, []))
        if not phase or not phase.get("ok", True) or "start" not in phase:
            return None
        start, end = float(phase["start"]), float(phase["end"])
        over = [o for o in outages_of if o.start < end and o.end > start]
        if len(over) != 1 or over[0].cause.startswith("interrupted"):
            return None
        outage = over[0]
        if any(a < outage.end + HANDOVER_MARGIN_S and b > outage.start - HANDOVER_MARGIN_S
               for a, b in radio_out.get((trial, user), [])):
            return None
        return outage.seconds

    return seen


HANDOVER_MARGIN_S = 0.1    # an outage this close to a handover may hold some of it


def _with_radio_rate(requests: pd.DataFrame, run_dir: Path) -> pd.DataFrame:
    """Each request with the rate its user's radio link had when it was sent (the mobility log)."""
    path = run_dir / "mobility.parquet"
    if requests.empty or not path.exists():
        return requests.assign(mbps=None)
    mobility = pd.read_parquet(path)
    if "mbps" not in mobility or mobility.empty:
        return requests.assign(mbps=None)
    keys = [k for k in ("scenario", "planner", "repetition", "user") if k in requests and k in mobility]
    left = requests.sort_values("sent")
    right = mobility[keys + ["t", "mbps"]].dropna(subset=["t"]).sort_values("t")
    return pd.merge_asof(left, right, left_on="sent", right_on="t", by=keys, direction="backward")


def calibrate(run_dirs: list[Path]) -> dict:
    """A calibration file's content fitted from ``run_dirs`` together, with its provenance."""
    requests, migrations, handovers, task_bytes = [], [], [], {}
    for run_dir in run_dirs:
        r, m, h, t = tables_of_run(run_dir)
        requests.append(r)
        migrations.append(m)
        handovers += h
        task_bytes.update(t)
    fitted = fit(pd.concat(requests, ignore_index=True), pd.concat(migrations, ignore_index=True), handovers,
                 task_bytes)
    if not fitted["apps"] or not fitted["migration"]:
        raise ConfigError("the runs hold no successful request or migration to fit")
    runs = []
    for run_dir in map(Path, run_dirs):
        config = read_yaml(run_dir / "config.yaml")
        environment = run_dir / "environment.json"
        machine = json.loads(environment.read_text()) if environment.exists() else {}
        runs.append({"run": run_dir.name, "experiment": config.get("name"), "repeat": config.get("repeat", 1),
                     "scenarios": sorted(config.get("scenarios") or {}) or None,
                     "machine": {k: machine.get(k) for k in ("kernel", "cpu", "cpus", "link_backend", "docker", "criu")
                                 if k in machine}})
    fitted["source"] = {"runs": runs, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "command": "testbed sim calibrate " + " ".join(Path(d).name for d in run_dirs)}
    SimCalibration.model_validate(fitted)
    return fitted
