"""Build, run and tear down the emulated MEC network of a topology.

``MecNetwork`` turns a validated ``TopologySpec`` into Mininet nodes and links,
addresses them, installs static routes and records what it really applied.
It is a context manager; ``stop()`` is safe to call more than once and leaves
nothing behind (namespaces, veths, delay lines).

A host holds several networks at once, one per process: starting claims a free
network number (``testbed.net.hostlock``), which decides the prefix of every
name and the address pools (``testbed.net.addressing``).
"""

from __future__ import annotations

import time
from pathlib import Path

from mininet.log import setLogLevel
from mininet.net import Mininet

from testbed.config import TopologySpec
from testbed.net import addressing
from testbed.net.awake import AwakeCores
from testbed.net.hostlock import claim_network, release_network
from testbed.net.links import choose_backend, link_class_for
from testbed.net.namespaces import CONTAINER_BRIDGE, netns_name, network_state
from testbed.net.nodes import ROLE_CLASSES, TestbedNode

def allow_congestion_control(name: str) -> None:
    """Namespaces may only pick algorithms the host allows; add ours to that list."""
    key = Path("/proc/sys/net/ipv4/tcp_allowed_congestion_control")
    available = Path("/proc/sys/net/ipv4/tcp_available_congestion_control").read_text().split()
    if name not in available:
        raise RuntimeError(f"TCP congestion control {name!r} is not in this kernel "
                           f"(available: {' '.join(available)})")
    allowed = key.read_text().split()
    if name not in allowed:
        key.write_text(" ".join(allowed + [name]))


