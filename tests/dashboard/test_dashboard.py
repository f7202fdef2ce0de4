"""The dashboard: its feed from the run record, a replay and a live run in a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from testbed.config import load_experiment_with_source
from testbed.dashboard import DashboardProcess
from testbed.dashboard.feed import LiveFeed, RecordFeed

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "experiments" / "default.yaml"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
T0 = 1_800_000_000.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return None


@pytest.fixture
def browser():
    """Debian's Chromium, headless, through its chromedriver (both installed by setup.sh)."""
    if not Path(CHROMEDRIVER).exists():
        pytest.skip("chromium-driver is not installed: run ./setup.sh")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1100", "--disable-extensions"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


# -- a hand-made run record -------------------------------------------------------------------
def hand_made_run(run_dir: Path) -> Path:
    """30 s of one user walking x = 0 -> 30 m at 1 m/s: a handover ap1 -> ap2 at 10 s, the
    counter service migrated edge1 -> edge2 from 14 s to 15 s, two failed requests (14.6 s, 14.8 s)."""
    run_dir.mkdir(parents=True)
    _, source = load_experiment_with_source(DEFAULT, ["planners=[nearest]"])
    (run_dir / "config.yaml").write_text(yaml.safe_dump(source, sort_keys=False))
    trial = {"scenario": "default", "planner": "nearest", "repetition": 1, "seed": 1,
             "dir": str(run_dir / "trials" / "default" / "nearest" / "rep1")}
    (run_dir / "trials.json").write_text(json.dumps([trial]))
    keys = {"scenario": "default", "planner": "nearest", "repetition": 1}
    mobility = [{**keys, "t": T0 + k / 10, "sim_t": k / 10, "x": k / 10, "y": 5.0, "user": "mu",
                 "ap": "ap1" if k < 100 else "ap2",
                 "rssi": json.dumps({"ap1": -40 - k / 10, "ap2": -70 + k / 10})} for k in range(301)]
    requests = []
    for k in range(150):
        sent = T0 + k / 5
        ok = not 14.5 <= k / 5 < 15.0
        requests.append({**keys, "user": "mu", "service": "counter-mu", "app": "counter", "id": k, "sent": sent,
                         "received": sent + 0.01 if ok else sent + 0.005, "ok": ok,
                         "e2e_ms": 10.0 if ok else None, "proc_ms": 1.0 if ok else None,
                         "tx_ms": 9.0 if ok else None, "error": None if ok else "connect: ECONNREFUSED"})
    servers = [{**keys, "t": T0 + s, "server": name, "cpu_utilisation": 0.7 if name == "edge1" else 0.1,
                "memory_bytes": 2**30, "body": "{}"} for s in range(0, 30, 5) for name in ("edge1", "edge2")]

    def event(t, kind, **data):
        return {**keys, "t": T0 + t, "src": "test", "kind": kind, "data": json.dumps(data)}

    events = [event(0.5, "controller.deployed", service="counter-mu", server="edge1", planner="nearest"),
              event(10.0, "handover.start", user="mu", source="ap1", target="ap2", reason="rssi"),
              event(10.5, "handover.end", user="mu", start=T0 + 10, end=T0 + 10.5, **{"from": "ap1", "to": "ap2"}),
              event(10.6, "controller.decision", decision=1, planner="nearest", trigger="handover", user="mu",
                    actions=[{"type": "Migrate", "service": "counter-mu", "dest": "edge2",
                              "estimates": {"downtime_s": 0.4}}]),
              event(14.0, "migration.order", migration="m1", service="counter-mu", dest="edge2", mode="precopy-delta",
                    phase="prepare"),
              event(15.0, "controller.migration", decision=1, migration="m1", service="counter-mu", source="edge1",
                    dest="edge2", mode="precopy-delta", ok=True,
                    phases={"prepare": {"seconds": 0.2}, "pre_migration": {"seconds": 0.3},
                            "migration": {"seconds": 0.5}},
                    bytes={"before_downtime": 6_000_000, "during_downtime": 7000})]
    for name, rows in (("mobility", mobility), ("requests", requests), ("server_reports", servers),
                       ("events", events)):
        pd.DataFrame(rows).to_parquet(run_dir / f"{name}.parquet", index=False)
    return run_dir


