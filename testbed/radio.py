"""Radio model: log-distance path loss, RSSI, and handover by relative hysteresis.

Path loss (Rappaport, seed 002 ref. [7]):

    PL(d) = PL(d0) + 10 n log10(d / d0) + X_sigma,     RSSI = P_tx - PL(d)

with X_sigma a zero-mean Gaussian (dB) drawn per base station and per sample
from a seeded generator (so a run is repeatable), and d clamped to at least d0.
A base station is usable when its RSSI reaches the receiver sensitivity
(constraint 3d of seed 002).  Handover uses relative hysteresis (seed 002 ref.
[16]): leave the serving station for another when the other is stronger by at
least ``hysteresis`` dB, or at once when the serving one falls below the
sensitivity.
"""

from __future__ import annotations

import hashlib
import math
import random

from testbed.config import RadioSpec
from testbed.deprecation import module_getattr
from testbed.mobility.base import Point, distance


class PathLoss:
    def __init__(self, params: RadioSpec, seed: int = 0):
        self.params = params
        self.seed = seed

    def mean_path_loss(self, d: float) -> float:
        p = self.params
        return p.pl_d0_db + 10 * p.exponent * math.log10(max(d, p.d0_m) / p.d0_m)

    def shadowing(self, station: str, sample: int) -> float:
        """X_sigma for ``station`` at sample ``sample``: the same for the same seed, always."""
        if not self.params.shadowing_sigma_db:
            return 0.0
        key = hashlib.blake2b(f"{self.seed}:{station}:{sample}".encode(), digest_size=8).digest()
        return random.Random(int.from_bytes(key, "big")).gauss(0.0, self.params.shadowing_sigma_db)

    def rssi(self, station: str, station_position: Point, user_position: Point, sample: int = 0) -> float:
        d = distance(station_position, user_position)
        return self.params.tx_power_dbm - self.mean_path_loss(d) - self.shadowing(station, sample)

    def distance_for_rssi(self, rssi: float) -> float:
        """Inverse of the mean model: at what distance the RSSI falls to ``rssi``."""
        p = self.params
        return p.d0_m * 10 ** ((p.tx_power_dbm - p.pl_d0_db - rssi) / (10 * p.exponent))

    def all(self, stations: dict[str, Point], user_position: Point, sample: int = 0) -> dict[str, float]:
        return {name: self.rssi(name, position, user_position, sample) for name, position in stations.items()}


class HysteresisHandover:
    """Decides, from one set of RSSI samples, whether and where to hand over."""

    def __init__(self, params: RadioSpec):
        self.params = params

    def usable(self, rssi: dict[str, float]) -> dict[str, float]:
        return {s: r for s, r in rssi.items() if r >= self.params.sensitivity_dbm}

    def best(self, rssi: dict[str, float]) -> str | None:
        usable = self.usable(rssi)
        return max(sorted(usable), key=lambda s: usable[s]) if usable else None

    def decide(self, serving: str | None, rssi: dict[str, float]) -> str | None:
        """The station to hand over to now, or None to stay."""
        best = self.best(rssi)
        if best is None or best == serving:
            return None
        if serving is None or rssi.get(serving, -math.inf) < self.params.sensitivity_dbm:
            return best
        if rssi[best] >= rssi[serving] + self.params.hysteresis_db:
            return best
        return None


def _radio_params(**params) -> RadioSpec:
    if "handover_time_s" in params:
        params["handover_time"] = f"{params.pop('handover_time_s')!r}s"
    return RadioSpec(**params)


__getattr__ = module_getattr(__name__, {"RadioParams": ("testbed.config.RadioSpec (handover_time_s is now "
                                                        "handover_time)", lambda: _radio_params)})
