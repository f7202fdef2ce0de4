"""Dashboard benchmark: page ready time, update latency, the server's CPU, a long replay's memory.

    .venv/bin/python benchmarks/dashboard.py [--live-seconds 60] [--users 1] [--replay-minutes 30]

*Live*: a writer appends to a trial's record what a run's components write, at their rates
(per user: a mobility row every 100 ms, a request every 50 ms; each server's report every
second through the controller's own database code; a handover event every 20 s), while the
real dashboard process serves it to headless Chromium.  Measured: the page's ready time
(navigation to the first drawing of map, events and controls, and to the charts', which wait
for plotly.js; in a fresh browser and on a reload), the delay from an item's time stamp to its arrival in the page
(the targets: under 1 s, and 300 ms), and the dashboard process's CPU (target: under 5 % of
one core).  *Replay*: a synthetic record of ``--replay-minutes`` at the same rates, played at
20x to its end; the page's JS heap and its renderer processes' resident memory are sampled (target: under 200 MB).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, percentile, report  # noqa: E402

sys.path.insert(0, str(ROOT))
from testbed.config import load_experiment_with_source  # noqa: E402
from testbed.controller.database import Database  # noqa: E402
from testbed.dashboard import DashboardProcess  # noqa: E402

SERVERS = ("cloud", "edge1", "edge2", "edge3")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1100"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)


def ready_ms(driver, url: str) -> tuple[float, float, float]:
    """Navigation to the first drawing (map, events, controls) and to the charts' (once
    plotly.js is compiled), in a fresh browser; then the first drawing on a reload."""
    times = []
    for _ in range(2):
        driver.get(url)
        value = None
        for _ in range(400):
            value = driver.execute_script("const D = window.dashboard; return D.chartsMs === null ? null : [D.readyMs, D.chartsMs]")
            if value is not None:
                break
            time.sleep(0.05)
        times.append(value or [float("nan")] * 2)
    return times[0][0], times[0][1], times[1][0]


def run_directory(root: Path, users: int) -> tuple[Path, Path]:
    run_dir = root / "run"
    run_dir.mkdir()
    overrides = ["planners=[nearest]"] + [f"users.mu{k}={{mobility: {{model: round_trip, speed: 1.0}}, services: "
                                          f"[{{app: counter, think_time: 50ms}}]}}" for k in range(2, users + 1)]
    _, source = load_experiment_with_source(ROOT / "experiments" / "default.yaml", overrides)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(source, sort_keys=False))
    trial_dir = run_dir / "trials" / "default" / "nearest" / "rep1"
    (run_dir / "trials.json").write_text(json.dumps([{"scenario": "default", "planner": "nearest", "repetition": 1,
                                                      "seed": 1, "dir": str(trial_dir)}]))
    trial_dir.mkdir(parents=True)
    return run_dir, trial_dir


def user_names(users: int) -> list[str]:
    return ["mu"] + [f"mu{k}" for k in range(2, users + 1)]


def write_live(trial_dir: Path, users: int, stop: threading.Event) -> None:
    """What a trial's components append, at their rates, stamped with the time of writing."""
    names = user_names(users)
    database = Database(trial_dir / "controller.sqlite")
    events = open(trial_dir / "events.jsonl", "a", buffering=1)
    mobility = {u: open(trial_dir / f"mobility-{u}.jsonl", "a", buffering=1) for u in names}
    requests = {u: open(trial_dir / f"requests-{u}.jsonl", "a", buffering=1) for u in names}
    events.write(json.dumps({"t": time.time(), "src": "controller", "kind": "controller.deployed",
                             "service": "counter-mu", "server": "edge1", "planner": "nearest"}) + "\n")
    start, tick = time.time(), 0
    while not stop.is_set():
        now = time.time()
        x = (now - start) % 60
        for u in names:
            if tick % 2 == 0:
                mobility[u].write(json.dumps({"t": now, "sim_t": now - start, "x": x, "y": 5.0, "ap": "ap1",
                                              "rssi": {"ap1": -40 - x / 2, "ap2": -60 + x / 3, "ap3": -80 + x / 4}}) + "\n")
            requests[u].write(json.dumps({"user": u, "service": f"counter-{u}", "sent": now - 0.004, "received": now,
                                          "ok": True, "e2e_ms": 4.0, "proc_ms": 0.01, "tx_ms": 3.99}) + "\n")
        if tick % 20 == 0:
            for server in SERVERS:
                database.server_report({"server": server, "time": now, "cpu_utilisation": 0.3, "memory_bytes": 2**28})
        if tick % 400 == 200:
            events.write(json.dumps({"t": now, "src": "mu:mu", "kind": "handover.start", "user": "mu",
                                     "source": "ap1", "target": "ap2", "reason": "rssi"}) + "\n")
        tick += 1
        stop.wait(max(0.0, start + tick * 0.05 - time.time()))
    database.close()


