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
    # 802.11ac, 80 MHz, one spatial stream, 800 ns guard interval, MCS 0-9 (the same source's SNR steps;
    # an 80 MHz channel's noise floor is about -89 dBm)
    "802.11ac": [(5, 29.3), (8, 58.5), (11, 87.8), (14, 117.0), (18, 175.5), (22, 234.0), (24, 263.3),
                 (26, 292.5), (30, 351.0), (32, 390.0)],
    # LTE, 20 MHz, one layer: CQI 1-15 (3GPP TS 36.213 table 7.2.3-1 spectral efficiencies, x 20 MHz x 0.75
    # for control and reference signals) at the SNR each needs for a 10 % block error rate
    "lte-cqi": [(-6.7, 2.3), (-4.7, 3.5), (-2.3, 5.7), (0.2, 9.0), (2.4, 13.2), (4.3, 17.6), (5.9, 22.1),
                (8.1, 28.7), (10.3, 36.1), (11.7, 41.0), (14.1, 49.8), (16.3, 58.5), (18.7, 67.9),
                (21.0, 76.7), (22.7, 83.3)],
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
            if snr >= threshold - 1e-9:      # a threshold reached up to rounding
                rate = mbps
        return rate


def airtime_share(rate_mbps: float, users: int, capacity_mbps: float | None = None) -> float:
    """What one of ``users`` attached to a base station gets at its own rate: the rate (capped by
    the station's capacity) for 1/users of the airtime (802.11's airtime fairness)."""
    rate = rate_mbps if capacity_mbps is None else min(rate_mbps, capacity_mbps)
    return rate / max(1, users)
