"""``testbed report RUN...``: each seed's claims next to what was measured, as Markdown and HTML.

The paper's numbers come from ``analysis/claims.yaml`` (each with where in the
paper it is); the measured ones from the runs' records, per trial and then
aggregated (mean and 95 % interval across trials).  A claim *holds* when the
measurement reaches the paper's number (and, where there are intervals, the
intervals compared do not overlap), *holds in direction* when the order is the
paper's but the size is not, *does not hold* otherwise, and is *not measured*
when the runs have nothing for it.  Figures are made alongside and inlined.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import yaml

from analysis import figures

CLAIMS = Path(__file__).with_name("claims.yaml")


def _fmt(stat: dict, digits: int = 2) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    text = f"{stat['mean']:.{digits}f}"
    if stat.get("ci95"):
        text += f" [{stat['ci95'][0]:.{digits}f}, {stat['ci95'][1]:.{digits}f}]"
    return text + (f" (n={stat['n']})" if stat.get("n") else "")


def _separated(lower: dict, higher: dict) -> bool | None:
    """Do the intervals of ``lower`` and ``higher`` not overlap (None: no intervals)?"""
    if not lower.get("ci95") or not higher.get("ci95"):
        return None
    return lower["ci95"][1] < higher["ci95"][0]


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _comparison(aggregated: list[dict], metric: str, best: str, against: list[str], lower_pct) -> list[list]:
    """Rows: scenario, service, best's value, each other's value and how much lower best is."""
    rows = []
    groups = {}
    for row in aggregated:
        groups.setdefault((row["scenario"], row["service"]), {})[row["planner"]] = row
    for (scenario, service), planners in sorted(groups.items()):
        if best not in planners:
            continue
        mine = planners[best][metric]
        for other in against:
            if other not in planners or mine["mean"] is None or planners[other][metric]["mean"] is None:
                continue
            theirs = planners[other][metric]
            reduction = 100 * (1 - mine["mean"] / theirs["mean"]) if theirs["mean"] else None
            target = lower_pct[other] if isinstance(lower_pct, dict) else lower_pct[0]
            separated = _separated(mine, theirs)
            if reduction is None:
                verdict = "not measured"
            elif reduction >= target and separated is not False:
                verdict = "holds" + (" (one trial: no interval)" if separated is None else "")
            elif reduction > 0:
                verdict = "holds in direction"
            else:
                verdict = "does not hold"
            rows.append([scenario, figures.app_label(figures._app(service)), other, _fmt(mine), _fmt(theirs),
                         "-" if reduction is None else f"{reduction:.1f} %",
                         {True: "no", False: "yes", None: "n/a"}[separated], verdict])
    return rows


def seed002(tables, aggregated, claims) -> list[str]:
    lines = ["## Seed 002: coordinated migration and handover", ""]
    downtime, e2e = claims["downtime"], claims["e2e"]
    header = ["scenario", "service", "against", "orchestrated", "other", "orchestrated lower by", "intervals overlap",
              "verdict"]
    rows = _comparison(aggregated, "downtime_total_s", "orchestrated", downtime["against"], downtime["lower_pct"])
    lines += [f"**Downtime** ({downtime['source']}). Paper: {downtime['claim']}. Here, total downtime per trial (s):",
              ""]
    lines += _table(header, rows) if rows else ["not measured: the runs have no orchestrated trial", ""]
    rows = _comparison(aggregated, "e2e_mean_ms", "orchestrated", e2e["against"], e2e["lower_pct"])
    lines += [f"**E2E delay** ({e2e['source']}). Paper: {e2e['claim']}. Here, mean E2E per trial (ms):", ""]
    lines += _table(header, rows) if rows else ["not measured", ""]
    measured = figures.table1_data(tables["migrations"])
    table = claims["table_I"]
    lines += [f"**Checkpoint sizes** ({table['source']}): pre-migration checkpoint and what the migration phase "
              "sent (the delta, compressed), and the delta before compression.", ""]
    rows = []
    for name, paper in table["rows"].items():
        label = figures.app_label(paper["app"])
        row = measured[measured["container"] == label] if not measured.empty else measured
        if row.empty:
            rows.append([name, f"{paper['pre_mb']} MB", "-", f"{paper['migration_kb']} kB", "-", "-",
                         f"{paper['reduction_pct']} %", "-", "not measured"])
            continue
        row = row.iloc[0]
        reduction = row["reduction, sent (%)"]
        verdict = "holds" if reduction >= paper["reduction_pct"] else ("holds in direction" if reduction > 90
                                                                       else "does not hold")
        rows.append([name, f"{paper['pre_mb']} MB", f"{row['checkpoint of pre-migration (MB)']} MB",
                     f"{paper['migration_kb']} kB", f"{row['migration: sent (kB)']} kB",
                     f"{row['migration: uncompressed delta (kB)']} kB", f"{paper['reduction_pct']} %",
                     f"{reduction} % / {row['reduction, uncompressed (%)']} %", verdict])
    lines += _table(["container", "paper: pre-migration", "here", "paper: migration", "here: sent",
                     "here: uncompressed", "paper: reduction", "here: sent / uncompressed", "verdict"], rows)
    return lines


def seed001(tables, claims) -> list[str]:
    records = [r for r in figures._migration_records(tables["migrations"]) if r.get("ok")]
    lines = ["## Seed 001: layered migration", ""]
    claim = claims["downtime"]
    lines += [f"Paper ({claim['source']}): {claim['claim']}.", ""]
    rows = []
    for name, paper in claim["rows"].items():
        by_mode = {}
        for record in records:
            if (record.get("app") or figures._app(record["service"])) == paper["app"]:
                by_mode.setdefault(record["mode"], []).append(record["phases"]["migration"]["seconds"])
        if "layered" not in by_mode or "cold" not in by_mode:
            rows.append([name, f"{paper['downtime_s']} s", "-", "-", "not measured"])
            continue
        layered = sum(by_mode["layered"]) / len(by_mode["layered"])
        cold = sum(by_mode["cold"]) / len(by_mode["cold"])
        verdict = "holds" if layered <= paper["downtime_s"] else "does not hold"
        rows.append([name, f"{paper['downtime_s']} s", f"{layered:.2f} s (n={len(by_mode['layered'])})",
                     f"{cold:.2f} s (n={len(by_mode['cold'])})", verdict])
    lines += _table(["service", "paper: layered downtime", "here: layered", "here: cold", "verdict"], rows)
    return lines


def seed004(tables, claims) -> list[str]:
    records = [r for r in figures._migration_records(tables["migrations"]) if r.get("ok")]
    claim = claims["migration_time"]
    lines = ["## Seed 004: event-driven platform", "", f"Paper ({claim['source']}): {claim['claim']}.", ""]
    kinds = {"stateful": [], "stateless": []}
    for record in records:
        if record.get("planner") in ("green-first", "eco"):
            kinds["stateful" if record.get("carries_state") else "stateless"].append(
                record["phases"]["migration"]["seconds"])
    rows = []
    for kind, (low, high) in (("stateful", claim["stateful_s"]), ("stateless", claim["stateless_s"])):
        values = kinds[kind]
        if not values:
            rows.append([kind, f"{low}-{high} s", "-", "not measured"])
            continue
        mean = sum(values) / len(values)
        verdict = "holds" if mean <= high else "does not hold"
        rows.append([kind, f"{low}-{high} s", f"{mean:.2f} s (n={len(values)})", verdict])
    return lines + _table(["migration", "paper", "here (mean)", "verdict"], rows)


def seed000(aggregated, claims) -> list[str]:
    claim = claims["response_time"]
    lines = ["## Seed 000: ShareOn (testbed)", "", f"Paper ({claim['source']}): {claim['claim']}.", ""]
    header = ["scenario", "service", "against", "shareon", "other", "shareon lower by", "intervals overlap", "verdict"]
    rows = _comparison(aggregated, "e2e_mean_ms", "shareon", claim["against"], claim["lower_pct"])
    return lines + (_table(header, rows) if rows else ["not measured: the runs have no ShareOn trial", ""])


def wire_section(run_dirs, exclude=()) -> list[str]:
    """The client's downtime next to the wire's, per trial and service; the path after handovers."""
    from analysis import wire
    from testbed.events import read_events

    rows, paths, notes = [], [], []
    for run in run_dirs:
        trials = json.loads((Path(run) / "trials.json").read_text()) if (Path(run) / "trials.json").exists() else []
        for trial in trials:
            if figures.excluded(figures.trial_label(Path(run).name, trial["scenario"], trial["planner"],
                                                    trial["repetition"]), exclude):
                continue
            directory = Path(trial["dir"])
            if not directory.is_dir():
                directory = Path(run) / "trials" / trial["scenario"] / trial["planner"] / f"rep{trial['repetition']}"
            events = read_events(directory / "events.jsonl") if (directory / "events.jsonl").exists() else []
            for config in sorted(directory.glob("mu-*.json")):
                user = config.stem[3:]
                compared = wire.compare_trial(directory, user)
                label = f"{trial['scenario']}/{trial['planner']}/rep{trial['repetition']}"
                label = f"{Path(run).name}/{label}" if len(run_dirs) > 1 else label
                for service in sorted({c["service"] for c in compared}):
                    mine = [c for c in compared if c["service"] == service]
                    agree = sum(c["agree"] for c in mine)
                    explained = sum(c["explained"] for c in mine)
                    worst = max((abs(c["difference_s"]) for c in mine if c["difference_s"] is not None), default=0)
                    rows.append([label, service, f"{sum(c['client_s'] for c in mine):.3f}",
                                 f"{sum(c['wire_s'] or 0 for c in mine):.3f}", f"{agree}/{len(mine)}",
                                 f"{explained}/{len(mine)}", f"{1e3 * worst:.1f}"])
                    notes += [f"{label} {service}: outage at {c['client_start']:.2f}: client {c['client_s']:.3f} s, "
                              f"wire {c['wire_s'] if c['wire_s'] is None else round(c['wire_s'], 3)} s: "
                              f"{c['reason']}" for c in mine if not c["agree"]]
                for handover in wire.path_after_handovers(directory, user, events):
                    paths.append([label, user, handover["to"], handover["first_reply_via"],
                                  "yes" if handover["as_expected"] else "no"])
    if not rows:
        return ["## Downtime on the wire", "", "not measured: no captures in these runs", ""]
    lines = ["## Downtime on the wire", "",
             f"The client's outages next to the same outages seen in the user's packet capture (agree: within "
             f"{1e3 * wire.AGREE_S:.0f} ms; explained: agreeing, or differing for a stated reason with the "
             f"outages' ends within {1e3 * wire.AGREE_S:.0f} ms).", ""]
    lines += _table(["trial", "service", "client downtime (s)", "wire downtime (s)", "outages agreeing",
                     "agreeing or explained", "largest difference (ms)"], rows)
    if notes:
        lines += ["Outages that do not agree, and why:", ""] + [f"* {n}" for n in notes] + [""]
    if paths:
        lines += ["After every handover, the base station whose radio interface carried the first reply:", ""]
        lines += _table(["trial", "user", "handed over to", "first reply via", "as expected"], paths)
    return lines


def _runs_section(run_dirs, exclude=()) -> list[str]:
    rows = []
    for run in run_dirs:
        status = json.loads((Path(run) / "status.json").read_text()) if (Path(run) / "status.json").exists() else {}
        environment = json.loads((Path(run) / "environment.json").read_text()) \
            if (Path(run) / "environment.json").exists() else {}
        trials = json.loads((Path(run) / "trials.json").read_text()) if (Path(run) / "trials.json").exists() else []
        rows.append([Path(run).name, status.get("state", "?"), len(trials), environment.get("link_backend", "?"),
                     environment.get("kernel", "?"), environment.get("docker", "?"), environment.get("criu", "?")])
    lines = ["## Runs", ""] + _table(["run", "status", "trials", "link backend", "kernel", "Docker", "CRIU"], rows)
    if exclude:
        lines += ["Trials left out (`--exclude`): " + ", ".join(f"`{pattern}`" for pattern in exclude), ""]
    return lines


def write_report(run_dirs, out: Path, exclude=()) -> list[Path]:
    """Write report.md and report.html (with the figures inline) into ``out``, without the
    trials ``exclude`` names (``figures.load_runs``)."""
    claims = yaml.safe_load(CLAIMS.read_text())
    tables = figures.load_runs(run_dirs, exclude)
    out.mkdir(parents=True, exist_ok=True)
    _, aggregated = figures.metrics(tables) if not tables["requests"].empty else ([], [])
    figure_paths = figures.make_all(run_dirs, out / "figures", exclude)
    lines = ["# Reproduction report", "",
             "Each claim of the seeds next to what these runs measured: mean over trials, [95 % interval] "
             "where there are two trials or more.  Paper numbers: analysis/claims.yaml.", ""]
    lines += _runs_section(run_dirs, exclude)
    lines += seed002(tables, aggregated, claims["seed002"])
    lines += seed001(tables, claims["seed001"])
    lines += seed004(tables, claims["seed004"])
    lines += seed000(aggregated, claims["seed000"])
    lines += wire_section(run_dirs, exclude)
    lines += ["## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in figure_paths if p.suffix == ".png"]
    markdown = "\n".join(lines) + "\n"
    (out / "report.md").write_text(markdown)
    (out / "report.html").write_text(_html(markdown, out))
    return [out / "report.md", out / "report.html"]


def _html(markdown: str, base: Path) -> str:
    """The report as one HTML file, figures embedded (it can be mailed or archived alone)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    for png in sorted((base / "figures").glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode()
        body = body.replace(f'src="figures/{png.name}"', f'src="data:image/png;base64,{data}"')
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px}"
             "img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>Reproduction report</title>" \
           f"<style>{style}</style></head><body>{body}</body></html>\n"

