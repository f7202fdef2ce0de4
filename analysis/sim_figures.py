"""Figures of a simulated run (``testbed sim``): the planners at city scale.

* per-user CDFs of mean E2E delay and of total downtime, one line per planner
  (seed 002's planners at scale), a figure per scenario;
* seed 000's Figs. 8 and 9 analogues when there are scenarios (varying the offered load):
  migration cost (a migration's time, pre-migration plus downtime, mean and 95 %
  interval across trials) and average system response (request-weighted E2E)
  against the offered load, one line per planner.

The offered load of a trial is what its users ask of the edge tier's compute
(tasks per second x processing time at C = 1, over the edge servers' cores x C),
written by the simulator in ``summary.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.figures import _order, _save, interval, plot_interval  # noqa: E402


def per_user(aggregates: pd.DataFrame) -> pd.DataFrame:
    """Per trial and user: request-weighted mean E2E and total downtime."""
    frame = aggregates.assign(weighted=aggregates["requests"] * aggregates["e2e_mean_ms"].fillna(0))
    grouped = frame.groupby(["scenario", "planner", "repetition", "user"], as_index=False).agg(
        requests=("requests", "sum"), weighted=("weighted", "sum"), downtime_s=("downtime_s", "sum"))
    grouped["e2e_mean_ms"] = grouped["weighted"] / grouped["requests"].where(grouped["requests"] > 0)
    return grouped.drop(columns="weighted")


def cdfs(aggregates: pd.DataFrame, out: Path) -> list[Path]:
    paths = []
    users = per_user(aggregates)
    for scenario, rows in users.groupby("scenario"):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for planner in _order(rows["planner"]):
            mine = rows[rows["planner"] == planner]
            for ax, column in zip(axes, ("e2e_mean_ms", "downtime_s")):
                values = np.sort(mine[column].dropna().to_numpy())
                if len(values):
                    ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post", label=planner)
        axes[0].set_xlabel("mean E2E delay per user (ms)")
        axes[0].set_xscale("log")
        axes[1].set_xlabel("total downtime per user (s)")
        for ax in axes:
            ax.set_ylabel("fraction of users")
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=8)
        fig.suptitle(f"{scenario}: per-user E2E and downtime (simulated)")
        fig.tight_layout()
        paths += _save(fig, out, f"sim-cdf-{scenario}", rows)
    return paths


def load_curves(summary: list[dict], migrations: pd.DataFrame, out: Path) -> list[Path]:
    """Seed 000's Figs. 8 and 9 against the offered load (only with two loads or more)."""
    trials = pd.DataFrame(summary)
    if trials.empty or trials["scenario"].nunique() < 2:
        return []
    # a scenario's load: what its users asked, the same x for every planner (in a closed loop the
    # load carried differs by planner: a slower placement gets fewer tasks)
    trials["offered_load"] = trials.groupby("scenario")["offered_load"].transform("max").round(3)
    cost = migrations.assign(cost_s=migrations["pre_migration_s"] + migrations["downtime_s"]) \
        .groupby(["scenario", "planner", "repetition"], as_index=False)["cost_s"].mean() \
        if not migrations.empty else pd.DataFrame(columns=["scenario", "planner", "repetition", "cost_s"])
    trials = trials.merge(cost, on=["scenario", "planner", "repetition"], how="left")
    rows = []
    for (planner, load), group in trials.groupby(["planner", "offered_load"]):
        for metric in ("cost_s", "e2e_mean_ms"):
            rows.append({"planner": planner, "offered_load": load, "metric": metric,
                         **interval(group[metric].dropna())})
    data = pd.DataFrame(rows)
    paths = []
    for metric, name, label in (("cost_s", "sim-fig8-migration-cost", "migration cost: mean migration time (s)"),
                                ("e2e_mean_ms", "sim-fig9-system-response", "average system response (ms)")):
        mine = data[(data["metric"] == metric) & data["mean"].notna()]
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for planner in _order(mine["planner"]):
            line = mine[mine["planner"] == planner].sort_values("offered_load")
            plot_interval(ax, line["offered_load"], line, planner)
        ax.set_xlabel("offered load (fraction of the edge tier's compute)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths += _save(fig, out, name, mine)
    return paths


def make_all(run_dir: Path, out: Path | None = None) -> list[Path]:
    run_dir = Path(run_dir)
    out = out or run_dir / "figures"
    aggregates = pd.read_parquet(run_dir / "aggregates.parquet") if (run_dir / "aggregates.parquet").exists() \
        else pd.DataFrame()
    migrations = pd.read_parquet(run_dir / "migrations.parquet") if (run_dir / "migrations.parquet").exists() \
        else pd.DataFrame()
    summary = json.loads((run_dir / "summary.json").read_text())["trials"]
    paths = cdfs(aggregates, out) if not aggregates.empty else []
    return paths + load_curves(summary, migrations, out)