def test_a_record_becomes_the_items_the_page_draws(tmp_path):
    feed = RecordFeed(hand_made_run(tmp_path / "run"))
    items = feed.items()
    assert [i["t"] for i in items] == sorted(i["t"] for i in items)
    kinds = {k: [i for i in items if i["k"] == k] for k in ("pos", "req", "srv", "ev")}
    assert len(kinds["pos"]) == 301 and len(kinds["req"]) == 150 and len(kinds["srv"]) == 12
    failed = [i for i in kinds["req"] if not i["ok"]]
    assert len(failed) == 2 and failed[0]["error"] == "connect: ECONNREFUSED"
    migration = next(i for i in kinds["ev"] if i["kind"] == "controller.migration")
    assert migration["phases"] == {"prepare": 0.2, "pre_migration": 0.3, "migration": 0.5}
    decision = next(i for i in kinds["ev"] if i["kind"] == "controller.decision")
    assert decision["estimates"] == {"downtime_s": 0.4}
    with pytest.raises(ValueError, match="no trial 'default/cloud/rep1'"):
        RecordFeed(tmp_path / "run", "default/cloud/rep1")


def test_the_live_feed_tails_the_trial_under_way(tmp_path):
    """Whole lines only (a torn last line waits for its end), server reports from the
    controller's database, and a new trial starts afresh."""
    run = hand_made_run(tmp_path / "run")
    trial = Path(json.loads((run / "trials.json").read_text())[0]["dir"])
    feed = LiveFeed(run)
    assert feed.poll() == []                                     # no trial has started yet
    trial.mkdir(parents=True)
    (trial / "events.jsonl").write_text(json.dumps({"t": T0, "src": "mu:mu", "kind": "handover.start", "user": "mu",
                                                    "source": "ap1", "target": "ap2", "reason": "rssi"}) + "\n")
    line = json.dumps({"t": T0 + 0.1, "sim_t": 0.1, "x": 0.1, "y": 5.0, "ap": "ap1", "rssi": {"ap1": -50.0}})
    (trial / "mobility-mu.jsonl").write_text(line + "\n" + line[:20])
    first = feed.poll()
    assert [i["k"] for i in first] == ["trial", "ev", "pos"]
    assert first[2]["u"] == "mu" and first[2]["rssi"] == {"ap1": -50.0}
    with open(trial / "mobility-mu.jsonl", "a") as handle:
        handle.write(line[20:] + "\n")
    with sqlite3.connect(trial / "controller.sqlite") as db:
        db.execute("CREATE TABLE server_reports (t REAL, server TEXT, cpu_utilisation REAL, memory_bytes REAL, body TEXT)")
        db.execute("INSERT INTO server_reports VALUES (?, 'edge1', 0.25, ?, '{}')", (T0 + 0.2, 2**29))
    second = feed.poll()
    assert [i["k"] for i in second] == ["pos", "srv"] and second[1]["cpu"] == 0.25 and second[1]["mem"] == 512
    assert feed.poll() == []
    assert [i["k"] for i in feed.snapshot()] == ["ev", "pos", "pos", "srv"]


def page_state(driver) -> dict:
    return driver.execute_script("""
        const D = window.dashboard;
        if (!D.info || !D.map) return null;
        const rssi = document.getElementById('rssi-mu'), e2e = document.getElementById('e2e-mu');
        const drawn = document.querySelector('#map [data-user="mu"]');
        return {now: D.now - D.t0, frames: D.frames, x: D.map.users.mu ? D.map.users.mu[0] : null,
                drawn_at: drawn ? Number(drawn.getAttribute('cx')) : null, services: D.map.services,
                rssi_points: rssi && rssi.data ? rssi.data.reduce((n, t) => n + t.x.length, 0) : 0,
                e2e_points: e2e && e2e.data ? e2e.data.reduce((n, t) => n + t.x.length, 0) : 0,
                events: [...document.querySelectorAll('#events div')].map((d) => [Number(d.dataset.t) - D.t0, d.textContent]),
                reply: document.getElementById('reply').textContent, latencies: D.latencies.slice(),
                ready_ms: D.readyMs};
    """)


