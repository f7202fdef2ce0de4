"""``testbed clean``: remove what the testbed created on this host, also after a killed run.

By default only this process's network (``MEC_NETWORK``, else network 0) is cleaned, so
that a second network running beside it is left alone; ``network=ALL`` cleans every one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from testbed.containers.clean import (clean_containers, clean_server_cgroups, containers_by_network,
                                     testbed_containers)
from testbed.containers.server import engine_restore_copies
from testbed.deprecation import module_getattr
from testbed.net.clean import CleanReport, clean_network, testbed_namespaces, testbed_root_interfaces
from testbed.net.namespaces import ALL, MAX_NETWORKS, RUN_STATE, current_network, name_prefix, network_of, owner_file
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
        for copy in engine_restore_copies():      # a restore removes its own; these are killed runs'
            shutil.rmtree(copy, ignore_errors=True)
            report.engine_copies += 1
    return report


def leftovers(network: int | str | None = None) -> dict[str, list[str]]:
    """What of the network (default: this process's; ``ALL``: every one) is still on this
    host (empty lists: nothing)."""
    return {"namespaces": testbed_namespaces(network), "interfaces": testbed_root_interfaces(network),
            "containers": testbed_containers(network), "cgroups": server_cgroups(network)}


def leftovers_by_network() -> dict[int, dict[str, list[str]]]:
    """What every network has on this host, in one pass: {number: leftovers} (networks with
    nothing are not listed; nor are host probes' ``tbx-`` namespaces, which are no network's)."""
    found: dict[int, dict[str, list[str]]] = {}

    def add(kind: str, name: str, number: int | None) -> None:
        if number is not None:
            found.setdefault(number, {k: [] for k in ("namespaces", "interfaces", "containers", "cgroups")})[
                kind].append(name)

    for name in testbed_namespaces(ALL):
        add("namespaces", name, network_of(name))
    for name in testbed_root_interfaces(ALL):
        add("interfaces", name, network_of(name))
    for name in server_cgroups(ALL):
        add("cgroups", name, network_of(name))
    for number, ids in containers_by_network().items():
        for cid in ids:
            add("containers", cid, number)
    return found


def networks_on_host() -> list[dict]:
    """Every network that runs or left something on this host: its number, prefix, owner (None:
    gone), and how many namespaces and containers it has."""
    from testbed.net.hostlock import network_owner

    found = leftovers_by_network()
    rows = []
    for number in range(MAX_NETWORKS):
        owner, left = network_owner(number), found.get(number)
        if owner is None and left is None:
            continue
        rows.append({"network": number, "prefix": name_prefix(number), "owner": owner,
                     "namespaces": len(left["namespaces"]) if left else 0,
                     "containers": len(left["containers"]) if left else 0})
    return rows


def server_cgroups(network: int | str | None = None) -> list[str]:
    from testbed.containers.server import ContainerError, engine_pid
    from testbed.containers.server_cgroup import leftover

    try:
        return leftover(Path(f"/proc/{engine_pid()}/root"), network)
    except ContainerError:          # no engine: no server cgroups either
        return []


__getattr__ = module_getattr(__name__, {"clean_all": ("testbed.clean.clean", lambda: clean)})
