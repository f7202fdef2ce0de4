"""The mobility model interface: where the user is at time t (seconds, metres)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

Point = tuple[float, float]


class MobilityModel(ABC):
    """A new model is one file with a subclass; register it in ``testbed.mobility.MODELS``."""

    name: str

    @abstractmethod
    def position(self, t: float) -> Point:
        """Position in metres at ``t`` seconds after the start."""

    def velocity(self, t: float, dt: float = 0.1) -> Point:
        """Metres per second around ``t`` (finite difference)."""
        (x0, y0), (x1, y1) = self.position(max(0.0, t - dt)), self.position(t + dt)
        span = t + dt - max(0.0, t - dt)
        return (x1 - x0) / span, (y1 - y0) / span

    def duration(self) -> float | None:
        """How long the movement lasts (None: forever, e.g. round trips)."""
        return None


def distance(a: Point, b: Point) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def interpolate(a: Point, b: Point, fraction: float) -> Point:
    return a[0] + (b[0] - a[0]) * fraction, a[1] + (b[1] - a[1]) * fraction
