"""Short experiments end to end: seed 002's qualitative results, repeatability, figures, Ctrl-C."""

from __future__ import annotations

import json
import statistics
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis.figures import make_all
from testbed.records import load, outages, requests_frame

from conftest import run_experiment

pytestmark = [pytest.mark.experiment, pytest.mark.network, pytest.mark.docker, pytest.mark.criu]
ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "experiments" / "default.yaml"
QUICK = ROOT / "experiments" / "seed002-quick.yaml"
PLANNERS = {"cloud", "random", "nearest", "orchestrated"}


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """seed002-quick's Simple scenario: four planners, three repetitions of 40 s."""
    return run_experiment(QUICK, tmp_path_factory.mktemp("paper"), ["scenarios={simple: {}}"])


def aggregate_of(run_dir) -> dict[str, dict]:
    return {row["planner"]: row for row in json.loads((run_dir / "summary.json").read_text())["aggregate"]}


def test_four_planners_show_the_papers_results(paper_run):
    """Seed 002's claims in direction, over three repetitions of one handover each: the
    orchestrated planner's median trial has less downtime than every trial of the nearest
    planner (and its mean less than nearest's), and less than the random planner's whenever that
    one migrated (the paper's random planner may keep the old server, which costs no migration
    downtime in a trial of one handover; over the full experiment's many handovers its total is
    compared); the lowest E2E of the three; the cloud the highest.  Counters intact throughout.
    Medians, not intervals: on this VM one trial in a few has a slow restore (1.4 s where 0.35 s
    is usual: `docker start --checkpoint` copying the checkpoint), which widens three trials' interval past
    any claim."""
    summary = aggregate_of(paper_run)
    assert set(summary) == PLANNERS
    e2e = {p: summary[p]["e2e_mean_ms"]["mean"] for p in summary}
    downtime = {p: summary[p]["downtime_total_s"] for p in summary}
    assert max(e2e, key=e2e.get) == "cloud", e2e
    assert min(("random", "nearest", "orchestrated"), key=e2e.get) == "orchestrated", e2e
    assert downtime["orchestrated"]["n"] == downtime["nearest"]["n"] == 3
    assert downtime["orchestrated"]["mean"] < downtime["nearest"]["mean"], downtime
    trials = json.loads((paper_run / "summary.json").read_text())["trials"]
    per_trial = {p: [t["downtime_total_s"] for t in trials if t["planner"] == p] for p in ("orchestrated", "nearest")}
    typical = statistics.median(per_trial["orchestrated"])
    assert typical < min(per_trial["nearest"]), per_trial
    assert len(trials) == 12
    for trial in trials:
        assert trial["handovers"] == 1 and trial["counter_breaks"] == 0, trial
        if trial["planner"] in ("cloud", "random"):
            assert trial["migrations_ok"] <= (0 if trial["planner"] == "cloud" else 1), trial
        else:
            assert trial["migrations_ok"] == 1, trial
    migrated = [t["downtime_total_s"] for t in trials if t["planner"] == "random" and t["migrations_ok"]]
    assert all(typical < d for d in migrated), (migrated, per_trial)
    # the counter never went backwards or skipped, checked again from the raw records
    requests = load(paper_run, "requests")
    for key, rows in requests.groupby(["planner", "repetition"]):
        counters = rows[rows["ok"]].sort_values("sent")["counter"].tolist()
        assert counters == list(range(1, len(counters) + 1)), key
    assert json.loads((paper_run / "status.json").read_text())["state"] == "complete"


@pytest.mark.slow     # holds in some runs only (docs/FIDELITY.md): not a gate of the default run
def test_the_simulator_reproduces_the_emulated_run_with_its_calibration(paper_run, tmp_path):
    """Issue 18's cross-validation: the emulated run, simulated again with the calibration fitted
    from it, per planner (medians across the three repetitions of each trial's mean E2E and total
    downtime: an emulated trial now and then holds a timeout behind a pre-copy that the model does
    not have): E2E within 15 % for every planner, downtime within 15 % for cloud, random and
    nearest.  The orchestrated planner's downtime is held to 50 % only: its plan overlaps the
    migration with the handover by its own estimate of the migration, which is learned from other
    inputs in the two (docs/FIDELITY.md)."""
    from analysis.sim_validation import validate

    sim_dir, table = validate(paper_run, run_root=tmp_path, log=lambda _: None)
    assert set(table["planner"]) == PLANNERS and (table["trials_simulated"] == 3).all()
    rows = {row.planner: row for row in table.itertuples()}
    for planner, row in rows.items():
        assert abs(row.e2e_ms_error) <= 0.15, (planner, row)
        limit = 0.5 if planner == "orchestrated" else 0.15
        assert abs(row.downtime_s_error) <= limit, (planner, row)
    assert (sim_dir / "validation.md").exists() and (sim_dir / "aggregates.parquet").exists()


