"""Random waypoint: pick a point in the area, go there at a random speed, pause, repeat.

Seeded, so a user's walk is the same in every run (and in the emulator and
the simulator).  The legs are drawn as far ahead as asked.
"""

from __future__ import annotations

import random

import numpy as np
from pydantic import Field, model_validator

from testbed.config import Strict
from testbed.mobility.base import Area, MobilityModel, Point, along, distance


class RandomWaypointParams(Strict):
    area: Area
    speed: tuple[float, float] = Field(default=(5.0, 15.0), description="m/s, drawn uniformly per leg")
    pause: tuple[float, float] = Field(default=(0.0, 30.0), description="seconds at each waypoint")
    seed: int = 1

    @model_validator(mode="after")
    def _ranges(self):
        if not 0 < self.speed[0] <= self.speed[1]:
            raise ValueError("speed: (min, max) with 0 < min <= max")
        if not 0 <= self.pause[0] <= self.pause[1]:
            raise ValueError("pause: (min, max) with 0 <= min <= max")
        return self


class RandomWaypoint(MobilityModel):
    name = "random_waypoint"
    Params = RandomWaypointParams

    @classmethod
    def arguments(cls, params: RandomWaypointParams, path):
        return {"area": list(params.area), "speed": list(params.speed), "pause": list(params.pause),
                "seed": params.seed}

    def __init__(self, area, speed=(5.0, 15.0), pause=(0.0, 30.0), seed: int = 1):
        self.area, self.speed, self.pause = tuple(area), tuple(speed), tuple(pause)
        self.rng = random.Random(seed)
        self.times: list[float] = [0.0]
        self.points: list[Point] = [self._point()]

    def _point(self) -> Point:
        x0, x1, y0, y1 = self.area
        return self.rng.uniform(x0, x1), self.rng.uniform(y0, y1)

    def _extend(self, until: float) -> None:
        while self.times[-1] <= until:
            here, there = self.points[-1], self._point()
            self.times.append(self.times[-1] + distance(here, there) / self.rng.uniform(*self.speed))
            self.points.append(there)
            self.times.append(self.times[-1] + self.rng.uniform(*self.pause))
            self.points.append(there)

    def positions(self, times: np.ndarray) -> np.ndarray:
        if len(times):
            self._extend(float(np.max(times)))
        return along(times, self.times, self.points)

    def position(self, t: float) -> Point:
        x, y = self.positions(np.array([max(0.0, t)]))[0]
        return float(x), float(y)
