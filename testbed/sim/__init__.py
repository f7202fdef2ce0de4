"""``testbed sim``: the same experiment files, planners and record layout, at city scale.

``simulate`` runs every trial (scenario x planner x repetition) of an
experiment in simulated time and writes a run record: ``aggregates.parquet``
(per user, service and interval), ``migrations.parquet``,
``handovers.parquet``, ``requests.parquet`` (with ``sim.per_request``),
``config.yaml`` (the effective experiment, reloadable) and ``summary.json``.
"""

from __future__ import annotations

import json
import resource
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import yaml

from testbed.config import derive_seed, load_experiment_with_source
from testbed.sim.calibration import SimCalibration, calibrate, load
from testbed.sim.engine import Simulation, Trial

__all__ = ["SimCalibration", "Simulation", "Trial", "calibrate", "simulate", "summarise"]


def summarise(trial: Trial, duration: float) -> dict:
    """One trial's headline numbers: request-weighted E2E, downtime per user, moves."""
    frame = trial.aggregates.frame()
    requests = float(frame["requests"].sum()) if not frame.empty else 0.0
    weighted = (frame["requests"] * frame["e2e_mean_ms"].fillna(0)).sum() if not frame.empty else 0.0
    users = frame["user"].nunique() if not frame.empty else 0
    return {"planner": trial.planner, "seed": trial.seed, "requests": requests,
            "e2e_mean_ms": float(weighted / requests) if requests else None,
            "downtime_per_user_s": float(frame["downtime_s"].sum() / users) if users else None,
            "migrations": len(trial.migrations), "handovers": len(trial.handovers), "decisions": trial.decisions,
            "offered_load": trial.offered_load,
            "wall_s": round(trial.wall_s, 3), "speedup": round(duration / trial.wall_s, 1) if trial.wall_s else None}


def simulate(experiment: Path, overrides: list[str] | None = None, run_root: Path | None = None,
             log=print, figures: bool = True) -> Path:
    """Run every trial of ``experiment`` in the simulator; the run directory."""
    spec, source = load_experiment_with_source(experiment, overrides)
    calibration = load(spec.sim.calibration, Path(experiment).parent)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = Path(run_root or "runs") / f"{spec.name}-sim-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=False)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(source, default=str)), sort_keys=False))
    tables: dict[str, list[pd.DataFrame]] = {"aggregates": [], "migrations": [], "handovers": [], "requests": []}
    summary = []
    for scenario, variant in spec.variants().items():
        for planner in variant.planners:
            for repetition in range(1, variant.repeat + 1):
                seed = derive_seed(variant.seed, repetition)
                trial = Simulation(variant, planner, calibration, seed=seed).run()
                keys = {"scenario": scenario, "planner": planner.name, "repetition": repetition}
                for name in tables:
                    rows = getattr(trial, name)
                    if rows:
                        tables[name].append(rows.frame().assign(**keys))
                summary.append({**keys, **summarise(trial, variant.duration)})
                log(f"{scenario}/{planner.name}/rep{repetition}: {variant.duration:.0f} s simulated in "
                    f"{trial.wall_s:.1f} s, {len(trial.migrations)} migrations, {len(trial.handovers)} handovers")
    for name, frames in tables.items():
        if frames:
            pd.concat(frames, ignore_index=True).to_parquet(run_dir / f"{name}.parquet", index=False)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (run_dir / "summary.json").write_text(json.dumps({"kind": "simulation", "trials": summary,
                                                      "calibration": calibration.source,
                                                      "peak_memory_mb": round(peak_mb, 1),
                                                      "finished": time.time()}, indent=1))
    if figures:
        from analysis.sim_figures import make_all

        paths = make_all(run_dir)
        log(f"figures ({len([p for p in paths if p.suffix == '.png'])} PNG, with PDF and CSV): {run_dir / 'figures'}")
    return run_dir
