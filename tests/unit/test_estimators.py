"""Eq. (4) and eq. (5) against values computed by hand; psi and rho learned from history."""

import random

import pytest

from testbed.controller.estimators import (MigrationTimeModel, PathEstimate, downtime, e2e, e2e_change,
                                           transfer_seconds, warm_transfer_seconds, wireless_rate_mbps)


def test_eq4_by_hand():
    # proc 200 ms on C_s = 1; new server C_s' = 2 -> 100 ms saved.
    # task 1 MB: 8 Mbit at 10 Mbit/s = 0.8 s now, at 40 Mbit/s = 0.2 s -> 0.6 s saved.
    # RTT 300 ms now, 100 ms new -> 0.2 s saved.            total: 0.9 s
    now = PathEstimate(bandwidth_mbps=10, rtt_s=0.3, compute=1.0)
    new = PathEstimate(bandwidth_mbps=40, rtt_s=0.1, compute=2.0)
    assert e2e_change(0.2, 1e6, now, new) == pytest.approx(0.1 + 0.6 + 0.2)
    assert e2e(0.2, 1.0, 1e6, now) - e2e(0.2, 1.0, 1e6, new) == pytest.approx(0.9)
    assert e2e_change(0.2, 1e6, new, now) == pytest.approx(-0.2 - 0.6 - 0.2)   # moving back: negative


def test_transfer_time_by_hand():
    # 100 kB at 100 Mbit/s, RTT 100 ms: handshake 0.1; windows 14480, 28960, 57920 bytes
    # (3 RTTs, 101360 > 100000 so the third window finishes it): 0.1 + 2 RTT + rest at line rate
    sent_in_windows = 14480 + 28960
    expected = 0.1 + 2 * 0.1 + (100e3 - sent_in_windows) / 12.5e6 + 0.05
    assert transfer_seconds(100e3, 100, 0.1) == pytest.approx(expected)
    # a large transfer is dominated by the line rate
    big = transfer_seconds(500e6, 100, 0.1)
    assert 500e6 / 12.5e6 < big < 500e6 / 12.5e6 + 1.5


def test_a_warm_final_transfer_skips_the_handshake_and_slow_start():
    # 1 MB at 100 Mbit/s, RTT 100 ms on a window already open: 0.08 s at line rate + 0.05 s trip
    assert warm_transfer_seconds(1e6, 100, 0.1) == pytest.approx(0.08 + 0.05)
    assert transfer_seconds(1e6, 100, 0.1) > 0.5          # fresh: handshake and four slow-start rounds
    model = MigrationTimeModel(default_psi=2e-9, default_rho=1e-9, default_setup=0.3, warm_final_transfer=True)
    est = model.estimate("edge1", "edge2", image_bytes=100e6, full_bytes=50e6, delta_bytes=1e6,
                         bandwidth_mbps=100, one_way_s=0.05, compute_source=1.0, compute_dest=1.0)
    assert est["transfer_s"] == pytest.approx(0.13)
    assert est["pre_transfer_s"] == pytest.approx(transfer_seconds(50e6, 100, 0.1))   # the pre-copy opens it


def test_eq5_by_hand():
    model = MigrationTimeModel(default_psi=2e-9, default_rho=1e-9, default_setup=0.3)
    est = model.estimate("edge1", "edge2", image_bytes=100e6, full_bytes=50e6, delta_bytes=1e6,
                         bandwidth_mbps=100, one_way_s=0.05, compute_source=1.0, compute_dest=2.0)
    assert est["checkpoint_s"] == pytest.approx(2e-9 * 100e6)                     # 0.2 s
    assert est["pre_transfer_s"] == pytest.approx(transfer_seconds(50e6, 100, 0.1))
    assert est["transfer_s"] == pytest.approx(transfer_seconds(1e6, 100, 0.1))
    assert est["restore_s"] == pytest.approx(1e-9 * (100e6 + 50e6 + 1e6) / 2.0)   # 0.0755 s
    assert est["pre_migration_s"] == pytest.approx(0.3 + 0.2 + est["pre_transfer_s"])
    assert est["migration_s"] == pytest.approx(0.2 + est["transfer_s"] + 0.0755)
    assert est["total_s"] == pytest.approx(est["pre_migration_s"] + est["migration_s"])
    assert downtime(est["migration_s"], 0.5) == pytest.approx(max(est["migration_s"], 0.5))
    assert downtime(2.0, 0.5) == 2.0 and downtime(None, None) == 0.0


def test_a_paced_pre_copy_is_estimated_at_its_share_of_the_path():
    model = MigrationTimeModel(default_psi=2e-9, default_rho=1e-9, default_setup=0.3, precopy_share=0.5)
    est = model.estimate("edge1", "edge2", image_bytes=100e6, full_bytes=50e6, delta_bytes=1e6,
                         bandwidth_mbps=100, one_way_s=0.05, compute_source=1.0, compute_dest=1.0)
    assert est["pre_transfer_s"] == pytest.approx(transfer_seconds(50e6, 50, 0.1))    # about 8 s, not 4
    assert est["transfer_s"] == pytest.approx(transfer_seconds(1e6, 100, 0.1))       # the downtime's: full rate


def test_psi_and_rho_converge_on_recorded_checkpoints():
    rng = random.Random(5)
    model = MigrationTimeModel(default_psi=2e-9, default_rho=1.5e-9, default_setup=0.35)
    true_psi, true_rho = 3.2e-9, 1.7e-9
    errors = []
    for n in range(1, 201):
        size, compute = rng.uniform(5e6, 600e6), rng.choice([1.0, 1.5])
        model.observe_checkpoint("edge1", true_psi * size / compute * rng.gauss(1, 0.05), size, compute)
        model.observe_restore("edge2", true_rho * size / compute * rng.gauss(1, 0.05), size, compute)
        errors.append(abs(model.psi("edge1") - true_psi) / true_psi)
    assert errors[-1] < 0.01 and errors[-1] < errors[2]
    assert model.rho("edge2") == pytest.approx(true_rho, rel=0.01)
    assert model.psi("cloud") == model.default_psi          # no history: the prior


