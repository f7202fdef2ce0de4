"""Vehicle traces generated offline with SUMO (the ``eclipse-sumo`` package from PyPI).

``generate`` builds a road grid (``netgenerate``), random trips over it
(``randomTrips.py``, one departure every ``period`` seconds) and runs SUMO for
``duration`` seconds, writing floating-car data in metres (``fcd.xml``) that the
``fcd`` mobility model reads.  Seeded: the same arguments give the same file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testbed.config import ConfigError


def sumo_home() -> Path:
    try:
        import sumo
    except ImportError:
        raise ConfigError("SUMO is not installed: pip install eclipse-sumo (setup.sh installs it)") from None
    return Path(sumo.SUMO_HOME)


def generate(out_dir: Path, grid: int = 8, length: float = 500.0, period: float = 5.0, duration: float = 3600.0,
             seed: int = 1, speed: float = 13.9) -> Path:
    """A ``grid`` x ``grid`` road network ``length`` metres a block, vehicles departing every
    ``period`` s for ``duration`` s at up to ``speed`` m/s; the FCD file's path."""
    home = sumo_home()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SUMO_HOME": str(home)}
    binaries = home / "bin"
    steps = [
        [str(binaries / "netgenerate"), "--grid", "--grid.number", str(grid), "--grid.length", str(length),
         "--default.speed", str(speed), "--seed", str(seed), "-o", "grid.net.xml"],
        [sys.executable, str(home / "tools" / "randomTrips.py"), "-n", "grid.net.xml", "-o", "trips.xml",
         "-r", "routes.rou.xml", "-e", str(duration), "--period", str(period), "--seed", str(seed), "--validate"],
        [str(binaries / "sumo"), "-n", "grid.net.xml", "-r", "routes.rou.xml", "--fcd-output", "fcd.xml",
         "--fcd-output.geo", "false", "--end", str(duration), "--step-length", "1", "--seed", str(seed),
         "--no-step-log", "true", "--no-warnings", "true"],
    ]
    for command in steps:
        done = subprocess.run(command, cwd=out_dir, env=env, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return out_dir / "fcd.xml"
