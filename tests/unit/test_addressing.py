"""The address plan and routes, without building a network."""

import pytest

from testbed.net import addressing


@pytest.fixture(scope="module")
def plan(paper_spec):
    return addressing.plan(paper_spec)


def test_every_node_has_a_distinct_loopback(plan, paper_spec):
    assert set(plan.loopbacks) == set(paper_spec.nodes)
    assert len(set(plan.loopbacks.values())) == len(plan.loopbacks)


def test_one_radio_link_per_base_station(plan):
    radio = [link for link in plan.links if link.radio]
    assert sorted((l.a, l.b) for l in radio) == [("ap1", "mu"), ("ap2", "mu"), ("ap3", "mu")]


def test_paths_follow_the_lowest_delay(plan):
    assert plan.path("edge1", "edge3") == ["edge1", "edge2", "edge3"]  # 100 ms, not 300 via cloud
    assert plan.one_way_delay("edge1", "edge3") == pytest.approx(0.100)
    assert plan.one_way_delay("ap1", "cloud") == pytest.approx(0.150)
    assert plan.bottleneck_mbps("ap1", "cloud") == 75.0


def test_routes_cover_every_remote_prefix(plan, paper_spec):
    routes = {prefix: (gateway, via) for prefix, gateway, via in plan.routes("ap1")}
    for node in paper_spec.nodes:
        if node in ("ap1", "mu"):
            continue
        assert f"{plan.loopbacks[node]}/32" in routes, node
    # everything leaves ap1 through its only wired link
    assert {via for _, via in routes.values()} == {"ap1-edge1"}
    # edge1 reaches edge3's containers through edge2
    edge1 = {prefix: via for prefix, _, via in plan.routes("edge1")}
    assert edge1[str(plan.container_subnets["edge3"])] == "edge1-edge2"
    assert edge1[str(plan.link_between("ap3", "mu").subnet)] == "edge1-edge2"


def _addresses(plan) -> list:
    import ipaddress

    return ([ipaddress.IPv4Network(f"{a}/32") for a in plan.loopbacks.values()]
            + [link.subnet for link in plan.links] + list(plan.container_subnets.values()))


def test_networks_of_one_host_share_no_address(paper_spec):
    from testbed.net.namespaces import MAX_NETWORKS

    plans = [addressing.plan(paper_spec, n) for n in range(MAX_NETWORKS)]
    pools = [_addresses(p) for p in plans]
    for i, mine in enumerate(pools):
        for other in pools[i + 1:]:
            assert not any(a.overlaps(b) for a in mine for b in other), i
    assert plans[0].loopbacks["edge1"] == "10.255.0.2"     # network 0 keeps a single network's addresses
    assert plans[2].loopbacks["edge1"] == "10.255.2.2"
    with pytest.raises(ValueError, match="networks 0 to 14"):
        addressing.plan(paper_spec, MAX_NETWORKS)


def test_a_network_holds_4096_links_and_says_so():
    with pytest.raises(ValueError, match="max 4096 per network"):
        addressing._link_subnet(4096, 0)
    assert str(addressing._link_subnet(4095, 14)) == "10.240.255.0/24"
