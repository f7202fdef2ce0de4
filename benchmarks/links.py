"""Link benchmark: configured vs measured RTT, jitter and throughput per backend,
delay-line CPU, and set-up/tear-down time of the paper topology.

    .venv/bin/python benchmarks/links.py [--seconds 10]

Prints a table and writes it to runs/bench/links-<time>.{md,csv}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import percentile, report  # noqa: E402

from testbed.config import load_topology
from testbed.net.links import DelayLineLink, kernel_has_netem
from testbed.net.network import MecNetwork
from testbed.net.probe import iperf3_mbps, ping_rtt
from testbed.net.topo import MecTopo

ROOT = Path(__file__).resolve().parents[1]
SETS = [(100, 50), (75, 150), (20, 10), (500, 5)]


class Pair(MecTopo):
    def build(self, bandwidth, delay_ms, backend):
        self.setNetwork(backend=backend)
        self.addLinkClass("link", bandwidth=f"{bandwidth}Mbps", delay=f"{delay_ms}ms")
        self.addServer("s1")
        self.addServer("s2")
        self.addLink("s1", "s2", "link")


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def measure(backend: str, bandwidth: int, delay_ms: int, seconds: float) -> dict:
    spec = Pair(bandwidth=bandwidth, delay_ms=delay_ms, backend=backend).spec()
    with MecNetwork(spec) as net:
        s1, s2 = net.node("s1"), net.node("s2")
        rtts = ping_rtt(s1, net.address("s2"), count=100, interval=0.02)
        link = net.links["s1-s2"]
        line_pid = link.process.pid if isinstance(link, DelayLineLink) else None
        cpu0 = cpu_seconds(line_pid) if line_pid else None
        window = int(2 * bandwidth * 1e6 / 8 * 2 * delay_ms / 1e3) + 256 * 1024
        omit = max(2.0, 12 * 2 * delay_ms / 1e3)  # let slow start finish: ~12 RTTs
        t0 = time.monotonic()
        tput = iperf3_mbps(s1, s2, net.address("s2"), seconds=seconds, omit=omit, window=str(window))
        elapsed = time.monotonic() - t0
        cpu = (cpu_seconds(line_pid) - cpu0) / elapsed if line_pid else None
    jitter = statistics.mean(abs(a - b) for a, b in zip(rtts, rtts[1:]))
    return {
        "backend": backend, "bandwidth_mbps": bandwidth, "rtt_configured_ms": 2 * delay_ms,
        "rtt_p50_ms": round(percentile(rtts, 50), 3), "rtt_p99_ms": round(percentile(rtts, 99), 3),
        "jitter_ms": round(jitter, 3),
        "goodput_mbps": round(tput["received_mbps"], 2),
        "goodput_pct": round(100 * tput["received_mbps"] / bandwidth, 1),
        "delay_line_cpu_pct": round(100 * cpu, 1) if cpu is not None else None,
        "retransmits": tput["retransmits"],
    }


def setup_teardown(repeats: int = 3) -> dict:
    spec = load_topology(ROOT / "topologies" / "paper.yaml")
    ups, downs = [], []
    for _ in range(repeats):
        net = MecNetwork(spec)
        net.start()
        net.stop()
        ups.append(net.timings["start_s"])
        downs.append(net.timings["stop_s"])
    return {"up_s": max(ups), "down_s": max(downs), "up_mean_s": statistics.mean(ups),
            "down_mean_s": statistics.mean(downs), "backend": net.backend}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    backends = ["delayline"] + (["netem"] if kernel_has_netem()[0] else [])
    rows = [measure(b, bw, d, args.seconds) for b in backends for bw, d in SETS]
    timing = setup_teardown()
    report("links", "Links: configured vs measured", rows, [
        f"Paper topology ({timing['backend']}): set-up {timing['up_mean_s']:.2f} s (max {timing['up_s']:.2f}), "
        f"tear-down {timing['down_mean_s']:.2f} s (max {timing['down_s']:.2f}), 3 runs."])


if __name__ == "__main__":
    main()
