"""Paths of a topology of any size, without an address plan (the emulator's is limited
to 254 nodes): the same routing rule (least delay, then fewest hops), the same answers
(``one_way``, ``bandwidth``) as ``testbed.controller.state.Network``."""

from __future__ import annotations

import math

import networkx as nx

from testbed.config import TopologySpec


class GraphNetwork:
    def __init__(self, spec: TopologySpec):
        self.graph = nx.Graph()
        for conn in spec.connections:
            params = spec.link_params(conn)
            self.graph.add_edge(conn.a, conn.b, delay=params.delay, bandwidth=params.bandwidth,
                                cost=params.delay + 1e-6)
        self._from: dict[str, tuple[dict, dict]] = {}
        self._bottleneck: dict[tuple[str, str], float] = {}
        self._one_way: dict[tuple[str, str], float] = {}     # asked at every handover and migration
        self._hops: dict[tuple[str, str], list[int]] = {}
        self.edges = list(self.graph.edges)
        self._edge_index = {frozenset(edge): i for i, edge in enumerate(self.edges)}

    def capacities(self):
        """Every link's bandwidth (Mbit/s), in the order of ``edges`` (the indices ``hops`` answers)."""
        return [self.graph.edges[edge]["bandwidth"] for edge in self.edges]

    def hops(self, a: str, b: str) -> list[int]:
        """The links (indices into ``edges``) of the path from ``a`` to ``b``."""
        if a == b:
            return []
        if (a, b) not in self._hops:
            path = self.path(a, b)
            self._hops[a, b] = [self._edge_index[frozenset(pair)] for pair in zip(path, path[1:])]
        return self._hops[a, b]

    def _paths(self, source: str) -> tuple[dict, dict]:
        if source not in self._from:
            self._from[source] = nx.single_source_dijkstra(self.graph, source, weight="cost")
        return self._from[source]

    def path(self, a: str, b: str) -> list[str]:
        try:
            return self._paths(a)[1][b]
        except KeyError:
            raise ValueError(f"no path from {a} to {b}") from None

    def one_way(self, a: str, b: str) -> float:
        if a == b:
            return 0.0
        if (a, b) not in self._one_way:
            hops = self.path(a, b)
            self._one_way[a, b] = sum(self.graph.edges[u, v]["delay"] for u, v in zip(hops, hops[1:]))
        return self._one_way[a, b]

    def bandwidth(self, a: str, b: str) -> float:
        if a == b:
            return math.inf
        key = (a, b) if a < b else (b, a)
        if key not in self._bottleneck:
            hops = self.path(a, b)
            self._bottleneck[key] = min(self.graph.edges[u, v]["bandwidth"] for u, v in zip(hops, hops[1:]))
        return self._bottleneck[key]
