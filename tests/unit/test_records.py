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
