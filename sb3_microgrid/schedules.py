"""Picklable learning-rate schedules: ``value = schedule(progress_remaining)``, progress going from 1 to 0.

SB3 sets every optimizer's learning rate from ``model.lr_schedule`` at the start of each ``train()``,
so a schedule is the one place where a change of learning rate lasts; and ``PPO.load()`` rebuilds
``lr_schedule`` from the saved ``model.learning_rate``, so a schedule stored there survives a save.
These are plain classes rather than closures so that ``model.save()`` pickles them by reference.

A linear schedule is SB3's ``LinearSchedule(start, end, end_fraction)``
(``stable_baselines3.common.utils``); ``LinearSchedule(3e-4, 0.0, 1.0)`` is rl_zoo3's ``lin_3e-4``.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Union

from stable_baselines3.common import utils as sb3_utils
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule

ScheduleOrFloat = Union[Schedule, float]


def finite(value: Any, name: str) -> float:
    """``value`` as a float, or an error naming ``name``. Strings are refused with a hint: PyYAML
    (YAML 1.1) reads ``1e-3`` and ``1.0e9`` as strings, a float needing a dot and a signed exponent."""
    if isinstance(value, str):
        raise TypeError(f"{name} must be a number, got the string {value!r} (in YAML write 0.001 or 1.0e-3, 1.0e+9)")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if isinstance(value, int) and abs(value) > sys.float_info.max:  # float() and math.isfinite() raise OverflowError
        raise ValueError(f"{name} must be a finite number, got an integer of about 1e{math.log10(abs(value)):.0f}, beyond the float range")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _as_schedule(value: ScheduleOrFloat, name: str) -> Schedule:
    if isinstance(value, FloatSchedule):
        return value.value_schedule
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ConstantSchedule(finite(value, name))
    if not callable(value):
        raise TypeError(f"{name} must be a number or a callable schedule, got {value!r}")
    return value


class LinearSchedule(sb3_utils.LinearSchedule):
    """SB3's ``LinearSchedule`` under the path that models saved by version 0.1 pickled. Their schedule ran
    from ``start`` to ``end`` over the whole run and stored no ``end_fraction``; unpickled, it gets
    ``end_fraction = 1``, the same values. New code uses SB3's class.
    """

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"end_fraction": 1.0, **state})


class WarmupSchedule:
    """Linear warm-up from 0 to ``base`` over the first ``warmup_fraction`` of training, then ``base``.

    SB3's algorithms (and :class:`~sb3_microgrid.paired_ars.PairedARS`) evaluate the schedule after the first
    rollout's steps are counted, so the first update already gets a positive value; sb3-contrib's ``ARS``
    evaluates it before them, at progress 1, so its first update gets 0 and changes nothing.
    ``WarmupSchedule(LinearSchedule(3e-4, 0.0, 1.0), 0.05)`` warms up, then decays linearly.

    :param base: the schedule (or constant) to reach
    :param warmup_fraction: fraction of training spent warming up, in [0, 1] (0: no warm-up)
    """

    def __init__(self, base: ScheduleOrFloat, warmup_fraction: float) -> None:
        self.base = _as_schedule(base, "WarmupSchedule base")
        fraction = finite(warmup_fraction, "WarmupSchedule warmup_fraction")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"WarmupSchedule warmup_fraction must be in [0, 1], got {warmup_fraction}")
        self.warmup_fraction = fraction

    def __call__(self, progress_remaining: float) -> float:
        elapsed = 1.0 - progress_remaining
        value = self.base(progress_remaining)
        if elapsed < self.warmup_fraction:
            return value * elapsed / self.warmup_fraction
        return value

    def __repr__(self) -> str:
        return f"WarmupSchedule(base={self.base!r}, warmup_fraction={self.warmup_fraction})"


class ScaledSchedule:
    """``base(progress) × scale``, with a ``scale`` that callbacks change during training (the
    mechanism of :class:`~sb3_microgrid.callbacks.ReduceLROnPlateau` and the KL-adaptive rate).

    The bounds limit what the scale does, never the base: the value is ``base × scale`` clipped to
    ``[min(base, min_value), max(base, max_value)]``, so a scale cannot push it below ``min_value``
    or above ``max_value``, while a base that itself decays below ``min_value`` is followed.

    :param base: the schedule (or constant) to scale
    :param scale: initial factor, > 0
    :param min_value: floor for the scaled value
    :param max_value: ceiling for the scaled value
    """

    def __init__(self, base: ScheduleOrFloat, scale: float = 1.0, min_value: float = 0.0, max_value: float = math.inf) -> None:
        self.base = _as_schedule(base, "ScaledSchedule base")
        self.scale = finite(scale, "ScaledSchedule scale")
        if self.scale <= 0.0:
            raise ValueError(f"ScaledSchedule scale must be > 0, got {scale}")
        self.min_value = finite(min_value, "ScaledSchedule min_value")
        if self.min_value < 0.0:
            raise ValueError(f"ScaledSchedule min_value must be >= 0, got {min_value}")
        if isinstance(max_value, (bool, str)) or not isinstance(max_value, (int, float)) or not max_value > self.min_value:
            raise ValueError(f"ScaledSchedule max_value must be a number > min_value ({min_value}), got {max_value!r}")
        self.max_value = float(max_value)

    def __call__(self, progress_remaining: float) -> float:
        base = self.base(progress_remaining)
        low, high = min(base, self.min_value), max(base, self.max_value)
        return min(max(base * self.scale, low), high)

    def rescale(self, factor: float, progress_remaining: float) -> float:
        """Multiply the scale by ``factor``, stopping where the value at ``progress_remaining`` meets a
        bound (so the scale does not wind up past it and then take many steps to come back).

        :param factor: > 1 raises the value, < 1 lowers it
        :param progress_remaining: where the bounds are checked (the current progress)
        :return: the new scale
        """
        if finite(factor, "factor") <= 0.0:
            raise ValueError(f"factor must be > 0, got {factor}")
        scale = self.scale * factor
        base = self.base(progress_remaining)
        if base > 0.0:
            if factor < 1.0:
                scale = min(self.scale, max(scale, self.min_value / base))
            else:
                scale = max(self.scale, min(scale, self.max_value / base))
        self.scale = scale
        return scale

    def bound(self, min_value: float = 0.0, max_value: float = math.inf) -> None:
        """Tighten the bounds to at least ``[min_value, max_value]``: callbacks sharing the schedule
        each add their own limits, and the narrowest wins."""
        low, high = max(self.min_value, min_value), min(self.max_value, max_value)
        if not low < high:
            raise ValueError(f"ScaledSchedule bounds [{low}, {high}] are empty (a min_lr above another callback's max_lr?)")
        self.min_value, self.max_value = low, high

    def __repr__(self) -> str:
        return f"ScaledSchedule(base={self.base!r}, scale={self.scale}, min_value={self.min_value}, max_value={self.max_value})"
