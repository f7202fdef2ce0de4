"""What the dashboard shows, read from the run record: the same files the analysis reads.

Every row of a trial (a mobility sample, a request, a server report, an event) becomes one
small *item* ``{"k": kind, "t": unix time, ...}``:

* ``pos``: a user's position, serving base station and the RSSI of every station (10 Hz);
* ``req``: a request's E2E delay split into processing and transmission, or its failure;
* ``srv``: a server's CPU share and memory (the Resource Monitor's report);
* ``ev``: an event worth listing (handovers, decisions, migration phases, operator actions).

``LiveFeed`` tails the files of the trial under way (``events.jsonl``, ``requests-*.jsonl``,
``mobility-*.jsonl`` and the controller's database); ``RecordFeed`` reads a finished run's
Parquet tables.  Both give the page the same items, so live view and replay draw alike.
"""

from __future__ import annotations

import json
import sqlite3
from collections import deque
from pathlib import Path

import pandas as pd

from testbed.config import load_experiment_with_source
from testbed.config.experiment import service_name
from testbed.controller.planners.base import build as build_planner
from testbed.radio import PathLoss
from testbed.registry import MIGRATION_MODES

LISTED = ("handover.start", "handover.end", "radio.lost", "radio.regained", "controller.decision",
          "controller.deployed", "controller.migration", "controller.operator", "controller.manual",
          "migration.order", "migration.prepared", "migration.pre_done", "migration.done", "migration.failed",
          "service.restored", "user.paused", "user.resumed", "run.controller_lost")


def _round(value, digits=3):
    return None if value is None or value != value else round(float(value), digits)


def position_item(row: dict, user: str) -> dict:
    rssi = row.get("rssi")
    if isinstance(rssi, str):
        rssi = json.loads(rssi)
    return {"k": "pos", "t": row["t"], "u": user, "x": row["x"], "y": row["y"], "ap": row.get("ap"),
            "rssi": rssi or {}}


def request_item(row: dict) -> dict:
    ok = bool(row.get("ok"))
    received = row.get("received")
    return {"k": "req", "t": row["sent"] if received is None or received != received else received,
            "u": row["user"], "s": row["service"], "ok": ok, "e2e": _round(row.get("e2e_ms")),
            "proc": _round(row.get("proc_ms")), "tx": _round(row.get("tx_ms")),
            **({} if ok else {"error": row.get("error")})}


def server_item(row: dict) -> dict:
    return {"k": "srv", "t": row["t"], "s": row["server"], "cpu": _round(row.get("cpu_utilisation"), 4),
            "mem": _round((row.get("memory_bytes") or 0) / 2**20, 1)}


def event_item(event: dict) -> dict | None:
    """An event of the log, trimmed to what the page lists (None: not listed)."""
    kind = event["kind"]
    if kind not in LISTED:
        return None
    item = {"k": "ev", **{key: value for key, value in event.items() if key not in ("src", "trace")}}
    if kind in ("controller.migration", "migration.pre_done", "migration.done"):
        item["phases"] = {name: round(phase["seconds"], 4) for name, phase in (event.get("phases") or {}).items()
                          if isinstance(phase, dict) and "seconds" in phase}
        item = {key: item[key] for key in ("k", "t", "kind", "decision", "migration", "service", "source", "dest",
                                           "mode", "ok", "error", "phases", "bytes") if key in item}
    elif kind == "controller.decision":
        item["estimates"] = next((a.get("estimates") for a in event.get("actions", []) if a.get("estimates")), {})
    return item


class TrialInfo:
    """The static part of the page for one trial: topology, radio, planner, configuration."""

    def __init__(self, run_dir: Path, trial: dict):
        self.run_dir, self.trial = Path(run_dir), trial
        config_path = self.run_dir / "config.yaml"
        spec, _ = load_experiment_with_source(config_path, [])
        variants = spec.variants()
        self.spec = variants.get(trial["scenario"], next(iter(variants.values())))

    def as_dict(self, mode: str, environment: dict | None) -> dict:
        spec, radio = self.spec, self.spec.radio
        planner_spec = next((p for p in spec.planners if p.name == self.trial["planner"]), spec.planners[0])
        planner = build_planner(planner_spec.name, spec.seed, **(planner_spec.params or {}))
        threshold = getattr(planner, "threshold", None)
        nodes = {name: {"role": node.role, "position": list(node.position) if node.position else None,
                        "compute": node.compute, "cpus": node.cpus,
                        "memory_mb": round(node.memory / 2**20) if node.memory else None}
                 for name, node in spec.topology.nodes.items()}
        services = [{"service": service_name(user, index, use.app), "user": user, "app": use.app}
                    for user in spec.users for index, use in enumerate(spec.users[user].services)]
        return {
            "mode": mode, "run": self.run_dir.name,
            "trial": f"{self.trial['scenario']}/{self.trial['planner']}/rep{self.trial['repetition']}",
            "planner": planner_spec.name, "duration": spec.duration, "nodes": nodes,
            "users": list(spec.users), "services": services,
            "coverage_m": round(PathLoss(radio, spec.seed).distance_for_rssi(radio.sensitivity_dbm), 1),
            "sensitivity_dbm": radio.sensitivity_dbm, "hysteresis_db": radio.hysteresis_db,
            "cpu_threshold": threshold if threshold is not None else 0.5,
            "cpu_threshold_from": "planner" if threshold is not None else "seed 004's default",
            "modes": sorted(MIGRATION_MODES.names()), "default_mode": spec.migration.mode,
            "config": (self.run_dir / "config.yaml").read_text(), "environment": environment or {},
        }


