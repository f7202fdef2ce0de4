"""Laps of a multi-step operation, to find where its time goes."""

from __future__ import annotations

import time


class Stopwatch:
    """``lap(name)`` records the seconds since the previous lap (or the start);
    ``notes`` says how a step was done, where there is more than one way."""

    def __init__(self):
        self.laps: dict[str, float] = {}
        self.notes: dict[str, str] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(self.laps.get(name, 0.0) + now - self._last, 6)
        self._last = now
