"""The seeds' figures and tables from one or several run directories.

Each function takes the combined records of the runs, writes PNG and PDF
(figures) or CSV, Markdown and LaTeX (tables), writes the numbers it plotted as
CSV next to the figure (so they can be checked against the records), and
returns the paths.  ``make_all`` makes every figure the runs have data for.

* Fig. 4 (seed 002): E2E delay = processing + transmission, mean, std as error bar;
* Fig. 5 (seed 002): total service downtime per planner and service;
* Fig. 6 (seed 002): E2E delay over a 50 s window, downtime shaded, a panel per planner;
* Table I (seed 002): checkpoint of pre-migration vs migration, reduction ratio;
* seed 001's table: migration time with the app found / not found, downtime, data;
* seed 004's plots: migration time per source/destination pair (stateful vs
  stateless) and against the number of migrations in parallel.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from testbed.config import ConfigError, app_manifest  # noqa: E402
from testbed.records import load, outages, requests_frame  # noqa: E402

PLANNER_ORDER = ["cloud", "random", "nearest", "orchestrated", "shareon", "equal-load", "nearest-edge",
                 "bandwidth-only", "processing-only", "green-first", "eco"]
COLORS = {"processing": "#4C72B0", "transmission": "#DD8452", "downtime": "#C44E52",
          "stateful": "#4C72B0", "stateless": "#55A868"}

plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False,
                     "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 150, "savefig.bbox": "tight"})


def _runs(run_dirs) -> dict[str, pd.DataFrame]:
    tables = {}
    for table in ("requests", "events", "migrations"):
        frames = []
        for run in run_dirs:
            frame = load(run, table)
            if not frame.empty:
                frame["run"] = Path(run).name
                frames.append(frame)
        tables[table] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
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


# -- Fig. 4 ---------------------------------------------------------------------------
def fig4_data(requests: pd.DataFrame) -> pd.DataFrame:
    ok = requests[requests["ok"].astype(bool)]
    grouped = ok.groupby(["planner", "service"])
    data = pd.DataFrame({
        "processing_ms": grouped["proc_ms"].mean(), "transmission_ms": grouped["tx_ms"].mean(),
        "e2e_ms": grouped["e2e_ms"].mean(), "e2e_std_ms": grouped["e2e_ms"].std().fillna(0.0),
        "requests": grouped.size()}).reset_index()
    return data


def fig4(requests: pd.DataFrame, out: Path) -> list[Path]:
    data = fig4_data(requests)
    services = sorted(data["service"].unique())
    fig, axes = plt.subplots(1, len(services), figsize=(3.6 * len(services), 3.2), squeeze=False)
    for ax, service in zip(axes[0], services):
        rows = data[data["service"] == service].set_index("planner").loc[_order(data[data["service"] == service]
                                                                                  ["planner"])]
        x = np.arange(len(rows))
        ax.bar(x, rows["processing_ms"], color=COLORS["processing"], label="processing")
        ax.bar(x, rows["transmission_ms"], bottom=rows["processing_ms"], color=COLORS["transmission"],
               label="transmission", yerr=rows["e2e_std_ms"], capsize=4, error_kw={"elinewidth": 1})
        for xi, total in zip(x, rows["e2e_ms"]):
            ax.annotate(f"{total:.1f}", (xi, total), xytext=(4, 3), textcoords="offset points", fontsize=8)
        ax.set_xticks(x, rows.index, rotation=20)
        ax.set_ylabel("E2E delay (ms)")
        ax.set_title(app_label(_app(service)), fontsize=10)
        ax.set_ylim(bottom=0)
    axes[0][0].legend(frameon=False)
    fig.suptitle("E2E delay: mean processing + transmission (error bar: std of E2E)", fontsize=10, y=1.02)
    fig.tight_layout()
    return _save(fig, out, "figure_4_e2e_breakdown", data)


# -- Fig. 5 ---------------------------------------------------------------------------
def fig5_data(requests: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (planner, service), group in requests.groupby(["planner", "service"]):
        found = outages(requests_frame(group.to_dict("records")))
        rows.append({"planner": planner, "service": service, "downtime_s": sum(o.seconds for o in found),
                     "outages": len(found)})
    return pd.DataFrame(rows)


def fig5(requests: pd.DataFrame, out: Path) -> list[Path]:
    data = fig5_data(requests)
    services = sorted(data["service"].unique())
    planners = _order(data["planner"].unique())
    width = 0.8 / max(1, len(planners))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(services) + 2), 3.2))
    cmap = plt.get_cmap("tab10")
    for i, planner in enumerate(planners):
        values = [data[(data.planner == planner) & (data.service == s)]["downtime_s"].sum() for s in services]
        positions = np.arange(len(services)) + (i - (len(planners) - 1) / 2) * width
        bars = ax.bar(positions, values, width * 0.95, label=planner, color=cmap(i))
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.set_xticks(np.arange(len(services)), [app_label(_app(s)) for s in services])
    ax.set_ylabel("total service downtime (s)")
    ax.legend(frameon=False, ncol=min(4, len(planners)), loc="upper center", bbox_to_anchor=(0.5, -0.12),
              fontsize=8)
    ax.set_title("Total service downtime seen by the user", fontsize=10)
    return _save(fig, out, "figure_5_downtime", data)


# -- Fig. 6 ---------------------------------------------------------------------------
def fig6(requests: pd.DataFrame, events: pd.DataFrame, out: Path, window_s: float = 50.0,
         service: str | None = None) -> list[Path]:
    service = service or sorted(requests["service"].unique())[0]
    planners = _order(requests["planner"].unique())
    fig, axes = plt.subplots(len(planners), 1, figsize=(7.0, 1.7 * len(planners) + 0.6), sharex=True,
                             squeeze=False)
    rows = []
    for ax, planner in zip(axes[:, 0], planners):
        group = requests[(requests.planner == planner) & (requests.service == service)]
        if group.empty:
            continue
        t0 = group["sent"].min()
        handovers = events[(events.planner == planner) & (events.kind == "handover.start")] \
            if not events.empty else events
        first = (handovers["t"].min() - t0) if len(handovers) else 0.0
        start = max(0.0, first - 20.0)
        frame = requests_frame(group.to_dict("records"))
        ok = frame[frame["ok"].astype(bool) & (frame["sent"] - t0 >= start) & (frame["sent"] - t0 <= start + window_s)]
        t = ok["sent"] - t0 - start
        ax.plot(t, ok["e2e_ms"], color=COLORS["transmission"], lw=0.8, label="E2E")
        ax.plot(t, ok["proc_ms"], color=COLORS["processing"], lw=0.8, label="processing")
        for outage in outages(frame):
            a, b = outage.start - t0 - start, outage.end - t0 - start
            if b >= 0 and a <= window_s:
                ax.axvspan(max(0, a), min(window_s, b), color=COLORS["downtime"], alpha=0.3, lw=0)
                rows.append({"planner": planner, "service": service, "start_s": a, "end_s": b,
                             "start_unix": outage.start, "end_unix": outage.end})
        ax.set_ylabel("delay (ms)")
        ax.set_title(planner, fontsize=9, loc="left")
        ax.set_xlim(0, window_s)
        ax.set_ylim(bottom=0)
    axes[0, 0].legend(frameon=False, ncol=2, fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel(f"time in the {window_s:g} s window (s); shaded: downtime")
    fig.suptitle(f"E2E delay of {app_label(_app(service))} (shaded: service downtime)", fontsize=10)
    return _save(fig, out, "figure_6_timeline", pd.DataFrame(rows, columns=["planner", "service", "start_s", "end_s",
                                                                          "start_unix", "end_unix"]))


# -- tables ---------------------------------------------------------------------------
def _migration_records(migrations: pd.DataFrame) -> list[dict]:
    if migrations.empty:
        return []
    records = []
    for row in migrations.itertuples(index=False):
        record = json.loads(row.record)
        record["planner"] = row.planner
        records.append(record)
    return records


def table1_data(migrations: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for record in _migration_records(migrations):
        sizes = record.get("sizes", {})
        if record.get("mode") == "precopy-delta" and record.get("ok") and "delta" in sizes:
            rows.append({"service": _app(record["service"]), "pre": sizes["pre_checkpoint"], "delta": sizes["delta"]})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).groupby("service").mean().reset_index()
    return pd.DataFrame({
        "container": [app_label(s) for s in frame["service"]],
        "checkpoint of pre-migration (MB)": (frame["pre"] / 1e6).round(2),
        "checkpoint of migration (kB)": (frame["delta"] / 1e3).round(1),
        "reduction ratio (%)": (100 * (1 - frame["delta"] / frame["pre"])).round(2),
        "migrations": pd.DataFrame(rows).groupby("service").size().values})


def table1(migrations: pd.DataFrame, out: Path) -> list[Path]:
    data = table1_data(migrations)
    if data.empty:
        return []
    return _table(out, "table_I_checkpoints", data, "Checkpoint size of pre-migration vs migration (seed 002, Table I)")


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


def seed004_plots(migrations: pd.DataFrame, out: Path) -> list[Path]:
    records = [r for r in _migration_records(migrations) if r.get("ok")]
    if not records:
        return []
    rows = []
    for record in records:
        phases = record["phases"]
        rows.append({"pair": f"{record['source']}->{record['dest']}", "kind": "stateful" if
                     record.get("carries_state") else "stateless", "seconds": phases["migration"]["seconds"],
                     "start": phases["migration"]["start"], "end": phases["migration"]["end"]})
    frame = pd.DataFrame(rows)
    frame["parallel"] = [int(((frame["start"] < r.end) & (frame["end"] > r.start)).sum())
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
    return _save(fig, out, "figure_seed004_migration_time", frame)


def make_all(run_dirs, out: Path) -> list[Path]:
    tables = _runs(run_dirs)
    requests, events, migrations = tables["requests"], tables["events"], tables["migrations"]
    paths = []
    if not requests.empty:
        paths += fig4(requests, out)
        paths += fig5(requests, out)
        paths += fig6(requests, events, out)
    paths += table1(migrations, out)
    paths += table_seed001(migrations, out)
    paths += seed004_plots(migrations, out)
    return paths
