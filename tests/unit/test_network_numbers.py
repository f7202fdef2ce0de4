"""Several networks per host: names, claims and limits, without building a network."""

import os
import subprocess
import sys

import pytest

from testbed.net import hostlock, namespaces


@pytest.fixture
def run_state(tmp_path, monkeypatch):
    """A private run-state directory and an environment without a network number."""
    monkeypatch.setattr(namespaces, "RUN_STATE", tmp_path)
    monkeypatch.setattr(hostlock, "RUN_STATE", tmp_path)
    monkeypatch.setattr(hostlock, "clean_network", lambda network: None)   # nothing real to clean here
    monkeypatch.delenv(namespaces.NETWORK_ENV, raising=False)
    monkeypatch.delenv(hostlock.MAX_NETWORKS_ENV, raising=False)
    return tmp_path


def test_every_name_carries_its_networks_label():
    assert namespaces.netns_name("edge1", 0) == "tb-edge1"
    assert namespaces.netns_name("edge1", 3) == "tb3-edge1"
    assert [namespaces.network_of(n) for n in ("tb-edge1", "tb3-w-ap1-mu", "tb12-mu", "tbx-probe9", "eth0")] == \
        [0, 3, 12, None, None]
    assert namespaces.network_state(2).name == "tb2"


def test_a_bad_network_number_is_named(monkeypatch):
    monkeypatch.setenv(namespaces.NETWORK_ENV, "15")
    with pytest.raises(ValueError, match="MEC_NETWORK='15'"):
        namespaces.current_network()
    monkeypatch.setenv(hostlock.MAX_NETWORKS_ENV, "0")
    with pytest.raises(ValueError, match="MEC_MAX_NETWORKS='0'"):
        hostlock.max_networks()


def _hold(run_state, network: int) -> subprocess.Popen:
    """A live process that owns ``network``."""
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (run_state / namespaces.network_label(network)).mkdir(exist_ok=True)
    (run_state / namespaces.network_label(network) / "owner.pid").write_text(str(holder.pid))
    return holder


def test_claims_take_the_lowest_free_number_up_to_the_limit(run_state, monkeypatch):
    monkeypatch.setenv(hostlock.MAX_NETWORKS_ENV, "2")
    holder = _hold(run_state, 0)
    try:
        assert hostlock.claim_network() == 1
        assert os.environ[namespaces.NETWORK_ENV] == "1"
        with pytest.raises(hostlock.NetworkBusyError, match="one network per process"):
            hostlock.claim_network()
        hostlock.release_network(1)
        assert namespaces.NETWORK_ENV not in os.environ
        assert not (run_state / "tb1" / "owner.pid").exists()
        other = _hold(run_state, 1)
        try:
            with pytest.raises(hostlock.NetworkBusyError, match=r"all 2 networks .* 0 \(process \d+\), 1 \(process"):
                hostlock.claim_network()
        finally:
            other.kill()
            other.wait()
        assert hostlock.claim_network() == 1           # its owner died: the number is free again
        hostlock.release_network(1)
    finally:
        holder.kill()
        holder.wait()


def test_a_pinned_number_is_taken_or_refused(run_state, monkeypatch):
    holder = _hold(run_state, 4)
    try:
        monkeypatch.setenv(namespaces.NETWORK_ENV, "4")
        with pytest.raises(hostlock.NetworkBusyError, match=r"network 4 \(MEC_NETWORK\) is run by process"):
            hostlock.claim_network()
    finally:
        holder.kill()
        holder.wait()
    assert hostlock.claim_network() == 4
    hostlock.release_network(4)
    assert os.environ[namespaces.NETWORK_ENV] == "4"     # pinned by the user: left as it was
