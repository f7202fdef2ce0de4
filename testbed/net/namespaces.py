"""Names and marks that identify what the testbed's networks created on a host.

Kept free of Mininet and Docker imports so that agents, ``testbed clean`` and
the network builder can all share them cheaply.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

NETNS_PREFIX = "tb-"                  # /run/netns/tb-<node>
CONTAINER_BRIDGE = "svc0"             # on every server: the gateway of its containers
RUN_STATE = Path("/run/testbed")      # run-time state of the network on this host
LOCK_FILE = RUN_STATE / "network.pid"  # the process that owns the live network


def netns_name(node_name: str) -> str:
    return NETNS_PREFIX + node_name


def kill_netns(name: str) -> int:
    """Kill every process in the named namespace and delete it; return how many were killed."""
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
    for pid in pids:
        subprocess.run(["kill", "-9", pid], capture_output=True)
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    return len(pids)
