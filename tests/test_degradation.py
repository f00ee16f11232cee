"""Battery aging: Xu et al. (2018) stress functions and the turning-point half-cycle tracker."""

import math

import numpy as np
import pytest

from sb3_microgrid.envs.degradation import capacity_loss, half_cycle_stress, stress_for_soh, track_turning_point
from sb3_microgrid.scenario import DegradationConfig

CFG = DegradationConfig()


def _stress(depth, mean=0.5):
    return half_cycle_stress(depth, mean, CFG.k_delta1, CFG.k_delta2, CFG.k_delta3, CFG.k_sigma, CFG.sigma_ref)


def test_capacity_loss_and_its_inverse():
    assert capacity_loss(0.0, CFG.alpha_sei, CFG.beta_sei) == 0.0
    for soh in (0.99, 0.9, 0.8):
        stress = stress_for_soh(soh, CFG)
        assert 1 - capacity_loss(stress, CFG.alpha_sei, CFG.beta_sei) == pytest.approx(soh, abs=1e-9)


def test_half_cycle_stress_matches_xu_formula():
    expected = 0.5 / (CFG.k_delta1 * 0.8**CFG.k_delta2 + CFG.k_delta3) * math.exp(CFG.k_sigma * (0.6 - CFG.sigma_ref))
    assert _stress(0.8, 0.6) == pytest.approx(expected)
    assert _stress(0.0) == 0.0
    assert _stress(0.2) < _stress(0.5) < _stress(1.0)  # deeper cycles age more
    assert 2 * _stress(0.5) < _stress(1.0)  # and more than in proportion


def _track(socs, hysteresis=CFG.cycle_hysteresis):
    last, ext, direction = socs[0], socs[0], 0.0
    closed = []
    for soc in socs[1:]:
        depth, mean, last, ext, direction = track_turning_point(soc, last, ext, direction, hysteresis)
        if depth > 0:
            closed.append((round(depth, 9), round(mean, 9)))
    return closed


def test_turning_points_of_a_triangle_wave():
    up = np.linspace(0.2, 0.8, 7)
    wave = np.concatenate([up, up[::-1][1:], up[1:], up[::-1][1:]])  # 0.2 -> 0.8 -> 0.2 -> 0.8 -> 0.2
    closed = _track(wave)
    assert closed == [(0.6, 0.5)] * 3  # the last half cycle stays open until closed at midnight


def test_ripples_inside_the_band_do_not_split_a_swing():
    swing = [0.2, 0.4, 0.39, 0.6, 0.595, 0.8, 0.5]
    assert _track(swing) == [(0.6, 0.5)]
    # without the band each ripple is a turning point and the 0.6 swing is split into small cycles
    assert [d for d, _ in _track(swing, hysteresis=0.001)] == [0.2, 0.01, 0.21, 0.005, 0.205]
