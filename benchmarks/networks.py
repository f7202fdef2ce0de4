"""Several networks per host: bringing many up and down together, and link fidelity side by side.

    .venv/bin/python benchmarks/networks.py [--networks 10] [--rounds 3]

* ``--networks`` small networks (two servers, one 100 Mbps / 50 ms link), each in a process
  of its own as a sweep's trials are, started at the same moment: the time until every one
  is up, then until every one is down, and what was left behind.
* Link fidelity of one network alone, then of two at once (``tests/helpers/one_network.py``,
  with a counter container each): median RTT over 15 pings and TCP goodput over 6 s, per
  round, both networks measured at the same time.

Root and the Docker engine are needed; a sweep's throughput is ``benchmarks/sweep.py``'s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, report  # noqa: E402

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "helpers"))
from one_network import NetworkProcess  # noqa: E402
from testbed.clean import clean, leftovers  # noqa: E402
from testbed.net.namespaces import ALL  # noqa: E402


def many_up_and_down(count: int) -> dict:
    started = time.time()
    networks = [NetworkProcess(bare=True, env={"MEC_MAX_NETWORKS": str(count)}) for _ in range(count)]
    ups = [network.info["up"] for network in networks]           # all started at once, then waited for
    alive = {n: len(leftovers(n)["namespaces"]) for n in range(count)}
    stopping = time.time()
    for network in networks:
        network.ask("quit")
    downs = [network.reply()["down"] for network in networks]
    for network in networks:
        network.process.wait(timeout=60)
    left = leftovers(ALL)
    return {"networks": count, "distinct numbers": len({n.info["network"] for n in networks}),
            "namespaces while up": sum(alive.values()),
            "all up s": round(max(ups) - started, 2),
            "all down s": round(max(downs) - stopping, 2),
            "left behind": sum(len(v) for v in left.values())}


def fidelity(together: int, rounds: int) -> list[dict]:
    networks = [NetworkProcess(env={"MEC_MAX_NETWORKS": "2"}) for _ in range(together)]
    rows = []
    try:
        for round_ in range(1, rounds + 1):
            for network in networks:
                network.ask("check")
            for network in networks:
                result = network.reply()
                rows.append({"networks at once": together, "round": round_, "network": network.info["network"],
                             "rtt ms (100 set)": round(result["rtt_ms"], 2),
                             "goodput Mbit/s (100 set)": round(result["goodput_mbps"], 1),
                             "counter ok": result["counter"]["ok"]})
    finally:
        for network in networks:
            network.quit()
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    clean(ALL)
    report("networks-updown", f"{args.networks} small networks up and down together (2-core machine)",
           [many_up_and_down(args.networks)],
           ["Each network is a process of its own (two servers, one delay-line link), started at once."])
    report("networks-fidelity", "Link fidelity, one network alone and two at once (100 Mbps / 50 ms)",
           fidelity(1, args.rounds) + fidelity(2, args.rounds),
           ["Targets as for one network: RTT within 1 ms + 2 % of 100 ms, goodput at least 90 Mbit/s."])


if __name__ == "__main__":
    main()
