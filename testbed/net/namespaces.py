"""Names and marks that identify what the testbed's networks created on a host.

A host runs up to ``MAX_NETWORKS`` networks at once, numbered from 0.  A process
holds at most one; its number is in the environment (``MEC_NETWORK``), set when
the network is claimed, so that every helper it starts (agents, controller, user,
delay lines) names things the same way.  Everything a network creates carries its
label: network 0 is ``tb`` (``/run/netns/tb-edge1``, as it always was), network
``n`` is ``tb<n>`` (``/run/netns/tb2-edge1``).  Namespaces only for a moment
(probes of the host) start with ``tbx-``, outside every network's prefix.

Kept free of Mininet and Docker imports so that agents, ``testbed clean`` and
the network builder can all share them cheaply.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

NETWORK_ENV = "MEC_NETWORK"           # the number of the network this process belongs to
MAX_NETWORKS = 15                     # the address plan holds this many networks' pools
CONTAINER_BRIDGE = "svc0"             # on every server: the gateway of its containers
RUN_STATE = Path("/run/testbed")      # run-time state of the networks on this host
TRANSIENT_PREFIX = "tbx-"             # namespaces of host probes, never part of a network
ALL = "all"                           # where a network number is asked: every network
_LABEL = re.compile(r"^tb(\d*)-")


def current_network() -> int:
    """This process's network number (0 unless ``MEC_NETWORK`` says otherwise)."""
    text = os.environ.get(NETWORK_ENV, "0").strip() or "0"
    if not text.isdigit() or int(text) >= MAX_NETWORKS:
        raise ValueError(f"{NETWORK_ENV}={text!r}: expected a network number from 0 to {MAX_NETWORKS - 1}")
    return int(text)


def network_label(network: int | None = None) -> str:
    number = current_network() if network is None else network
    return "tb" if number == 0 else f"tb{number}"


def name_prefix(network: int | None = None) -> str:
    """What every name of the network starts with: ``tb-`` for network 0, ``tb<n>-`` else."""
    return network_label(network) + "-"


def network_of(name: str) -> int | None:
    """The network a namespace, interface or cgroup name belongs to (None: no network's)."""
    found = _LABEL.match(name)
    return None if found is None else int(found.group(1) or 0)


def netns_name(node_name: str, network: int | None = None) -> str:
    return name_prefix(network) + node_name


def network_state(network: int | None = None) -> Path:
    """The directory of one network's run-time state: its owner, sockets, delay-line files."""
    return RUN_STATE / network_label(network)


def network_socket(kind: str, name: str) -> str:
    """A Unix socket of this process's network: ``<state>/<kind>/<name>.sock`` (its directory made)."""
    directory = network_state() / kind
    directory.mkdir(parents=True, exist_ok=True)
    return str(directory / f"{name}.sock")


def owner_file(network: int | None = None) -> Path:
    return network_state(network) / "owner.pid"


def kill_netns(name: str) -> int:
    """Kill every process in the named namespace and delete it; return how many were killed."""
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
    for pid in pids:
        subprocess.run(["kill", "-9", pid], capture_output=True)
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    return len(pids)
