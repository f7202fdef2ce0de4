"""Cross-validation: an emulated run, simulated again with the calibration fitted from it.

``validate(RUN)`` fits the simulator's calibration from the run record, simulates
the run's own effective experiment (same topology, users, planners, scenarios and
repetitions; a 100 ms step), and compares per scenario and planner each trial's mean
E2E delay and total downtime per user, by their median across the repetitions:
``validation.{csv,md}`` in the simulated run's directory.  ``testbed sim validate
RUN`` does it from the command line; the experiment test holds it to 15 %.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from testbed.config import ConfigError
from testbed.sim import calibrate, simulate

TOLERANCE = 0.15


def _per_planner(trials: list[dict], e2e: str, downtime: str) -> pd.DataFrame:
    frame = pd.DataFrame(trials)
    return frame.groupby(["scenario", "planner"], as_index=False).agg(
        e2e_ms=(e2e, "median"), e2e_ms_mean=(e2e, "mean"), downtime_s=(downtime, "median"),
        downtime_s_mean=(downtime, "mean"), trials=(e2e, "size"))


def compare(emulated: list[dict], simulated: list[dict]) -> pd.DataFrame:
    """Per scenario and planner: the median across repetitions of each trial's mean E2E and total
    downtime (and their means), and the relative difference of the medians (simulated vs
    emulated).  The median, because an emulated trial now and then holds an outage the model
    does not have (a request timing out behind a pre-copy on its path): the mean shows it too."""
    emu = _per_planner(emulated, "e2e_mean_ms", "downtime_total_s")
    sim = _per_planner(simulated, "e2e_mean_ms", "downtime_per_user_s")
    table = emu.merge(sim, on=["scenario", "planner"], suffixes=("_emulated", "_simulated"))
    for metric in ("e2e_ms", "downtime_s"):
        table[f"{metric}_error"] = (table[f"{metric}_simulated"] - table[f"{metric}_emulated"]) \
            / table[f"{metric}_emulated"].abs().clip(lower=1e-9)
        table[f"{metric}_within"] = table[f"{metric}_error"].abs() <= TOLERANCE
    return table


def validate(run_dir: Path, run_root: Path | None = None, log=print) -> tuple[Path, pd.DataFrame]:
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").exists():
        raise ConfigError(f"{run_dir}: not a finished run record (no summary.json)")
    fitted = calibrate([run_dir])
    config = run_dir / "config.yaml"
    sim_dir = simulate(config, ["sim.step=100ms", f"sim.calibration={json.dumps(fitted)}"],
                       run_root=run_root or run_dir.parent, log=log, figures=False)
    emulated = json.loads((run_dir / "summary.json").read_text())["trials"]
    simulated = json.loads((sim_dir / "summary.json").read_text())["trials"]
    table = compare(emulated, simulated)
    table.to_csv(sim_dir / "validation.csv", index=False)
    lines = [f"# Emulated ({run_dir.name}) vs simulated with its calibration", "",
             f"Medians across repetitions (means in brackets); error: of the medians (target {TOLERANCE:.0%}).", "",
             "| scenario | planner | trials | E2E emulated ms | E2E simulated ms | error | downtime emulated s | "
             "downtime simulated s | error |", "|---|---|---|---|---|---|---|---|---|"]
    for row in table.itertuples():
        lines.append(
            f"| {row.scenario} | {row.planner} | {row.trials_emulated} | {row.e2e_ms_emulated:.1f} "
            f"({row.e2e_ms_mean_emulated:.1f}) | {row.e2e_ms_simulated:.1f} ({row.e2e_ms_mean_simulated:.1f}) | "
            f"{row.e2e_ms_error:+.0%} | {row.downtime_s_emulated:.2f} ({row.downtime_s_mean_emulated:.2f}) | "
            f"{row.downtime_s_simulated:.2f} ({row.downtime_s_mean_simulated:.2f}) | {row.downtime_s_error:+.0%} |")
    (sim_dir / "validation.md").write_text("\n".join(lines) + "\n")
    return sim_dir, table
