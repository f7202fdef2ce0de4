"""Seeded random-waypoint traces written in the cabspotting format.

For tests and for users without the real data set: the user picks a random
point in the area, walks (or drives) to it at a random speed, pauses, and so
on; a fix is written every ``interval`` seconds, newest first as in the data set.
"""

from __future__ import annotations

import random
from pathlib import Path

from testbed.mobility.base import distance, interpolate
from testbed.mobility.trace import unproject


def random_waypoint_fixes(seed: int, duration: float, area: tuple[float, float, float, float],
                          speed: tuple[float, float] = (5.0, 15.0), pause: tuple[float, float] = (0.0, 30.0),
                          interval: float = 10.0) -> list[tuple[float, float, float]]:
    """[(t, x, y)] in metres every ``interval`` s; area = (x_min, x_max, y_min, y_max)."""
    rng = random.Random(seed)
    x_min, x_max, y_min, y_max = area

    def point():
        return rng.uniform(x_min, x_max), rng.uniform(y_min, y_max)

    legs = []  # (t_start, t_end, from, to)
    t, here = 0.0, point()
    while t < duration:
        there, v = point(), rng.uniform(*speed)
        travel = distance(here, there) / v
        legs.append((t, t + travel, here, there))
        t += travel
        rest = rng.uniform(*pause)
        legs.append((t, t + rest, there, there))
        t += rest
        here = there
    fixes, leg = [], 0
    for k in range(int(duration // interval) + 1):
        now = k * interval
        while legs[leg][1] < now:
            leg += 1
        start, end, a, b = legs[leg]
        fraction = 0.0 if end == start else (now - start) / (end - start)
        fixes.append((now, *interpolate(a, b, fraction)))
    return fixes


def write_cabspotting(path: str | Path, fixes, origin: tuple[float, float], start_unix: int = 1211018404,
                      seed: int = 0) -> Path:
    """Write fixes as ``lat lon occupied unix_time`` lines, newest first."""
    rng = random.Random(seed)
    lines = []
    for t, x, y in fixes:
        lat, lon = unproject(x, y, origin)
        lines.append(f"{lat:.5f} {lon:.5f} {rng.randint(0, 1)} {start_unix + int(round(t))}")
    Path(path).write_text("\n".join(reversed(lines)) + "\n")
    return Path(path)
