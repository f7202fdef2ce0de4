"""Remove the containers a network of the testbed started (label ``org.mec-testbed.network``)
and its server cgroups (``/mec-testbed/<prefix><server>``), or those of every network, and
nothing else."""

from __future__ import annotations

from pathlib import Path

from testbed.containers.server import NETWORK_LABEL, TESTBED_LABEL, ContainerError, engine_pid
from testbed.containers.server_cgroup import remove_all
from testbed.net.clean import CleanReport
from testbed.net.namespaces import ALL, current_network


def testbed_containers(network: int | str | None = None) -> list[str]:
    """Ids of containers of ``network`` (default: this process's; ``ALL``: carrying the testbed
    label at all); empty if no engine answers."""
    network = current_network() if network is None else network
    return [cid for number, ids in containers_by_network().items() if network in (ALL, number) for cid in ids]


def containers_by_network() -> dict[int, list[str]]:
    """Ids of the testbed's containers by the network they belong to (one query of the engine)."""
    try:
        import docker
        client = docker.from_env(timeout=10)
        found = client.containers.list(all=True, filters={"label": TESTBED_LABEL})
    except Exception:  # no engine: nothing of ours can be running in it
        return {}
    networks: dict[int, list[str]] = {}
    for container in found:
        label = container.labels.get(NETWORK_LABEL, "0")
        networks.setdefault(int(label) if label.isdigit() else 0, []).append(container.id)
    return networks


def clean_containers(report: CleanReport | None = None, network: int | str | None = None) -> CleanReport:
    report = report or CleanReport()
    ids = testbed_containers(network)
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


def clean_server_cgroups(report: CleanReport | None = None, network: int | str | None = None) -> CleanReport:
    """The servers' cgroups (once their containers are gone)."""
    report = report or CleanReport()
    try:
        root = Path(f"/proc/{engine_pid()}/root")
    except ContainerError:      # no engine: its cgroups went with it
        return report
    report.cgroups += remove_all(root, network)
    return report
