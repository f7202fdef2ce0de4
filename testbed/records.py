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
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Outage:
    start: float
    end: float
    failures: int

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
    frame["outage_failure"] = (~frame["ok"].astype(bool)) & ~frame.get("error", pd.Series(dtype=str)) \
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
    for row in frame.itertuples(index=False):
        if row.ok:
            if start is not None and row.sent >= start:
                result.append(Outage(start, row.sent, failures))
                start, failures = None, 0
            last_received = max(last_received, row.received)
        elif row.outage_failure and row.sent >= last_received:
            if start is None:
                interrupted = str(getattr(row, "error", "")).startswith("interrupted")
                start = row.received if interrupted else row.sent
            failures += 1
    if start is not None:  # still down when the log ends
        result.append(Outage(start, float(frame["received"].max()), failures))
    return result


def counter_breaks(rows: list[dict] | pd.DataFrame) -> list[tuple[int, int]]:
    """Places where the returned counter did not go up by exactly one: (before, after)."""
    frame = rows if isinstance(rows, pd.DataFrame) else requests_frame(rows)
    if frame.empty:
        return []
    counters = frame.loc[frame["ok"].astype(bool), "counter"].tolist()
    return [(a, b) for a, b in zip(counters, counters[1:]) if b != a + 1]


# ---------------------------------------------------------------------------
# A run directory: combine the trials' logs into columnar records and a summary

TABLES = ("requests", "events", "mobility", "decisions", "migrations", "server_reports")


def _trial_frames(trial_dir: Path, planner: str) -> dict[str, pd.DataFrame]:
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
        if database.exists():
            with sqlite3.connect(database) as connection:
                frames[table] = pd.read_sql_query(f"SELECT * FROM {table}", connection)
        else:
            frames[table] = pd.DataFrame()
    for frame in frames.values():
        if not frame.empty:
            if "planner" in frame:
                frame["planner"] = planner
            else:
                frame.insert(0, "planner", planner)
    return frames


def summarize(requests: pd.DataFrame, events: pd.DataFrame) -> list[dict]:
    """Per planner and service: E2E split, downtime, handovers, migrations, counter check."""
    result = []
    if requests.empty:
        return result
    for (planner, service), rows in requests.groupby(["planner", "service"], sort=False):
        frame = requests_frame(rows.to_dict("records"))
        ok = frame[frame["ok"].astype(bool)]
        found = outages(frame)
        trial_events = events[events["planner"] == planner] if not events.empty else events
        kinds = trial_events["kind"].value_counts().to_dict() if not trial_events.empty else {}
        migrations = [json.loads(d) for d in trial_events.loc[trial_events["kind"] == "controller.migration", "data"]] \
            if not trial_events.empty else []
        mine = [m for m in migrations if m.get("service") == service]
        result.append({
            "planner": planner, "service": service, "requests_ok": int(len(ok)),
            "requests_failed": int(len(frame) - len(ok)),
            "e2e_mean_ms": float(ok["e2e_ms"].mean()) if len(ok) else None,
            "e2e_std_ms": float(ok["e2e_ms"].std()) if len(ok) > 1 else None,
            "processing_mean_ms": float(ok["proc_ms"].mean()) if len(ok) else None,
            "transmission_mean_ms": float(ok["tx_ms"].mean()) if len(ok) else None,
            "downtime_total_s": float(sum(o.seconds for o in found)), "outages": len(found),
            "handovers": int(kinds.get("handover.end", 0)),
            "migrations_ok": sum(1 for m in mine if m.get("ok")),
            "migrations_failed": sum(1 for m in mine if not m.get("ok")),
            "counter_breaks": len(counter_breaks(frame)),
        })
    return result


def finalize(run_dir: Path, planners: list[str]) -> list[dict]:
    """Write <table>.parquet and summary.json for the run; return the summary."""
    run_dir = Path(run_dir)
    combined: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}
    for planner in planners:
        trial = run_dir / planner
        if trial.exists():
            for name, frame in _trial_frames(trial, planner).items():
                combined[name].append(frame)
    tables = {name: pd.concat([f for f in frames if not f.empty], ignore_index=True)
              if any(not f.empty for f in frames) else pd.DataFrame() for name, frames in combined.items()}
    for name, frame in tables.items():
        frame.to_parquet(run_dir / f"{name}.parquet", index=False)
    summary = summarize(tables["requests"], tables["events"])
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
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
