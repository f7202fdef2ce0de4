"""``testbed clean``: remove everything the testbed created on this host, also after a killed run."""

from __future__ import annotations

from testbed.containers.clean import clean_containers, clean_server_cgroups, testbed_containers
from testbed.net.clean import CleanReport, clean_network, testbed_namespaces, testbed_root_interfaces
from testbed.net.namespaces import LOCK_FILE
from testbed.records import mark_killed_runs


def clean_all() -> CleanReport:
    """Containers first (their holders are plugged into the servers), then the network (and
    every process in it), then the servers' cgroups (empty by then)."""
    report = CleanReport()
    clean_containers(report)
    clean_network(report)
    clean_server_cgroups(report)
    report.runs += [str(run) for run in mark_killed_runs()]
    LOCK_FILE.unlink(missing_ok=True)
    return report


def leftovers() -> dict[str, list[str]]:
    """What of the testbed is still on this host (empty lists: nothing)."""
    return {"namespaces": testbed_namespaces(), "interfaces": testbed_root_interfaces(),
            "containers": testbed_containers(), "cgroups": server_cgroups()}


def server_cgroups() -> list[str]:
    from pathlib import Path

    from testbed.containers.server import ContainerError, engine_pid
    from testbed.containers.server_cgroup import leftover

    try:
        return leftover(Path(f"/proc/{engine_pid()}/root"))
    except ContainerError:          # no engine: no server cgroups either
        return []
