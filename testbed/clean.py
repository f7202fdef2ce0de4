"""``testbed clean``: remove what the testbed created on this host, also after a killed run.

By default only this process's network (``MEC_NETWORK``, else network 0) is cleaned, so
that a second network running beside it is left alone; ``network=ALL`` cleans every one.
"""

from __future__ import annotations

from pathlib import Path

from testbed.containers.clean import clean_containers, clean_server_cgroups, testbed_containers
from testbed.deprecation import module_getattr
from testbed.net.clean import ALL, CleanReport, clean_network, testbed_namespaces, testbed_root_interfaces
from testbed.net.namespaces import MAX_NETWORKS, RUN_STATE, current_network, owner_file
from testbed.records import mark_killed_runs


def clean(network: int | str | None = None) -> CleanReport:
    """Containers first (their holders are plugged into the servers), then the network (and
    every process in it), then the servers' cgroups (empty by then)."""
    network = current_network() if network is None else network
    report = CleanReport()
    clean_containers(report, network)
    clean_network(report, network)
    clean_server_cgroups(report, network)
    report.runs += [str(run) for run in mark_killed_runs()]
    for number in (range(MAX_NETWORKS) if network == ALL else [network]):
        owner_file(number).unlink(missing_ok=True)
    if network == ALL:
        (RUN_STATE / "network.pid").unlink(missing_ok=True)      # the single lock of older versions
    return report


def leftovers(network: int | str | None = None) -> dict[str, list[str]]:
    """What of the network (default: this process's; ``ALL``: every one) is still on this
    host (empty lists: nothing)."""
    return {"namespaces": testbed_namespaces(network), "interfaces": testbed_root_interfaces(network),
            "containers": testbed_containers(network), "cgroups": server_cgroups(network)}


def networks_on_host() -> list[dict]:
    """Every network that runs or left something on this host: its number, prefix, owner (None:
    gone), and how many namespaces and containers it has."""
    from testbed.net.hostlock import network_owner
    from testbed.net.namespaces import name_prefix

    rows = []
    for number in range(MAX_NETWORKS):
        owner = network_owner(number)
        namespaces = testbed_namespaces(number)
        if owner is None and not namespaces:
            continue
        rows.append({"network": number, "prefix": name_prefix(number), "owner": owner,
                     "namespaces": len(namespaces), "containers": len(testbed_containers(number))})
    return rows


def server_cgroups(network: int | str | None = None) -> list[str]:
    from testbed.containers.server import ContainerError, engine_pid
    from testbed.containers.server_cgroup import leftover

    try:
        return leftover(Path(f"/proc/{engine_pid()}/root"), network)
    except ContainerError:          # no engine: no server cgroups either
        return []


__getattr__ = module_getattr(__name__, {"clean_all": ("testbed.clean.clean", lambda: clean)})
