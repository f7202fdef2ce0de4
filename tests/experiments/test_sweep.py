"""Sweeps: grids, Dask (a local cluster, and a scheduler with `testbed worker`s), resuming, the
table and the figures.  Simulated trials keep these fast; one emulated sweep is marked slow."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from testbed.config import ConfigError
from testbed.sweep import Sweep, SweepTrial, parse_grid

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "experiments" / "default.yaml"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def test_grids_parse_and_trials_are_named_and_seeded():
    grid = parse_grid(["links.edge_edge.delay=20ms,50ms", "planners=[nearest],[cloud, random]"])
    assert grid == {"links.edge_edge.delay": ["20ms", "50ms"], "planners": ["[nearest]", "[cloud, random]"]}
    with pytest.raises(ConfigError, match="empty key or value"):
        parse_grid(["radio.hysteresis_db=3,,6"])
    trial = SweepTrial((("links.edge_edge.delay", "20ms"),), 2)
    assert trial.name == "delay=20ms-rep2"
    first, second = SweepTrial(trial.point, 1).overrides(7), trial.overrides(7)
    assert first[:2] == ["links.edge_edge.delay=20ms", "repeat=1"] and first[2] == "seed=7"
    assert second[2] != "seed=7"                                  # each repetition its own seed


def test_a_bad_grid_value_fails_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match="delay"):
        Sweep(DEFAULT, {"links.edge_edge.delay": ["20ms", "fast"]}, 1, simulate=True, run_root=tmp_path)
    assert not any((tmp_path).glob("*/trials"))


def sweep_cli(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed", "sweep", str(DEFAULT), "--sim", *args],
                          capture_output=True, text=True, env=ENV, timeout=timeout, cwd=ROOT)


def test_a_simulated_sweep_runs_on_a_local_cluster_resumes_and_plots(tmp_path):
    out = tmp_path / "sweep"
    args = ["--grid", "links.edge_edge.delay=20ms,80ms", "--grid", "radio.handover_time=200ms,800ms",
            "--repeat", "2", "--parallel", "2", "--set", "planners=[cloud, nearest]", "--set", "duration=40s",
            "--out", str(out)]
    done = sweep_cli(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = sorted(p for p in (out / "trials").iterdir())
    assert len(trials) == 8 and all(json.loads((p / "trial.json").read_text())["ok"] for p in trials)
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 16 and set(table["planner"]) == {"cloud", "nearest"}          # 8 trials x 2 planners
    # the handover time shows in the downtime of every planner: 800 ms costs more than 200 ms
    mean = table.groupby("radio.handover_time")["downtime_per_user_s"].mean()
    assert mean["800ms"] > mean["200ms"]
    stamps = {p.name: (p / "trial.json").stat().st_mtime for p in trials}
    for gone in trials[:3]:                                       # an interruption lost three trials
        for item in sorted(gone.rglob("*"), reverse=True):
            item.unlink() if item.is_file() else item.rmdir()
        gone.rmdir()
    done = sweep_cli(*args)
    assert done.returncode == 0 and "5 of 8 trials already done; 3 to run" in done.stdout, done.stdout
    for p in trials[3:]:
        assert (p / "trial.json").stat().st_mtime == stamps[p.name]                  # not run again
    assert all((p / "trial.json").exists() for p in trials[:3])
    figure = out / "figures" / "sweep-downtime_per_user_s-vs-radio_handover_time.csv"
    points = pd.read_csv(figure)
    assert len(points) == 2 * 2 * 2 and set(points["radio.handover_time"]) == {"200ms", "800ms"}
    assert (out / "figures" / "sweep-e2e_mean_ms-vs-links_edge_edge_delay.png").exists()
    # another grid in the same directory is refused, nothing lost
    other = sweep_cli("--grid", "links.edge_edge.delay=30ms", "--out", str(out))
    assert other.returncode != 0 and "holds another sweep" in other.stdout + other.stderr
    assert len(list((out / "trials").iterdir())) == 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_sweep_runs_on_a_scheduler_and_testbed_workers(tmp_path):
    """As on other machines: a Dask scheduler and a `testbed worker` as separate processes."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", str(port), "--no-dashboard"], env=ENV, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
    worker = subprocess.Popen([sys.executable, "-m", "testbed", "worker", address, "--networks", "1",
                               "--nthreads", "2"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        time.sleep(3)
        out = tmp_path / "sweep"
        done = sweep_cli("--grid", "radio.hysteresis_db=1,6", "--cluster", address, "--set", "planners=[nearest]",
                         "--set", "duration=30s", "--out", str(out), "--no-figures")
        assert done.returncode == 0, done.stdout + done.stderr
        infos = [json.loads(p.read_text()) for p in (out / "trials").glob("*/trial.json")]
        assert len(infos) == 2 and all(i["ok"] for i in infos)
        assert all((out / "trials" / f"hysteresis_db={v}-rep1" / "record" / "summary.json").exists() for v in (1, 6))
    finally:
        for process in (worker, scheduler):
            os.killpg(process.pid, 15)
            process.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.experiment
@pytest.mark.network
@pytest.mark.docker
@pytest.mark.criu
def test_an_emulated_sweep_runs_two_trials_at_once_on_networks_of_their_own(tmp_path):
    out = tmp_path / "sweep"
    done = subprocess.run([sys.executable, "-m", "testbed", "sweep", str(DEFAULT), "--grid",
                           "links.edge_edge.delay=20ms,80ms", "--set", "planners=[nearest]", "--set", "duration=30s",
                           "--parallel", "2", "--out", str(out)], capture_output=True, text=True, env=ENV,
                          timeout=1200, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    table = pd.read_csv(out / "trials.csv")
    assert table["ok"].all() and len(table) == 2
    e2e = dict(zip(table["links.edge_edge.delay"], table["e2e_mean_ms"]))
    assert e2e["80ms"] > e2e["20ms"]      # the service waits behind the old edge for a while after the handover
    config = yaml.safe_load((out / "trials" / "delay=80ms-rep1" / "record" / "config.yaml").read_text())
    assert config["topology"]["links"]["edge_edge"]["delay"] == "80ms"
    # one trial claimed network 1 while the other held network 0: they ran side by side
    networks = {json.loads(path.read_text())["network"] for path in (out / "trials").rglob("network.json")}
    assert networks == {0, 1}, networks
