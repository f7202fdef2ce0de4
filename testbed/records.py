"""Reading what a run recorded: request logs, events, downtime intervals.

The definitions here are the ones every figure and test uses:

* a request *failed* if no valid reply came (reset, refused, unreachable,
  timeout); an error reply from a running service is not an outage;
* an *outage* (downtime interval) starts when the first failed request of a
  streak was sent (or, if the user's own radio link went down under it, when
  that happened), and ends when the first request that then succeeded was
  sent.  Recovery attempts are started every 10 ms, so this is measured to
  10 ms.  Attempts that were still running when another one had already
  succeeded do not open an outage.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Outage:
    start: float
    end: float
    failures: int
    cause: str = ""       # the first failure's error ("interrupted: out of coverage", "timeout: ...")

    @property
    def seconds(self) -> float:
        return self.end - self.start


def read_jsonl(path: str | Path) -> list[dict]:
    rows = []
    with open(path) as handle:
        for line in handle:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a torn last line of a killed run
    return rows


def requests_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.sort_values("sent", kind="stable").reset_index(drop=True)
    frame["outage_failure"] = (~frame["ok"].astype(bool)) & ~frame.get("error", pd.Series(dtype=object)).astype(object) \
        .fillna("").astype(str).str.startswith("error:")
    return frame


def outages(rows: list[dict] | pd.DataFrame) -> list[Outage]:
    """Downtime intervals of one client's log (one user, one service)."""
    frame = rows if isinstance(rows, pd.DataFrame) else requests_frame(rows)
    if frame.empty:
        return []
    result: list[Outage] = []
    last_received = float("-inf")
    start = None
    failures = 0
    cause = ""
    for row in frame.itertuples(index=False):
        if row.ok:
            if start is not None and row.sent >= start:
                result.append(Outage(start, row.sent, failures, cause))
                start, failures = None, 0
            last_received = max(last_received, row.received)
        elif row.outage_failure and row.sent >= last_received:
            if start is None:
                cause = str(getattr(row, "error", "") or "")
                start = row.received if cause.startswith("interrupted") else row.sent
            failures += 1
    if start is not None:  # still down when the log ends
        result.append(Outage(start, float(frame["received"].max()), failures, cause))
    return result


def counter_breaks(rows: list[dict] | pd.DataFrame) -> list[tuple[int, int]]:
    """Places where the returned counter did not go up by exactly one: (before, after)."""
    frame = rows if isinstance(rows, pd.DataFrame) else requests_frame(rows)
    if frame.empty:
        return []
    counters = frame.loc[frame["ok"].astype(bool), "counter"].tolist()
    return [(a, b) for a, b in zip(counters, counters[1:]) if b != a + 1]


# ---------------------------------------------------------------------------
# A run directory: every trial's logs as columnar records, metrics per trial, their aggregate

TABLES = ("requests", "events", "mobility", "decisions", "migrations", "server_reports")
TRIAL = ["scenario", "planner", "repetition"]           # what tells the trials of one run apart


def _trial_frames(trial_dir: Path, trial: dict) -> dict[str, pd.DataFrame]:
    import sqlite3

    frames: dict[str, pd.DataFrame] = {}
    rows = []
    for path in sorted(trial_dir.glob("requests-*.jsonl")):
        rows += read_jsonl(path)
    requests = pd.DataFrame(rows)
    if not requests.empty:
        for column in ("endpoint", "result"):
            if column in requests:
                requests[column] = requests[column].map(lambda v: None if v is None else json.dumps(v))
    frames["requests"] = requests
    events = read_jsonl(trial_dir / "events.jsonl") if (trial_dir / "events.jsonl").exists() else []
    frames["events"] = pd.DataFrame([{"t": e["t"], "src": e["src"], "kind": e["kind"],
                                      "data": json.dumps({k: v for k, v in e.items() if k not in ("t", "src", "kind")},
                                                         default=str)} for e in events])
    mobility = []
    for path in sorted(trial_dir.glob("mobility-*.jsonl")):
        user = path.stem.split("-", 1)[1]
        for row in read_jsonl(path):
            row["user"] = user
            row["rssi"] = json.dumps(row.get("rssi"))
            mobility.append(row)
    frames["mobility"] = pd.DataFrame(mobility)
    database = trial_dir / "controller.sqlite"
    for table in ("decisions", "migrations", "server_reports"):   # the Central Database
        frames[table] = pd.DataFrame()
        if database.exists():
            with sqlite3.connect(database) as connection:
                frames[table] = pd.read_sql_query(f"SELECT * FROM {table}", connection)
    for frame in frames.values():
        if not frame.empty:
            for position, key in enumerate(TRIAL):
                if key in frame:
                    frame[key] = trial[key]
                else:
                    frame.insert(position, key, trial[key])
    return frames


