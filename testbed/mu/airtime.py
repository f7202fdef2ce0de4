"""The radio link's rate: what the user's SNR allows, shared by airtime with the other
users of its base station (radio ``link_rate: rssi``).

At every mobility tick the mover hands the serving station's RSSI to
``RateShaper.update``: the rate table gives the user's rate at that SNR, the
station's capacity caps it, and the users attached to the station share the
airtime equally, so each gets its own rate divided by their number (802.11's
airtime fairness).  The result is set on both ends of the live radio link with
``tc class change``: the uplink on the user's interface (the mover runs in the
user's namespace), the downlink on the base station's end, entered through a
process of the station's namespace.  The share is static: a user that sends
nothing still holds its slice (documented in docs/FIDELITY.md).

Which users a base station carries is known from marker files, one per
attached user, in a directory every user of a run shares.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

from testbed.mu.radio_link import RadioPort
from testbed.net.links.base import rate_command
from testbed.rates import RateTable, airtime_share

FLOOR_MBPS = 0.1          # htb needs a rate; below the table's first step the link all but stops
CHANGE = 0.005            # relative change below which the live link is left alone


class Attachments:
    """Who is attached to which base station: ``DIR/<ap>/<user>`` exists while attached."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def attach(self, ap: str, user: str) -> None:
        (self.directory / ap).mkdir(parents=True, exist_ok=True)
        (self.directory / ap / user).touch()

    def detach(self, ap: str, user: str) -> None:
        (self.directory / ap / user).unlink(missing_ok=True)

    def count(self, ap: str) -> int:
        folder = self.directory / ap
        return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


class RateShaper:
    def __init__(self, user: str, table: RateTable, attachments: Attachments,
                 capacities: dict[str, float | None], emit: Callable[..., None]):
        self.user = user
        self.table = table
        self.attachments = attachments
        self.capacities = capacities
        self.emit = emit
        self.applied: dict[str, float] = {}      # per station: the rate its link has now

    def share(self, ap: str, rssi: float) -> tuple[float, int, float]:
        """(the table's rate at ``rssi``, users on ``ap``, this user's share)."""
        rate = self.table.rate_mbps(rssi)
        users = max(1, self.attachments.count(ap))
        return rate, users, max(FLOOR_MBPS, airtime_share(rate, users, self.capacities.get(ap)))

    def update(self, port: RadioPort, rssi: float) -> float:
        """Set the link to ``port.ap`` to this user's share; returns the rate it has."""
        rate, users, share = self.share(port.ap, rssi)
        before = self.applied.get(port.ap)
        if before is None or abs(share - before) > CHANGE * before:
            self._set(port, share)
            self.applied[port.ap] = share
            self.emit("radio.rate", user=self.user, ap=port.ap, rssi=round(rssi, 2),
                      snr=round(rssi - self.table.noise_floor_dbm, 2), table_mbps=rate, users=users,
                      mbps=round(share, 3))
        return share

    @staticmethod
    def _set(port: RadioPort, mbps: float) -> None:
        commands = [rate_command(port.interface, mbps).split()]
        if port.station_interface and port.station_pid:
            commands.append(["nsenter", f"--net=/proc/{port.station_pid}/ns/net",
                             *rate_command(port.station_interface, mbps).split()])
        for command in commands:
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
