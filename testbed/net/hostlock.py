"""One live testbed network per host: a lock file naming the process that owns it."""

from __future__ import annotations

import os
from pathlib import Path

from testbed.net.clean import clean_network
from testbed.net.namespaces import LOCK_FILE, RUN_STATE


class NetworkBusyError(RuntimeError):
    """Another live testbed network exists on this host."""


def _pid_alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "")
    return state not in ("Z", "X")  # a killed run may linger as a zombie


def claim_host() -> None:
    """Refuse if a live network exists; clean what a dead one left behind."""
    RUN_STATE.mkdir(parents=True, exist_ok=True)
    if LOCK_FILE.exists():
        try:
            owner = int(LOCK_FILE.read_text().strip() or 0)
        except ValueError:
            owner = 0
        if owner and owner != os.getpid() and _pid_alive(owner):
            raise NetworkBusyError(f"a testbed network of process {owner} is running on this host; "
                                   "stop it or run `testbed clean`")
    clean_network()
    LOCK_FILE.write_text(str(os.getpid()))


def release_host() -> None:
    try:
        if LOCK_FILE.read_text().strip() == str(os.getpid()):
            LOCK_FILE.unlink()
    except FileNotFoundError:
        pass
