"""An hour of migrations (marker ``soak``; not in the default run): ``benchmarks/soak.py``'s run,
held to its targets. ``pytest -m soak`` runs it (about 65 minutes)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from soak import soak, within_targets  # noqa: E402

pytestmark = [pytest.mark.soak, pytest.mark.experiment, pytest.mark.network, pytest.mark.docker, pytest.mark.criu]


def test_an_hour_of_migrations_loses_nothing_and_leaks_nothing(tmp_path, no_leftovers):
    result = soak(minutes=60, every=15, runs=tmp_path / "runs")
    assert result["migrations"] >= 100 and result["migrations_ok"] == result["migrations"], result["migrations"]
    assert within_targets(result) == [], result["compared"]
