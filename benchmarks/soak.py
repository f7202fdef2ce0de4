"""Soak benchmark: one long run of the default experiment with the `nearest` planner (the user
walks back and forth past three base stations at 1 m/s: a handover and a migration about every
30 s), watched from outside while it runs.

    .venv/bin/python benchmarks/soak.py [--minutes 60] [--sample 15]

Every ``--sample`` seconds it reads the resident memory and open descriptors of the agents, the
controller and the mobile user, the memory of the service containers, and counts the host's
testbed namespaces, containers and checkpoint files.  Afterwards: migrations, counter breaks,
and how each quantity at the end compares with its value after warm-up (the first tenth of the
run, at least two minutes; medians of memory, maxima of counts, over a tenth of the run).
Targets: memory and descriptors within 10 % of their value after warm-up (both windows' peaks
of descriptors include migrations in flight); namespaces, containers and state files never above it.
Prints a table and writes it to runs/bench/soak-<time>.{md,csv}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

import docker  # noqa: E402

from testbed.clean import leftovers  # noqa: E402
from testbed.containers.cgroups import CgroupError, CgroupMeter  # noqa: E402
from testbed.containers.server import SERVICE_LABEL, STATE_ROOT, container_cgroups  # noqa: E402
from testbed.records import counter_breaks, read_jsonl  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# pgrep patterns (a pattern must not begin with "-": pgrep would read it as an option)
PROCESSES = {"agents": r"python.* -m testbed\.agent ", "controller": r"python.* -m testbed\.controller ",
             "user": r"python.* -m testbed\.mu "}
# memory, and descriptors (a migration in flight holds a socket and checkpoint files open)
TOLERANCE = 0.10


def _pids(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found if int(p) != os.getpid()]


def _rss_and_fds(pid: int) -> tuple[int, int]:
    try:
        rss = next(int(line.split()[1]) * 1024 for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
        return rss, len(list(Path(f"/proc/{pid}/fd").iterdir()))
    except (OSError, StopIteration):
        return 0, 0


def sample(client: docker.DockerClient) -> dict:
    """One look at the host while the run goes on."""
    row: dict = {"t": time.time()}
    for name, pattern in PROCESSES.items():
        rss = fds = 0
        for pid in _pids(pattern):
            r, f = _rss_and_fds(pid)
            rss, fds = rss + r, fds + f
        row[f"{name}_rss"], row[f"{name}_fds"] = rss, fds
    memory = 0
    for container in client.containers.list(filters={"label": SERVICE_LABEL}):
        try:
            memory += CgroupMeter(container_cgroups(container.id)).anonymous_bytes()
        except (CgroupError, OSError):      # removed by a migration between list and read
            pass
    row["service_memory"] = memory
    row["containers"] = len(client.containers.list(all=True, filters={"label": SERVICE_LABEL}))
    row["namespaces"] = len(leftovers()["namespaces"])
    row["state_files"] = sum(1 for _ in (STATE_ROOT / "servers").rglob("*")) if (STATE_ROOT / "servers").exists() else 0
    return row


def soak(minutes: float, every: float = 15.0, runs: Path | None = None) -> dict:
    """Run the soak; return the samples, the run's counts and the end-versus-warm-up table."""
    runs = runs or Path(tempfile.mkdtemp(prefix="soak-"))
    duration = int(minutes * 60)
    client = docker.from_env()                         # fails before the run starts if no engine runs
    process = subprocess.Popen([str(ROOT / ".venv" / "bin" / "testbed"), "run", str(ROOT / "experiments" / "default.yaml"),
                                "--runs", str(runs), "--no-figures", "--set", f"duration={duration}s",
                                "--set", "planners=[nearest]"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    samples = []
    try:
        while process.poll() is None:
            if _pids(PROCESSES["user"]):               # the trial runs (deployment done, user walking)
                samples.append(sample(client))
            time.sleep(every)
    finally:
        if process.poll() is None:
            process.kill()
    _, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the soak run failed ({process.returncode}): {stderr[-2000:]}")
    [run_dir] = list(runs.iterdir())
    [trial] = list(run_dir.glob("trials/*/nearest/rep1"))
    events = [json.loads(line) for line in (trial / "events.jsonl").read_text().splitlines() if line.strip()]
    migrations = [e for e in events if e["kind"] == "migration.done"]
    rows = read_jsonl(trial / "requests-mu.jsonl")
    if not samples:
        raise RuntimeError("no sample of the host was taken while the trial ran")
    # A window after warm-up against the run's last window: the median for memory (a restore
    # right at a sample should not decide), the maximum for counts (a leak keeps its peak growing).
    start, last = samples[0]["t"], samples[-1]["t"]
    span = max(60.0, duration / 10)
    warm_from = start + max(120.0, duration / 10)
    early = [s for s in samples if warm_from <= s["t"] <= warm_from + span]
    late = [s for s in samples if s["t"] >= last - span]
    if not early or not late:
        raise RuntimeError("the soak is too short to compare a window after warm-up with the end")
    compared = []
    for key in [k for k in samples[0] if k != "t"]:
        memory = key.endswith("_rss") or key == "service_memory"
        pick = statistics.median if memory else max
        before, after = pick(s[key] for s in early), pick(s[key] for s in late)
        growth = (after - before) / before if before else (0.0 if after == before else float("inf"))
        compared.append({"quantity": key, "statistic": "median" if memory else "max", "after_warm_up": before,
                         "at_end": after, "peak": max(s[key] for s in samples), "change_%": round(100 * growth, 1)})
    return {"run": str(run_dir), "minutes": minutes, "migrations": len(migrations),
            "migrations_ok": sum(1 for m in migrations if m.get("ok")),
            "requests_ok": sum(1 for r in rows if r["ok"]), "counter_breaks": len(counter_breaks(rows)),
            "samples": samples, "compared": compared, "leftovers_after": leftovers()}


def within_targets(result: dict) -> list[str]:
    """What the soak misses of its targets (empty: all met)."""
    misses = []
    if result["migrations"] < int(result["minutes"] * 100 / 60):
        misses.append(f"{result['migrations']} migrations (at least {int(result['minutes'] * 100 / 60)} expected)")
    if result["counter_breaks"]:
        misses.append(f"{result['counter_breaks']} counter breaks")
    for row in result["compared"]:
        if row["quantity"].endswith(("_rss", "_fds")) or row["quantity"] == "service_memory":
            if row["change_%"] > 100 * TOLERANCE:
                misses.append(f"{row['quantity']} grew {row['change_%']} % after warm-up")
        elif row["at_end"] > row["after_warm_up"]:
            misses.append(f"{row['quantity']} grew from {row['after_warm_up']} to {row['at_end']}")
    if any(result["leftovers_after"].values()):
        misses.append(f"left behind: {result['leftovers_after']}")
    return misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--sample", type=float, default=15.0, help="seconds between looks at the host")
    args = parser.parse_args()
    result = soak(args.minutes, args.sample)
    misses = within_targets(result)
    notes = [f"run: {result['run']}", f"migrations: {result['migrations']} ({result['migrations_ok']} ok), "
             f"requests served: {result['requests_ok']}, counter breaks: {result['counter_breaks']}",
             "targets met" if not misses else "targets missed: " + "; ".join(misses)]
    report("soak", f"Soak: {args.minutes:g} min, one user, nearest planner (end vs after warm-up)",
           result["compared"], notes)
    sys.exit(1 if misses else 0)


if __name__ == "__main__":
    main()
