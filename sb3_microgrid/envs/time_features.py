"""The time features that open the observation, from the clock and the calendar alone (numpy only: the env
computes them for every step of its data, the site controller for the step it decides)."""

from __future__ import annotations

import numpy as np

#: Names of the time features at the start of the static block, in order.
TIME_FEATURES = ("hour_sin", "hour_cos", "doy_sin", "doy_cos", "weekend", "holiday")


def time_features(hours: np.ndarray, day_of_year: np.ndarray, weekend: np.ndarray, holiday: np.ndarray) -> np.ndarray:
    """``(steps, len(TIME_FEATURES))`` features of steps.

    :param hours: hour of day of each step's start, fractional (``hour + minute / 60``)
    :param day_of_year: day of the year, 1 to 366
    :param weekend: 1.0 on Saturday and Sunday, else 0.0
    :param holiday: 1.0 on a holiday, else 0.0
    """
    two_pi = 2.0 * np.pi
    doy = day_of_year / 365.25
    return np.stack([np.sin(two_pi * hours / 24), np.cos(two_pi * hours / 24), np.sin(two_pi * doy), np.cos(two_pi * doy), weekend, holiday], axis=1)
