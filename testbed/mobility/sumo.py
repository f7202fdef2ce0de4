"""SUMO vehicles: every user drives a car of traffic simulated offline with SUMO.

``generate`` builds the traffic with the ``eclipse-sumo`` package (PyPI, no
download at run time): a road grid (``netgenerate``), random trips over it
(``randomTrips.py``) and SUMO's floating-car data in metres, written as Parquet
for the ``fcd`` reader.  With ``vehicles`` set, that many cars depart in the
first seconds and each drives one trip through enough random waypoints to last
``duration``: persistent vehicles, so a user is on the map all along (plain
random trips are a few minutes long each).  Without it a car departs every
``period`` seconds for a single trip, SUMO's usual demand.  Seeded: the same
arguments give the same traces.

The ``sumo`` model (a generated city's default) generates its population's
traffic once, cached on disk by its parameters and shared by every user of the
experiment (and every later run with the same parameters), and replays car k
for user k.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pydantic import Field, model_validator

from testbed.config import ConfigError, Strict
from testbed.config.base import Seconds
from testbed.mobility.base import Area
from testbed.mobility.fcd import FcdReplay

CACHE = Path(__file__).resolve().parents[2] / "runs" / ".cache" / "sumo"
GENERATOR = 3            # changes whenever ``generate`` makes different traffic from the same arguments
DEPARTURE_GAP_S = 0.1    # persistent cars depart one after another this far apart ...
INSERTION_GRACE_S = 60.0  # ... and may wait this long for room on the road


def sumo_home() -> Path:
    try:
        import sumo
    except ImportError:
        raise ConfigError("SUMO is not installed: pip install eclipse-sumo (setup.sh installs it)") from None
    return Path(sumo.SUMO_HOME)


def _sumo_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eclipse-sumo")
    except PackageNotFoundError:
        return "unknown"


def generate(out_dir: Path, grid: int | tuple[int, int] = 8, length: float = 500.0, period: float = 5.0,
             duration: float = 3600.0, seed: int = 1, speed: float = 13.9, vehicles: int | None = None,
             sample: float = 1.0) -> Path:
    """A road grid of ``grid`` junctions a side (or (x, y)) ``length`` metres apart at up to ``speed``
    m/s, its traffic for ``duration`` s (``vehicles`` persistent cars, or one trip every ``period`` s)
    and every car's position each ``sample`` s, the last at or after ``duration``: the FCD file's
    path (``fcd.parquet``)."""
    home = sumo_home()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nx, ny = (grid, grid) if isinstance(grid, int) else grid
    end = duration
    if vehicles is None:
        demand = ["-e", str(duration), "--period", str(period)]
    else:            # all depart within the first seconds; each trip outlasts the run through waypoints
        mean_leg_m = (nx - 1 + ny - 1) * length / 3            # mean Manhattan distance of two random points
        legs = math.ceil(1.5 * duration * speed / max(mean_leg_m, length)) + 2
        departures = vehicles * DEPARTURE_GAP_S
        demand = ["-e", f"{departures:g}", "--period", f"{DEPARTURE_GAP_S:g}", "--intermediate", str(legs)]
        end = max(duration, departures + INSERTION_GRACE_S)   # a run shorter than the departures still has every car
    binaries = home / "bin"
    steps = [
        [str(binaries / "netgenerate"), "--grid", "--grid.x-number", str(nx), "--grid.y-number", str(ny),
         "--grid.length", str(length), "--default.speed", str(speed), "--seed", str(seed), "-o", "grid.net.xml"],
        [sys.executable, str(home / "tools" / "randomTrips.py"), "-n", "grid.net.xml", "-o", "trips.xml",
         "-r", "routes.rou.xml", "-b", "0", *demand, "--seed", str(seed), "--validate"],
        [str(binaries / "sumo"), "-n", "grid.net.xml", "-r", "routes.rou.xml", "--fcd-output", "fcd.parquet",
         "--output.format", "parquet", "--fcd-output.attributes", "x,y", "--device.fcd.period", str(sample),
         "--end", str(end + sample), "--step-length", "1", "--seed", str(seed), "--no-step-log", "true",
         "--no-warnings", "true"],
    ]
    env = {**os.environ, "SUMO_HOME": str(home)}
    for command in steps:
        done = subprocess.run(command, cwd=out_dir, env=env, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return out_dir / "fcd.parquet"


def traffic(cache: Path | None = None, **arguments) -> Path:
    """``generate(**arguments)``'s FCD file, made once per distinct ``arguments`` (concurrent
    trials wait for the first one's) and kept under ``cache`` (default ``CACHE``)."""
    cache = Path(cache or CACHE)
    keyed = {**arguments, "generator": GENERATOR, "sumo": _sumo_version()}
    key = hashlib.blake2b(json.dumps(keyed, sort_keys=True).encode(), digest_size=8).hexdigest()
    done = cache / key / "fcd.parquet"
    if done.exists():
        return done
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            scratch = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=cache))
            try:
                generate(scratch, **arguments)
                (scratch / "arguments.json").write_text(json.dumps(keyed, indent=1, sort_keys=True))
                scratch.rename(cache / key)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    return done


class SumoParams(Strict):
    area: Area
    vehicles: int = Field(ge=1, le=100_000, description="cars on the roads (a generated city: one per user)")
    vehicle: int = Field(default=0, ge=0, description="the car this user drives (from 0)")
    duration: Seconds = Field(default=3600.0, gt=0, description="how long the cars drive (default: the experiment's)")
    block: float = Field(default=500.0, gt=0, description="metres between junctions of the road grid")
    speed: float = Field(default=13.9, gt=0, description="the roads' speed limit, m/s")
    sample: Seconds = Field(default=5.0, gt=0, description=(
        "seconds between two positions of a car (straight lines in between: at a turn that cuts the "
        "corner by at most speed x sample / 2; a day of 500 cars sampled each second would not fit in 2 GB)"))
    seed: int = 1
    max_gap: float = Field(default=30.0, gt=0, description="seconds without a position that take it off the map")

    @model_validator(mode="after")
    def _shape(self):
        x0, x1, y0, y1 = self.area
        if x1 - x0 < self.block or y1 - y0 < self.block:
            raise ValueError("area: x min, x max, y min, y max spanning at least one block each way")
        if self.vehicle >= self.vehicles:
            raise ValueError(f"vehicle: {self.vehicle} of {self.vehicles} cars (counted from 0)")
        return self


class SumoVehicle(FcdReplay):
    name = "sumo"
    Params = SumoParams

    @classmethod
    def arguments(cls, params: SumoParams, path):
        return {**params.model_dump(), "area": list(params.area)}

    def __init__(self, area, vehicles: int, vehicle: int = 0, duration: float = 3600.0, block: float = 500.0,
                 speed: float = 13.9, sample: float = 5.0, seed: int = 1, max_gap: float = 30.0):
        x0, x1, y0, y1 = area
        grid = (int((x1 - x0) // block) + 1, int((y1 - y0) // block) + 1)
        path = traffic(grid=grid, length=float(block), duration=float(duration), seed=int(seed),
                       speed=float(speed), vehicles=int(vehicles), sample=float(sample))
        super().__init__(path, vehicle, offset=(x0, y0), max_gap=max_gap)
