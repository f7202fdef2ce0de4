"""Radio model: log-distance path loss, RSSI, shadowing, and the handover rules.

Path loss (Rappaport, seed 002 ref. [7]):

    PL(d) = PL(d0) + 10 n log10(d / d0) + X_sigma,     RSSI = P_tx - PL(d)

with d clamped to at least d0 and X_sigma a zero-mean Gaussian (dB), seeded per
base station so that a run is repeatable: drawn anew for every sample, or, with
a decorrelation distance d_c, spatially correlated (Gudmundson: the correlation
of two samples d metres apart is exp(-d / d_c)), so that a user standing still
sees a steady signal.  A base station is usable when its RSSI reaches the
receiver sensitivity (constraint 3d of seed 002).  Handover rules:

* ``hysteresis`` (seed 002 ref. [16]): leave the serving station for another
  when the other is stronger by at least ``hysteresis`` dB;
* ``a3`` (3GPP's A3 event): the same condition, held for ``time_to_trigger``.

Both leave at once when the serving station falls below the sensitivity.
"""

from __future__ import annotations

import hashlib
import math
import random

import numpy as np

from testbed.config import RadioSpec
from testbed.deprecation import module_getattr
from testbed.mobility.base import Point, distance


class PathLoss:
    def __init__(self, params: RadioSpec, seed: int = 0, user: str = ""):
        """Shadowing is seeded by ``seed``, ``user`` and the base station: each user's own."""
        self.params = params
        self.seed = seed
        self.user = user
        self._correlated: dict[str, CorrelatedShadowing] = {}

    def mean_path_loss(self, d: float) -> float:
        p = self.params
        return p.pl_d0_db + 10 * p.exponent * math.log10(max(d, p.d0_m) / p.d0_m)

    def shadowing(self, station: str, sample: int) -> float:
        """X_sigma for ``station`` at sample ``sample``: the same for the same seed, always."""
        if not self.params.shadowing_sigma_db:
            return 0.0
        key = hashlib.blake2b(f"{self.seed}:{self.user}:{station}:{sample}".encode(), digest_size=8).digest()
        return random.Random(int.from_bytes(key, "big")).gauss(0.0, self.params.shadowing_sigma_db)

    def mean_rssi_at(self, distance):
        """The mean model's RSSI at ``distance`` metres, for an array of distances at once (the
        simulator's users)."""
        p = self.params
        return p.tx_power_dbm - (p.pl_d0_db + 10 * p.exponent * np.log10(np.maximum(distance, p.d0_m) / p.d0_m))

    def mean_rssi(self, station_position: Point, user_position: Point) -> float:
        """The RSSI of the mean model (no shadowing): what a planner predicts."""
        return self.params.tx_power_dbm - self.mean_path_loss(distance(station_position, user_position))

    def rssi(self, station: str, station_position: Point, user_position: Point, sample: int = 0) -> float:
        if self.params.shadowing_sigma_db and self.params.shadowing_decorrelation_m > 0:
            process = self._correlated.get(station)
            if process is None:
                process = self._correlated[station] = CorrelatedShadowing(
                    self.params.shadowing_sigma_db, self.params.shadowing_decorrelation_m,
                    f"{self.seed}:{self.user}:{station}")
            shadowing = process.at(user_position)
        else:
            shadowing = self.shadowing(station, sample)
        return self.mean_rssi(station_position, user_position) - shadowing

    def distance_for_rssi(self, rssi: float) -> float:
        """Inverse of the mean model: at what distance the RSSI falls to ``rssi``."""
        p = self.params
        return p.d0_m * 10 ** ((p.tx_power_dbm - p.pl_d0_db - rssi) / (10 * p.exponent))

    def all(self, stations: dict[str, Point], user_position: Point, sample: int = 0) -> dict[str, float]:
        return {name: self.rssi(name, position, user_position, sample) for name, position in stations.items()}


class CorrelatedShadowing:
    """Gudmundson's model: a first-order process over the distance travelled,
    X' = rho X + sigma sqrt(1 - rho^2) N(0, 1) with rho = exp(-d / d_c)."""

    def __init__(self, sigma_db: float, decorrelation_m: float, key: str):
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        self.random = random.Random(int.from_bytes(digest, "big"))
        self.sigma = sigma_db
        self.decorrelation = decorrelation_m
        self.position: Point | None = None
        self.value = 0.0

    def at(self, position: Point) -> float:
        if self.position is None:
            self.value = self.random.gauss(0.0, self.sigma)
        else:
            moved = distance(self.position, position)
            if moved == 0:
                return self.value
            rho = math.exp(-moved / self.decorrelation)
            self.value = rho * self.value + self.sigma * math.sqrt(1 - rho * rho) * self.random.gauss(0.0, 1.0)
        self.position = tuple(position)
        return self.value


