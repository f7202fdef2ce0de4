"""Seed 002's MILP over several users at once, end to end on the emulated testbed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.records import counter_breaks, load

from conftest import run_experiment

pytestmark = [pytest.mark.experiment, pytest.mark.network, pytest.mark.docker, pytest.mark.criu]
ROOT = Path(__file__).resolve().parents[2]


def test_four_users_with_two_services_each_are_placed_jointly(tmp_path):
    run_dir = run_experiment(ROOT / "experiments" / "joint.yaml", tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())["trials"]
    assert len(summary) == 8
    for row in summary:
        assert row["counter_breaks"] == 0 and row["migrations_failed"] == 0, row
    joint = []
    for decision in load(run_dir, "decisions").itertuples():
        plan = json.loads(decision.estimates).get("plan", {})
        if len(plan.get("users", {})) >= 4:
            joint.append(plan)
    assert joint, "no decision placed the four users together"
    plan = joint[0]
    assert plan["status"] == "optimal" and plan["per_user_differs"] is True
    on_edge2 = [c for c in plan["choice"].values() if c["server"] == "edge2"]
    assert len(on_edge2) == 4                                   # edge2's two cores, 0.5 each
    assert len({c["station"] for c in plan["choice"].values() if c["user"] == "mu"}) == 1
    requests = load(run_dir, "requests")
    for service, rows in requests.groupby("service"):
        assert counter_breaks(rows.to_dict("records")) == [], service
