"""Seed 002's movement: back and forth between a start and an end point at constant speed."""

from __future__ import annotations

from pydantic import Field

from testbed.config import Strict
from testbed.mobility.base import MobilityModel, Point, distance, interpolate


class RoundTripParams(Strict):
    start: Point | None = Field(default=None, description="default: the first point of the user's path")
    end: Point | None = Field(default=None, description="default: the last point of the user's path")
    speed: float = Field(default=1.0, gt=0, description="m/s")


class RoundTrip(MobilityModel):
    name = "round_trip"
    Params = RoundTripParams

    @classmethod
    def arguments(cls, params: RoundTripParams, path):
        start = params.start or (path[0] if path else None)
        end = params.end or (path[-1] if path else None)
        if start is None or end is None:
            raise ValueError("round_trip needs start and end (or a path in the topology)")
        return {"start": list(start), "end": list(end), "speed": params.speed}

    def __init__(self, start: Point, end: Point, speed: float):
        if speed <= 0:
            raise ValueError(f"speed must be > 0 m/s, got {speed}")
        self.start, self.end, self.speed = tuple(start), tuple(end), float(speed)
        self.length = distance(self.start, self.end)
        if self.length == 0:
            raise ValueError("start and end are the same point")

    def position(self, t: float) -> Point:
        travelled = (max(0.0, t) * self.speed) % (2 * self.length)
        if travelled <= self.length:
            return interpolate(self.start, self.end, travelled / self.length)
        return interpolate(self.end, self.start, (travelled - self.length) / self.length)

    def one_way_time(self) -> float:
        return self.length / self.speed
