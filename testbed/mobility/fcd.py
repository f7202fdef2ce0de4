"""Replay of one vehicle of a SUMO floating-car-data file (``sumo --fcd-output``).

SUMO writes ``<timestep time="t"><vehicle id="v" x="..." y="..." .../></timestep>``
in metres of its network (``--fcd-output.geo false``).  The vehicle is on the
map from its first sample to its last (a trip of ``randomTrips``), and off it
across a gap longer than ``max_gap``.  ``testbed sim sumo DIR`` generates such a
file offline (a road grid, random trips) with the ``eclipse-sumo`` package.
"""

from __future__ import annotations

import functools
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from pydantic import Field

from testbed.config import Strict
from testbed.mobility.base import MobilityModel, Point, along, on_the_map


class FcdError(ValueError):
    pass


@functools.lru_cache(maxsize=4)
def read_fcd(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every vehicle's samples: id -> (times, xy), in the order vehicles first appear;
    FcdError names the line of a bad sample."""
    samples: dict[str, list[tuple[float, float, float]]] = {}
    now = None
    parser = ET.XMLPullParser(events=("start", "end"))
    try:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                parser.feed(line)
                for event, element in parser.read_events():
                    if event == "start" and element.tag == "timestep":
                        now = _number(element, "time", path, number)
                    elif event == "start" and element.tag == "vehicle":
                        if now is None:
                            raise FcdError(f"{path}:{number}: a vehicle outside a timestep")
                        vid = element.get("id")
                        if not vid:
                            raise FcdError(f"{path}:{number}: a vehicle without an id")
                        samples.setdefault(vid, []).append(
                            (now, _number(element, "x", path, number), _number(element, "y", path, number)))
                    elif event == "end" and element.tag == "timestep":
                        element.clear()
    except OSError as exc:
        raise FcdError(f"{path}: cannot read: {exc.strerror}") from None
    except ET.ParseError as exc:
        raise FcdError(f"{path}:{exc.position[0]}: not FCD XML ({exc})") from None
    if not samples:
        raise FcdError(f"{path}: no vehicle")
    return {vid: (np.array([s[0] for s in rows]), np.array([(s[1], s[2]) for s in rows]))
            for vid, rows in samples.items()}


def _number(element, key: str, path, line: int) -> float:
    try:
        value = float(element.get(key))
    except (TypeError, ValueError):
        raise FcdError(f"{path}:{line}: {element.tag} {key}={element.get(key)!r} is not a number") from None
    if not math.isfinite(value):
        raise FcdError(f"{path}:{line}: {element.tag} {key}={element.get(key)!r} is not finite")
    return value


class FcdParams(Strict):
    file: str = Field(description="SUMO FCD output (--fcd-output, --fcd-output.geo false)")
    vehicle: str | int = Field(description="the vehicle's id, or k: the k-th vehicle to appear (from 0)")
    offset: Point = (0.0, 0.0)
    max_gap: float = Field(default=30.0, gt=0, description="seconds without a sample that take it off the map")


class FcdReplay(MobilityModel):
    name = "fcd"
    Params = FcdParams

    @classmethod
    def arguments(cls, params: FcdParams, path):
        return {"path": params.file, "vehicle": params.vehicle, "offset": list(params.offset),
                "max_gap": params.max_gap}

    def __init__(self, path: str | Path, vehicle: str | int, offset: Point = (0.0, 0.0), max_gap: float = 30.0):
        found = read_fcd(str(path))
        if isinstance(vehicle, int):
            if not 0 <= vehicle < len(found):
                raise FcdError(f"{path}: holds {len(found)} vehicles, not a {vehicle + 1}th")
            vehicle = list(found)[vehicle]
        if vehicle not in found:
            raise FcdError(f"{path}: no vehicle {vehicle!r}")
        self.times, xy = found[vehicle]
        self.xy = xy + np.asarray(offset, dtype=float)
        self.max_gap = float(max_gap)

    def duration(self) -> float:
        return float(self.times[-1])

    def positions(self, times: np.ndarray) -> np.ndarray:
        return along(times, self.times, self.xy)

    def position(self, t: float) -> Point:
        x, y = self.positions(np.array([t]))[0]
        return float(x), float(y)

    def present(self, times: np.ndarray) -> np.ndarray:
        return on_the_map(self.times, times, self.max_gap)
