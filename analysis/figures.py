"""The seeds' figures and tables from one or several run directories.

Every metric is computed per trial (one planner, one scenario, one repetition
of one run: ``testbed.records.trial_metrics``), never across trials' joined
timelines, and then aggregated: mean and 95 % Student-t interval across the
trials.  Several runs given together pool their trials; ``exclude`` leaves
trials out by their label ``<run>/<scenario>/<planner>/rep<N>`` (glob patterns:
a trial re-run after a fix supersedes the old one).  Each function writes
PNG and PDF (figures) or CSV, Markdown and LaTeX (tables), and the numbers it
plotted as CSV next to the figure, and returns the paths.

* Fig. 4 (seed 002): E2E delay = processing + transmission per planner, a panel
  per scenario and service; error bar: the 95 % interval across trials, or the
  std of E2E within the one trial there is (the paper's);
* Fig. 5 (seed 002): total service downtime per planner, with its interval;
* Fig. 6 (seed 002): E2E delay over a 50 s window of one trial, downtime
  shaded, a panel per planner, one figure per scenario and service;
* Table I (seed 002): image, checkpoint of pre-migration vs migration (the bytes
  that crossed the WAN, and the uncompressed delta), reduction ratios;
* seed 001's table: migration time with the app found / not found, downtime, data;
* seed 004's plots: migration time per source/destination pair (stateful vs
  stateless) and against the number of migrations in parallel.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from testbed.config import ConfigError, app_manifest  # noqa: E402
from testbed.records import (aggregate, load, mean_ci, outages, requests_frame, trial_metrics,  # noqa: E402
                             with_trial_columns)

PLANNER_ORDER = ["cloud", "random", "nearest", "orchestrated", "shareon", "equal-load", "nearest-edge",
                 "bandwidth-only", "processing-only", "green-first", "eco"]
COLORS = {"processing": "#4C72B0", "transmission": "#DD8452", "downtime": "#C44E52",
          "stateful": "#4C72B0", "stateless": "#55A868"}
TRIAL = ["run", "scenario", "planner", "repetition"]

plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False,
                     "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 150, "savefig.bbox": "tight"})


class UnknownTrial(ValueError):
    """An ``exclude`` pattern that names no trial of the runs."""


def trial_label(run: str, scenario: str, planner: str, repetition: int) -> str:
    """How a trial is named to ``exclude``: ``<run>/<scenario>/<planner>/rep<N>``."""
    return f"{run}/{scenario}/{planner}/rep{repetition}"


def excluded(label: str, exclude) -> bool:
    return any(fnmatchcase(label, pattern) for pattern in exclude)


def load_runs(run_dirs, exclude=()) -> dict[str, pd.DataFrame]:
    """The tables of every run, each row marked with its run and trial, without the trials
    ``exclude`` names (glob patterns over ``trial_label``).  A pattern that names no trial
    is an error (a typo would otherwise leave the trial in, silently)."""
    tables, labels = {}, set()
    for table in ("requests", "events", "migrations"):
        frames = [with_trial_columns(load(run, table), run=Path(run).name) for run in run_dirs]
        frames = [f for f in frames if not f.empty]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if not frame.empty:
            trials = {tuple(key): trial_label(*key) for key in frame[TRIAL].drop_duplicates().itertuples(index=False)}
            labels.update(trials.values())
            dropped = [key for key, label in trials.items() if excluded(label, exclude)]
            if dropped:
                frame = frame[~pd.MultiIndex.from_frame(frame[TRIAL]).isin(dropped)].reset_index(drop=True)
        tables[table] = frame
    unmatched = [pattern for pattern in exclude if not any(fnmatchcase(x, pattern) for x in labels)]
    if unmatched:
        raise UnknownTrial(f"--exclude {unmatched[0]!r} names no trial of these runs; their trials: "
                         + ", ".join(sorted(labels)[:12]) + (" ..." if len(labels) > 12 else ""))
    return tables


def _order(planners) -> list[str]:
    known = [p for p in PLANNER_ORDER if p in set(planners)]
    return known + sorted(set(planners) - set(known))


def _app(service: str) -> str:
    """The app of a service named by the runner (``<app>[<index>]-<user>``)."""
    return service.split("-", 1)[0].rstrip("0123456789")


def app_label(app: str) -> str:
    """How figures name an app: its manifest's label (the app's name if it has none here)."""
    try:
        return app_manifest(app).label
    except ConfigError:
        return app


def _panel_title(scenario: str, service: str, scenarios: int) -> str:
    label = app_label(_app(service))
    return f"{scenario}: {label}" if scenarios > 1 else label


def interval(values) -> dict:
    """A curve's point: the mean of per-trial values, its 95 % interval (low, high: None with one
    trial) and how many trials."""
    stats = mean_ci(list(values))
    ci = stats["ci95"]
    return {"mean": stats["mean"], "low": ci[0] if ci else None, "high": ci[1] if ci else None, "trials": stats["n"]}


def plot_interval(ax, x, points: pd.DataFrame, label: str) -> None:
    """A line through ``interval`` points with its band."""
    ax.plot(x, points["mean"], marker="o", label=label)
    if points["low"].notna().any():
        ax.fill_between(x, points["low"], points["high"], alpha=0.15)


def _save(fig, out: Path, name: str, data: pd.DataFrame) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = out / f"{name}.{ext}"
        fig.savefig(path)
        paths.append(path)
    plt.close(fig)
    data.to_csv(out / f"{name}.csv", index=False)
    paths.append(out / f"{name}.csv")
    return paths


def _table(out: Path, name: str, data: pd.DataFrame, caption: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    data.to_csv(out / f"{name}.csv", index=False)
    markdown = [f"**{caption}**", "", "| " + " | ".join(data.columns) + " |", "|" + "---|" * len(data.columns)]
    markdown += ["| " + " | ".join(str(v) for v in row) + " |" for row in data.itertuples(index=False)]
    (out / f"{name}.md").write_text("\n".join(markdown) + "\n")

    def tex(value) -> str:
        return str(value).replace("%", "\\%").replace("_", "\\_").replace("&", "\\&")

    latex = ["\\begin{table}[t]", "\\centering", f"\\caption{{{tex(caption)}}}", f"\\label{{tab:{name}}}",
             "\\begin{tabular}{" + "l" + "r" * (len(data.columns) - 1) + "}", "\\hline",
             " & ".join(tex(c) for c in data.columns) + " \\\\", "\\hline"]
    latex += [" & ".join(tex(v) for v in row) + " \\\\" for row in data.itertuples(index=False)]
    latex += ["\\hline", "\\end{tabular}", "\\end{table}"]
    (out / f"{name}.tex").write_text("\n".join(latex) + "\n")
    return [out / f"{name}.{ext}" for ext in ("csv", "md", "tex")]


def metrics(tables: dict[str, pd.DataFrame]) -> tuple[list[dict], list[dict]]:
    """Per-trial metrics and their aggregate per scenario, planner and service."""
    trials = trial_metrics(tables["requests"], tables["events"], tables["migrations"])
    return trials, aggregate(trials)


def _interval(stat: dict) -> tuple[float, float] | None:
    return tuple(stat["ci95"]) if stat.get("ci95") else None


# -- Fig. 4 ---------------------------------------------------------------------------
def fig4_data(requests: pd.DataFrame, aggregated: list[dict]) -> pd.DataFrame:
    rows = []
    for row in aggregated:
        e2e = row["e2e_mean_ms"]
        if e2e["mean"] is None:
            continue
        interval = _interval(e2e)
        if interval is None:           # one trial: the paper's error bar, the std of E2E within it
            ok = requests[(requests.scenario == row["scenario"]) & (requests.planner == row["planner"])
                          & (requests.service == row["service"]) & requests["ok"].astype(bool)]
            spread, kind = float(ok["e2e_ms"].std()) if len(ok) > 1 else 0.0, "std of E2E (one trial)"
            low, high = e2e["mean"] - spread, e2e["mean"] + spread
        else:
            low, high, kind = interval[0], interval[1], "95 % interval across trials"
        rows.append({"scenario": row["scenario"], "planner": row["planner"], "service": row["service"],
                     "processing_ms": row["processing_mean_ms"]["mean"],
                     "transmission_ms": row["transmission_mean_ms"]["mean"], "e2e_ms": e2e["mean"],
                     "error_low_ms": low, "error_high_ms": high, "error_bar": kind, "trials": e2e["n"]})
    return pd.DataFrame(rows)


def _panels(data: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted({(r.scenario, r.service) for r in data.itertuples()})


def fig4(requests: pd.DataFrame, aggregated: list[dict], out: Path) -> list[Path]:
    data = fig4_data(requests, aggregated)
    if data.empty:
        return []
    panels = _panels(data)
    scenarios = len({s for s, _ in panels})
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    for ax, (scenario, service) in zip(axes[0], panels):
        mine = data[(data.scenario == scenario) & (data.service == service)].set_index("planner")
        rows = mine.loc[_order(mine.index)]
        x = np.arange(len(rows))
        ax.bar(x, rows["processing_ms"], color=COLORS["processing"], label="processing")
        errors = np.array([rows["e2e_ms"] - rows["error_low_ms"], rows["error_high_ms"] - rows["e2e_ms"]])
        ax.bar(x, rows["transmission_ms"], bottom=rows["processing_ms"], color=COLORS["transmission"],
               label="transmission", yerr=errors, capsize=4, error_kw={"elinewidth": 1})
        for xi, total in zip(x, rows["e2e_ms"]):
            ax.annotate(f"{total:.1f}", (xi, total), xytext=(4, 3), textcoords="offset points", fontsize=8)
        ax.set_xticks(x, rows.index, rotation=20)
        ax.set_ylabel("E2E delay (ms)")
        ax.set_title(_panel_title(scenario, service, scenarios), fontsize=10)
        ax.set_ylim(bottom=0)
    axes[0][0].legend(frameon=False)
    bars = "; ".join(sorted(set(data["error_bar"])))
    fig.suptitle(f"E2E delay: mean processing + transmission (error bar: {bars})", fontsize=10, y=1.02)
    fig.tight_layout()
    return _save(fig, out, "figure_4_e2e_breakdown", data)


# -- Fig. 5 ---------------------------------------------------------------------------
def fig5_data(aggregated: list[dict]) -> pd.DataFrame:
    rows = []
    for row in aggregated:
        downtime = row["downtime_total_s"]
        if downtime["mean"] is None:
            continue
        interval = _interval(downtime)
        rows.append({"scenario": row["scenario"], "planner": row["planner"], "service": row["service"],
                     "downtime_s": downtime["mean"], "ci_low_s": interval[0] if interval else None,
                     "ci_high_s": interval[1] if interval else None, "trials": downtime["n"],
                     "outages": row["outages"]["mean"]})
    return pd.DataFrame(rows)


def fig5(aggregated: list[dict], out: Path) -> list[Path]:
    data = fig5_data(aggregated)
    if data.empty:
        return []
    panels = _panels(data)
    scenarios = len({s for s, _ in panels})
    planners = _order(data["planner"].unique())
    width = 0.8 / max(1, len(planners))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(panels) + 2), 3.2))
    cmap = plt.get_cmap("tab10")
    for i, planner in enumerate(planners):
        values, low, high = [], [], []
        for scenario, service in panels:
            row = data[(data.planner == planner) & (data.scenario == scenario) & (data.service == service)]
            value = float(row["downtime_s"].iloc[0]) if len(row) else np.nan
            values.append(value)
            has_ci = len(row) and pd.notna(row["ci_low_s"].iloc[0])
            low.append(value - float(row["ci_low_s"].iloc[0]) if has_ci else 0.0)
            high.append(float(row["ci_high_s"].iloc[0]) - value if has_ci else 0.0)
        positions = np.arange(len(panels)) + (i - (len(planners) - 1) / 2) * width
        bars = ax.bar(positions, values, width * 0.95, label=planner, color=cmap(i), yerr=[low, high], capsize=3,
                      error_kw={"elinewidth": 1})
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.set_xticks(np.arange(len(panels)), [_panel_title(s, v, scenarios) for s, v in panels])
    ax.set_ylabel("total service downtime (s)")
    ax.legend(frameon=False, ncol=min(4, len(planners)), loc="upper center", bbox_to_anchor=(0.5, -0.12),
              fontsize=8)
    trials = int(data["trials"].max())
    ax.set_title("Total service downtime seen by the user" +
                 (f" (mean of {trials} trials, 95 % interval)" if trials > 1 else ""), fontsize=10)
    return _save(fig, out, "figure_5_downtime", data)


# -- Fig. 6 ---------------------------------------------------------------------------
def fig6(requests: pd.DataFrame, events: pd.DataFrame, out: Path, window_s: float = 50.0) -> list[Path]:
    """One figure per scenario and service: the first trial of each planner, its own t0."""
    paths = []
    panels = sorted({(r.scenario, r.service) for r in requests[["scenario", "service"]].itertuples()})
    scenarios = len({s for s, _ in panels})
    for scenario, service in panels:
        mine = requests[(requests.scenario == scenario) & (requests.service == service)]
        planners = _order(mine["planner"].unique())
        fig, axes = plt.subplots(len(planners), 1, figsize=(7.0, 1.7 * len(planners) + 0.6), sharex=True,
                                 squeeze=False)
        rows = []
        for ax, planner in zip(axes[:, 0], planners):
            trials = mine[mine.planner == planner]
            run, repetition = sorted({(r.run, r.repetition) for r in trials[["run", "repetition"]].itertuples()})[0]
            group = trials[(trials.run == run) & (trials.repetition == repetition)]
            t0 = group["sent"].min()
            user = group["user"].iloc[0] if "user" in group else None
            handovers = events[(events.run == run) & (events.scenario == scenario) & (events.planner == planner)
                               & (events.repetition == repetition) & (events.kind == "handover.start")] \
                if not events.empty else events
            if user is not None and not handovers.empty:
                handovers = handovers[[json.loads(d).get("user") == user for d in handovers["data"]]]
            first = (handovers["t"].min() - t0) if len(handovers) else 0.0
            start = max(0.0, first - 20.0)
            frame = requests_frame(group.to_dict("records"))
            ok = frame[frame["ok"].astype(bool) & (frame["sent"] - t0 >= start)
                       & (frame["sent"] - t0 <= start + window_s)]
            t = ok["sent"] - t0 - start
            ax.plot(t, ok["e2e_ms"], color=COLORS["transmission"], lw=0.8, label="E2E")
            ax.plot(t, ok["proc_ms"], color=COLORS["processing"], lw=0.8, label="processing")
            for outage in outages(frame):
                a, b = outage.start - t0 - start, outage.end - t0 - start
                if b >= 0 and a <= window_s:
                    ax.axvspan(max(0, a), min(window_s, b), color=COLORS["downtime"], alpha=0.3, lw=0)
                    rows.append({"run": run, "scenario": scenario, "planner": planner, "repetition": repetition,
                                 "service": service, "start_s": a, "end_s": b, "start_unix": outage.start,
                                 "end_unix": outage.end})
            ax.set_ylabel("delay (ms)")
            ax.set_title(planner, fontsize=9, loc="left")
            ax.set_xlim(0, window_s)
            ax.set_ylim(bottom=0)
        axes[0, 0].legend(frameon=False, ncol=2, fontsize=8, loc="upper right")
        axes[-1, 0].set_xlabel(f"time in the {window_s:g} s window (s); shaded: downtime")
        fig.suptitle(f"E2E delay of {_panel_title(scenario, service, scenarios)} (shaded: service downtime)",
                     fontsize=10)
        name = "figure_6_timeline" if len(panels) == 1 else f"figure_6_timeline_{scenario}_{service}"
        paths += _save(fig, out, name, pd.DataFrame(rows, columns=["run", "scenario", "planner", "repetition",
                                                                   "service", "start_s", "end_s", "start_unix",
                                                                   "end_unix"]))
    return paths


# -- tables ---------------------------------------------------------------------------
def _migration_records(migrations: pd.DataFrame) -> list[dict]:
    if migrations.empty:
        return []
    records = []
    for row in migrations.itertuples(index=False):
        record = json.loads(row.record)
        record.update({"planner": row.planner, "scenario": row.scenario, "repetition": row.repetition,
                       "run": getattr(row, "run", None)})
        records.append(record)
    return records


def table1_data(migrations: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for record in _migration_records(migrations):
        sizes = record.get("sizes", {})
        if record.get("mode") == "precopy-delta" and record.get("ok") and "delta" in sizes:
            rows.append({"app": record.get("app") or _app(record["service"]), "image": sizes.get("image", np.nan),
                         "pre": sizes["pre_checkpoint"], "delta": sizes["delta"],
                         "delta_raw": sizes.get("delta_raw", np.nan)})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    means = frame.groupby("app").mean().reset_index()
    return pd.DataFrame({
        "container": [app_label(a) for a in means["app"]],
        "Docker image (MB)": (means["image"] / 1e6).round(1),
        "checkpoint of pre-migration (MB)": (means["pre"] / 1e6).round(2),
        "migration: sent (kB)": (means["delta"] / 1e3).round(1),
        "migration: uncompressed delta (kB)": (means["delta_raw"] / 1e3).round(1),
        "reduction, sent (%)": (100 * (1 - means["delta"] / means["pre"])).round(2),
        "reduction, uncompressed (%)": (100 * (1 - means["delta_raw"] / means["pre"])).round(2),
        "migrations": frame.groupby("app").size().values})


def table1(migrations: pd.DataFrame, out: Path) -> list[Path]:
    data = table1_data(migrations)
    if data.empty:
        return []
    return _table(out, "table_I_checkpoints", data, "Checkpoint size of pre-migration vs migration (seed 002, "
                  "Table I): what crossed the WAN in the migration phase, and the delta before compression")


def table_seed001(migrations: pd.DataFrame, out: Path) -> list[Path]:
    rows = []
    for record in _migration_records(migrations):
        if record.get("mode") != "layered" or not record.get("ok"):
            continue
        phases = record["phases"]
        total = sum(phases[p]["seconds"] for p in ("prepare", "pre_migration", "migration") if p in phases)
        rows.append({"service": _app(record["service"]), "app found": bool(record.get("app_found")),
                     "migration_s": total, "downtime_s": phases["migration"]["seconds"],
                     "data_MB": sum(record.get("bytes", {}).values()) / 1e6})
    if not rows:
        return []
    frame = pd.DataFrame(rows)
    data = frame.groupby(["service", "app found"]).mean().round(3).reset_index()
    return _table(out, "table_seed001_layered", data,
                  "Layered migration: total time with the app found / not found, downtime, data (seed 001, Table 1)")


def seed001_figure(migrations: pd.DataFrame, out: Path) -> list[Path]:
    """Downtime and total migration time per app and mode (seed 001's comparison, as a figure)."""
    rows = []
    for record in _migration_records(migrations):
        if not record.get("ok") or record.get("mode") not in ("cold", "precopy-delta", "layered"):
            continue
        phases = record["phases"]
        total = sum(phases[p]["seconds"] for p in ("prepare", "pre_migration", "migration") if p in phases)
        rows.append({"app": record.get("app") or _app(record["service"]), "mode": record["mode"],
                     "downtime_s": phases["migration"]["seconds"], "total_s": total,
                     "MB_during_downtime": record.get("bytes", {}).get("during_downtime", 0) / 1e6})
    frame = pd.DataFrame(rows)
    if frame.empty or frame["mode"].nunique() < 2:
        return []
    means = frame.groupby(["app", "mode"]).mean().reset_index()
    apps, modes = sorted(means["app"].unique()), [m for m in ("cold", "precopy-delta", "layered")
                                                   if m in set(means["mode"])]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    width = 0.8 / len(modes)
    for ax, metric, label in ((axes[0], "downtime_s", "migration phase (s)"), (axes[1], "total_s", "total (s)")):
        for i, mode in enumerate(modes):
            values = [float(means[(means.app == a) & (means["mode"] == mode)][metric].sum()) or np.nan for a in apps]
            ax.bar(np.arange(len(apps)) + (i - (len(modes) - 1) / 2) * width, values, width * 0.95, label=mode)
        ax.set_xticks(np.arange(len(apps)), [app_label(a) for a in apps], rotation=15)
        ax.set_ylabel(label)
    axes[0].legend(frameon=False, fontsize=8)
    fig.suptitle("Migration modes: downtime and total time per service (seed 001)", fontsize=10, y=1.02)
    fig.tight_layout()
    return _save(fig, out, "figure_seed001_modes", means)


def seed004_plots(migrations: pd.DataFrame, out: Path) -> list[Path]:
    records = [r for r in _migration_records(migrations) if r.get("ok")]
    if not records:
        return []
    rows = []
    for record in records:
        phases = record["phases"]
        rows.append({"trial": (record["run"], record["scenario"], record["planner"], record["repetition"]),
                     "pair": f"{record['source']}->{record['dest']}",
                     "kind": "stateful" if record.get("carries_state") else "stateless",
                     "seconds": phases["migration"]["seconds"], "start": phases["migration"]["start"],
                     "end": phases["migration"]["end"]})
    frame = pd.DataFrame(rows)
    # migrations in parallel: within one trial only
    frame["parallel"] = [int(((frame["trial"] == r.trial) & (frame["start"] < r.end) & (frame["end"] > r.start)).sum())
                         for r in frame.itertuples()]
    pairs = frame.groupby(["pair", "kind"])["seconds"].mean().unstack(fill_value=np.nan)
    parallel = frame.groupby("parallel")["seconds"].mean()
    fig, axes = plt.subplots(1, 2 if len(parallel) > 1 else 1, figsize=(9 if len(parallel) > 1 else 5, 3.2),
                             squeeze=False)
    left = axes[0, 0]
    pairs.plot.bar(ax=left, color=[COLORS.get(c, "grey") for c in pairs.columns], rot=20)
    left.set_ylabel("migration phase (s)")
    left.set_xlabel("")
    left.set_title("per source and destination", fontsize=10)
    if len(parallel) > 1:
        right = axes[0, 1]
        right.plot(parallel.index, parallel.values, marker="o", color=COLORS["stateful"])
        right.set_xlabel("migrations in parallel")
        right.set_ylabel("mean migration phase (s)")
        right.set_xticks(parallel.index)
        right.set_title("against parallel migrations", fontsize=10)
    fig.suptitle("Migration time: from the final checkpoint to the service running at the destination "
                 "(seed 004, Figs. 5.3-5.7)", fontsize=9, y=1.02)
    fig.tight_layout()
    return _save(fig, out, "figure_seed004_migration_time", frame.drop(columns=["trial"]))


def make_all(run_dirs, out: Path, exclude=()) -> list[Path]:
    tables = load_runs(run_dirs, exclude)
    requests, events, migrations = tables["requests"], tables["events"], tables["migrations"]
    paths = []
    if not requests.empty:
        _, aggregated = metrics(tables)
        paths += fig4(requests, aggregated, out)
        paths += fig5(aggregated, out)
        paths += fig6(requests, events, out)
    paths += table1(migrations, out)
    paths += table_seed001(migrations, out)
    paths += seed001_figure(migrations, out)
    paths += seed004_plots(migrations, out)
    return paths