class HysteresisHandover:
    """Decides, from one set of RSSI samples, whether and where to hand over."""

    time_to_trigger = 0.0

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

    def decide_at(self, serving: str | None, rssi: dict[str, float], t: float) -> str | None:
        """As ``decide``; ``t`` (seconds) matters to rules with a time to trigger."""
        return self.decide(serving, rssi)

    def first_decision(self, serving: str, stations: list[str], rssi: np.ndarray,
                       times: np.ndarray) -> tuple[float, str] | None:
        """The first of ``times`` at which the rule moves a user served by ``serving``, and where:
        ``rssi[k, j]`` is station ``stations[j]``'s at ``times[k]`` (-inf where not heard; the
        serving station may be missing).  Columns in name order, as ``best`` breaks ties.
        Stateless, so all times at once."""
        own = stations.index(serving) if serving in stations else -1
        moves, best = self.moves(rssi[None], np.array([own]))
        if not moves.any():
            return None
        k = int(np.argmax(moves[0]))
        return float(times[k]), stations[best[0, k]]

    def moves(self, rssi: np.ndarray, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For many users at once: ``rssi[u, k, j]`` is user u's from its column j at time k
        (-inf where not heard), ``own[u]`` its serving station's column (-1: none of them).
        Returns whether the rule moves u at k, and to which column (the strongest usable, the
        first of equals)."""
        sensitivity = self.params.sensitivity_dbm
        usable = rssi >= sensitivity
        best = np.argmax(np.where(usable, rssi, -np.inf), axis=2)
        best_rssi = np.take_along_axis(rssi, best[:, :, None], axis=2)[:, :, 0]
        own_rssi = np.where(own[:, None] >= 0,
                            np.take_along_axis(rssi, np.maximum(own, 0)[:, None, None], axis=2)[:, :, 0], -np.inf)
        moves = usable.any(axis=2) & (best != own[:, None]) & (
            (own_rssi < sensitivity) | (best_rssi >= own_rssi + self.params.hysteresis_db))
        return moves, best

    def action(self, serving: str | None, rssi: dict[str, float], t: float,
               user_decides: bool = True) -> tuple[str, str | None] | None:
        """What the user's radio does after the samples ``rssi`` at ``t``, or None:

        * ``("attach", b)``: it had no station and now hears ``b``;
        * ``("handover", b)``: the rule moves it to ``b`` (only if ``user_decides``);
        * ``("forced", b)``: the serving station fell below the sensitivity, ``b`` is heard;
        * ``("lost", None)``: the serving station fell below the sensitivity and nothing is heard.
        """
        target = self.decide_at(serving, rssi, t)
        lost_serving = serving is not None and rssi.get(serving, -math.inf) < self.params.sensitivity_dbm
        if serving is None:
            return ("attach", target) if target else None
        if lost_serving:
            return ("forced", target) if target else ("lost", None)
        return ("handover", target) if target and user_decides else None


class A3Handover(HysteresisHandover):
    """3GPP's A3 event: a neighbour stronger than the serving station by the hysteresis
    (its offset) for ``time_to_trigger`` seconds in a row.  Stateful: one per user."""

    def __init__(self, params: RadioSpec):
        super().__init__(params)
        self.time_to_trigger = params.time_to_trigger
        self._since: dict[str, float] = {}       # neighbour -> when its condition began

    def first_decision(self, serving, stations, rssi, times):
        """As the base rule's, one time after another (the time to trigger keeps state)."""
        for t, row in zip(times.tolist(), rssi.tolist()):
            target = self.decide_at(serving, {b: r for b, r in zip(stations, row) if r > -math.inf}, t)
            if target:
                return t, target
        return None

    def decide_at(self, serving: str | None, rssi: dict[str, float], t: float) -> str | None:
        best = self.best(rssi)
        if best is None or serving is None or rssi.get(serving, -math.inf) < self.params.sensitivity_dbm:
            self._since.clear()
            return best if best != serving else None
        entering = {s for s, r in self.usable(rssi).items() if s != serving and
                    r >= rssi[serving] + self.params.hysteresis_db}
        self._since = {s: self._since.get(s, t) for s in entering}
        ready = [s for s, since in self._since.items() if t - since >= self.time_to_trigger - 1e-9]
        if not ready:
            return None
        self._since.clear()
        return max(sorted(ready), key=lambda s: rssi[s])


def handover_rule(params: RadioSpec) -> HysteresisHandover:
    """The rule the radio settings name (a fresh one: A3 keeps state per user)."""
    return A3Handover(params) if params.handover_rule == "a3" else HysteresisHandover(params)


def _radio_params(**params) -> RadioSpec:
    if "handover_time_s" in params:
        params["handover_time"] = f"{params.pop('handover_time_s')!r}s"
    return RadioSpec(**params)


__getattr__ = module_getattr(__name__, {"RadioParams": ("testbed.config.RadioSpec (handover_time_s is now "
                                                        "handover_time)", lambda: _radio_params)})


def replay_walk(params: RadioSpec, stations: dict[str, Point], position_at, duration: float,
                tick: float = 0.1, seed: int = 0, user: str = "") -> list[tuple[float, str, str | None, str | None]]:
    """What a user that decides its own handovers does on a walk, without a network: the
    mobile user's tick loop (samples at k x tick, no decision while a handover's
    ``handover_time`` runs).  Returns (sim_t, action, from, to) for every attach,
    handover, forced handover and loss of coverage.  Used to predict and count."""
    loss, rule = PathLoss(params, seed=seed, user=user), handover_rule(params)
    serving, busy_until, actions = None, -math.inf, []
    for k in range(int(duration / tick) + 1):
        t = k * tick
        rssi = loss.all(stations, position_at(t), sample=k)
        if t < busy_until - 1e-9:
            continue
        action = rule.action(serving, rssi, t)
        if action is None:
            continue
        kind, target = action
        actions.append((round(t, 6), kind, serving, target))
        if kind in ("handover", "forced"):
            busy_until = t + params.handover_time
        serving = target
    return actions
