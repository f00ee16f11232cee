"""Reduce the learning rate when a monitored return stops improving, through the model's schedule."""

from __future__ import annotations

import math

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import FloatSchedule

from ..common.arguments import checked_number
from ..schedules import ScaledSchedule, finite
from ..common.requirements import refuse_plain_ars


def lr_scale_schedule(model: BaseAlgorithm) -> ScaledSchedule:
    """The :class:`~sb3_microgrid.schedules.ScaledSchedule` behind ``model.lr_schedule``, installed if
    missing. Writing ``optimizer.param_groups`` would be undone, since SB3 sets every optimizer's
    rate from ``model.lr_schedule`` at each ``train()``. The schedule is also stored as
    ``model.learning_rate`` because ``load()`` rebuilds ``lr_schedule`` from that attribute: the
    scale then survives ``model.save()`` / ``PPO.load()``.

    :param model: the algorithm whose learning rate is to be scaled
    :return: the scaled schedule, shared by every callback that calls this on the same model
    """
    schedule = model.lr_schedule
    if isinstance(schedule, FloatSchedule):
        schedule = schedule.value_schedule
    if not isinstance(schedule, ScaledSchedule):
        schedule = ScaledSchedule(schedule)
    model.learning_rate = schedule
    model.lr_schedule = FloatSchedule(schedule)
    return schedule


class ReduceLROnPlateau(BaseCallback):
    """Multiply the learning rate by ``factor`` when the monitored mean return has not improved by
    more than ``threshold`` for more than ``patience`` checks, never below ``min_lr``.

    It acts through the schedule (:func:`lr_scale_schedule`): the reduction is what the next
    ``train()`` uses, it composes with any base schedule (warm-up, linear decay) and it is saved with
    the model. Two modes:

    - ``"eval"``: pass it as ``EvalCallback(..., callback_after_eval=ReduceLROnPlateau(...))``; each
      evaluation is one check of ``parent.last_mean_reward``.
    - ``"rollout"``: one check per rollout in which an episode ended, of the mean return over
      ``model.ep_info_buffer`` (the last ``stats_window_size`` episodes). That buffer is filled by
      ``Monitor`` / ``VecMonitor``: wrap a ``MicrogridVecEnv`` in ``VecMonitor``.

    :param mode: ``"eval"`` or ``"rollout"``
    :param patience: checks without improvement tolerated; the next one reduces the rate
    :param factor: multiplier of the rate on a plateau, in (0, 1)
    :param min_lr: floor of the rate a reduction can reach (a decaying base schedule is still followed)
    :param threshold: an improvement must exceed the best value so far by more than this (reward units)
    :param verbose: 1 prints each reduction
    """

    def __init__(
        self,
        mode: str = "eval",
        patience: int = 3,
        factor: float = 0.5,
        min_lr: float = 1e-6,
        threshold: float = 0.0,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose=verbose)
        if mode not in ("eval", "rollout"):
            raise ValueError(f"mode must be 'eval' or 'rollout', got {mode!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
        if not 0.0 < finite(factor, "factor") < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if finite(min_lr, "min_lr") < 0.0:
            raise ValueError(f"min_lr must be >= 0, got {min_lr}")
        if finite(threshold, "threshold") < 0.0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        self.mode = mode
        self.patience = patience
        self.factor = factor
        self.min_lr = min_lr
        self.threshold = threshold
        self.best = -math.inf
        self.bad_checks = 0
        self.reductions = 0
        self._episodes_ended = 0

    def _init_callback(self) -> None:
        if self.mode == "eval" and not hasattr(self.parent, "last_mean_reward"):
            raise ValueError("ReduceLROnPlateau(mode='eval') must be the callback_after_eval of an EvalCallback")
        if self.mode == "rollout":
            refuse_plain_ars(self.model, "ReduceLROnPlateau(mode='rollout')", "its on_step() gets no dones in self.locals")
        self.schedule = lr_scale_schedule(self.model)
        self.schedule.bound(min_value=self.min_lr)

    def state_dict(self) -> dict[str, float | int | None]:
        """What a resumed run needs (the rate's scale is in the model's schedule, saved with it): the best value
        (``None`` before the first check) and the checks since. Saved in checkpoint sets (``sb3-microgrid train``)."""
        return {"best": None if self.best == -math.inf else self.best, "bad_checks": self.bad_checks, "reductions": self.reductions}

    def load_state_dict(self, state: dict[str, float | int | None]) -> None:
        """Take back a :meth:`state_dict`.

        :raises ValueError: naming the entry and its allowed range
        """
        best = state["best"]
        self.best = -math.inf if best is None else checked_number("best", best, -math.inf, math.inf)
        self.bad_checks = checked_number("bad_checks", state["bad_checks"], 0, self.patience, integer=True)
        self.reductions = checked_number("reductions", state["reductions"], 0, math.inf, integer=True)

    def _on_step(self) -> bool:
        if self.mode == "eval":
            self._check(float(self.parent.last_mean_reward))
        else:
            self._episodes_ended += int(np.sum(self.locals["dones"]))
        return True

    def _on_rollout_end(self) -> None:
        if self.mode != "rollout" or self._episodes_ended == 0:
            return  # the window has not moved: an unchanged value is no evidence of a plateau
        self._episodes_ended = 0
        if len(self.model.ep_info_buffer) == 0:
            raise RuntimeError("episodes ended but model.ep_info_buffer is empty: wrap the env in Monitor / VecMonitor")
        self._check(float(np.mean([info["r"] for info in self.model.ep_info_buffer])))

    def _check(self, value: float) -> None:
        if value > self.best + self.threshold:
            self.best, self.bad_checks = value, 0
        else:
            self.bad_checks += 1
            if self.bad_checks > self.patience:
                self.bad_checks = 0
                before = self.schedule.scale
                if self.schedule.rescale(self.factor, self.model._current_progress_remaining) < before:
                    self.reductions += 1  # not at the floor already
                if self.verbose >= 1:
                    print(f"ReduceLROnPlateau: no improvement on {self.best:.4g}, learning rate scale {self.schedule.scale:.4g}")
        self.logger.record("train/lr_scale", self.schedule.scale)
        self.logger.record("train/lr_effective", self.model.lr_schedule(self.model._current_progress_remaining))
