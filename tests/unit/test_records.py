"""Downtime intervals and counter checks on constructed request logs."""

import pytest

from testbed.records import counter_breaks, outages


def ok(sent, received, counter):
    return {"ok": True, "sent": sent, "received": received, "counter": counter}


def fail(sent, received, error="timeout"):
    return {"ok": False, "sent": sent, "received": received, "error": error}


def test_one_outage_from_first_failure_to_first_success():
    log = [ok(0.0, 0.01, 1), ok(0.01, 0.02, 2), fail(0.02, 0.50, "ConnectionResetError"),
           fail(0.51, 0.52), fail(0.52, 0.53), ok(0.53, 0.54, 3), ok(0.54, 0.55, 4)]
    [outage] = outages(log)
    assert outage.start == 0.02 and outage.end == 0.53 and outage.failures == 3
    assert outage.seconds == pytest.approx(0.51)


def test_parallel_attempts_that_lose_do_not_open_an_outage():
    # recovery: attempts at 1.00 and 1.01; the first wins (reply at 1.05), the
    # second times out later; the next steady request at 1.05 is fine.
    log = [ok(0.9, 0.91, 1), fail(0.95, 0.99), ok(1.00, 1.05, 2), fail(1.01, 1.6),
           ok(1.05, 1.06, 3)]
    assert [(o.start, o.end) for o in outages(log)] == [(0.95, 1.00)]


def test_error_replies_are_not_downtime():
    log = [ok(0, 0.1, 1), fail(0.1, 0.2, "error: bad_image: not an image"), ok(0.2, 0.3, 2)]
    assert outages(log) == []


def test_outage_still_open_at_the_end():
    [outage] = outages([ok(0, 0.1, 1), fail(0.1, 0.4), fail(0.4, 0.9)])
    assert (outage.start, outage.end) == (0.1, 0.9)


def test_counter_breaks():
    assert counter_breaks([ok(0, 0.1, 1), ok(0.1, 0.2, 2), ok(0.2, 0.3, 3)]) == []
    assert counter_breaks([ok(0, 0.1, 5), fail(0.1, 0.2), ok(0.2, 0.3, 1)]) == [(5, 1)]
    assert counter_breaks([ok(0, 0.1, 1), ok(0.1, 0.2, 3)]) == [(1, 3)]


def test_an_outage_under_a_radio_handover_starts_when_the_link_went_down():
    log = [ok(0.0, 0.1, 1), fail(0.1, 0.25, "interrupted: radio link down"), fail(0.26, 0.26, "connect: ENETUNREACH"),
           ok(0.75, 0.85, 2)]
    [outage] = outages(log)
    assert (outage.start, outage.end) == (0.25, 0.75)


def request(trial, service, sent, ok_, counter=None, e2e=2.0):
    scenario, planner, repetition = trial
    return {"scenario": scenario, "planner": planner, "repetition": repetition, "user": "mu", "service": service,
            "app": "counter", "sent": sent, "received": sent + e2e / 1e3, "ok": ok_, "counter": counter,
            "e2e_ms": e2e if ok_ else None, "proc_ms": 0.0 if ok_ else None, "tx_ms": e2e if ok_ else None,
            "error": None if ok_ else "timeout"}


def trial_log(trial, start, downtime, total=10.0, step=0.05):
    """Requests every ``step`` s from ``start`` for ``total`` s, down for ``downtime`` s in the middle."""
    rows, counter, t = [], 0, start
    while t < start + total:
        down = start + total / 2 <= t < start + total / 2 + downtime
        counter += 0 if down else 1
        rows.append(request(trial, "svc", t, not down, None if down else counter))
        t = round(t + step, 6)
    return rows


def write_run(run_dir, rows):
    import pandas as pd

    run_dir.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(run_dir / "requests.parquet", index=False)
    return run_dir


def test_metrics_are_per_trial_then_aggregated_with_a_student_t_interval(tmp_path):
    """Three repetitions with 0.5, 1.0 and 1.5 s of downtime: mean 1.0 s, and the 95 %
    interval t(0.975, 2) x s / sqrt(3) = 4.303 x 0.5 / 1.732 around it."""
    from analysis.figures import load_runs, metrics

    rows = []
    for repetition, downtime in ((1, 0.5), (2, 1.0), (3, 1.5)):
        rows += trial_log(("s", "nearest", repetition), 1000.0 * repetition, downtime)
    rows += trial_log(("s", "cloud", 1), 5000.0, 0.0)
    run = write_run(tmp_path / "run", rows)
    trials, aggregated = metrics(load_runs([run]))
    per_trial = {(t["planner"], t["repetition"]): t["downtime_total_s"] for t in trials}
    assert per_trial[("nearest", 1)] == pytest.approx(0.5) and per_trial[("nearest", 3)] == pytest.approx(1.5)
    nearest = next(a for a in aggregated if a["planner"] == "nearest")["downtime_total_s"]
    half = 4.302652729911275 * 0.5 / 3 ** 0.5
    assert nearest["mean"] == pytest.approx(1.0) and nearest["n"] == 3
    assert nearest["ci95"] == pytest.approx([1.0 - half, 1.0 + half])
    cloud = next(a for a in aggregated if a["planner"] == "cloud")
    assert cloud["downtime_total_s"]["mean"] == 0.0                        # measured: no downtime
    assert cloud["downtime_total_s"]["ci95"] is None and cloud["downtime_total_s"]["interval_missing"] == "one trial"


