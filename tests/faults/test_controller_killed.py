"""The controller killed (SIGKILL) while a migration it ordered is under way.

The migration belongs to the agents once ordered: it finishes, the service runs exactly once,
the user finds it where the controller last said it would be (the pending endpoint), its
counter goes on, the run says it lost its controller, and nothing is left on the host."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import docker
import pytest

from testbed.containers.server import SERVICE_LABEL
from testbed.records import counter_breaks, read_jsonl

from conftest import events_of, outcome, served, start_run, wait_for

pytestmark = [pytest.mark.experiment, pytest.mark.network, pytest.mark.docker, pytest.mark.criu]


def first(runs: Path, kind: str, **fields) -> dict | None:
    return next((e for e in events_of(runs) if e["kind"] == kind and all(e.get(k) == v for k, v in fields.items())),
                None)


def test_the_controller_killed_mid_migration(tmp_path, no_leftovers):
    runs = tmp_path / "runs"
    process = start_run(runs, "--set", "duration=30s", "--set", "planners=[nearest]")
    try:
        assert wait_for(lambda: first(runs, "migration.order", phase="all"), timeout=150), \
            "no migration was ordered"
        # once the user has been told where its service is going (its next report's reply):
        # a controller dead before that leaves the user no address to look for it at (the user
        # hears of a move only in the controller's replies)
        assert wait_for(lambda: first(runs, "mu.pending"), timeout=5), "the user never heard of the destination"
        killed = subprocess.run(["pkill", "-KILL", "-f", r"python.* -m testbed\.controller "], capture_output=True)
        assert killed.returncode == 0, "no controller process to kill"
        order = first(runs, "migration.order", phase="all")
        assert wait_for(lambda: first(runs, "migration.done", migration=order["migration"]), timeout=120)
        assert first(runs, "controller.migration") is None          # its controller never heard back
        time.sleep(1.0)
        running = [c.labels for c in docker.from_env().containers.list(
            filters={"label": f"{SERVICE_LABEL}={order['service']}", "status": "running"})]
        assert len(running) == 1, running                            # exactly once, never both
    finally:
        returncode = process.wait(timeout=400)
    assert returncode != 0
    [run_dir] = list(runs.iterdir())
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "incomplete" and "controller" in status["reason"] and "(-9)" in status["reason"], status
    lost = first(runs, "run.controller_lost")
    assert lost is not None and lost["exit"] == -9
    done = first(runs, "migration.done", migration=order["migration"])
    assert done["ok"] is True, done
    [requests] = list(run_dir.glob("trials/*/nearest/rep1/requests-mu.jsonl"))
    rows = read_jsonl(requests)
    assert counter_breaks(rows) == [], outcome(rows)
    after = [r for r in served(rows) if r["sent"] > done["t"]]
    assert len(after) > 20 and {tuple(r["endpoint"]) for r in after} == {tuple(done["new_endpoint"])}, outcome(rows)
