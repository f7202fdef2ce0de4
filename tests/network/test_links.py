"""Links behave exactly as configured, on the real emulated network."""

import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testbed.net.probe import icmp_echo, iperf3_mbps, ping_rtt
from testbed.net.topo import MecTopo

pytestmark = pytest.mark.network
ROOT = Path(__file__).resolve().parents[2]


def tolerance_ms(expected_ms: float) -> float:
    return 1.0 + 0.02 * expected_ms


class Pair(MecTopo):
    """Two servers joined by one link of the given parameters."""

    def build(self, **params):
        self.addLinkClass("link", **params)
        self.addServer("s1", position=(0, 0))
        self.addServer("s2", position=(10, 0))
        self.addLink("s1", "s2", "link")


def assert_rtt(net, a, b, expected_ms):
    rtts = ping_rtt(net.node(a), net.address(b), count=15, interval=0.1)
    median = statistics.median(rtts)
    assert abs(median - expected_ms) <= tolerance_ms(expected_ms), (a, b, expected_ms, rtts)
    return median


def test_paper_rtts(paper_network):
    net = paper_network
    assert assert_rtt(net, "edge1", "edge2", 100.0)
    assert assert_rtt(net, "edge2", "edge3", 100.0)
    for edge in ("edge1", "edge2", "edge3"):
        assert_rtt(net, edge, "cloud", 300.0)
    assert_rtt(net, "edge1", "edge3", 200.0)  # routed through edge2


@pytest.mark.parametrize("bandwidth,delay_ms", [(20, 10), (500, 5), (10, 120)])
def test_other_parameter_sets(network_factory, bandwidth, delay_ms):
    net = network_factory(Pair(bandwidth=f"{bandwidth}Mbps", delay=f"{delay_ms}ms").spec())
    assert_rtt(net, "s1", "s2", 2.0 * delay_ms)


def test_overridden_delay_is_applied_and_recorded(network_factory, paper_spec):
    from testbed.config import load_topology

    spec = load_topology(ROOT / "topologies" / "paper.yaml", ["links.edge_edge.delay=30ms"])
    net = network_factory(spec)
    assert_rtt(net, "edge1", "edge2", 60.0)
    record = {link["name"]: link for link in net.applied()["links"]}
    assert record["edge1-edge2"]["delay"] == pytest.approx(0.030)
    assert record["edge1-edge2"]["backend"] == net.backend


def test_jitter_and_loss(network_factory):
    net = network_factory(Pair(bandwidth="50Mbps", delay="40ms", jitter="10ms", loss="10%").spec())
    echo = icmp_echo(net.node("s1"), net.address("s2"), count=300, interval=0.01)
    # Each ping crosses the link twice: P(success) = 0.9^2 = 0.81 (3 sigma ~ 0.07)
    assert 0.72 <= echo["received"] / echo["sent"] <= 0.90, echo
    rtts = ping_rtt(net.node("s1"), net.address("s2"), count=60, interval=0.02)
    assert min(rtts) >= 60.0 - 1.0 and max(rtts) <= 100.0 + 3.0, rtts
    assert statistics.pstdev(rtts) > 2.0, rtts


@pytest.mark.parametrize("a,b,mbps,delay_s", [("edge1", "edge2", 100, 0.05), ("edge1", "cloud", 75, 0.15)])
def test_tcp_throughput_reaches_90_percent(paper_network, a, b, mbps, delay_s):
    window = int(2 * mbps * 1e6 / 8 * 2 * delay_s)  # twice the bandwidth-delay product
    result = iperf3_mbps(paper_network.node(a), paper_network.node(b), paper_network.address(b),
                         seconds=8, omit=3, window=str(window))
    assert result["received_mbps"] >= 0.9 * mbps, result


def test_mu_reaches_servers_only_through_its_base_station(paper_network):
    net = paper_network
    mu = net.node("mu")
    assert "100% packet loss" in mu.cmd(f"ping -c 1 -W 1 {net.address('edge1')}") or \
        "unreachable" in mu.cmd(f"ping -c 1 -W 1 {net.address('edge1')}")
    net.attach("mu", "ap2")
    rtts = ping_rtt(mu, net.address("edge2"), count=5)
    assert statistics.median(rtts) < 10  # radio 2 x 1 ms + co-located edge
    rtts = ping_rtt(mu, net.address("edge1"), count=5)
    assert abs(statistics.median(rtts) - 102) <= tolerance_ms(102)