def test_a_metric_that_cannot_be_computed_is_missing_with_its_reason(tmp_path):
    from analysis.figures import load_runs, metrics

    rows = [request(("s", "random", 1), "svc", 10.0 + i, False) for i in range(5)]
    _, [row] = metrics(load_runs([write_run(tmp_path / "run", rows)]))
    assert row["e2e_mean_ms"]["mean"] is None and row["e2e_mean_ms"]["missing"] == "no successful request"
    assert row["requests_failed"]["mean"] == 5


def test_runs_an_hour_apart_keep_their_own_timelines(tmp_path):
    """Two runs of the same trial, the first ending on a few failed requests: each has its own
    downtime, and the hour between them is nobody's outage."""
    from analysis.figures import load_runs, make_all, metrics

    first = trial_log(("s", "nearest", 1), 1000.0, 1.0)
    first += [request(("s", "nearest", 1), "svc", 1010.0 + 0.05 * i, False) for i in range(4)]   # ends down
    second = trial_log(("s", "nearest", 1), 1000.0 + 3600.0, 2.0)
    runs = [write_run(tmp_path / "a", first), write_run(tmp_path / "b", second)]
    trials, [row] = metrics(load_runs(runs))
    assert sorted(round(t["downtime_total_s"], 3) for t in trials) == [pytest.approx(1.152), pytest.approx(2.0)]    # still down at its end: until the last answer was due
    assert row["downtime_total_s"]["mean"] == pytest.approx((1.152 + 2.0) / 2)
    assert row["downtime_total_s"]["n"] == 2
    paths = make_all(runs, tmp_path / "figures")
    import pandas as pd

    fig5 = pd.read_csv(tmp_path / "figures" / "figure_5_downtime.csv")
    assert fig5["downtime_s"].iloc[0] == pytest.approx((1.152 + 2.0) / 2)
    assert any(p.name == "figure_6_timeline.png" for p in paths)


def test_an_excluded_trial_leaves_every_table_and_a_pattern_naming_none_is_an_error(tmp_path):
    """A trial re-run after a fix supersedes the old one: ``exclude`` drops the old run's
    trial by its label; a mistyped pattern is an error naming it, not a silent no-op."""
    from analysis.figures import UnknownTrial, load_runs, metrics

    old = trial_log(("s", "random", 1), 1000.0, 3.0) + trial_log(("s", "nearest", 1), 2000.0, 1.0)
    runs = [write_run(tmp_path / "old", old), write_run(tmp_path / "new", trial_log(("s", "random", 1), 5000.0, 0.5))]
    _, pooled = metrics(load_runs(runs))
    assert next(a for a in pooled if a["planner"] == "random")["downtime_total_s"]["n"] == 2
    tables = load_runs(runs, exclude=["old/*/random/rep1"])
    assert set(zip(tables["requests"]["run"], tables["requests"]["planner"])) == {("old", "nearest"), ("new", "random")}
    _, kept = metrics(tables)
    random = next(a for a in kept if a["planner"] == "random")["downtime_total_s"]
    assert random["n"] == 1 and random["mean"] == pytest.approx(0.5)
    with pytest.raises(UnknownTrial, match="old/s/randon/rep1"):
        load_runs(runs, exclude=["old/s/randon/rep1"])


def test_report_with_a_mistyped_exclude_fails_naming_it_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from testbed.cli import app

    run = write_run(tmp_path / "run", trial_log(("s", "nearest", 1), 1000.0, 1.0))
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "report"),
                                      "--exclude", "run/s/nearst/*"])
    assert result.exit_code == 2 and "run/s/nearst/*" in result.output and "run/s/nearest/rep1" in result.output
    assert not (tmp_path / "report").exists()


def test_an_error_is_one_line_however_long_its_paths():
    """The CLI does not wrap an error at the console's width: a path or phrase in it stays
    one string for whoever greps the output (a sweep's "holds another sweep" was split)."""
    import typer

    from testbed.cli import console, fail

    message = "/tmp/" + "d" * 120 + "/sweep: holds another sweep (its experiment, grid, repeat differ)"
    with console.capture() as captured, pytest.raises(typer.Exit):
        fail(message)
    assert message in captured.get()


def test_an_outage_the_checkpoint_size_probe_caused_is_counted_apart():
    """Seed 002 counts the downtime of handovers and migrations; the probe of t0 froze the
    service (0.1 s as a rule, 1.4 s once measured here): its outage is ``downtime_probe_s``."""
    import json

    import pandas as pd

    from testbed.records import trial_metrics

    trial = ("s", "orchestrated", 1)
    rows = trial_log(trial, 1000.0, 1.0)                                  # the migration: 1005-1006
    for row in rows:                                                       # and 1001.0-1001.5: the probe's
        if 1001.0 <= row["sent"] < 1001.5:
            row.update(ok=False, counter=None, error="timeout")
    probe = {"scenario": "s", "planner": "orchestrated", "repetition": 1, "t": 1002.0, "src": "agent:edge1",
             "kind": "checkpoint.probe", "data": json.dumps({"service": "svc", "checkpoint_seconds": [1.2, 0.1],
                                                             "window": [1001.2, 1001.9]})}
    [metrics] = trial_metrics(pd.DataFrame(rows), pd.DataFrame([probe]), pd.DataFrame())
    assert metrics["downtime_probe_s"] == pytest.approx(0.5)
    assert metrics["downtime_total_s"] == pytest.approx(1.0) and metrics["outages"] == 1