def _trials(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "trials.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return []


class _Tail:
    """New whole lines of a growing file since the last read."""

    def __init__(self, path: Path):
        self.path, self.offset, self.rest = path, 0, b""

    def lines(self) -> list[dict]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return []
        self.offset += len(data)
        data, rows = self.rest + data, []
        *whole, self.rest = data.split(b"\n")
        for line in whole:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        return rows


class LiveFeed:
    """Follows the trial under way of a run directory; ``poll()`` returns the items new since
    the last call (a new trial starts with a ``trial`` item); ``snapshot()`` what a page that
    connects late needs: every event of the trial and the last ``keep_s`` seconds of the rest."""

    def __init__(self, run_dir: Path, keep_s: float = 120.0):
        self.run_dir, self.keep_s = Path(run_dir), keep_s
        self.trial: dict | None = None
        self.recent: deque[dict] = deque()
        self.events: list[dict] = []
        self._tails: dict[Path, _Tail] = {}
        self._server_rowid = 0

    def current_trial(self) -> dict | None:
        started = [t for t in _trials(self.run_dir) if (Path(t["dir"]) / "events.jsonl").exists()]
        return started[-1] if started else None

    def poll(self) -> list[dict]:
        trial, items = self.current_trial(), []
        if trial is None:
            return []
        if trial != self.trial:
            self.trial, self._tails, self._server_rowid = trial, {}, 0
            self.recent.clear()
            self.events = []
            items.append({"k": "trial", "t": None, "trial": trial})
        directory = Path(trial["dir"])
        for path in [directory / "events.jsonl", *sorted(directory.glob("requests-*.jsonl")),
                     *sorted(directory.glob("mobility-*.jsonl"))]:
            tail = self._tails.setdefault(path, _Tail(path))
            rows = tail.lines()
            if path.name == "events.jsonl":
                items += [item for item in map(event_item, rows) if item]
            elif path.name.startswith("requests-"):
                items += [request_item(row) for row in rows]
            else:
                user = path.stem.split("-", 1)[1]
                items += [position_item(row, user) for row in rows]
        items += self._server_reports(directory / "controller.sqlite")
        fresh = [item for item in items if item["t"] is not None]
        fresh.sort(key=lambda item: item["t"])
        self.events += [item for item in fresh if item["k"] == "ev"]
        self.recent.extend(item for item in fresh if item["k"] != "ev")
        if self.recent:
            horizon = self.recent[-1]["t"] - self.keep_s
            while self.recent and self.recent[0]["t"] < horizon:
                self.recent.popleft()
        return [item for item in items if item["t"] is None] + fresh

    def snapshot(self) -> list[dict]:
        return sorted([*self.events, *self.recent], key=lambda item: item["t"])

    def _server_reports(self, database: Path) -> list[dict]:
        if not database.exists():
            return []
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=0.2) as connection:
                rows = connection.execute("SELECT rowid, t, server, cpu_utilisation, memory_bytes FROM server_reports "
                                          "WHERE rowid > ? ORDER BY rowid", (self._server_rowid,)).fetchall()
        except sqlite3.Error:
            return []
        if rows:
            self._server_rowid = rows[-1][0]
        return [server_item({"t": t, "server": server, "cpu_utilisation": cpu, "memory_bytes": memory})
                for _, t, server, cpu, memory in rows]


class RecordFeed:
    """One trial of a finished run, from its Parquet tables, every item in time order."""

    def __init__(self, run_dir: Path, trial: str | None = None):
        self.run_dir = Path(run_dir)
        trials = _trials(self.run_dir)
        if not trials:
            raise FileNotFoundError(f"{self.run_dir}: no trials.json (not a run record)")
        labels = {f"{t['scenario']}/{t['planner']}/rep{t['repetition']}": t for t in trials}
        if trial is None:
            self.trial = trials[0]
        elif trial in labels:
            self.trial = labels[trial]
        else:
            raise ValueError(f"no trial {trial!r} in {self.run_dir} (trials: {', '.join(labels)})")
        self.labels = list(labels)

    def _table(self, name: str) -> list[dict]:
        path = self.run_dir / f"{name}.parquet"
        if not path.exists():
            return []
        frame = pd.read_parquet(path)
        for key in ("scenario", "planner", "repetition"):
            if key in frame:
                frame = frame[frame[key] == self.trial[key]]
        return frame.to_dict("records")

    def items(self) -> list[dict]:
        items = [position_item(row, row["user"]) for row in self._table("mobility")]
        items += [request_item(row) for row in self._table("requests")]
        items += [server_item(row) for row in self._table("server_reports")]
        for row in self._table("events"):
            item = event_item({"t": row["t"], "src": row.get("src"), "kind": row["kind"], **json.loads(row["data"])})
            if item:
                items.append(item)
        items.sort(key=lambda item: item["t"])
        return items
