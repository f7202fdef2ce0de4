"""Radio rate benchmark: the emulated radio link's TCP throughput at five distances from a
base station against the rate table's rate there, up and down, and two users sharing one
station.

    .venv/bin/python benchmarks/radio.py [--seconds 5] [--table 802.11n]

The user stands still (``static`` mobility) on the paper topology, 2-90 m from ap1, with
path-loss exponent 3 (RSSI -29 to -79 dBm, noise floor -95 dBm); iperf3 runs between the
user and edge1.  Prints a table and writes it to runs/bench/radio-<time>.{md,csv}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

from testbed.config import RadioSpec, load_topology
from testbed.net.network import MecNetwork
from testbed.net.probe import iperf3_together
from testbed.radio import PathLoss
from testbed.stack import Stack

ROOT = Path(__file__).resolve().parents[1]
DISTANCES = (2.0, 25.0, 45.0, 70.0, 90.0)


def stand(stack: Stack, user: str, position, radio: dict) -> None:
    stack.start_user(user, [], mobility={"model": "static", "position": list(position)}, radio=radio,
                     handover="rssi", t0=time.time())
    deadline = time.time() + 5
    while stack.users[user].call("status")["ap"] is None:
        if time.time() > deadline:
            raise RuntimeError(f"{user} never attached")
        time.sleep(0.05)
    time.sleep(0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--table", default="802.11n")
    args = parser.parse_args()
    radio = {"tx_power_dbm": 20, "pl_d0_db": 40, "exponent": 3.0, "sensitivity_dbm": -85, "noise_floor_dbm": -95,
             "rate_table": args.table, "link_rate": "rssi"}
    spec = RadioSpec.model_validate(radio)
    topology = load_topology(ROOT / "topologies" / "paper.yaml", ["nodes.mu2={role: mu, path: [[0, 5], [60, 5]]}"])
    rows = []
    with tempfile.TemporaryDirectory() as workdir, MecNetwork(topology, workdir=Path(workdir) / "net") as net:
        stack = Stack(net, Path(workdir))
        edge = net.node("edge1"), net.address("edge1")
        try:
            for d in DISTANCES:
                position = (-d, 0.0)
                rssi = PathLoss(spec).mean_rssi((0, 0), position)
                table = spec.rates().rate_mbps(rssi)
                stand(stack, "mu", position, radio)
                up = iperf3_together(*edge, {net.node("mu"): 5201}, seconds=args.seconds)["mu"]
                down = iperf3_together(*edge, {net.node("mu"): 5201}, seconds=args.seconds, reverse=True)["mu"]
                stack.stop_user("mu")
                rows.append({"users": 1, "distance m": d, "RSSI dBm": round(rssi, 1), "table Mbps": table,
                             "share Mbps": table, "up Mbps": round(up, 2), "down Mbps": round(down, 2),
                             "up / share": round(up / table, 3), "down / share": round(down / table, 3)})
            for user in ("mu", "mu2"):
                stand(stack, user, (-2.0, 0.0), radio)
            both = iperf3_together(*edge, {net.node("mu"): 5201, net.node("mu2"): 5202}, seconds=args.seconds)
            table = spec.rates().rate_mbps(PathLoss(spec).mean_rssi((0, 0), (-2.0, 0.0)))
            for user, mbps in both.items():
                rows.append({"users": 2, "distance m": 2.0, "RSSI dBm": None, "table Mbps": table,
                             "share Mbps": table / 2, "up Mbps": round(mbps, 2), "down Mbps": None,
                             "up / share": round(mbps / (table / 2), 3), "down / share": None})
        finally:
            stack.stop()
    report("radio", f"Radio link rate vs the {args.table} table ({args.seconds:.0f} s of iperf3 each)", rows)


if __name__ == "__main__":
    main()
