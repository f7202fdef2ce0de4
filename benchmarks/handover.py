"""Handover counts on a walk past three base stations: shadowing sigma 0, 4 and 8 dB, with
and without A3's time to trigger, memoryless and spatially correlated shadowing.

    .venv/bin/python benchmarks/handover.py [--walks 10] [--speed 1.0] [--ttt 320ms]

Each walk is the mobile user's own decision loop (``testbed.radio.replay_walk``: samples
every 100 ms, nothing decided while a 500 ms handover runs) with its own seed, on the
paper topology's stations (30 m apart, the user 5 m off the line).  A walk past three
stations needs two handovers; more is ping-pong.  Prints a table and writes it to
runs/bench/handover-<time>.{md,csv}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

from testbed.config import RadioSpec, load_topology
from testbed.mobility.waypoints import Waypoints
from testbed.radio import replay_walk

ROOT = Path(__file__).resolve().parents[1]


def counts(radio: RadioSpec, stations, walk, duration: float, walks: int) -> list[int]:
    return [sum(1 for _, kind, _, _ in replay_walk(radio, stations, walk.position, duration, seed=seed, user="mu")
                if kind in ("handover", "forced")) for seed in range(walks)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--walks", type=int, default=10)
    parser.add_argument("--speed", type=float, default=1.0, help="m/s")
    parser.add_argument("--ttt", default="320ms", help="A3 time to trigger")
    args = parser.parse_args()
    topology = load_topology(ROOT / "topologies" / "paper.yaml")
    stations = {ap: topology.nodes[ap].position for ap in topology.nodes_with_role("ap")}
    path = topology.nodes["mu"].path
    walk = Waypoints(path, args.speed)
    duration = sum(((b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2) ** 0.5 for a, b in zip(path, path[1:])) / args.speed
    rows = []
    for decorrelation in (0.0, 10.0):
        for sigma in (0.0, 4.0, 8.0):
            row = {"decorrelation m": decorrelation, "sigma dB": sigma}
            for label, rule in (("hysteresis", {"handover_rule": "hysteresis"}),
                                (f"A3 TTT {args.ttt}", {"handover_rule": "a3", "time_to_trigger": args.ttt})):
                radio = RadioSpec(tx_power_dbm=20, pl_d0_db=40, exponent=3.0, sensitivity_dbm=-85, hysteresis_db=3,
                                  shadowing_sigma_db=sigma, shadowing_decorrelation_m=decorrelation, **rule)
                found = counts(radio, stations, walk, duration, args.walks)
                row[f"{label}: mean"] = round(statistics.mean(found), 1)
                row[f"{label}: range"] = f"{min(found)}-{max(found)}"
            rows.append(row)
    report("handover", f"Handovers on a {duration:.0f} s walk past three stations ({args.walks} seeded walks, "
           f"{args.speed} m/s, hysteresis 3 dB); two is right", rows)


if __name__ == "__main__":
    main()