def test_servers_keep_their_tcp_window_across_idle_moments_and_the_user_does_not(paper_network):
    """``network.server_slow_start_after_idle`` (default false) is the servers' sysctl only:
    the migration channel keeps the pre-copy's window; the user and base stations keep Linux's."""
    net = paper_network
    setting = "sysctl -n net.ipv4.tcp_slow_start_after_idle"
    assert {name: net.node(name).cmd(setting).strip() for name in ("edge1", "edge2", "cloud", "ap1", "mu")} == \
        {"edge1": "0", "edge2": "0", "cloud": "0", "ap1": "1", "mu": "1"}
    assert net.applied()["server_slow_start_after_idle"] is False


def test_the_host_cores_are_held_awake_while_a_network_runs_and_let_go_after(network_factory, paper_spec):
    """``network.keep_cores_awake`` (default true): the host's wake-up latency limit is 0 while
    the network runs, recorded as held, and back to what it was once the network stops."""
    from testbed.net.awake import current_latency_us

    before = current_latency_us()
    if before is None:
        pytest.skip("this kernel has no /dev/cpu_dma_latency (PM QoS) to read")
    if before == 0:
        pytest.skip("another process on this host already holds the cores awake")
    net = network_factory(paper_spec)
    assert current_latency_us() == 0
    assert net.applied()["cores_awake"]["held"] is True
    net.stop()
    assert current_latency_us() == before
    off = network_factory(paper_spec.model_copy(update={"network": paper_spec.network.model_copy(
        update={"keep_cores_awake": False})}))
    assert current_latency_us() == before
    record = off.applied()["cores_awake"]
    assert record["held"] is False and record["reason"] is None


KILLED_RUN = """
import sys, time
from testbed.config import load_topology
from testbed.net.network import MecNetwork
net = MecNetwork(load_topology(sys.argv[1])).start()
if sys.argv[2] == "with-container":
    from testbed.containers.server import Limits, ServerContainers
    from testbed.images import image_name
    edge1 = ServerContainers("edge1", str(net.plan.container_subnets["edge1"]))
    container = edge1.reserve("svc", "counter", image_name("counter"), 7000, Limits())
    edge1.start(container, 7000)
print("ready", flush=True)
time.sleep(600)
"""


def _leftovers():
    from testbed.clean import leftovers

    helpers = subprocess.run(["pgrep", "-f", "testbed.net.wire"], capture_output=True, text=True)
    return {**leftovers(), "delay_lines": helpers.stdout.split()}


def test_sigkilled_run_then_clean_leaves_nothing(testbed_cli, no_leftovers):
    from testbed.doctor import docker_info

    mode = "with-container" if docker_info() else "network-only"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(ROOT / "topologies/paper.yaml"), mode],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "ready"
        before = _leftovers()
        assert before["namespaces"] and before["delay_lines"]
        if mode == "with-container":
            assert before["containers"]
    finally:
        proc.kill()
        proc.wait()
    result = testbed_cli("clean")
    assert result.returncode == 0, result.stderr
    left = _leftovers()
    assert {"namespaces", "interfaces", "containers", "delay_lines", "cgroups"} <= set(left)
    assert not any(left.values()), left
    again = testbed_cli("net", "check", ROOT / "topologies/paper.yaml")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "edge1-edge2" in again.stdout


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d["nodes"]["edge2"].pop("role"), "nodes.edge2.role"),
    (lambda d: d["links"]["edge_edge"].update(bandwidth="-100Mbps"), "links.edge_edge.bandwidth"),
    (lambda d: d["connections"][2].update({"class": "satellite"}), "connections.2.class"),
    (lambda d: d["connections"][0].update(a="edge7"), "connections.0.a"),
])
def test_malformed_topology_is_rejected_before_anything_exists(testbed_cli, tmp_path, mutate, field):
    from testbed.net.clean import testbed_namespaces

    data = yaml.safe_load((ROOT / "topologies/paper.yaml").read_text())
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    result = testbed_cli("net", "check", path)
    assert result.returncode == 2
    assert str(path) in result.stdout and field in result.stdout, result.stdout
    assert testbed_namespaces() == []