def test_a_replay_shows_the_events_at_their_times(tmp_path, browser):
    run = hand_made_run(tmp_path / "run")
    server = DashboardProcess(run, port=free_port(), mode="replay").start(timeout=30)
    try:
        browser.get(server.url)
        assert wait_for(lambda: (page_state(browser) or {}).get("frames"), 20), "the replay page never drew"
        browser.execute_script("window.dashboard.replay.seek(12.0)")
        state = wait_for(lambda: (lambda s: s if s and abs(s["now"] - 12.0) < 1e-6 and s["x"] is not None else None)(
            page_state(browser)), 5)
        assert state["x"] == pytest.approx(12.0)
        listed = {text.split(None, 1)[1]: t for t, text in state["events"]}
        assert listed["mu handover ap1 → ap2 (rssi)"] == pytest.approx(10.0)
        assert not any("migration counter-mu edge1 → edge2" in text for text in listed)
        assert state["services"]["counter-mu"][0] == "edge1"
        browser.save_screenshot(str(run / "dashboard-replay-12s.png"))
        browser.execute_script("window.dashboard.replay.seek(20.0)")
        state = wait_for(lambda: (lambda s: s if s and abs(s["now"] - 20.0) < 1e-6 and s["services"] else None)(
            page_state(browser)), 5)
        assert state["services"]["counter-mu"][0] == "edge2"
        migration = next((t, text) for t, text in state["events"] if "migration counter-mu edge1 → edge2" in text)
        assert migration[0] == pytest.approx(15.0)
        assert "downtime phase 0.50 s (estimated 0.40 s)" in migration[1]
        started = time.monotonic()
        browser.execute_script("window.dashboard.replay.seek(0.0); window.dashboard.replay.play(20)")
        # 20x: 10 s of record within a few seconds (a busy page may run its timers late, and the
        # playback catches up from the wall clock), never faster than 30x
        state = wait_for(lambda: (lambda s: s if s and s["now"] >= 10.0 else None)(page_state(browser)), 5)
        assert state, f"the replay played {page_state(browser)['now']} s of record in 5 s at 20x"
        assert state["now"] <= 30.0 * (time.monotonic() - started), state["now"]
        browser.save_screenshot(str(run / "dashboard-replay-played.png"))
        refused = browser.execute_script("""
            return fetch('/api/control', {method: 'POST', body: '{"action": "manual", "on": true}',
                                          headers: {'X-Token': 'anything'}}).then((r) => r.status)""")
        assert refused == 403
    finally:
        server.stop()