def live(seconds: float, users: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="tb-dash-bench-") as scratch:
        run_dir, trial_dir = run_directory(Path(scratch), users)
        stop = threading.Event()
        writer = threading.Thread(target=write_live, args=(trial_dir, users, stop), daemon=True)
        writer.start()
        page = DashboardProcess(run_dir, port=free_port()).start()
        driver = browser()
        try:
            process = psutil.Process(page.process.pid)
            time.sleep(1.0)
            cold, charts, warm = ready_ms(driver, page.url)
            cpu0, wall0 = sum(process.cpu_times()[:2]), time.monotonic()
            time.sleep(seconds)
            cpu = (sum(process.cpu_times()[:2]) - cpu0) / (time.monotonic() - wall0)
            latencies = driver.execute_script("return window.dashboard.latencies")
            frames = driver.execute_script("return window.dashboard.frames")
        finally:
            driver.quit()
            page.stop()
            stop.set()
            writer.join()
    return {"case": f"live, {users} user(s), {seconds:g} s", "page ready ms (fresh browser)": round(cold),
            "charts ms (fresh browser)": round(charts), "page ready ms (reload)": round(warm),
            "update latency median ms": round(1000 * statistics.median(latencies)),
            "update latency p95 ms": round(1000 * percentile(latencies, 95)),
            "update latency max ms": round(1000 * max(latencies)),
            "server CPU % of a core": round(100 * cpu, 2), "frames per s": round(frames / (seconds + 1), 1),
            "page JS heap MB": None, "renderer RSS MB": None}


def synthetic_record(root: Path, minutes: float) -> Path:
    run_dir, _ = run_directory(root, 1)
    keys = {"scenario": "default", "planner": "nearest", "repetition": 1}
    t0, seconds = 1_800_000_000.0, minutes * 60
    steps = int(seconds * 10)
    mobility = pd.DataFrame({**keys, "t": [t0 + k / 10 for k in range(steps)], "user": "mu",
                             "x": [(k / 10) % 60 for k in range(steps)], "y": 5.0, "ap": "ap1",
                             "rssi": json.dumps({"ap1": -50.0, "ap2": -60.0, "ap3": -80.0})})
    sent = [t0 + k / 20 for k in range(steps * 2)]
    requests = pd.DataFrame({**keys, "user": "mu", "service": "counter-mu", "sent": sent,
                             "received": [s + 0.004 for s in sent], "ok": True, "e2e_ms": 4.0, "proc_ms": 0.01,
                             "tx_ms": 3.99})
    servers = pd.DataFrame([{**keys, "t": t0 + s, "server": server, "cpu_utilisation": 0.3, "memory_bytes": 2**28}
                            for s in range(int(seconds)) for server in SERVERS])
    events = [{**keys, "t": t0 + 0.1, "src": "controller", "kind": "controller.deployed",
               "data": json.dumps({"service": "counter-mu", "server": "edge1", "planner": "nearest"})}]
    for minute in range(int(minutes)):
        at = t0 + 60 * minute + 30
        events.append({**keys, "t": at, "src": "mu:mu", "kind": "handover.start",
                       "data": json.dumps({"user": "mu", "source": "ap1", "target": "ap2", "reason": "rssi"})})
        events.append({**keys, "t": at + 2, "src": "controller", "kind": "controller.migration", "data": json.dumps(
            {"decision": minute + 1, "migration": f"m{minute}", "service": "counter-mu", "source": "edge1",
             "dest": "edge1" if minute % 2 else "edge2", "mode": "precopy-delta", "ok": True,
             "phases": {"migration": {"seconds": 0.4}}})})
    for name, frame in (("mobility", mobility), ("requests", requests), ("server_reports", servers),
                        ("events", pd.DataFrame(events))):
        frame.to_parquet(run_dir / f"{name}.parquet", index=False)
    return run_dir


def replay(minutes: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="tb-dash-bench-") as scratch:
        run_dir = synthetic_record(Path(scratch), minutes)
        server = DashboardProcess(run_dir, port=free_port(), mode="replay").start(timeout=60)
        driver = browser()
        try:
            cold, charts, warm = ready_ms(driver, server.url)
            driver.execute_script("window.dashboard.replay.play(20)")
            heap, rss, deadline = [], [], time.monotonic() + minutes * 3 + 30
            chrome = psutil.Process(driver.service.process.pid)
            while time.monotonic() < deadline:
                time.sleep(5)
                heap.append(driver.execute_script("return performance.memory.usedJSHeapSize") / 2**20)
                rss.append(sum(p.memory_info().rss for p in chrome.children(recursive=True)
                               if "--type=renderer" in " ".join(p.cmdline())) / 2**20)
                if driver.execute_script("return window.dashboard.now >= window.dashboard.t0 + %f" % (minutes * 60 - 1)):
                    break
            played = driver.execute_script("return window.dashboard.now - window.dashboard.t0")
        finally:
            driver.quit()
            server.stop()
    return {"case": f"replay of {minutes:g} min at 20x (reached {played / 60:.1f} min)",
            "page ready ms (fresh browser)": round(cold), "charts ms (fresh browser)": round(charts),
            "page ready ms (reload)": round(warm),
            "update latency median ms": None, "update latency p95 ms": None, "update latency max ms": None,
            "server CPU % of a core": None, "frames per s": None, "page JS heap MB": round(max(heap), 1),
            "renderer RSS MB": round(max(rss), 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live-seconds", type=float, default=60)
    parser.add_argument("--users", default="1", help="comma-separated user counts for the live case")
    parser.add_argument("--replay-minutes", type=float, default=30)
    args = parser.parse_args()
    rows = [live(args.live_seconds, int(users)) for users in args.users.split(",")]
    if args.replay_minutes > 0:
        rows.append(replay(args.replay_minutes))
    report("dashboard", "Dashboard: page ready, update latency, server CPU, replay memory", rows,
           ["targets: page ready < 1000 ms; updates < 300 ms; server < 5 % of a core; a 30-min replay's page < 200 MB"])


if __name__ == "__main__":
    main()
