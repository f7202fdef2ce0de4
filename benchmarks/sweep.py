"""Sweep benchmark: throughput (trials per hour) by parallelism and backend.

    .venv/bin/python benchmarks/sweep.py [--trials 8] [--parallel 1,2] [--emulated-trials 4]

Each row is one sweep of ``experiments/default.yaml`` (counter, nearest planner) over
``--trials`` grid points of the edge-to-edge delay, run by ``testbed sweep`` in a fresh
directory: simulated trials (70 s each) at each parallelism, and emulated ones (30 s each,
a network of their own each) at each parallelism when ``--emulated-trials`` > 0 (root, the
full stack).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, report  # noqa: E402


def sweep(trials: int, parallel: int, simulated: bool, duration: str) -> dict:
    delays = ",".join(f"{10 + 10 * k}ms" for k in range(trials))
    with tempfile.TemporaryDirectory(prefix="tb-sweep-bench-") as scratch:
        command = [sys.executable, "-m", "testbed", "sweep", str(ROOT / "experiments" / "default.yaml"),
                   "--grid", f"links.edge_edge.delay={delays}", "--set", "planners=[nearest]", "--set",
                   f"duration={duration}", "--parallel", str(parallel), "--out", str(Path(scratch) / "sweep"),
                   "--no-figures"] + (["--sim"] if simulated else [])
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - started
    return {"backend": "simulator" if simulated else "emulator", "trials": trials, "trial duration": duration,
            "parallel": parallel, "ok": done.returncode == 0, "wall s": round(seconds, 1),
            "trials per hour": round(trials * 3600 / seconds, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--parallel", default="1,2")
    parser.add_argument("--emulated-trials", type=int, default=0)
    args = parser.parse_args()
    rows = [sweep(args.trials, int(p), True, "70s") for p in args.parallel.split(",")]
    if args.emulated_trials:
        rows += [sweep(args.emulated_trials, int(p), False, "30s") for p in args.parallel.split(",")]
    report("sweep", "Sweep throughput (2-core machine)", rows,
           ["A sweep's wall time includes starting its Dask cluster (a few seconds)."])


if __name__ == "__main__":
    main()
