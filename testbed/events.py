"""The one event log of a run: every component appends JSON lines to it.

Each line is ``{"t": <unix seconds>, "src": <component>, "kind": <event>, ...}``.
All components run on one host, so their clocks agree; appends of one short
line with O_APPEND never interleave, so controller, agents, the user and the
runner can share one file without a broker.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path


class EventLog:
    def __init__(self, path: str | Path | None, source: str):
        self.path = Path(path) if path else None
        self.source = source
        self._lock = threading.Lock()
        self._fd = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def emit(self, kind: str, **fields) -> dict:
        event = {"t": round(time.time(), 6), "src": self.source, "kind": kind, **fields}
        if self._fd is not None:
            line = (json.dumps(event, separators=(",", ":"), default=str) + "\n").encode()
            with self._lock:
                os.write(self._fd, line)
        return event

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_events(path: str | Path) -> list[dict]:
    """All events of a log, in time order (a torn last line is ignored)."""
    events = []
    with open(path) as handle:
        for line in handle:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    events.sort(key=lambda e: e["t"])
    return events
