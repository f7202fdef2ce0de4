"""Remove one network the testbed created on this host (or all of them), and nothing else.

Everything a network makes carries its label: namespaces are published as
``/run/netns/<label>-*`` (``tb-*`` for network 0, ``tb2-*`` for network 2) and
root namespace interfaces (only ever transient) start with the same prefix.
Processes are found through the namespaces they live in, so a killed run's
helpers (delay lines, agents, the user's client) go with them.  Containers are
``testbed.containers.clean``'s; ``testbed.clean`` does both.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field

from testbed.net.namespaces import ALL, current_network, kill_netns, network_of


@dataclass
class CleanReport:
    namespaces: list[str] = field(default_factory=list)
    processes: int = 0
    interfaces: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)        # killed runs marked incomplete
    engine_copies: int = 0                                # checkpoint copies the engine left in its /tmp
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"removed {len(self.namespaces)} namespaces, {self.processes} processes, "
                f"{len(self.interfaces)} interfaces, {len(self.containers)} containers, "
                f"{len(self.cgroups)} server cgroups" + (f"; marked {len(self.runs)} killed runs incomplete"
                                                         if self.runs else "")
                + (f"; removed {self.engine_copies} checkpoint copies the engine left" if self.engine_copies else ""))


def _mine(name: str, network: int | str) -> bool:
    """Whether a namespace or interface is ``network``'s (``ALL``: any testbed one, probes too)."""
    if network == ALL:
        return name.startswith("tb")
    return network_of(name) == network


def testbed_namespaces(network: int | str | None = None) -> list[str]:
    """Namespaces of ``network`` (default: this process's; ``ALL``: of every network)."""
    network = current_network() if network is None else network
    out = subprocess.run(["ip", "-json", "netns", "list"], capture_output=True, text=True).stdout
    try:
        entries = json.loads(out or "[]")
    except json.JSONDecodeError:
        entries = [{"name": line.split()[0]} for line in out.splitlines() if line.strip()]
    return sorted(e["name"] for e in entries if _mine(e.get("name", ""), network))


def testbed_root_interfaces(network: int | str | None = None) -> list[str]:
    network = current_network() if network is None else network
    out = subprocess.run(["ip", "-json", "link", "show"], capture_output=True, text=True).stdout
    names = [entry.get("ifname", "") for entry in json.loads(out or "[]")]
    return sorted(name for name in names if _mine(name, network))


def clean_network(report: CleanReport | None = None, network: int | str | None = None) -> CleanReport:
    report = report or CleanReport()
    for name in testbed_namespaces(network):
        report.processes += kill_netns(name)
        report.namespaces.append(name)
    for name in testbed_root_interfaces(network):
        subprocess.run(["ip", "link", "delete", name], capture_output=True)
        report.interfaces.append(name)
    return report
