"""Replay of GPS traces in the San Francisco taxi (cabspotting) format.

One fix per line: ``latitude longitude occupied unix_time`` (the data set lists
the newest fix first; any order is accepted).  Fixes are projected to metres
(equirectangular around ``origin``, which lands on ``offset`` in topology
coordinates) and interpolated linearly in time.  A line that cannot be read,
or a fix outside ``bounds`` (the map), is rejected with its line number.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pydantic import Field

from testbed.config import Strict
from testbed.mobility.base import MobilityModel, Point, along, interpolate, on_the_map

EARTH_RADIUS_M = 6_371_000.0
SAN_FRANCISCO = (37.0, 38.5, -123.0, -121.5)  # lat min, lat max, lon min, lon max


class TraceError(ValueError):
    pass


def project(lat: float, lon: float, origin: tuple[float, float]) -> Point:
    lat0, lon0 = map(math.radians, origin)
    return (EARTH_RADIUS_M * (math.radians(lon) - lon0) * math.cos(lat0),
            EARTH_RADIUS_M * (math.radians(lat) - lat0))


def unproject(x: float, y: float, origin: tuple[float, float]) -> tuple[float, float]:
    lat0, lon0 = map(math.radians, origin)
    return (math.degrees(lat0 + y / EARTH_RADIUS_M),
            math.degrees(lon0 + x / (EARTH_RADIUS_M * math.cos(lat0))))


def read_fixes(path: str | Path, bounds=SAN_FRANCISCO) -> list[tuple[float, float, float, int]]:
    """[(unix_time, lat, lon, occupied)] sorted by time; TraceError names the bad line."""
    lat_min, lat_max, lon_min, lon_max = bounds
    fixes = []
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                if len(parts) != 4:
                    raise ValueError(f"expected 4 fields, got {len(parts)}")
                lat, lon, occupied, stamp = float(parts[0]), float(parts[1]), int(parts[2]), float(parts[3])
            except ValueError as exc:
                raise TraceError(f"{path}:{number}: unreadable fix {line.strip()!r} ({exc})") from None
            if not (lat_min <= lat <= lat_max and lon_min <= lon <= lon_max):
                raise TraceError(f"{path}:{number}: fix ({lat}, {lon}) is outside the map "
                                 f"(lat {lat_min}..{lat_max}, lon {lon_min}..{lon_max})")
            fixes.append((stamp, lat, lon, occupied))
    if len(fixes) < 2:
        raise TraceError(f"{path}: a trace needs at least two fixes")
    fixes.sort()
    return fixes


class TraceParams(Strict):
    file: str = Field(description="trace file (cabspotting format)")
    origin: tuple[float, float] | None = Field(default=None, description="lat, lon placed at offset")
    offset: Point = (0.0, 0.0)
    speedup: float = Field(default=1.0, gt=0)
    bounds: tuple[float, float, float, float] = Field(default=SAN_FRANCISCO, description=(
        "the map: lat min, lat max, lon min, lon max (a fix outside is an error)"))
    max_gap: float = Field(default=300.0, gt=0, description=(
        "seconds between two fixes beyond which the trace is split: the user is off the map in between"))


class TraceReplay(MobilityModel):
    name = "trace"
    Params = TraceParams

    @classmethod
    def arguments(cls, params: TraceParams, path):
        return {"path": params.file, "origin": params.origin, "offset": list(params.offset),
                "speedup": params.speedup, "bounds": list(params.bounds), "max_gap": params.max_gap}

    def __init__(self, path: str | Path, origin: tuple[float, float] | None = None,
                 offset: Point = (0.0, 0.0), bounds=SAN_FRANCISCO, speedup: float = 1.0,
                 max_gap: float = math.inf):
        fixes = read_fixes(path, tuple(bounds))
        self.max_gap = float(max_gap) / float(speedup)
        self.origin = tuple(origin) if origin else (fixes[0][1], fixes[0][2])
        self.t0 = fixes[0][0]
        self.speedup = float(speedup)
        self.times = [(stamp - self.t0) / self.speedup for stamp, *_ in fixes]
        self.points = [(x + offset[0], y + offset[1])
                       for x, y in (project(lat, lon, self.origin) for _, lat, lon, _ in fixes)]

    def duration(self) -> float:
        return self.times[-1]

    def positions(self, times: np.ndarray) -> np.ndarray:
        return along(times, self.times, self.points)

    def present(self, times: np.ndarray) -> np.ndarray:
        """Off the map inside a gap longer than ``max_gap`` (not interpolated across) and after the end."""
        return on_the_map(np.asarray(self.times), times, self.max_gap)

    def position(self, t: float) -> Point:
        if t <= 0:
            return self.points[0]
        if t >= self.times[-1]:
            return self.points[-1]
        lo, hi = 0, len(self.times) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.times[mid] <= t:
                lo = mid
            else:
                hi = mid
        span = self.times[hi] - self.times[lo]
        return interpolate(self.points[lo], self.points[hi], 0.0 if span == 0 else (t - self.times[lo]) / span)
