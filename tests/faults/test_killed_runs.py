"""A run killed (SIGKILL) at any moment: the host is cleaned, the run is marked killed, and
what it recorded up to then can be read."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import events_of, run_testbed, start_run, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.experiment, pytest.mark.network, pytest.mark.docker, pytest.mark.criu]
ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "experiments" / "default.yaml"
SHORT = ["--set", "duration=25s", "--set", "planners=[nearest]"]


def host_leftovers() -> dict:
    from testbed.clean import leftovers

    left = leftovers()
    processes = subprocess.run(["pgrep", "-f", "testbed.(agent|controller|mu|net.wire)"], capture_output=True,
                               text=True).stdout.split()
    mounts = [line for line in Path("/proc/mounts").read_text().splitlines() if "/run/netns/tb-" in line]
    return {**left, "processes": processes, "mounts": mounts}


MOMENTS = {
    "starting": lambda runs: True,                                                   # at once
    "network up": lambda runs: any(runs.glob("*/trials/*/*/*/network.json")),
    "deployed": lambda runs: any(e["kind"] == "controller.deployed" for e in events_of(runs)),
    "users running": lambda runs: any(runs.glob("*/trials/*/*/*/requests-mu.jsonl")),
    "mid-migration": lambda runs: any(e["kind"] == "migration.order" and e.get("phase") == "all"
                                      for e in events_of(runs)),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_killed_run_is_cleaned_marked_and_readable(tmp_path, moment, no_leftovers):
    runs = tmp_path / "runs"
    process = start_run(runs, *SHORT)
    assert wait_for(lambda: MOMENTS[moment](runs), timeout=120), f"the run never reached {moment!r}"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    [run_dir] = list(runs.iterdir())
    assert json.loads((run_dir / "status.json").read_text())["state"] == "running"     # it could not say
    cleaned = run_testbed("clean", timeout=300)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "incomplete" and status["reason"].startswith("killed"), status
    assert not any(host_leftovers().values()), host_leftovers()
    if any(run_dir.glob("trials/*/*/*/requests-mu.jsonl")):
        figures = run_testbed("figures", run_dir, "--out", tmp_path / "figures", timeout=300)
        assert figures.returncode == 0, figures.stdout + figures.stderr
        assert (tmp_path / "figures" / "figure_4_e2e_breakdown.png").exists()


def test_the_next_run_starts_clean_after_a_kill_and_marks_the_killed_one(tmp_path, no_leftovers):
    runs = tmp_path / "runs"
    process = start_run(runs, *SHORT)
    assert wait_for(lambda: MOMENTS["users running"](runs), timeout=120)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    [killed] = list(runs.iterdir())
    again = run_testbed("run", DEFAULT, "--runs", runs, "--no-figures", *SHORT, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert json.loads((killed / "status.json").read_text())["reason"].startswith("killed")
    finished = next(r for r in runs.iterdir() if r != killed)
    assert json.loads((finished / "status.json").read_text())["state"] == "complete"
    assert not any(host_leftovers().values()), host_leftovers()