class MecNetwork:
    """The emulated network: nodes, links, addresses and routes of one topology."""

    def __init__(self, spec: TopologySpec, workdir: str | Path | None = None, seed: int = 0,
                 backend: str | None = None):
        self.spec = spec
        self.seed = seed
        self._workdir = Path(workdir) if workdir else None
        self.workdir = self._workdir            # the network's state directory unless given, once started
        self.number: int | None = None         # which of the host's networks, once started
        self.requested_backend = backend or spec.network.backend
        self.backend = None
        self.backend_reason = None
        self.plan = addressing.plan(spec)
        self.mininet: Mininet | None = None
        self.links: dict[str, object] = {}
        self.radio: dict[tuple[str, str], object] = {}
        self.timings: dict[str, float] = {}
        self._claimed = False
        self.awake = AwakeCores()

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self) -> "MecNetwork":
        t0 = time.monotonic()
        setLogLevel("error")
        self.backend, self.backend_reason = choose_backend(self.requested_backend)
        allow_congestion_control(self.spec.network.tcp_congestion_control)
        self.number = claim_network()
        self._claimed = True
        self.plan = addressing.plan(self.spec, self.number)
        self.workdir = self._workdir or network_state(self.number) / "net"
        if self.spec.network.keep_cores_awake:
            self.awake.hold()
        try:
            self._build()
            self._address()
            self._route()
            for link in self.links.values():
                link.wait_ready()
        except BaseException:
            self.stop()
            raise
        self.timings["start_s"] = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Tear everything down; safe to call twice, and after an interruption
        (no command goes through the nodes' shells, which may be mid-command)."""
        t0 = time.monotonic()
        if self.mininet is not None:
            mininet, self.mininet = self.mininet, None
            for link in self.links.values():
                link.stop()
            for host in mininet.hosts:
                host.terminate()
        if self._claimed:
            release_network(self.number)
            self._claimed = False
        self.awake.release()
        self.timings["stop_s"] = time.monotonic() - t0

    # -- build -------------------------------------------------------------
    def _build(self):
        spec = self.spec
        self.workdir.mkdir(parents=True, exist_ok=True)
        net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False)
        self.mininet = net
        cc = spec.network.tcp_congestion_control
        for name, node in spec.nodes.items():
            idle_restart = spec.network.server_slow_start_after_idle if node.is_server else True
            net.addHost(name, cls=ROLE_CLASSES[node.role], congestion_control=cc, slow_start_after_idle=idle_restart)
        for link in self.plan.links:
            cls = link_class_for(self.backend, link.params)
            made = net.addLink(net[link.a], net[link.b], cls=cls, shape=link.params, seed=self.seed + link.index,
                               workdir=str(self.workdir))
            self.links[link.name] = made
            if link.radio:
                self.radio[(link.b, link.a)] = made

    def _address(self):
        for name in self.spec.nodes:
            node = self.node(name)
            commands = [f"ip addr add {self.plan.loopbacks[name]}/32 dev lo"]
            for link in self.plan.links_of(name):
                intf = self._intf(link, name)
                commands.append(f"ip addr add {link.address(name)}/{link.subnet.prefixlen} dev {intf}")
                commands.append(f"ip link set {intf} up")
            if name in self.plan.container_subnets:
                subnet = self.plan.container_subnets[name]
                commands += [f"ip link add {CONTAINER_BRIDGE} type bridge",
                             f"ip addr add {next(subnet.hosts())}/{subnet.prefixlen} dev {CONTAINER_BRIDGE}",
                             f"ip link set {CONTAINER_BRIDGE} up"]
            node.run(" && ".join(commands))
        for mu in self.spec.nodes_with_role("mu"):
            self.detach(mu)

    def _route(self, names=None):
        for name in names or self.spec.nodes:
            if self.spec.nodes[name].role == "mu":
                continue
            node = self.node(name)
            routes = self.plan.routes(name)
            if not routes:
                continue
            batch = "\n".join(
                f"route replace {prefix} via {gateway} dev {self._intf(self.plan_link(via), name)}"
                for prefix, gateway, via in routes)
            batch_file = self.workdir / f"routes-{name}.batch"
            batch_file.write_text(batch + "\n")
            node.run(f"ip -batch {batch_file}")

    def set_link(self, a: str, b: str, up: bool) -> None:
        """Cut (``up=False``) or restore the wired link between ``a`` and ``b``, both ends.

        The kernel drops the static routes of an interface that goes down; restoring the
        link puts them back, so traffic takes the link again as it did before the cut."""
        link = self.plan.link_between(a, b)
        if link.radio:
            raise ValueError(f"{a}-{b} is a radio link: the user's attach/detach moves it")
        for end in (link.a, link.b):
            self.node(end).run(f"ip link set {self._intf(link, end)} {'up' if up else 'down'}")
        if up:
            self._route([link.a, link.b])

    # -- queries -----------------------------------------------------------
    def node(self, name: str) -> TestbedNode:
        if self.mininet is None:
            raise RuntimeError("the network is not running")
        return self.mininet[name]

    def netns(self, name: str) -> str:
        """The published namespace of a node (``ip netns exec <this> ...``)."""
        return netns_name(name, self.number)

    def address(self, name: str) -> str:
        """The node's stable address (its loopback)."""
        return self.plan.loopbacks[name]

    def plan_link(self, name: str) -> addressing.LinkPlan:
        for link in self.plan.links:
            if link.name == name:
                return link
        raise KeyError(name)

    def _intf(self, link: addressing.LinkPlan, node: str) -> str:
        made = self.links[link.name]
        return made.intf1.name if node == link.a else made.intf2.name

    def interface(self, a: str, b: str) -> str:
        """Name of a's interface on its link to b."""
        return self._intf(self.plan.link_between(a, b), a)

    def applied(self) -> dict:
        """What the network really is, for the run record."""
        return {
            "topology": self.spec.name,
            "network": self.number,
            "namespaces": {name: self.netns(name) for name in self.spec.nodes},
            "backend": self.backend,
            "backend_reason": self.backend_reason,
            "tcp_congestion_control": self.spec.network.tcp_congestion_control,
            "server_slow_start_after_idle": self.spec.network.server_slow_start_after_idle,
            "cores_awake": self.awake.applied(),
            "loopbacks": dict(self.plan.loopbacks),
            "links": [
                {
                    "name": link.name, "a": link.a, "b": link.b, "class": link.link_class,
                    "radio": link.radio, "subnet": str(link.subnet),
                    "interfaces": [self._intf(link, link.a), self._intf(link, link.b)],
                    **self.links[link.name].applied(),
                }
                for link in self.plan.links
            ],
            "container_subnets": {k: str(v) for k, v in self.plan.container_subnets.items()},
            "timings": dict(self.timings),
        }

    # -- radio access of mobile users ---------------------------------------
    def detach(self, mu: str) -> None:
        """Take every radio interface of ``mu`` down: it reaches nothing."""
        node = self.node(mu)
        commands = [f"ip link set {self._intf(self.plan.link_between(ap, mu), mu)} down"
                    for ap in self.spec.nodes_with_role("ap")]
        node.run(" ; ".join(commands) + " ; ip route flush default 2>/dev/null; true")

    def attach(self, mu: str, ap: str) -> None:
        """Bring up ``mu``'s radio interface to ``ap`` and route everything through it."""
        link = self.plan.link_between(ap, mu)
        intf = self._intf(link, mu)
        self.node(mu).run(f"ip link set {intf} up && ip route replace default via "
                          f"{link.address(ap)} dev {intf} src {link.address(mu)}")
