import pytest

from testbed import units


@pytest.mark.parametrize("text,mbps", [("100Mbps", 100), ("75 Mbit/s", 75), ("1Gbps", 1000),
                                       ("500kbps", 0.5), (54, 54), ("2.5mbit", 2.5)])
def test_bandwidth(text, mbps):
    assert units.bandwidth_mbps(text) == pytest.approx(mbps)


@pytest.mark.parametrize("text,seconds", [("50ms", 0.05), ("150 ms", 0.15), ("1.5s", 1.5),
                                          ("500us", 0.0005), ("2min", 120), (0, 0.0), ("0", 0.0)])
def test_duration(text, seconds):
    assert units.duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", [50, "50", "50 parsecs", "fast", True, [1]])
def test_duration_needs_a_known_unit(bad):
    with pytest.raises(ValueError):
        units.duration_s(bad)


def test_bandwidth_rejects_unknown_unit():
    with pytest.raises(ValueError, match="unknown bandwidth unit"):
        units.bandwidth_mbps("10 furlongs")


@pytest.mark.parametrize("text,value", [("1%", 1.0), (0.5, 0.5), ("0", 0.0)])
def test_percent(text, value):
    assert units.percent(text) == value


def test_sizes():
    assert units.size_bytes("16GiB") == 16 * 1024**3
    assert units.size_bytes("2MB") == 2e6