def trial_metrics(requests: pd.DataFrame, events: pd.DataFrame, migrations: pd.DataFrame) -> list[dict]:
    """Per trial (run, scenario, planner, repetition) and service: E2E split, downtime, outages,
    handovers of the service's user, migrations, counter check.  Each is computed within one
    trial's timeline; a metric that cannot be computed is None, with its reason in ``missing``."""
    result = []
    if requests.empty:
        return result
    requests = with_trial_columns(requests)
    keys = [k for k in ["run", *TRIAL] if k in requests]
    events = with_trial_columns(events) if not events.empty else events
    migrations = with_trial_columns(migrations) if not migrations.empty else migrations
    for key, rows in requests.groupby(keys + ["service"], sort=True):
        trial = dict(zip(keys + ["service"], key))
        frame = requests_frame(rows.to_dict("records"))
        ok = frame[frame["ok"].astype(bool)]
        found = outages(frame)
        user = str(frame["user"].iloc[0]) if "user" in frame else None
        mine = _rows_of(events, trial, keys)
        handovers = 0
        if not mine.empty:
            ends = mine[mine["kind"] == "handover.end"]
            handovers = int(sum(1 for data in ends["data"] if json.loads(data).get("user") == user))
        probed = _probe_outages(found, mine, trial["service"], frame)
        found = [o for o in found if o not in probed]
        moved = _rows_of(migrations, trial, keys)
        moved = moved[moved["service"] == trial["service"]] if not moved.empty else moved
        row = {**trial, "app": str(frame["app"].iloc[0]) if "app" in frame and frame["app"].notna().any() else None,
               "requests_ok": int(len(ok)), "requests_failed": int(len(frame) - len(ok)),
               "e2e_mean_ms": float(ok["e2e_ms"].mean()) if len(ok) else None,
               "e2e_std_ms": float(ok["e2e_ms"].std()) if len(ok) > 1 else None,
               "processing_mean_ms": float(ok["proc_ms"].mean()) if len(ok) else None,
               "transmission_mean_ms": float(ok["tx_ms"].mean()) if len(ok) else None,
               "downtime_total_s": float(sum(o.seconds for o in found)), "outages": len(found),
               "downtime_coverage_s": float(sum(o.seconds for o in found if o.cause.endswith("out of coverage"))),
               "downtime_probe_s": float(sum(o.seconds for o in probed)),
               "handovers": handovers,
               "migrations_ok": int(moved["ok"].astype(bool).sum()) if not moved.empty else 0,
               "migrations_failed": int((~moved["ok"].astype(bool)).sum()) if not moved.empty else 0,
               "counter_breaks": len(counter_breaks(frame)), "missing": {}}
        if not len(ok):
            for metric in ("e2e_mean_ms", "e2e_std_ms", "processing_mean_ms", "transmission_mean_ms"):
                row["missing"][metric] = "no successful request"
        elif len(ok) < 2:
            row["missing"]["e2e_std_ms"] = "one successful request"
        result.append(row)
    return result


def _probe_outages(found: list[Outage], events: pd.DataFrame, service: str, requests: pd.DataFrame) -> list[Outage]:
    """The outages that seed 002's checkpoint-size probe (t0) caused, not a handover or a
    migration: those that began while the probe held the service frozen, or one request
    timeout before (a request sent just before the freeze fails by timing out)."""
    if events.empty or not found:
        return []
    from testbed.config import ConfigError, app_manifest

    app = str(requests["app"].dropna().iloc[0]) if "app" in requests and requests["app"].notna().any() else None
    try:
        timeout = float(app_manifest(app).timeout) if app else 2.0
    except ConfigError:        # an app this checkout does not know: the longest timeout of ours
        timeout = 2.0
    windows = []
    for row in events[events["kind"] == "checkpoint.probe"].to_dict("records"):
        data = json.loads(row["data"])
        if data.get("service") != service:
            continue
        start, end = data.get("window") or (row["t"] - sum(data.get("checkpoint_seconds") or []) - 1.0, row["t"])
        windows.append((start - timeout, end))
    return [o for o in found if any(start <= o.start <= end for start, end in windows)]


def _rows_of(frame: pd.DataFrame, trial: dict, keys: list[str]) -> pd.DataFrame:
    if frame.empty:
        return frame
    mask = pd.Series(True, index=frame.index)
    for key in keys:
        if key in frame:
            mask &= frame[key] == trial[key]
    return frame[mask]


METRICS = ("e2e_mean_ms", "e2e_std_ms", "processing_mean_ms", "transmission_mean_ms", "downtime_total_s",
           "downtime_coverage_s", "downtime_probe_s",
           "outages", "handovers", "migrations_ok", "migrations_failed", "counter_breaks", "requests_ok",
           "requests_failed")


