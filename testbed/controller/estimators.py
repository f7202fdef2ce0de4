"""Seed 002's estimators: E2E delay change (eq. 4), migration time (eq. 5), downtime.

Units: seconds, bytes, Mbit/s.  ``C`` is a server's computational power
(relative, from the topology), ``B`` a bandwidth, ``RTT`` a round trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from testbed.rates import RateTable

DEFAULT_RATES = RateTable.named("802.11n", -95.0)

def wireless_rate_mbps(rssi_dbm: float, table: RateTable | None = None) -> float:
    """Data rate estimated from RSSI (0 below the lowest modulation's SNR); 802.11n by default."""
    return (table or DEFAULT_RATES).rate_mbps(rssi_dbm)


@dataclass(frozen=True)
class PathEstimate:
    """What a user sees through base station b to server s."""

    bandwidth_mbps: float    # B_ubs = min(B_ub, B_bs)
    rtt_s: float             # RTT_bs (the radio hop's propagation is neglected, as in the paper)
    compute: float           # C_s


def e2e(proc_s_at_reference: float, reference_compute: float, task_bytes: float, path: PathEstimate) -> float:
    """Estimated E2E delay: processing scaled by computational power + transmission + propagation."""
    processing = proc_s_at_reference * reference_compute / path.compute
    transmission = task_bytes * 8 / (path.bandwidth_mbps * 1e6) if path.bandwidth_mbps > 0 else float("inf")
    return processing + transmission + path.rtt_s


def e2e_change(proc_s: float, task_bytes: float, now: PathEstimate, new: PathEstimate) -> float:
    """Eq. (4): d_ubs - d_ub's' (positive when the new placement is faster)."""
    processing = proc_s * (1 - now.compute / new.compute)
    transmission = task_bytes * 8 / 1e6 * (1 / now.bandwidth_mbps - 1 / new.bandwidth_mbps)
    return processing + transmission + (now.rtt_s - new.rtt_s)


def transfer_seconds(size: float, bandwidth_mbps: float, rtt_s: float, mss: int = 1448,
                     initial_window: int = 10) -> float:
    """Time to move ``size`` bytes over a fresh TCP connection: handshake, slow start
    from IW10 until the path is full, then line rate, then the last byte's trip.
    (Eq. 5 writes S / B; on a 100-300 ms WAN slow start dominates transfers of a
    few MB, so the estimate models it.)"""
    rate = bandwidth_mbps * 1e6 / 8
    window, sent, elapsed = initial_window * mss, 0.0, rtt_s
    while sent + window < size and window < rate * rtt_s:
        sent += window
        window *= 2
        elapsed += rtt_s
    return elapsed + (size - sent) / rate + rtt_s / 2


def warm_transfer_seconds(size: float, bandwidth_mbps: float, rtt_s: float) -> float:
    """Time to move ``size`` bytes over a connection whose window a transfer just opened
    to the path (no handshake, no slow start): line rate, then the last byte's trip."""
    return size * 8 / (bandwidth_mbps * 1e6) + rtt_s / 2


@dataclass
class RunningFit:
    """k minimising sum (y - k x)^2, kept as sums while points arrive (a simulated city's
    day observes hundreds of thousands of migrations).  With x = 1 it is the mean of y."""

    sxx: float = 0.0
    sxy: float = 0.0
    count: int = 0

    def add(self, x: float, y: float) -> None:
        self.sxx += x * x
        self.sxy += x * y
        self.count += 1

    @property
    def slope(self) -> float | None:
        return self.sxy / self.sxx if self.sxx > 0 else None


@dataclass
class MigrationTimeModel:
    """Eq. (5) with psi_s and rho_s learned from each server's history.

    T_chkpt = psi_s S_D / C_s;  T_restore = rho_s' (S_D + S_lambda + S_dlambda) / C_s';
    transfers: ``transfer_seconds`` over the path between the servers (the
    pre-transfer at ``precopy_share`` of its bandwidth; the final one warm when
    ``warm_final_transfer``); plus the
    destination's set-up (creating the container that will take the state),
    also learned.
    """

    default_psi: float              # s per byte of image at C = 1 (the calibration's, until measured here)
    default_rho: float              # s per byte restored at C = 1
    default_setup: float            # s to create the destination container
    checkpoints: dict[str, RunningFit] = field(default_factory=dict)   # per server: seconds vs bytes / C
    restores: dict[str, RunningFit] = field(default_factory=dict)
    setups: dict[str, RunningFit] = field(default_factory=dict)        # per server: the mean
    precopy_share: float = 1.0      # of the path's bandwidth the pre-transfer may take (paced)
    warm_final_transfer: bool = False   # the delta follows the pre-copy on its open window
    version: int = 0                # counts what was learned: an estimate holds while it stands
    _learned_now: tuple = field(default=(-1, {}), init=False, repr=False, compare=False)  # (version, per server)

    @classmethod
    def from_calibration(cls, calibration) -> "MigrationTimeModel":
        """Starting from a ``CalibrationSpec`` (measured on this testbed)."""
        return cls(default_psi=calibration.psi_s_per_byte, default_rho=calibration.rho_s_per_byte,
                   default_setup=calibration.setup_s)

    def observe_setup(self, server: str, seconds: float) -> None:
        self.setups.setdefault(server, RunningFit()).add(1.0, seconds)
        self.version += 1

    def setup(self, server: str) -> float:
        learned = self._learned(self.setups, server)
        return self.default_setup if learned is None else learned

    def observe_checkpoint(self, server: str, seconds: float, image_bytes: float, compute: float) -> None:
        self.checkpoints.setdefault(server, RunningFit()).add(image_bytes / compute, seconds)
        self.version += 1

    def observe_restore(self, server: str, seconds: float, restored_bytes: float, compute: float) -> None:
        self.restores.setdefault(server, RunningFit()).add(restored_bytes / compute, seconds)
        self.version += 1

    def psi(self, server: str) -> float:
        return self._learned(self.checkpoints, server) or self.default_psi

    def rho(self, server: str) -> float:
        return self._learned(self.restores, server) or self.default_rho

    @staticmethod
    def _learned(fits: dict[str, RunningFit], server: str) -> float | None:
        fit = fits.get(server)
        return fit.slope if fit is not None else None

    def checkpoint_seconds(self, server: str, image_bytes: float, compute: float) -> float:
        return self.psi(server) * image_bytes / compute

    def pre_transfer_seconds(self, full_bytes: float, bandwidth_mbps: float, one_way_s: float) -> float:
        """The pre-transfer of a full checkpoint (at ``precopy_share`` of the path): nothing
        learned, so it holds as long as the path."""
        return transfer_seconds(full_bytes, bandwidth_mbps * self.precopy_share, 2 * one_way_s)

    def longest_pre_migration(self, source: str, image_bytes: float, compute_source: float,
                              pre_transfers: dict[str, float]) -> float:
        """The longest T_setup + T_chkpt + T_pre_trans from ``source`` to any destination of
        ``pre_transfers`` (destination -> ``pre_transfer_seconds`` there), as ``estimate``'s;
        0 with no destination."""
        if not pre_transfers:
            return 0.0
        t_chkpt = self.checkpoint_seconds(source, image_bytes, compute_source)
        seconds = np.fromiter(pre_transfers.values(), float, len(pre_transfers))
        return float(np.max(self._each(self.setup, tuple(pre_transfers)) + t_chkpt + seconds))

    def final_transfer_seconds(self, delta_bytes: float, bandwidth_mbps: float, one_way_s: float) -> float:
        """The migration phase's transfer: on the window the pre-copy left open when the
        agents' channel keeps it (``warm_final_transfer``), else on a fresh connection."""
        if self.warm_final_transfer:
            return warm_transfer_seconds(delta_bytes, bandwidth_mbps, 2 * one_way_s)
        return transfer_seconds(delta_bytes, bandwidth_mbps, 2 * one_way_s)

    def migration_seconds(self, source: str, dests: list[str], image_bytes: float, full_bytes: float,
                          delta_bytes: float, final_transfers: np.ndarray, compute_source: float,
                          computes: np.ndarray) -> np.ndarray:
        """``estimate``'s T_mig to each of ``dests`` at once (``final_transfers``: each one's
        ``final_transfer_seconds``, ``computes``: each one's C_s'): a decision in a city weighs
        every service against every server."""
        restored = image_bytes + full_bytes + delta_bytes
        return self.checkpoint_seconds(source, image_bytes, compute_source) + final_transfers \
            + self._each(self.rho, tuple(dests)) * restored / computes

    def _each(self, learned, servers: tuple[str, ...]) -> np.ndarray:
        """``learned`` (``rho`` or ``setup``) of each of ``servers``, kept while nothing new is
        learned (a city asks for every server at every decision)."""
        if self._learned_now[0] != self.version:
            self._learned_now = (self.version, {})
        key = (learned.__name__, servers)
        found = self._learned_now[1].get(key)
        if found is None:
            each = self._learned_now[1].setdefault(learned.__name__, {})     # per server: asked of every source
            found = self._learned_now[1][key] = np.array(
                [each[server] if server in each else each.setdefault(server, learned(server)) for server in servers],
                dtype=float)
        return found

    def estimate(self, source: str, dest: str, image_bytes: float, full_bytes: float, delta_bytes: float,
                 bandwidth_mbps: float, one_way_s: float, compute_source: float, compute_dest: float) -> dict:
        t_chkpt = self.checkpoint_seconds(source, image_bytes, compute_source)
        t_pre_trans = self.pre_transfer_seconds(full_bytes, bandwidth_mbps, one_way_s)
        t_trans = self.final_transfer_seconds(delta_bytes, bandwidth_mbps, one_way_s)
        t_restore = self.rho(dest) * (image_bytes + full_bytes + delta_bytes) / compute_dest
        t_setup = self.setup(dest)
        t_pre = t_setup + t_chkpt + t_pre_trans
        t_mig = t_chkpt + t_trans + t_restore
        return {"setup_s": t_setup, "checkpoint_s": t_chkpt, "pre_transfer_s": t_pre_trans,
                "transfer_s": t_trans, "restore_s": t_restore, "pre_migration_s": t_pre, "migration_s": t_mig,
                "total_s": t_pre + t_mig}


def downtime(migration_s: float | np.ndarray | None, handover_s: float | None) -> float | np.ndarray:
    """DT = max(T_mig, T_ho), either may be absent (nothing moves: 0); T_mig may be an array
    (one per server: a decision weighs them all)."""
    if isinstance(migration_s, np.ndarray):
        return np.maximum(migration_s, handover_s or 0.0)
    return max(migration_s or 0.0, handover_s or 0.0)


def fit_calibration(migrations: list[dict]) -> dict:
    """Eq. (5)'s psi, rho and set-up time from migration records, each with ``phases``
    (``final_checkpoint``, ``restore``, ``prepare``), ``image_bytes``, ``compute_source``,
    ``compute_dest`` and ``sizes`` (``pre_checkpoint``/``final_checkpoint``, ``delta``)."""
    checkpoints, restores, setups = RunningFit(), RunningFit(), []
    for record in migrations:
        phases, sizes = record["phases"], record.get("sizes", {})
        image = float(record["image_bytes"])
        if "final_checkpoint" in phases:
            checkpoints.add(image / record["compute_source"], phases["final_checkpoint"]["seconds"])
        if "restore" in phases and record.get("ok"):
            state = sizes.get("pre_checkpoint", sizes.get("final_checkpoint", 0)) + sizes.get("delta", 0)
            restores.add((image + state) / record["compute_dest"], phases["restore"]["seconds"])
        if "prepare" in phases:
            setups.append(phases["prepare"]["seconds"])
    psi, rho = checkpoints.slope, restores.slope
    if psi is None or rho is None or not setups:
        raise ValueError("the records hold no checkpoint, restore or set-up to fit")
    return {"psi_s_per_byte": psi, "rho_s_per_byte": rho, "setup_s": sorted(setups)[len(setups) // 2],
            "migrations": len(migrations)}
