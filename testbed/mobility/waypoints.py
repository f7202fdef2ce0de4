"""A list of waypoints, each leg at its own speed; optionally looping."""

from __future__ import annotations

from pydantic import Field

from testbed.config import Strict
from testbed.mobility.base import MobilityModel, Point, distance, interpolate


class WaypointsParams(Strict):
    points: list[Point] | None = Field(default=None, description="default: the user's path in the topology")
    speed: float = Field(default=1.0, gt=0, description="m/s on every leg")
    speeds: list[float] | None = Field(default=None, description="m/s per leg (instead of speed)")
    loop: bool = False


class Waypoints(MobilityModel):
    name = "waypoints"
    Params = WaypointsParams

    @classmethod
    def arguments(cls, params: WaypointsParams, path):
        points = params.points or path
        if not points:
            raise ValueError("waypoints needs points (or a path in the topology)")
        return {"points": [list(p) for p in points], "speeds": params.speeds or params.speed, "loop": params.loop}

    def __init__(self, points: list[Point], speeds: list[float] | float, loop: bool = False):
        if len(points) < 2:
            raise ValueError("waypoints needs at least two points")
        legs = len(points) - 1 + (1 if loop else 0)
        speeds = [float(speeds)] * legs if isinstance(speeds, (int, float)) else [float(s) for s in speeds]
        if len(speeds) != legs:
            raise ValueError(f"{legs} legs need {legs} speeds, got {len(speeds)}")
        if any(s <= 0 for s in speeds):
            raise ValueError("every speed must be > 0 m/s")
        self.points = [tuple(p) for p in points] + ([tuple(points[0])] if loop else [])
        self.loop = loop
        self.times = [0.0]
        for (a, b), speed in zip(zip(self.points, self.points[1:]), speeds):
            self.times.append(self.times[-1] + distance(a, b) / speed)

    def duration(self) -> float | None:
        return None if self.loop else self.times[-1]

    def position(self, t: float) -> Point:
        total = self.times[-1]
        t = max(0.0, t)
        if self.loop:
            t %= total
        elif t >= total:
            return self.points[-1]
        for i in range(len(self.times) - 1):
            if t <= self.times[i + 1]:
                span = self.times[i + 1] - self.times[i]
                return interpolate(self.points[i], self.points[i + 1], 0.0 if span == 0 else (t - self.times[i]) / span)
        return self.points[-1]
