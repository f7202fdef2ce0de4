"""Seed 002's movement: back and forth between a start and an end point at constant speed."""

from __future__ import annotations

from testbed.mobility.base import MobilityModel, Point, distance, interpolate


class RoundTrip(MobilityModel):
    name = "round_trip"

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