def test_the_record_holds_configuration_environment_trials_and_decisions(paper_run):
    config = yaml.safe_load((paper_run / "config.yaml").read_text())
    assert config["topology"]["links"]["edge_edge"]["delay"] == "50ms" and config["repeat"] == 3
    environment = json.loads((paper_run / "environment.json").read_text())
    assert environment["link_backend"] in ("netem", "delayline") and environment["criu"]
    trials = json.loads((paper_run / "trials.json").read_text())
    assert {(t["planner"], t["repetition"]) for t in trials} == {(p, r) for p in PLANNERS for r in (1, 2, 3)}
    assert len({t["seed"] for t in trials if t["planner"] == "nearest"}) == 3        # a seed per repetition
    network = json.loads((paper_run / "trials" / "simple" / "orchestrated" / "rep2" / "network.json").read_text())
    edge_edge = next(link for link in network["links"] if link["name"] == "edge1-edge2")
    assert edge_edge["delay"] == pytest.approx(0.05) and edge_edge["bandwidth"] == 100
    decisions = load(paper_run, "decisions")
    orchestrated = decisions[decisions["planner"] == "orchestrated"]
    assert set(orchestrated["repetition"]) == {1, 2, 3}
    estimates = json.loads(orchestrated.iloc[0]["estimates"])
    assert {"e2e_change_s", "downtime_s", "migration", "t_ho", "plan"} <= set(estimates)
    migrations = load(paper_run, "migrations")
    assert set(migrations["decision"].dropna()) <= set(decisions["id"])
    computed = load(paper_run, "events")
    measured = computed[computed["kind"] == "controller.compute"]
    assert len(measured) == 4 * 12                                   # every server, every trial: C_s measured


def test_figures_show_what_the_records_hold(paper_run, tmp_path):
    paths = make_all([paper_run], tmp_path)
    names = {p.name for p in paths}
    for figure in ("figure_4_e2e_breakdown", "figure_5_downtime", "figure_6_timeline"):
        assert {f"{figure}.png", f"{figure}.pdf", f"{figure}.csv"} <= names
    assert "table_I_checkpoints.csv" in names
    requests = load(paper_run, "requests")
    ok = requests[requests["ok"]]
    fig4 = pd.read_csv(tmp_path / "figure_4_e2e_breakdown.csv")
    for row in fig4.itertuples():
        per_trial = ok[(ok.planner == row.planner) & (ok.service == row.service)].groupby("repetition")["e2e_ms"].mean()
        assert row.e2e_ms == pytest.approx(per_trial.mean())                 # the mean of the trials' means
        assert row.processing_ms + row.transmission_ms == pytest.approx(row.e2e_ms, rel=1e-6)
        assert row.error_low_ms < row.e2e_ms < row.error_high_ms and row.trials == 3
    fig5 = pd.read_csv(tmp_path / "figure_5_downtime.csv")
    summary = aggregate_of(paper_run)
    for row in fig5.itertuples():
        assert row.downtime_s == pytest.approx(summary[row.planner]["downtime_total_s"]["mean"])
        assert [row.ci_low_s, row.ci_high_s] == pytest.approx(summary[row.planner]["downtime_total_s"]["ci95"])
    fig6 = pd.read_csv(tmp_path / "figure_6_timeline.csv")
    nearest = requests[(requests.planner == "nearest") & (requests.repetition == 1)]
    found = outages(requests_frame(nearest.to_dict("records")))
    shaded = fig6[fig6.planner == "nearest"]
    assert len(shaded) >= 2        # nearest: the handover, then the migration
    for row in shaded.itertuples():
        assert any(o.start == pytest.approx(row.start_unix) and o.end == pytest.approx(row.end_unix) for o in found)
    table = pd.read_csv(tmp_path / "table_I_checkpoints.csv")
    migrations = load(paper_run, "migrations")
    records = [json.loads(r) for r in migrations["record"] if json.loads(r).get("ok")]
    assert table.iloc[0]["migrations"] == len(records)
    pre = sum(r["sizes"]["pre_checkpoint"] for r in records) / len(records)
    assert table.iloc[0]["checkpoint of pre-migration (MB)"] == pytest.approx(round(pre / 1e6, 2))
    assert table.iloc[0]["reduction, sent (%)"] > 99.0
    assert table.iloc[0]["Docker image (MB)"] > 50


def test_the_report_says_which_claims_hold_and_sees_downtime_on_the_wire(paper_run, tmp_path):
    from analysis.report import write_report

    markdown, html = write_report([paper_run], tmp_path)
    text = markdown.read_text()
    downtime = text[text.index("**Downtime**"):text.index("**E2E delay**")]
    verdicts = [line.split("|")[-2].strip() for line in downtime.splitlines() if line.startswith("| simple")]
    assert len(verdicts) == 2 and verdicts[1].startswith("holds"), downtime        # against nearest
    wire = text[text.index("## Downtime on the wire"):]
    wire = wire[:wire.index("After every handover")]
    rows = [line.split("|") for line in wire.splitlines() if line.startswith("| simple/")]
    assert len(rows) >= 12
    explained = [row[6].strip() for row in rows if len(row) > 7]
    assert len(explained) == len(rows)
    for cell in explained:            # "k/n": every outage agrees within 20 ms, or its stated reason holds
        k, n = map(int, cell.split("/"))
        assert k == n, wire
    assert "data:image/png;base64," in html.read_text()


