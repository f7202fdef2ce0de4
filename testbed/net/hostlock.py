"""Which process owns which of the host's networks: one owner file per network, and a limit.

Claiming takes the lowest free network number (or the one ``MEC_NETWORK`` pins),
under a host-wide ``flock`` so that trials starting together never pick the same
one.  A number whose owner died is free again: what it left behind is cleaned
first.  The limit (``MEC_MAX_NETWORKS``, ``--max-networks``) defaults to the
number of cores, since every network's delay lines and services need CPU.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from testbed.net.clean import clean_network
from testbed.net.namespaces import (MAX_NETWORKS, NETWORK_ENV, RUN_STATE, current_network, network_state,
                                    owner_file)

MAX_NETWORKS_ENV = "MEC_MAX_NETWORKS"
_exported: set[int] = set()            # numbers this process put into MEC_NETWORK itself


class NetworkBusyError(RuntimeError):
    """No network of this host is free for a new one."""


def _pid_alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "")
    return state not in ("Z", "X")  # a killed run may linger as a zombie


def network_owner(network: int) -> int | None:
    """The live process that owns ``network``, or None."""
    try:
        owner = int(owner_file(network).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return None
    return owner if owner and _pid_alive(owner) else None


def max_networks() -> int:
    """How many networks this host may hold at once: ``MEC_MAX_NETWORKS``, else one per core."""
    text = os.environ.get(MAX_NETWORKS_ENV, "").strip()
    if not text:
        return max(1, min(MAX_NETWORKS, os.cpu_count() or 1))
    if not text.isdigit() or not 1 <= int(text) <= MAX_NETWORKS:
        raise ValueError(f"{MAX_NETWORKS_ENV}={text!r}: expected 1 to {MAX_NETWORKS} networks")
    return int(text)


def claim_network() -> int:
    """Take a free network number for this process, clean what a dead owner left under it,
    and export it (``MEC_NETWORK``) to every process started from now on."""
    pinned = NETWORK_ENV in os.environ
    me = os.getpid()
    RUN_STATE.mkdir(parents=True, exist_ok=True)
    with open(RUN_STATE / "claim.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        candidates = [current_network()] if pinned else range(max_networks())
        owners = {}
        for network in candidates:
            owner = network_owner(network)
            if owner == me:
                raise NetworkBusyError(f"this process already runs network {network}: one network per "
                                       "process (start another process for a second one)")
            if owner is not None:
                owners[network] = owner
                continue
            clean_network(network=network)
            network_state(network).mkdir(parents=True, exist_ok=True)
            owner_file(network).write_text(str(me))
            if not pinned:
                os.environ[NETWORK_ENV] = str(network)
                _exported.add(network)
            return network
    if pinned:
        (network, owner), = owners.items()
        raise NetworkBusyError(f"network {network} ({NETWORK_ENV}) is run by process {owner}; stop it, "
                               f"run `testbed clean --network {network}`, or unset {NETWORK_ENV}")
    busy = ", ".join(f"{n} (process {pid})" for n, pid in owners.items())
    raise NetworkBusyError(f"all {len(owners)} networks this host may hold are running: {busy}; wait, stop one "
                           f"(`testbed clean --network N`), or raise --max-networks ({MAX_NETWORKS_ENV})")


def release_network(network: int) -> None:
    """Give the number back (only if this process still owns it)."""
    try:
        if owner_file(network).read_text().strip() == str(os.getpid()):
            owner_file(network).unlink()
    except FileNotFoundError:
        pass
    if network in _exported:
        _exported.discard(network)
        os.environ.pop(NETWORK_ENV, None)
