"""Data rate from signal strength: modulation and coding tables (pure data and a lookup).

A table is a list of (minimum SNR in dB, rate in Mbit/s), from the most robust
modulation up.  The rate at an RSSI is that of the fastest entry whose SNR
threshold ``RSSI - noise floor`` reaches (0 below the first).  The emulated
radio link and the planners' estimate of eq. (4) use the same table.
"""

from __future__ import annotations

from dataclasses import dataclass

TABLES: dict[str, list[tuple[float, float]]] = {
    # 802.11n, 20 MHz, one spatial stream, 800 ns guard interval, MCS 0-7 (seed 002 ref. [15])
    "802.11n": [(5, 6.5), (8, 13.0), (11, 19.5), (14, 26.0), (18, 39.0), (22, 52.0), (24, 58.5), (26, 65.0)],
}


@dataclass(frozen=True)
class RateTable:
    steps: tuple[tuple[float, float], ...]
    noise_floor_dbm: float = -95.0

    @classmethod
    def named(cls, table: str | list, noise_floor_dbm: float) -> "RateTable":
        steps = TABLES[table] if isinstance(table, str) else table
        return cls(tuple((float(snr), float(mbps)) for snr, mbps in steps), float(noise_floor_dbm))

    def rate_mbps(self, rssi_dbm: float) -> float:
        """Data rate at ``rssi_dbm`` (0: below the most robust modulation)."""
        snr = rssi_dbm - self.noise_floor_dbm
        rate = 0.0
        for threshold, mbps in self.steps:
            if snr >= threshold:
                rate = mbps
        return rate
