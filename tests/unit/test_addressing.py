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
