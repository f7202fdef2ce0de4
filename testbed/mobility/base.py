"""The mobility model interface: where the user is at time t (seconds, metres).

A model is one module of this package with one ``MobilityModel`` subclass
that names itself, declares the parameters an experiment file gives it
(``Params``, validated by the schema) and turns them into its constructor's
arguments (``arguments``; the user's path in the topology may fill gaps).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field

from testbed.config import Strict
from testbed.registry import MOBILITY_MODELS

Point = tuple[float, float]


def _ordered(area: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x_min, x_max, y_min, y_max = area
    if x_max < x_min or y_max < y_min:
        raise ValueError("x min, x max, y min, y max with min <= max")
    return area


Area = Annotated[tuple[float, float, float, float], AfterValidator(_ordered),
                 Field(description="x min, x max, y min, y max (metres)")]


class MobilityModel(ABC):
    name: ClassVar[str]

    class Params(Strict):
        """A model without parameters; subclasses declare their own."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            MOBILITY_MODELS.register(cls)

    @classmethod
    def arguments(cls, params: "MobilityModel.Params", path: list[Point] | None) -> dict:
        """Constructor arguments from validated ``params`` and the user's topology ``path``;
        ValueError says what is missing."""
        return params.model_dump()

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

    def positions(self, times: np.ndarray) -> np.ndarray:
        """Positions at many times at once, shape (len(times), 2): what the simulator asks.
        Models made of fixes answer with one interpolation instead of this loop."""
        return np.array([self.position(float(t)) for t in times], dtype=float).reshape(-1, 2)

    def present(self, times: np.ndarray) -> np.ndarray:
        """Whether the user is on the map at each time (a trace's long gap: not)."""
        return np.ones(len(times), dtype=bool)


def along(times: np.ndarray, fix_times, points) -> np.ndarray:
    """Positions at ``times`` on straight lines between timed fixes (held at the first and the
    last), shape (len(times), 2): how the models made of fixes answer ``positions``."""
    xy = np.asarray(points, dtype=float).reshape(-1, 2)
    return np.column_stack([np.interp(times, fix_times, xy[:, 0]), np.interp(times, fix_times, xy[:, 1])])


def on_the_map(fixes: np.ndarray, times: np.ndarray, max_gap: float) -> np.ndarray:
    """At each of ``times``: between the first and the last of ``fixes`` (sorted times) and not
    inside a gap between two fixes longer than ``max_gap`` (a trace is split there, not
    interpolated across)."""
    after = np.searchsorted(fixes, times, side="right")
    inside = (after > 0) & (after < len(fixes))
    gap = np.zeros(len(times))
    gap[inside] = fixes[after[inside]] - fixes[after[inside] - 1]
    return (times >= fixes[0]) & (times <= fixes[-1]) & (gap <= max_gap)


def distance(a: Point, b: Point) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def interpolate(a: Point, b: Point, fraction: float) -> Point:
    return a[0] + (b[0] - a[0]) * fraction, a[1] + (b[1] - a[1]) * fraction
