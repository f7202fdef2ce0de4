"""Several networks on one host: each keeps its links' fidelity, and each is cleaned alone."""

import sys
from pathlib import Path

import pytest

from testbed.clean import leftovers

pytestmark = [pytest.mark.network, pytest.mark.docker]
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))
from one_network import NetworkProcess  # noqa: E402  (a network in a process of its own)


def assert_faithful(result: dict) -> None:
    """As the link tests ask of one network: RTT within 1 ms + 2 %, goodput at least 90 %."""
    assert abs(result["rtt_ms"] - 100.0) <= 1.0 + 0.02 * 100.0, result
    assert result["goodput_mbps"] is None or result["goodput_mbps"] >= 90.0, result
    assert result["counter"]["ok"], result


def test_two_networks_keep_their_fidelity_and_are_cleaned_alone(testbed_cli, no_leftovers):
    first, second = NetworkProcess(), NetworkProcess()
    third = None
    try:
        one, two = first.info, second.info
        assert one["network"] != two["network"]
        assert not set(one["namespaces"]) & set(two["namespaces"])
        assert len({one["s1"], two["s1"]}) == 2 and one["subnet"] != two["subnet"]
        assert len({one["container"], two["container"]}) == 2
        listed = testbed_cli("net", "list")
        for network in (first, second):
            assert f"│ {network.info['network']} " in listed.stdout and str(network.process.pid) in listed.stdout, \
                listed.stdout
        for network in (first, second):              # both measured at the same time
            network.ask("check")
        for network in (first, second):
            result = network.reply()
            assert result["goodput_mbps"] is not None
            assert_faithful(result)

        # cleaning the second (still running) takes its namespaces and container, not the first's
        cleaned = testbed_cli("clean", "--network", str(two["network"]))
        assert cleaned.returncode == 0, cleaned.stderr
        assert not any(leftovers(two["network"]).values()), leftovers(two["network"])
        mine = leftovers(one["network"])
        assert set(one["namespaces"]) <= set(mine["namespaces"]) and len(mine["containers"]) == 2  # + holder
        assert_faithful(first.ping())
        second.kill()

        # a killed run's network, cleaned, leaves the one that started next to it intact
        third = NetworkProcess()
        assert third.info["network"] == two["network"]        # the number is free again
        first.kill()
        cleaned = testbed_cli("clean", "--network", str(one["network"]))
        assert cleaned.returncode == 0, cleaned.stderr
        assert not any(leftovers(one["network"]).values()), leftovers(one["network"])
        assert set(third.info["namespaces"]) <= set(leftovers(third.info["network"])["namespaces"])
        assert_faithful(third.ping())
        assert third.quit()["stopped"] == third.info["network"]
        for number in (one["network"], two["network"]):
            assert not any(leftovers(number).values()), leftovers(number)
    finally:
        for network in (first, second, third):
            if network is not None and network.process.poll() is None:
                network.kill()
                testbed_cli("clean", "--network", str(network.info["network"]))
