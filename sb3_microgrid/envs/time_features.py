"""The time features that open the observation, from the clock and the calendar alone (numpy only: the env
computes them for every step of its data, the site controller for the step it decides)."""

from __future__ import annotations

import numpy as np

#: Names of the time features at the start of the static block, in order.
TIME_FEATURES = ("hour_sin", "hour_cos", "doy_sin", "doy_cos", "weekend", "holiday")


def time_features(hours: np.ndarray, day_of_year: np.ndarray, weekend: np.ndarray, holiday: np.ndarray) -> np.ndarray:
    """``(steps, len(TIME_FEATURES))`` features of steps.

    :param hours: hour of day of each step's start, fractional (:func:`step_hours`)
    :param day_of_year: day of the year, 1 to 366
    :param weekend: 1.0 on Saturday and Sunday, else 0.0
    :param holiday: 1.0 on a holiday, else 0.0
    """
    two_pi = 2.0 * np.pi
    doy = day_of_year / 365.25
    return np.stack([np.sin(two_pi * hours / 24), np.cos(two_pi * hours / 24), np.sin(two_pi * doy), np.cos(two_pi * doy), weekend, holiday], axis=1)


def step_hours(step_in_day: np.ndarray | int, steps_per_day: int) -> np.ndarray:
    """Hour of day of the start of each step, from its index in the day (0 first), not from a clock: a step of 1/7 h
    starts at no whole number of seconds, so a timestamp's rounding put a step into the one before.

    :param step_in_day: the steps' indices within their day
    :param steps_per_day: steps a day (``Scenario.steps_per_day``, a multiple of 24)
    """
    return np.asarray(step_in_day) / (steps_per_day // 24)
