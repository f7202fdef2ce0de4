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
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, report  # noqa: E402

sys.path.insert(0, str(ROOT))
from testbed.clean import clean, leftovers  # noqa: E402
from testbed.net.namespaces import ALL  # noqa: E402

SMALL = """
import json, sys, time
from testbed.net.network import MecNetwork
from testbed.net.topo import MecTopo

class Pair(MecTopo):
    def build(self):
        self.addLinkClass("wan", bandwidth="100Mbps", delay="50ms")
        self.addServer("s1", position=(0, 0))
        self.addServer("s2", position=(10, 0))
        self.addLink("s1", "s2", "wan")

net = MecNetwork(Pair().spec()).start()
print(json.dumps({"network": net.number, "up": time.time()}), flush=True)
sys.stdin.readline()
net.stop()
print(json.dumps({"down": time.time()}), flush=True)
"""


def many_up_and_down(count: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MEC_MAX_NETWORKS": str(count)}
    started = time.time()
    processes = [subprocess.Popen([sys.executable, "-c", SMALL], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT) for _ in range(count)]
    ups = [json.loads(p.stdout.readline() or "{}") for p in processes]
    failed = [p.stderr.read()[-300:] for p, up in zip(processes, ups) if "up" not in up]
    if failed:
        raise RuntimeError(f"networks failed to start: {failed}")
    alive = {n: len(leftovers(n)["namespaces"]) for n in range(count)}
    stopping = time.time()
    for process in processes:
        process.stdin.write("\n")
        process.stdin.flush()
    downs = [json.loads(p.stdout.readline() or "{}") for p in processes]
    for process in processes:
        process.wait(timeout=60)
    left = leftovers(ALL)
    return {"networks": count, "distinct numbers": len({u["network"] for u in ups}),
            "namespaces while up": sum(alive.values()),
            "all up s": round(max(u["up"] for u in ups) - started, 2),
            "all down s": round(max(d["down"] for d in downs) - stopping, 2),
            "left behind": sum(len(v) for v in left.values())}


class OneNetwork:
    def __init__(self):
        self.process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "helpers" / "one_network.py")],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, cwd=ROOT, env={**os.environ, "MEC_MAX_NETWORKS": "2"})
        self.info = self.reply()

    def reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(self.process.stderr.read()[-1000:])
        return json.loads(line)

    def ask(self, command: str) -> None:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        self.ask("quit")
        self.reply()
        self.process.wait(timeout=60)


def fidelity(together: int, rounds: int) -> list[dict]:
    networks = [OneNetwork() for _ in range(together)]
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
            network.close()
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
