"""Service benchmark: processing delay, image size, resident memory, checkpoint size.

    .venv/bin/python benchmarks/services.py [--requests 50]

Each service runs in its container on edge1 of the paper topology; the mobile
user (at ap1) sends it the test images.  Processing delay is what the service
reports per request (median and p95); resident memory is the service
process's RSS; the checkpoint sizes come from seed 002's probe (two
checkpoints in a row: the full one and the delta between them).  Seed 002's
Table I is printed alongside.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import percentile, report  # noqa: E402

from testbed import assets, images  # noqa: E402
from testbed.config import discover_apps, load_topology  # noqa: E402
from testbed.net.network import MecNetwork  # noqa: E402
from testbed.stack import Stack  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEED_002_TABLE_I = {"counter": ("Simple", 74.2e6, 11.29e6, 47.7e3), "face": ("Openface", 1.86e9, 196.8e6, 7.94e6),
                    "detect": ("Yolo", 792e6, 584.8e6, 5.60e6)}


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def mb(value: float) -> float:
    return round(value / 1e6, 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    client = docker.from_env()
    run_dir = Path(tempfile.mkdtemp(prefix="bench-services-"))
    rows = []
    with MecNetwork(load_topology(ROOT / "topologies" / "paper.yaml"), workdir=run_dir / "net") as net, \
            Stack(net, run_dir) as stack:
        stack.start_agents()
        net.attach("mu", "ap1")
        for app, manifest in discover_apps().items():
            files = manifest.test_images
            instance = stack.agents["edge1"].call("deploy", spec={
                "service": app, "app": app, "image": images.image_name(app),
                "limits": {"cpus": manifest.cpus, "memory_mb": 2048}})
            args_ = [sys.executable, "-m", "testbed.query", instance["ip"], "--client", "bench",
                     "--timeout", "60"]
            paths = [assets.fetch(f) for f in files]
            for path in paths:
                args_ += ["--file", str(path)]
            rounds = max(1, args.requests // max(1, len(paths)))
            net.node("mu").cmd(" ".join(args_ + ["--repeat", "1", "--first-id", "0"]))  # warm-up
            out = net.node("mu").cmd(" ".join(args_ + ["--repeat", str(rounds), "--first-id", "100"]))
            replies = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            proc = [r["proc_ms"] for r in replies if r.get("ok")]
            e2e = [r["e2e_ms"] for r in replies if r.get("ok")]
            probe = stack.agents["edge1"].call("probe_checkpoints", service=app)
            image = client.images.get(images.image_name(app))
            row = {
                "service": app, "requests": len(proc),
                "proc_median_ms": round(percentile(proc, 50), 1), "proc_p95_ms": round(percentile(proc, 95), 1),
                "e2e_median_ms": round(percentile(e2e, 50), 1),
                "image_MB": mb(image.attrs["Size"]), "rss_MB": mb(rss_bytes(instance["pid"])),
                "checkpoint_MB": mb(probe["full_bytes"]), "delta_kB": round(probe["delta_bytes"] / 1e3, 1),
                "reduction_pct": round(100 * (1 - probe["delta_bytes"] / probe["full_bytes"]), 2),
            }
            seed = SEED_002_TABLE_I.get(app)
            row["seed002"] = (f"{seed[0]}: image {mb(seed[1])} MB, checkpoint {mb(seed[2])} MB, "
                              f"delta {round(seed[3] / 1e3, 1)} kB" if seed else "")
            rows.append(row)
            stack.agents["edge1"].call("remove", service=app)
    shutil.rmtree(run_dir, ignore_errors=True)
    report("services", "Services: processing delay, size, memory, checkpoint", rows,
           ["Processing delay as reported by the service (JPEG/PNG decode included); "
            "e2e from the mobile user at ap1 (1 ms radio hop each way)."])


if __name__ == "__main__":
    main()
