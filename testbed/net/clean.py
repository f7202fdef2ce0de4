"""``testbed clean``: remove everything the testbed created, and nothing else.

Everything the testbed makes carries its mark: namespaces are published as
``/run/netns/tb-*``, containers carry the label ``org.mec-testbed``, root
namespace interfaces (only ever transient) start with ``tb``.  Processes are
found through the namespaces they live in, so a killed run's helpers (delay
lines, agents, the user's client) go with them.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field

from testbed.net.namespaces import CONTAINER_LABEL, NETNS_PREFIX, kill_netns


@dataclass
class CleanReport:
    namespaces: list[str] = field(default_factory=list)
    processes: int = 0
    interfaces: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"removed {len(self.namespaces)} namespaces, {self.processes} processes, "
                f"{len(self.interfaces)} interfaces, {len(self.containers)} containers")


def testbed_namespaces() -> list[str]:
    out = subprocess.run(["ip", "-json", "netns", "list"], capture_output=True, text=True).stdout
    try:
        entries = json.loads(out or "[]")
    except json.JSONDecodeError:
        entries = [{"name": line.split()[0]} for line in out.splitlines() if line.strip()]
    return sorted(e["name"] for e in entries if e.get("name", "").startswith(NETNS_PREFIX))


def testbed_root_interfaces() -> list[str]:
    out = subprocess.run(["ip", "-json", "link", "show"], capture_output=True, text=True).stdout
    names = [entry.get("ifname", "") for entry in json.loads(out or "[]")]
    return sorted(name for name in names if name.startswith("tb"))


def testbed_containers() -> list[str]:
    """Ids of containers carrying the testbed label (empty if no engine answers)."""
    try:
        import docker
        client = docker.from_env(timeout=10)
        found = client.containers.list(all=True, filters={"label": CONTAINER_LABEL})
        return [container.id for container in found]
    except Exception:  # no engine: nothing of ours can be running in it
        return []


def clean_network(report: CleanReport | None = None) -> CleanReport:
    report = report or CleanReport()
    for name in testbed_namespaces():
        report.processes += kill_netns(name)
        report.namespaces.append(name)
    for name in testbed_root_interfaces():
        subprocess.run(["ip", "link", "delete", name], capture_output=True)
        report.interfaces.append(name)
    return report


def clean_containers(report: CleanReport | None = None) -> CleanReport:
    report = report or CleanReport()
    ids = testbed_containers()
    if ids:
        import docker
        client = docker.from_env(timeout=30)
        for cid in ids:
            try:
                client.containers.get(cid).remove(force=True)
                report.containers.append(cid[:12])
            except docker.errors.NotFound:
                pass
    return report


def clean_all() -> CleanReport:
    from testbed.net.network import LOCK_FILE

    report = CleanReport()
    clean_containers(report)
    clean_network(report)
    LOCK_FILE.unlink(missing_ok=True)
    return report