def mean_ci(values: list[float], confidence: float = 0.95) -> dict:
    """Mean and Student-t confidence interval of per-trial values (the interval needs two)."""
    from scipy import stats

    n = len(values)
    if n == 0:
        return {"mean": None, "ci95": None, "n": 0}
    mean = float(sum(values) / n)
    if n < 2:
        return {"mean": mean, "ci95": None, "n": 1}
    sd = float(pd.Series(values).std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / n ** 0.5
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": n}


def aggregate(trials: list[dict], by: tuple[str, ...] = ("scenario", "planner", "service")) -> list[dict]:
    """Per ``by`` group, every metric's mean and 95 % interval across its trials (repetitions
    and runs); a metric no trial could compute is missing, with the trials' reasons."""
    groups: dict[tuple, list[dict]] = {}
    for trial in trials:
        groups.setdefault(tuple(trial.get(k) for k in by), []).append(trial)
    result = []
    for key, members in sorted(groups.items(), key=lambda item: tuple(str(v) for v in item[0])):
        row = {**dict(zip(by, key)), "trials": len(members), "app": members[0].get("app")}
        for metric in METRICS:
            values = [m[metric] for m in members if m.get(metric) is not None]
            stats_ = mean_ci(values)
            reasons = sorted({m.get("missing", {}).get(metric) for m in members} - {None})
            if not values:
                stats_["missing"] = "; ".join(reasons) or "no trial"
            elif stats_["ci95"] is None:
                stats_["interval_missing"] = "one trial"
            row[metric] = stats_
        result.append(row)
    return result


def with_trial_columns(frame: pd.DataFrame, run: str | None = None) -> pd.DataFrame:
    """Records of runs made before repetitions existed: one trial per planner."""
    if frame.empty:
        return frame
    frame = frame.copy()
    if "scenario" not in frame:
        frame.insert(0, "scenario", "default")
    if "repetition" not in frame:
        frame["repetition"] = 1
    if run is not None:
        frame["run"] = run
    return frame


def finalize(run_dir: Path, trials: list[dict]) -> dict:
    """Write <table>.parquet and summary.json (per trial and aggregated) for the run."""
    run_dir = Path(run_dir)
    combined: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}
    for trial in trials:
        if Path(trial["dir"]).exists():
            for name, frame in _trial_frames(Path(trial["dir"]), trial).items():
                combined[name].append(frame)
    tables = {name: pd.concat([f for f in frames if not f.empty], ignore_index=True)
              if any(not f.empty for f in frames) else pd.DataFrame() for name, frames in combined.items()}
    for name, frame in tables.items():
        frame.to_parquet(run_dir / f"{name}.parquet", index=False)
    per_trial = trial_metrics(tables["requests"], tables["events"], tables["migrations"])
    summary = {"trials": per_trial, "aggregate": aggregate(per_trial)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def load(run_dir: Path, table: str) -> pd.DataFrame:
    path = Path(run_dir) / f"{table}.parquet"
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def export_csv(run_dir: Path) -> list[Path]:
    written = []
    for table in TABLES:
        frame = load(run_dir, table)
        if not frame.empty:
            path = Path(run_dir) / f"{table}.csv"
            frame.to_csv(path, index=False)
            written.append(path)
    return written


# ---------------------------------------------------------------------------
# Runs under way on this host, so that a killed one is marked as such afterwards

ACTIVE = Path("/run/testbed/runs")


def register_active(run_dir: Path) -> None:
    """This process runs ``run_dir`` (until ``unregister_active``)."""
    ACTIVE.mkdir(parents=True, exist_ok=True)
    (ACTIVE / f"{os.getpid()}.json").write_text(json.dumps({"run_dir": str(Path(run_dir).resolve()),
                                                            "pid": os.getpid()}))


def unregister_active() -> None:
    (ACTIVE / f"{os.getpid()}.json").unlink(missing_ok=True)


def mark_killed_runs() -> list[Path]:
    """Runs whose process is gone without finishing them: marked incomplete (killed), and what
    they recorded up to then combined into their tables (``testbed figures`` reads them)."""
    marked = []
    for entry in sorted(ACTIVE.glob("*.json")) if ACTIVE.is_dir() else []:
        try:
            info = json.loads(entry.read_text())
        except (OSError, ValueError):
            entry.unlink(missing_ok=True)
            continue
        if _alive(int(info.get("pid", 0))):
            continue
        run_dir = Path(info["run_dir"])
        status = run_dir / "status.json"
        if status.exists() and json.loads(status.read_text()).get("state") == "running":
            trials = json.loads((run_dir / "trials.json").read_text()) if (run_dir / "trials.json").exists() else []
            try:
                finalize(run_dir, [t for t in trials if Path(t["dir"]).exists()])
            except Exception:       # what can be read is read; the status says what happened
                pass
            status.write_text(json.dumps({"state": "incomplete", "time": time.time(),
                                          "reason": f"killed: process {info.get('pid')} ended without finishing"},
                                         indent=2))
            marked.append(run_dir)
        entry.unlink(missing_ok=True)
    return marked


def _alive(pid: int) -> bool:
    try:
        state = next((line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if line.startswith("State:")), "")
    except OSError:
        return False
    return state not in ("Z", "X")
