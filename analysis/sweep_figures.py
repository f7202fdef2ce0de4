"""Figures of a sweep: every metric against every swept key, one line per planner (and per
value of the other swept keys), mean and 95 % interval across the repetitions.

A trial's value of a metric is its mean over the trial's scenarios and services; the
x axis lists the key's values in the grid's order (one point per value).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.figures import _save, interval, plot_interval  # noqa: E402

METRICS = {"e2e_mean_ms": "mean E2E delay (ms)", "downtime_total_s": "total downtime (s)",
           "downtime_per_user_s": "downtime per user (s)", "migrations_ok": "migrations", "migrations": "migrations",
           "handovers": "handovers"}


def curves(table: pd.DataFrame, grid: dict[str, list[str]], key: str, metric: str) -> pd.DataFrame:
    """Rows: planner, the other keys' values, the key's value, mean, low, high, trials."""
    others = [k for k in grid if k != key]
    per_trial = table.groupby(["trial", "planner", *grid], as_index=False, dropna=False)[metric].mean()
    rows = []
    for labels, group in per_trial.groupby(["planner", *others, key], dropna=False, sort=False):
        labels = labels if isinstance(labels, tuple) else (labels,)
        rows.append({"planner": labels[0], **dict(zip(others, labels[1:-1])), key: labels[-1],
                     **interval(group[metric].dropna())})
    return pd.DataFrame(rows)


def make_all(sweep_dir: Path, out: Path | None = None) -> list[Path]:
    sweep_dir = Path(sweep_dir)
    out = out or sweep_dir / "figures"
    grid = json.loads((sweep_dir / "sweep.json").read_text())["grid"]
    path = sweep_dir / "trials.csv"
    table = pd.read_csv(path, dtype={k: str for k in grid}) if path.exists() else pd.DataFrame()
    if table.empty or "planner" not in table:
        return []
    table = table[table["ok"].astype(bool)]
    paths = []
    for key in grid:
        for metric, label in METRICS.items():
            if metric not in table or table[metric].isna().all():
                continue
            data = curves(table, grid, key, metric)
            order = {value: index for index, value in enumerate(grid[key])}
            fig, ax = plt.subplots(figsize=(6, 4))
            others = [k for k in grid if k != key]
            for labels, line in data.groupby(["planner", *others], dropna=False, sort=True):
                labels = labels if isinstance(labels, tuple) else (labels,)
                line = line.assign(x=line[key].map(order)).sort_values("x")
                name = ", ".join([str(labels[0])] + [f"{k.split('.')[-1]}={v}" for k, v in zip(others, labels[1:])])
                plot_interval(ax, line["x"], line, name)
            ax.set_xticks(range(len(grid[key])), grid[key])
            ax.set_xlabel(key)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            paths += _save(fig, out, f"sweep-{metric}-vs-{key.replace('.', '_')}", data)
    return paths
