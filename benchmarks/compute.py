"""Server heterogeneity: does a service's processing time follow its server's compute?

    .venv/bin/python benchmarks/compute.py [--apps face,detect] [--cpus 1,2] [--rounds 6] [--requests 10]
                                           [--clients-at server|user] [--set K=V ...]

On the paper topology (cloud: compute 1.5; edges: 1.0, so an edge's cores are 1/1.5 of the
cloud's) each service runs on the cloud and on edge1 at the same time with the same ``cpus``.
Rounds alternate between the two servers, so that the host's drift (the CPU benchmark's
operations per CPU-second move by up to 15 % from one minute to the next on a shared VM)
falls on both alike.  A round is ``--requests`` tasks from one client, one at a time, then as
many from each of two clients at once (the server kept busy).  The clients run on the server's
own node by default, so that both servers see the same pattern; with ``--clients-at user`` they
run at the mobile user (at ap1), as a user sends them: the cloud's tasks then come a 300 ms
round trip apart, and a task that starts on an idle host runs slower (the cores wake up), which
this shows apart.  Per round and pattern: the ratio of the median processing times, edge1 over
cloud; the table gives its median over the rounds and its range, next to the ratio the compute
values ask for (the paper topology's 1.5: within 10 %, 1.35-1.65).  ``--set`` changes a
topology setting, e.g. ``network.per_thread_quota=false`` (the container's cores alone).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

from testbed import assets, images  # noqa: E402
from testbed.config import discover_apps, load_topology  # noqa: E402
from testbed.net.network import MecNetwork  # noqa: E402
from testbed.stack import Stack  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ("cloud", "edge1")
PATTERNS = ("one at a time", "kept busy")


def processing_ms(node, ip: str, files: list[Path], clients: int, requests: int, tag: str, first_id: int) -> float:
    """Median processing time the service reports for ``requests`` tasks from each of ``clients``
    clients on ``node``, all sent at once."""
    args = [sys.executable, "-m", "testbed.query", ip, "--full", "--timeout", "60",
            "--repeat", str(max(1, requests // len(files))), "--first-id", str(first_id)]
    for path in files:
        args += ["--file", str(path)]
    processes = [node.popen(args + ["--client", f"{tag}-{k}"], stdout=subprocess.PIPE, text=True)
                 for k in range(clients)]
    replies = []
    for process in processes:
        out, _ = process.communicate(timeout=600)
        replies += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    failed = [r for r in replies if not r.get("ok")]
    if failed or not replies:
        raise RuntimeError(f"{tag}: {len(failed)} of {len(replies)} tasks failed: {failed[:1]}")
    return statistics.median(r["proc_ms"] for r in replies)


def measure(net, stack, app: str, cpus: float, rounds: int, requests: int, clients_at: str,
            asked: float) -> list[dict]:
    """Rows per pattern for ``app`` with ``cpus`` on both servers; ``asked``: the ratio their
    compute values ask for."""
    manifest = discover_apps()[app]
    files = [assets.fetch(f) for f in manifest.test_images]
    ips = {}
    node = {server: net.node("mu" if clients_at == "user" else server) for server in SERVERS}
    for server in SERVERS:
        name = f"{app}-{server}"
        instance = stack.agents[server].call("deploy", spec={
            "service": name, "app": app, "image": images.image_name(app),
            "limits": {"cpus": cpus, "memory_mb": 2048}})
        ips[server] = instance["ip"]
        processing_ms(node[server], ips[server], files, 1, len(files), f"warm-{server}", 0)
    medians = {(server, pattern): [] for server in SERVERS for pattern in PATTERNS}
    first_id = 1000
    for round_ in range(rounds):
        order = SERVERS if round_ % 2 == 0 else SERVERS[::-1]
        for pattern, clients in zip(PATTERNS, (1, 2)):
            for server in order:
                medians[(server, pattern)].append(
                    processing_ms(node[server], ips[server], files, clients, requests, f"{server}-{round_}", first_id))
                first_id += 1000
    for server in SERVERS:
        stack.agents[server].call("remove", service=f"{app}-{server}")
    rows = []
    for pattern in PATTERNS:
        ratios = [e / c for e, c in zip(medians[("edge1", pattern)], medians[("cloud", pattern)])]
        rows.append({"service": app, "cpus": cpus, "clients_at": clients_at, "pattern": pattern, "rounds": rounds,
                     "cloud_ms": round(statistics.median(medians[("cloud", pattern)]), 1),
                     "edge1_ms": round(statistics.median(medians[("edge1", pattern)]), 1),
                     "ratio_median": round(statistics.median(ratios), 3),
                     "ratio_range": f"{min(ratios):.3f}-{max(ratios):.3f}",
                     "asked": round(asked, 3),
                     "within_10pct": abs(statistics.median(ratios) / asked - 1) <= 0.10})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", default="face,detect")
    parser.add_argument("--cpus", default="1,2", help="the services' cpus, comma-separated")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=10, help="tasks per client per round and pattern")
    parser.add_argument("--clients-at", choices=("server", "user"), default="server")
    parser.add_argument("--set", action="append", default=[], metavar="K=V",
                        help="a topology setting, e.g. network.per_thread_quota=false")
    args = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="bench-compute-"))
    spec = load_topology(ROOT / "topologies" / "paper.yaml", args.set)
    compute = {name: node.compute for name, node in spec.nodes.items() if name in SERVERS}
    asked = compute["cloud"] / compute["edge1"]
    rows = []
    try:
        with MecNetwork(spec, workdir=run_dir / "net") as net, Stack(net, run_dir) as stack:
            stack.start_agents()
            net.attach("mu", "ap1")
            for app in args.apps.split(","):
                for cpus in (float(c) for c in args.cpus.split(",")):
                    rows += [{**row, "per_thread_quota": spec.network.per_thread_quota}
                             for row in measure(net, stack, app, cpus, args.rounds, args.requests, args.clients_at,
                                                asked)]
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    report("compute", "Processing time against the server's compute (paper topology, edge1 over cloud)", rows,
           [f"compute: {compute}; an emulated server's cores are its cpus x compute / max compute host cores "
            "(CFS bandwidth, 10 ms periods); with per_thread_quota a service gets cpus threads, each with "
            "speed x 10 ms a period (a slower clock), without it ceil(cpus x speed) threads."])


if __name__ == "__main__":
    main()
