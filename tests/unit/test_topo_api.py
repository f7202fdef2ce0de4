"""The Python (Topo-style) API goes through the same schema as files."""

import pytest

from testbed.config import ConfigError
from testbed.net.topo import MecTopo


class Corridor(MecTopo):
    def build(self, delay="50ms"):
        self.addLinkClass("wan", bandwidth="100Mbps", delay=delay)
        self.addLinkClass("wireless", bandwidth="54Mbps", delay="1ms")
        self.addServer("cloud", role="cloud")
        self.addServer("edge1", position=(0, 0))
        self.addAccessPoint("ap1", position=(0, 0))
        self.addMobileUser("mu", path=[(0, 5), (30, 5)])
        self.addLink("edge1", "cloud", "wan")
        self.addLink("ap1", "edge1", "wan", delay="1ms")


def test_python_topology_builds_a_valid_spec():
    spec = Corridor().spec()
    assert spec.nodes["cloud"].role == "cloud"
    conn = next(c for c in spec.connections if c.a == "ap1")
    assert spec.link_params(conn).delay == pytest.approx(0.001)
    assert spec.link_params(conn).bandwidth == 100.0


def test_python_topology_errors_use_the_same_schema():
    with pytest.raises(ConfigError, match=r"links.wan.delay: .*needs a unit"):
        Corridor(delay=50).spec()


def test_link_to_an_undefined_node_is_refused():
    class Broken(MecTopo):
        def build(self):
            self.addServer("edge1")
            self.addLink("edge1", "edge9", "wan")

    with pytest.raises(ConfigError, match="unknown node 'edge9'"):
        Broken()
