"""Battery aging: the cycle + calendar model of Xu et al. (IEEE Trans. Smart Grid 9(2), 2018).

Capacity loss is a function of a cumulative stress ``f_d`` (SEI formation plus linear aging)::

    L(f_d) = 1 - alpha_sei * exp(-beta_sei * f_d) - (1 - alpha_sei) * exp(-f_d)
    SoH    = 1 - L

Each half cycle of depth ``delta`` and mean SoC ``sigma`` adds ``0.5 * f_delta(delta) * f_sigma(sigma)``
with ``f_delta(delta) = 1 / (k_delta1 * delta**k_delta2 + k_delta3)`` and
``f_sigma(sigma) = exp(k_sigma * (sigma - sigma_ref))``; every second adds ``k_time * f_sigma(soc)``
(calendar aging, at 25 °C so the temperature stress is 1).

Half cycles are found on line by turning-point detection with a hysteresis band
(:func:`track_turning_point`): a reversal smaller than ``cycle_hysteresis`` is ignored. This is the
streaming equivalent of rainflow counting for the charge/discharge swings of a day; unlike full
rainflow it does not pair a small cycle nested inside a larger one, and the hysteresis keeps such
ripples from splitting the large swing. The half cycle still open at midnight is closed then.

The functions are numba-compiled scalars: the step kernel calls them per microgrid, and Python
code (tests, the LP) calls the same ones.
"""

from __future__ import annotations

import math

from numba import njit

from ..scenario import DegradationConfig


@njit(cache=True)
def capacity_loss(stress: float, alpha_sei: float, beta_sei: float) -> float:
    """Fraction of nominal capacity lost at cumulative stress ``f_d``."""
    return 1.0 - alpha_sei * math.exp(-beta_sei * stress) - (1.0 - alpha_sei) * math.exp(-stress)


@njit(cache=True)
def soc_stress(soc: float, k_sigma: float, sigma_ref: float) -> float:
    return math.exp(k_sigma * (soc - sigma_ref))


@njit(cache=True)
def half_cycle_stress(depth: float, mean_soc: float, k1: float, k2: float, k3: float, k_sigma: float, sigma_ref: float) -> float:
    """Stress of one half cycle of the given depth and mean SoC (zero for zero depth)."""
    if depth <= 0.0:
        return 0.0
    return 0.5 / (k1 * depth**k2 + k3) * soc_stress(mean_soc, k_sigma, sigma_ref)


@njit(cache=True)
def track_turning_point(soc: float, last_turn: float, extreme: float, direction: float, hysteresis: float) -> tuple:
    """One step of the turning-point tracker.

    :return: ``(closed_depth, closed_mean, last_turn, extreme, direction)``; ``closed_depth`` is 0
        unless the step closed a half cycle.
    """
    if direction > 0.0:
        extreme = max(extreme, soc)
    elif direction < 0.0:
        extreme = min(extreme, soc)
    if direction != 0.0 and direction * (soc - extreme) < -hysteresis:
        depth, mean = abs(extreme - last_turn), 0.5 * (extreme + last_turn)
        return depth, mean, extreme, soc, -direction
    if direction == 0.0 and abs(soc - last_turn) > hysteresis:
        return 0.0, 0.0, last_turn, soc, 1.0 if soc > last_turn else -1.0
    return 0.0, 0.0, last_turn, extreme, direction


def stress_for_soh(soh: float, cfg: DegradationConfig) -> float:
    """Inverse of :func:`capacity_loss`: the stress at which the state of health equals ``soh``."""
    if soh >= 1.0:
        return 0.0
    lo, hi = 0.0, 50.0  # L rises with stress and is 1 to double precision well before 50
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if 1.0 - capacity_loss(mid, cfg.alpha_sei, cfg.beta_sei) > soh:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
