"""Describe a MEC network in Python, in the style of Mininet's ``Topo``.

    class Corridor(MecTopo):
        def build(self):
            self.addLinkClass("wan", bandwidth="100Mbps", delay="50ms")
            self.addLinkClass("lan", bandwidth="1Gbps")
            self.addLinkClass("wireless", bandwidth="54Mbps", delay="1ms")
            self.addServer("cloud", role="cloud")
            self.addServer("edge1", position=(0, 0))
            self.addAccessPoint("ap1", position=(0, 0))
            self.addMobileUser("mu", path=[(0, 5), (30, 5)])
            self.addLink("edge1", "cloud", "wan")
            self.addLink("ap1", "edge1", "lan")

    with MecNetwork(Corridor().spec()) as net: ...

``spec()`` passes through the same schema as a topology file, so both ways of
describing a network are checked by the same rules.
"""

from __future__ import annotations

from mininet.topo import Topo

from testbed.config import ConfigError, TopologySpec, validate_topology


class MecTopo(Topo):
    """A Mininet Topo whose nodes and links carry the testbed's roles and link classes."""

    def __init__(self, *args, name: str | None = None, **params):
        self.topo_name = name or type(self).__name__.lower()
        self.link_classes: dict[str, dict] = {}
        self.network: dict = {}
        super().__init__(*args, **params)

    # -- building blocks ------------------------------------------------------
    def addLinkClass(self, name: str, **params) -> str:
        self.link_classes[name] = params
        return name

    def setNetwork(self, **settings) -> None:
        """backend, tcp_congestion_control, radio_link (see topology files)."""
        self.network.update(settings)

    def addServer(self, name: str, role: str = "edge", **params) -> str:
        return self.addHost(name, role=role, **params)

    def addAccessPoint(self, name: str, **params) -> str:
        return self.addHost(name, role="ap", **params)

    def addMobileUser(self, name: str, **params) -> str:
        return self.addHost(name, role="mu", **params)

    def addLink(self, node1: str, node2: str, link_class: str = None, **overrides):  # noqa: N802
        for end in (node1, node2):
            if end not in self.g.node:
                raise ConfigError(f"{type(self).__name__}: addLink({node1!r}, {node2!r}): unknown node "
                                  f"{end!r} (add it first; defined: {', '.join(self.g.node) or 'none'})")
        return super().addLink(node1, node2, link_class=link_class, **overrides)

    # -- to the one schema ----------------------------------------------------
    def to_dict(self) -> dict:
        nodes = {}
        for name in self.nodes(sort=False):
            info = dict(self.nodeInfo(name))
            for key in ("position",):
                if key in info and info[key] is not None:
                    info[key] = list(info[key])
            if info.get("path") is not None:
                info["path"] = [list(point) for point in info["path"]]
            nodes[name] = info
        connections = []
        for _, _, info in self.links(sort=False, withKeys=False, withInfo=True):
            entry = {"a": info["node1"], "b": info["node2"], "class": info.get("link_class")}
            entry.update({k: v for k, v in info.items()
                          if k not in ("node1", "node2", "port1", "port2", "link_class", "key")})
            connections.append(entry)
        data = {"name": self.topo_name, "links": self.link_classes, "nodes": nodes,
                "connections": connections}
        if self.network:
            data["network"] = self.network
        return data

    def spec(self) -> TopologySpec:
        return validate_topology(self.to_dict(), f"{type(self).__name__} (Python topology)")