def handovers_and_decisions(run_dir):
    events = load(run_dir, "events")
    handovers = [(r.planner, json.loads(r.data)["from"], json.loads(r.data)["to"])
                 for r in events[events.kind == "handover.end"].itertuples()]
    decisions = []
    for row in load(run_dir, "decisions").itertuples():
        for action in json.loads(row.actions):
            decisions.append((row.planner, action["type"], action.get("dest"), action.get("target")))
    return handovers, decisions


def test_rerun_from_the_record_repeats_handovers_and_decisions(tmp_path):
    first = run_experiment(DEFAULT, tmp_path / "a", ["duration=30s", "planners=[random, orchestrated]"])
    again = run_experiment(first / "config.yaml", tmp_path / "b")
    one, two = handovers_and_decisions(first), handovers_and_decisions(again)
    assert one == two
    assert one[0] and any(d[0] == "random" for d in one[1]) and any(d[0] == "orchestrated" for d in one[1])


def test_ctrl_c_stops_cleanly_and_marks_the_run_incomplete(tmp_path, no_leftovers):
    process = subprocess.Popen([str(ROOT / ".venv" / "bin" / "testbed"), "run", str(DEFAULT), "--runs", str(tmp_path),
                                "--no-figures"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("*/trials/default/cloud/rep1/requests-mu.jsonl")):
        time.sleep(0.5)
    time.sleep(2)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    [run_dir] = list(tmp_path.iterdir())
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "incomplete" and status["reason"] == "interrupted"
    assert (run_dir / "config.yaml").exists()


def test_shareon_follows_the_user_on_the_real_network(tmp_path):
    """Seed 000's planner end to end: its periodic decision moves the counter after the
    user twice (edge2, then edge3), and the state survives both moves."""
    run_dir = run_experiment(DEFAULT, tmp_path, ["planners=[shareon]"])
    [row] = json.loads((run_dir / "summary.json").read_text())["trials"]
    assert row["planner"] == "shareon" and row["handovers"] == 2
    assert row["migrations_ok"] == 2 and row["migrations_failed"] == 0 and row["counter_breaks"] == 0
    moves = [(a["type"], a["dest"]) for actions in load(run_dir, "decisions")["actions"] for a in json.loads(actions)]
    assert moves == [("Migrate", "edge2"), ("Migrate", "edge3")]


def test_red_node_green_first_spreads_its_services_and_eco_packs_them(tmp_path):
    """Seed 004 end to end: edge1's half core is saturated by the user's object detection;
    the Resource Monitor sees it over 50 % CPU, and at the periodic check Algorithm I
    (green-first) sends each service to the least-loaded green node while Algorithm II
    (eco) packs both onto the busiest node they fit on.  State survives every move."""
    run_dir = run_experiment(ROOT / "experiments" / "red-node.yaml", tmp_path)
    for row in json.loads((run_dir / "summary.json").read_text())["trials"]:
        assert row["handovers"] == 0 and row["counter_breaks"] == 0, row
        assert row["migrations_ok"] == 1 and row["migrations_failed"] == 0, row
    moves: dict[str, dict[str, str]] = {}
    seen: dict[str, dict] = {}           # the loads each planner decided on
    for decision in load(run_dir, "decisions").itertuples():
        servers = json.loads(decision.inputs)["servers"]
        assert decision.trigger == "tick" and servers["edge1"]["cpu_util"] > 0.5, servers
        assert all(servers[edge]["cpu_util"] < 0.5 for edge in ("edge2", "edge3")), servers
        moves.setdefault(decision.planner, {}).update(
            {action["service"]: action["dest"] for action in json.loads(decision.actions)})
        seen.setdefault(decision.planner, {n: round(servers[n]["cpu_util"], 2) for n in ("edge2", "edge3")})
    # idle nodes differ by noise: the planners compare loads at 1 % resolution, then names
    least = min(seen["green-first"], key=lambda n: (seen["green-first"][n], n))
    busiest = min(seen["eco"], key=lambda n: (-seen["eco"][n], n))
    assert moves == {"green-first": {"counter-mu": least, "detect1-mu": ({"edge2", "edge3"} - {least}).pop()},
                     "eco": {"counter-mu": busiest, "detect1-mu": busiest}}
    reports, requests = load(run_dir, "server_reports"), load(run_dir, "requests")
    for planner, dests in moves.items():
        mine = reports[reports.planner == planner].sort_values("t")
        assert mine[mine.server == "edge1"].iloc[-1]["cpu_utilisation"] < 0.05   # the load left edge1...
        at_dest = [json.loads(body)["services"].get("detect1-mu", {}).get("cpu_cores") or 0.0
                   for body in mine[mine.server == dests["detect1-mu"]]["body"]]
        assert max(at_dest) > 0.1, at_dest                                      # ...and arrived there
    for migration in load(run_dir, "migrations").itertuples():
        served = requests[(requests.planner == migration.planner) & (requests.service == migration.service)
                          & requests.ok].sort_values("sent")
        assert json.loads(served.iloc[-1]["endpoint"]) == json.loads(migration.record)["new_endpoint"]