# -- a live run ---------------------------------------------------------------------------------
@pytest.mark.network
@pytest.mark.docker
@pytest.mark.criu
@pytest.mark.experiment
def test_a_live_run_is_watched_and_steered_from_the_browser(tmp_path, browser, no_leftovers):
    """The user moves on the map, its charts grow, an order without the token is refused, and
    with it the planner goes off and the counter moves to the server chosen on the page; the
    run record logs both orders as decisions."""
    runs, port = tmp_path / "runs", free_port()
    run = subprocess.Popen([str(ROOT / ".venv" / "bin" / "testbed"), "run", str(DEFAULT), "--runs", str(runs),
                            "--no-figures", "--set", "planners=[nearest]", "--set", "duration=45s", "--dashboard",
                            "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, "COLUMNS": "400"}, start_new_session=True)
    output, announced = [], threading.Event()

    def read():                       # the whole output, so that the pipe never fills
        for line in run.stdout:
            output.append(line)
            if "dashboard: " in line:
                announced.set()
        announced.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert announced.wait(120), "".join(output)
        found = [re.search(r"dashboard: (\S+)\?token=(\S+)", line) for line in output]
        token = next((f.group(2) for f in found if f), None)
        assert token, "".join(output)
        browser.get(f"http://127.0.0.1:{port}/")                   # no token in the address
        first = wait_for(lambda: (lambda s: s if s and s["x"] is not None and s["services"] and s["e2e_points"] else None)(
            page_state(browser)), 120)
        assert first, "".join(output)
        run_dir = next(runs.iterdir())
        events_log = next(run_dir.glob("trials/*/*/*/events.jsonl"))

        def logged(kind):
            return [e for e in map(json.loads, events_log.read_text().splitlines()) if e["kind"] == kind]

        browser.find_element("id", "migrate").click()
        assert wait_for(lambda: "403" in page_state(browser)["reply"], 10), page_state(browser)["reply"]
        assert "token" in page_state(browser)["reply"] and not logged("controller.operator")
        browser.save_screenshot(str(run_dir / "dashboard-live-1.png"))
        time.sleep(2.0)
        second = page_state(browser)
        browser.save_screenshot(str(run_dir / "dashboard-live-2.png"))
        assert second["x"] > first["x"] + 1.0, (first["x"], second["x"])          # walking at 1 m/s
        assert second["drawn_at"] > first["drawn_at"]                              # and its marker with it
        assert second["rssi_points"] > first["rssi_points"] and second["e2e_points"] > first["e2e_points"]

        browser.find_element("id", "token").send_keys(token)
        browser.find_element("id", "manual-on").click()
        assert wait_for(lambda: "accepted" in page_state(browser)["reply"], 10), page_state(browser)["reply"]
        manual_reply = page_state(browser)["reply"]
        # an order the controller refuses, sent while the trial surely runs (the valid one can end late)
        bad = browser.execute_script(f"""
            return fetch('/api/control', {{method: 'POST', body: JSON.stringify({{action: 'migrate', service: 'counter-mu',
                dest: 'edge9'}}), headers: {{'X-Token': '{token}'}}}}).then((r) => r.json().then((b) => [r.status, b.error]))""")
        assert bad[0] == 400 and "unknown server 'edge9'" in bad[1]
        from selenium.webdriver.support.ui import Select

        Select(browser.find_element("id", "c-service")).select_by_visible_text("counter-mu")
        Select(browser.find_element("id", "c-server")).select_by_visible_text("edge3")
        browser.find_element("id", "migrate").click()
        assert wait_for(lambda: (lambda r: "accepted" in r and r != manual_reply)(page_state(browser)["reply"]), 10)
        done = wait_for(lambda: [m for m in logged("controller.migration") if m["dest"] == "edge3"], 90)
        assert done and done[0]["ok"], done
        placed = wait_for(lambda: (lambda s: s if s["services"].get("counter-mu", [None])[0] == "edge3" else None)(
            page_state(browser)), 10)
        assert placed, page_state(browser)["services"]
        edge3 = json.loads(json.dumps(browser.execute_script("return window.dashboard.info.nodes.edge3.position")))
        assert placed["services"]["counter-mu"][1] == pytest.approx(edge3[0], abs=7)
        browser.save_screenshot(str(run_dir / "dashboard-live-3.png"))
        operator = logged("controller.operator")
        assert [o["action"] for o in operator] == ["manual", "migrate"]
        assert done[0]["decision"] == operator[1]["decision"]
        assert run.wait(timeout=240) == 0, "".join(output)
        decisions = pd.read_parquet(run_dir / "decisions.parquet")
        ordered = decisions[decisions["trigger"] == "operator"]
        assert len(ordered) == 2 and "edge3" in ordered.iloc[1]["actions"]
        planned = decisions[decisions["trigger"] != "operator"]
        assert planned.empty or planned["t"].max() < ordered["t"].min()      # the planner stayed off after
        assert sorted(p.name for p in run_dir.glob("dashboard-live-*.png")) == [
            "dashboard-live-1.png", "dashboard-live-2.png", "dashboard-live-3.png"]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, 2)
            run.wait(timeout=120)
