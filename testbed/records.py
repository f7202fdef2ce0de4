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
