"""Replay of one vehicle of a SUMO floating-car-data file (``sumo --fcd-output``).

SUMO writes ``<timestep time="t"><vehicle id="v" x="..." y="..." .../></timestep>``
in metres of its network (``--fcd-output.geo false``), or the same as columns
``timestep_time``, ``vehicle_id``, ``vehicle_x``, ``vehicle_y`` of a Parquet
file (``--output.format parquet``: a tenth of the size, read in a fraction of the
time).  The vehicle is on the map from its first sample to its last (a trip of
``randomTrips``), and off it across a gap longer than ``max_gap``.
``testbed sim sumo DIR`` generates such a file offline (a road grid, random
trips) with the ``eclipse-sumo`` package; the ``sumo`` model does it for a city.
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
    FcdError names the line (XML) or row (Parquet) of a bad sample."""
    if path.endswith(".parquet"):
        return _read_parquet(path)
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


PARQUET_COLUMNS = ("timestep_time", "vehicle_id", "vehicle_x", "vehicle_y")


def _read_parquet(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Columns straight into arrays; vehicle ids as a dictionary (a day of 500 cars is tens of
    millions of rows: one Python string per row would not fit in memory)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        present = pq.read_schema(path).names
        missing = [c for c in PARQUET_COLUMNS if c not in present]
        if missing:
            raise FcdError(f"{path}: no column {', '.join(missing)} (FCD columns: {', '.join(PARQUET_COLUMNS)})")
        table = pq.read_table(path, columns=list(PARQUET_COLUMNS), read_dictionary=["vehicle_id"])
    except (OSError, pa.ArrowException) as exc:
        raise FcdError(f"{path}: cannot read as Parquet: {exc}") from None
    if table.num_rows == 0:
        raise FcdError(f"{path}: no vehicle")
    vehicle = table["vehicle_id"]
    if not pa.types.is_dictionary(vehicle.type):
        vehicle = pc.dictionary_encode(vehicle.cast(pa.string()))
    ids = vehicle.unify_dictionaries().combine_chunks()        # one dictionary: codes by first appearance
    bad = ids.is_null().to_numpy(zero_copy_only=False)
    columns = []
    for name in ("timestep_time", "vehicle_x", "vehicle_y"):
        try:
            column = table[name].to_numpy().astype(float, copy=False)
        except (ValueError, TypeError, pa.ArrowException) as exc:
            raise FcdError(f"{path}: column {name} must be numbers ({exc})") from None
        bad |= ~np.isfinite(column)
        columns.append(column)
    if bad.any():
        row = int(np.argmax(bad))
        raise FcdError(f"{path}: row {row}: not a vehicle's time and position ({table.slice(row, 1).to_pylist()[0]})")
    codes = ids.indices.to_numpy()
    names = ids.dictionary.to_pylist()
    del table, vehicle, ids
    order = np.argsort(codes, kind="stable")                   # each vehicle's rows, in file order
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    times = columns[0][order]
    xy = np.empty((len(order), 2))
    for axis in (1, 2):
        xy[:, axis - 1] = columns[axis][order]
        columns[axis] = None
    return {vid: (times[a:b], xy[a:b]) for vid, a, b in zip(names, bounds[:-1], bounds[1:])}


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
        self.xy = xy + np.asarray(offset, dtype=float) if any(offset) else xy    # shared, not copied
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
