"""Battery aging: the cycle + calendar model of Xu et al. (IEEE Trans. Smart Grid 9(2), 2018).

Capacity loss is a function of a cumulative stress ``f_d`` (Xu's eq. for SEI + linear aging)::

    L(f_d) = 1 - alpha_sei * exp(-beta_sei * f_d) - (1 - alpha_sei) * exp(-f_d)
    SoH    = 1 - L

Each half cycle of depth ``delta`` and mean SoC ``sigma`` adds ``0.5 * f_delta(delta) * f_sigma(sigma)``
with ``f_delta(delta) = 1 / (k_delta1 * delta**k_delta2 + k_delta3)`` and
``f_sigma(sigma) = exp(k_sigma * (sigma - sigma_ref))``; every second adds ``k_time * f_sigma(soc)``
(calendar aging, 25 °C so the temperature stress is 1).

Half cycles are found on line, vectorized over microgrids, by turning-point detection with a
hysteresis band (a reversal smaller than ``cycle_hysteresis`` is ignored): the streaming equivalent of
rainflow counting for the charge/discharge swings of a day. Unlike full rainflow it does not pair a
small cycle nested inside a larger one; the hysteresis keeps such small ripples from splitting the
large swing.
"""

from __future__ import annotations

import numpy as np

from ..scenario import DegradationConfig


def capacity_loss(stress: np.ndarray | float, cfg: DegradationConfig) -> np.ndarray:
    """Fraction of nominal capacity lost for a cumulative stress ``f_d``."""
    stress = np.asarray(stress, dtype=np.float64)
    return 1.0 - cfg.alpha_sei * np.exp(-cfg.beta_sei * stress) - (1.0 - cfg.alpha_sei) * np.exp(-stress)


def stress_for_soh(soh: float, cfg: DegradationConfig) -> float:
    """Inverse of :func:`capacity_loss`: the stress at which the state of health equals ``soh``."""
    if soh >= 1.0:
        return 0.0
    lo, hi = 0.0, 50.0  # L is increasing in stress and reaches 1 - 1e-20 well before 50
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if 1.0 - float(capacity_loss(mid, cfg)) > soh:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def half_cycle_stress(depth: np.ndarray, mean_soc: np.ndarray, cfg: DegradationConfig) -> np.ndarray:
    """Stress of half cycles of the given depths and mean SoCs (zero for zero depth)."""
    safe = np.maximum(depth, 1e-12)
    f_depth = 1.0 / (cfg.k_delta1 * safe**cfg.k_delta2 + cfg.k_delta3)
    return np.where(depth > 0, 0.5 * f_depth * soc_stress(mean_soc, cfg), 0.0)


def soc_stress(soc: np.ndarray, cfg: DegradationConfig) -> np.ndarray:
    return np.exp(cfg.k_sigma * (soc - cfg.sigma_ref))


class HalfCycleCounter:
    """Turning-point half-cycle counter over N microgrids (state kept as arrays).

    :param n: number of microgrids
    :param cfg: degradation parameters (hysteresis band and stress functions)
    """

    def __init__(self, n: int, cfg: DegradationConfig) -> None:
        self.cfg = cfg
        self.last_turn = np.zeros(n)  # SoC at the last turning point
        self.extreme = np.zeros(n)  # furthest SoC reached since then
        self.direction = np.zeros(n)  # +1 charging, -1 discharging, 0 undecided

    def reset(self, soc: np.ndarray, mask: np.ndarray | slice = slice(None)) -> None:
        self.last_turn[mask] = soc[mask]
        self.extreme[mask] = soc[mask]
        self.direction[mask] = 0.0

    def update(self, soc: np.ndarray) -> np.ndarray:
        """Feed the SoC after a step; return the stress of the half cycles closed by it."""
        d = self.direction
        hyst = self.cfg.cycle_hysteresis
        ext = np.where(d > 0, np.maximum(self.extreme, soc), np.where(d < 0, np.minimum(self.extreme, soc), self.extreme))
        move = soc - ext
        turned = (d * move < -hyst) | ((d == 0) & (np.abs(soc - self.last_turn) > hyst))
        self.extreme = ext
        if not turned.any():
            return np.zeros_like(soc)
        closing = turned & (d != 0)
        stress = np.where(
            closing, half_cycle_stress(np.abs(ext - self.last_turn), 0.5 * (ext + self.last_turn), self.cfg), 0.0
        )
        # A decided direction turns at the extreme; an undecided one starts from the last turning point.
        self.last_turn = np.where(closing, ext, self.last_turn)
        self.direction = np.where(turned, np.where(closing, -d, np.sign(soc - self.last_turn)), d)
        self.extreme = np.where(turned, soc, ext)
        return stress

    def close(self, soc: np.ndarray) -> np.ndarray:
        """Close the half cycle in progress (at a day boundary); return its stress."""
        end = np.where(self.direction != 0, self.extreme, soc)
        stress = half_cycle_stress(np.abs(end - self.last_turn), 0.5 * (end + self.last_turn), self.cfg)
        self.reset(soc)
        return stress