def test_wireless_rate_grows_with_rssi():
    assert wireless_rate_mbps(-95) == 0.0
    assert wireless_rate_mbps(-89) == 6.5
    assert wireless_rate_mbps(-60) == 65.0
    rates = [wireless_rate_mbps(r) for r in range(-95, -55)]
    assert rates == sorted(rates)


def test_calibration_is_fitted_from_migration_records():
    """psi, rho and the set-up time recovered from records made with known constants."""
    from testbed.controller.estimators import fit_calibration

    rng = random.Random(3)
    records = []
    for _ in range(30):
        image, state, delta = rng.uniform(70e6, 900e6), rng.uniform(5e6, 200e6), rng.uniform(1e4, 5e6)
        source, dest = rng.choice([1.0, 1.5]), rng.choice([1.0, 2.0])
        records.append({"ok": True, "image_bytes": image, "compute_source": source, "compute_dest": dest,
                        "sizes": {"pre_checkpoint": state, "delta": delta},
                        "phases": {"final_checkpoint": {"seconds": 2.5e-9 * image / source * rng.gauss(1, 0.03)},
                                   "restore": {"seconds": 1.2e-9 * (image + state + delta) / dest
                                               * rng.gauss(1, 0.03)},
                                   "prepare": {"seconds": rng.gauss(0.3, 0.02)}}})
    fitted = fit_calibration(records)
    assert fitted["psi_s_per_byte"] == pytest.approx(2.5e-9, rel=0.05)
    assert fitted["rho_s_per_byte"] == pytest.approx(1.2e-9, rel=0.05)
    assert fitted["setup_s"] == pytest.approx(0.3, abs=0.02)
    with pytest.raises(ValueError, match="no checkpoint"):
        fit_calibration([])


def test_relative_compute_follows_the_granted_share_not_the_drifting_core():
    """Seed 002's C_s: edge1 ran while the core was fast, edge2 while it was slow; their
    operations per wall second tie, but edge2 was granted twice the share, so it has twice the compute."""
    from testbed.controller.controller import relative_compute

    def run(share, core_speed):
        return {"ops_per_s": share * core_speed, "cpu_share": share, "ops_per_cpu_s": core_speed}

    runs = {"edge1": [run(0.5, 20e6), run(0.5, 19e6), run(0.49, 21e6)],
            "edge2": [run(1.0, 10e6), run(0.98, 11e6), run(0.96, 9e6)]}
    measured = relative_compute(runs, "edge2", 2.0)
    assert measured["edge2"] == 2.0
    assert measured["edge1"] == pytest.approx(2.0 * 0.5 / 0.98)


def test_benchmark_runs_in_slots_are_checked_for_overlap():
    """The servers' benchmark runs are given slots; a run that started before another ended
    (by 0.02 s, even one nested in a long one) is an overlap, touching ends are not."""
    from testbed.controller.controller import longest_overlap

    def run(start, end):
        return {"start": start, "end": end}

    apart = {"cloud": [run(0.0, 0.17), run(1.0, 1.17)], "edge1": [run(0.17, 0.34), run(1.3, 1.47)]}
    assert longest_overlap(apart) == 0.0
    assert longest_overlap({**apart, "edge2": [run(0.32, 0.49)]}) == pytest.approx(0.02)
    assert longest_overlap({"cloud": [run(0.0, 2.0)], "edge1": [run(0.5, 0.6), run(1.2, 1.25)]}) == pytest.approx(0.1)
    assert longest_overlap({}) == 0.0


def test_every_destination_at_once_is_each_one_s_estimate():
    """migration_seconds and longest_pre_migration (a city's decision weighs every server at once)
    give what estimate gives one destination at a time, with learned and default fits alike."""
    import numpy as np

    model = MigrationTimeModel(default_psi=2e-9, default_rho=1e-9, default_setup=0.3, precopy_share=0.5)
    model.observe_restore("edge2", 0.4, 150e6, 1.5)
    model.observe_setup("edge3", 0.9)
    model.observe_checkpoint("edge1", 0.25, 100e6, 1.0)
    paths = {"edge2": (100.0, 0.05, 1.5), "edge3": (75.0, 0.15, 1.0), "edge4": (1000.0, 0.001, 2.0)}
    sizes = {"image_bytes": 100e6, "full_bytes": 50e6, "delta_bytes": 1e6}
    one_by_one = {d: model.estimate("edge1", d, **sizes, bandwidth_mbps=b, one_way_s=w, compute_source=1.0,
                                    compute_dest=c) for d, (b, w, c) in paths.items()}
    together = model.migration_seconds(
        "edge1", list(paths), **sizes, compute_source=1.0,
        final_transfers=np.array([model.final_transfer_seconds(1e6, b, w) for b, w, _ in paths.values()]),
        computes=np.array([c for _, _, c in paths.values()]))
    assert together.tolist() == [one_by_one[d]["migration_s"] for d in paths]
    assert len(set(together.tolist())) == 3                   # the destinations do differ
    longest = model.longest_pre_migration(
        "edge1", 100e6, 1.0, {d: model.pre_transfer_seconds(50e6, b, w) for d, (b, w, _) in paths.items()})
    assert longest == max(e["pre_migration_s"] for e in one_by_one.values())
    assert model.longest_pre_migration("edge1", 100e6, 1.0, {}) == 0.0
