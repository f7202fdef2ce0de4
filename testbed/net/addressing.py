"""The IP plan and static routes of an emulated MEC network.

Addresses are derived from the order of the topology file and the network's
number ``n`` on its host (0 for the first), so the same file always gives the
same addresses, and networks running side by side never share one:

* node ``i``: loopback ``10.255.<n>.<i+1>/32`` (agents and the controller bind here);
* link ``k`` (connections first, then one radio link per MU and base station):
  ``10.<1 + 16 n + k // 256>.<k % 256>.0/24`` with ``.1`` on side a and ``.2`` on side b
  (4096 links per network);
* server ``j``: service containers in ``172.<16 + n>.<j>.0/24`` behind its bridge ``.1``.

Routes follow the lowest-delay path (hop count breaks ties), computed once.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import networkx as nx

from testbed.config import LinkParams, TopologySpec
from testbed.net.namespaces import MAX_NETWORKS


@dataclass(frozen=True)
class LinkPlan:
    index: int
    a: str
    b: str
    link_class: str
    params: LinkParams
    subnet: ipaddress.IPv4Network
    radio: bool = False

    @property
    def name(self) -> str:
        return f"{self.a}-{self.b}"

    def address(self, node: str) -> str:
        hosts = list(self.subnet.hosts())
        if node == self.a:
            return str(hosts[0])
        if node == self.b:
            return str(hosts[1])
        raise KeyError(f"{node} is not an end of link {self.name}")

    def peer(self, node: str) -> str:
        return self.b if node == self.a else self.a


@dataclass
class AddressPlan:
    loopbacks: dict[str, str]
    links: list[LinkPlan]
    container_subnets: dict[str, ipaddress.IPv4Network]
    graph: nx.Graph = field(repr=False)

    def links_of(self, node: str) -> list[LinkPlan]:
        return [link for link in self.links if node in (link.a, link.b)]

    def link_between(self, a: str, b: str) -> LinkPlan:
        for link in self.links:
            if {link.a, link.b} == {a, b}:
                return link
        raise KeyError(f"no link between {a} and {b}")

    def prefixes_of(self, node: str) -> list[str]:
        """Prefixes a router reaches through ``node`` when it is the destination."""
        prefixes = [f"{self.loopbacks[node]}/32"]
        if node in self.container_subnets:
            prefixes.append(str(self.container_subnets[node]))
        return prefixes

    def path(self, src: str, dst: str) -> list[str]:
        return nx.shortest_path(self.graph, src, dst, weight="cost")

    def one_way_delay(self, src: str, dst: str) -> float:
        """Sum of configured one-way delays along the routed path, in seconds."""
        hops = self.path(src, dst)
        return sum(self.graph.edges[u, v]["delay"] for u, v in zip(hops, hops[1:]))

    def bottleneck_mbps(self, src: str, dst: str) -> float:
        hops = self.path(src, dst)
        return min(self.graph.edges[u, v]["bandwidth"] for u, v in zip(hops, hops[1:]))

    def routes(self, router: str) -> list[tuple[str, str, str]]:
        """(prefix, next-hop address, via-link) for every prefix ``router`` does not own."""
        table: dict[str, tuple[str, LinkPlan]] = {}
        own = {link.subnet for link in self.links_of(router)}
        paths = nx.single_source_dijkstra_path(self.graph, router, weight="cost")
        for dst, hops in paths.items():
            if dst == router:
                continue
            next_hop = hops[1]
            link = self.link_between(router, next_hop)
            for prefix in self.prefixes_of(dst):
                table.setdefault(prefix, (link.address(next_hop), link))
        for link in self.links:  # transit subnets: via whichever end is closer
            if link.subnet in own:
                continue
            ends = [end for end in (link.a, link.b) if end in paths]
            if not ends:
                continue
            nearest = min(ends, key=lambda end: (len(paths[end]), end))
            next_hop = paths[nearest][1]
            via = self.link_between(router, next_hop)
            table.setdefault(str(link.subnet), (via.address(next_hop), via))
        return [(prefix, gateway, link.name) for prefix, (gateway, link) in sorted(table.items())]


LINK_OCTETS = 16            # second octets of 10/8 per network: 16 x 256 link subnets


def _link_subnet(index: int, network: int) -> ipaddress.IPv4Network:
    if index >= LINK_OCTETS * 256:
        raise ValueError(f"too many links for the address plan (max {LINK_OCTETS * 256} per network)")
    return ipaddress.IPv4Network(f"10.{1 + LINK_OCTETS * network + index // 256}.{index % 256}.0/24")


def plan(spec: TopologySpec, network: int = 0) -> AddressPlan:
    """The addresses of ``spec`` as the host's network number ``network``."""
    if not 0 <= network < MAX_NETWORKS:
        raise ValueError(f"network {network}: the address plan holds networks 0 to {MAX_NETWORKS - 1}")
    names = list(spec.nodes)
    if len(names) > 254:
        raise ValueError("too many nodes for the address plan (max 254)")
    loopbacks = {name: f"10.255.{network}.{i + 1}" for i, name in enumerate(names)}
    links: list[LinkPlan] = []
    for conn in spec.connections:
        links.append(LinkPlan(len(links), conn.a, conn.b, conn.link_class,
                              spec.link_params(conn), _link_subnet(len(links), network)))
    radio_class = spec.network.radio_link
    for mu in spec.nodes_with_role("mu"):
        for ap in spec.nodes_with_role("ap"):
            links.append(LinkPlan(len(links), ap, mu, radio_class, spec.links[radio_class],
                                  _link_subnet(len(links), network), radio=True))
    servers = spec.nodes_with_role("cloud", "edge")
    if len(servers) > 256:
        raise ValueError("too many servers for the address plan (max 256)")
    containers = {name: ipaddress.IPv4Network(f"172.{16 + network}.{j}.0/24") for j, name in enumerate(servers)}
    graph = nx.Graph()
    graph.add_nodes_from(name for name in names if spec.nodes[name].role != "mu")
    for link in links:
        if not link.radio:
            graph.add_edge(link.a, link.b, cost=link.params.delay + 1e-6,
                           delay=link.params.delay, bandwidth=link.params.bandwidth)
    return AddressPlan(loopbacks, links, containers, graph)
