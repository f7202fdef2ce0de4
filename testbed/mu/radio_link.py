"""The mobile user's side of the radio: which base station carries its traffic.

The user has one interface per base station (``mu-ethN`` to ``apK``), and only
the associated one is up, with the default route through that base station.
A handover takes the old interface down, waits the handover time (the link is
down for everyone), and brings the new one up: from then on the user's packets
really leave through the new base station.  Runs inside the user's namespace.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RadioPort:
    ap: str
    interface: str      # the user's interface towards this base station
    address: str        # the user's address on it
    gateway: str        # the base station's address on it
    station_interface: str | None = None   # the base station's end of the link (downlink rate)
    station_pid: int | None = None         # a process in the base station's namespace


class RadioLink:
    def __init__(self, ports: dict[str, RadioPort], on_down=None, on_up=None):
        """``on_down(ap)`` runs after the link to ``ap`` went down, ``on_up(ap)`` after it came up."""
        self.ports = ports
        self.on_down = on_down or (lambda ap: None)
        self.on_up = on_up or (lambda ap: None)
        self.current: str | None = None
        self.in_handover = False
        self._lock = threading.Lock()

    @staticmethod
    def _ip(*commands: str) -> None:
        script = "\n".join(commands) + "\n"
        result = subprocess.run(["ip", "-batch", "-"], input=script, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"ip -batch failed: {result.stderr.strip()}")

    def down(self) -> None:
        with self._lock:
            old = self.current
            if old is not None:
                self._ip(f"link set {self.ports[old].interface} down")
            self.current = None
        self.on_down(old)

    def up(self, ap: str) -> None:
        port = self.ports[ap]
        with self._lock:
            self._ip(f"link set {port.interface} up",
                     f"route replace default via {port.gateway} dev {port.interface} src {port.address}")
            self.current = ap
        self.on_up(ap)

    def handover(self, ap: str, duration: float, started: float | None = None) -> dict:
        """Break before make: down, ``duration`` seconds without radio (counted from
        ``started``, default now), up at ``ap``."""
        old = self.current
        self.in_handover = True
        started = started or time.time()
        try:
            self.down()
            time.sleep(max(0.0, started + duration - time.time()))
            self.up(ap)
        finally:
            self.in_handover = False
        return {"from": old, "to": ap, "start": started, "end": time.time()}
