"""Mininet nodes of the testbed.

Each node is a Mininet host (a shell in its own network namespace) whose
namespace is also published as ``/run/netns/tb-<name>``: researchers can use
``ip netns exec tb-edge1 ...``, and ``testbed clean`` finds everything the
testbed made by that prefix alone, even after the run that made it was killed.
"""

from __future__ import annotations

import subprocess

from mininet.node import Host

from testbed.net.namespaces import kill_netns, netns_name

# Applied in every node namespace: routers forward, nothing filters or
# rewrites our traffic behind our back, and no IPv6 chatter crosses the links.
COMMON_SYSCTLS = {
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv4.tcp_no_metrics_save": "1",
}


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=False)


class TestbedNode(Host):
    """A Mininet host with a published namespace and the testbed's sysctls.

    ``forwarding`` makes it a router; ``congestion_control`` sets the TCP
    algorithm of everything that runs in it (recorded with every run);
    ``slow_start_after_idle`` whether its TCP connections restart from the
    initial window after an idle moment (Linux's default).
    """

    forwarding = False

    def __init__(self, name, congestion_control="cubic", slow_start_after_idle=True, **params):
        self.congestion_control = congestion_control
        self.slow_start_after_idle = slow_start_after_idle
        self.netns = netns_name(name)
        super().__init__(name, **params)

    def startShell(self, mnopts=None):
        super().startShell(mnopts)
        result = _run(["ip", "netns", "attach", self.netns, str(self.pid)])
        if result.returncode != 0:
            raise RuntimeError(f"cannot publish namespace {self.netns}: {result.stderr.strip()} "
                               "(a previous run may have been killed: run `testbed clean`)")
        sysctls = dict(COMMON_SYSCTLS)
        sysctls["net.ipv4.ip_forward"] = "1" if self.forwarding else "0"
        sysctls["net.ipv4.tcp_congestion_control"] = self.congestion_control
        sysctls["net.ipv4.tcp_slow_start_after_idle"] = "1" if self.slow_start_after_idle else "0"
        settings = " ".join(f"{key}={value}" for key, value in sysctls.items())
        out = self.cmd(f"sysctl -q -w {settings} 2>&1; ip link set lo up")
        if out.strip():
            raise RuntimeError(f"{self.name}: sysctl failed: {out.strip()}")

    def run(self, command: str) -> str:
        """Run a shell command in the node; raise with its output if it fails."""
        out = self.cmd(f"{command} 2>&1; echo __rc=$?")
        body, _, rc = out.rpartition("__rc=")
        if rc.strip() != "0":
            raise RuntimeError(f"{self.name}: `{command}` failed: {body.strip()}")
        return body

    def terminate(self):
        kill_netns(self.netns)  # everything in it, the shell too: nothing left to wait for
        super().terminate()


class ServerHost(TestbedNode):
    """Cloud or edge server: routes traffic and hosts service containers."""

    forwarding = True


class AccessPointHost(TestbedNode):
    """Base station: the first hop of the mobile user's traffic."""

    forwarding = True


class MobileUserHost(TestbedNode):
    """The virtual mobile user: one radio interface per base station, one up at a time."""


class WireNode(TestbedNode):
    """The private namespace in which a delay line joins the two halves of a link."""

    forwarding = False


ROLE_CLASSES = {
    "cloud": ServerHost,
    "edge": ServerHost,
    "ap": AccessPointHost,
    "mu": MobileUserHost,
}
