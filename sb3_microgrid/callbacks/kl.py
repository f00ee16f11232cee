"""Exact KL divergence of each PPO update, and a KL-adaptive learning rate."""

from __future__ import annotations

import torch as th
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import DiagGaussianDistribution, StateDependentNoiseDistribution
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.type_aliases import PyTorchObs

from ..exploration.param_noise import unperturbed
from ..reptile import refuse_reptile
from ..schedules import finite
from .adaptive_lr import lr_scale_schedule
from ..common.requirements import refuse_recurrent


def rollout_observations(buffer: RolloutBuffer) -> PyTorchObs:
    """The rollout's observations as one batch; ``to_torch`` copies, so they outlive ``buffer.reset()``."""
    obs = buffer.observations
    if isinstance(obs, dict):
        return {key: buffer.to_torch(value.reshape(-1, *value.shape[2:])) for key, value in obs.items()}
    return buffer.to_torch(obs.reshape(-1, *obs.shape[2:]))


class KLMonitorCallback(BaseCallback):
    """Log the exact ``KL(old || new)`` of each update of an on-policy algorithm (PPO, A2C) with a
    diagonal-Gaussian policy, and optionally adapt the learning rate to a KL target.

    At each rollout end the policy's means and standard deviations on the rollout's observations are
    kept; at the next rollout start (the update has run) they are compared with the new ones on the
    same observations, averaged over the observations and summed over action dimensions, and logged
    as ``train/kl_exact`` beside SB3's ``train/approx_kl``. This is one value per update, not per
    minibatch: a callback has no hook inside ``train()``'s epoch loop, so it cannot stop that loop
    early either. PPO's own ``target_kl`` does (on its approximate KL, at ``1.5 × target_kl``), and
    so does this package's twin-value PPO, on the exact KL of each minibatch.

    With ``target_kl``, after an update whose KL exceeds ``2 × target_kl`` the rate is divided by
    ``factor``, and below ``target_kl / 2`` multiplied by it, within ``[min_lr, max_lr]``. The change
    goes through the schedule (:func:`~sb3_microgrid.callbacks.adaptive_lr.lr_scale_schedule`), so the
    next ``train()`` uses it and ``model.save()`` keeps it.

    :param target_kl: KL per update to steer towards; ``None`` only measures
    :param factor: step of the rate adaptation, > 1
    :param min_lr: lowest rate the adaptation may set
    :param max_lr: highest rate the adaptation may set
    :param verbose: 1 prints each measurement
    """

    def __init__(
        self,
        target_kl: float | None = None,
        factor: float = 1.5,
        min_lr: float = 1e-6,
        max_lr: float = 1e-2,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose=verbose)
        if target_kl is not None and finite(target_kl, "target_kl") <= 0.0:
            raise ValueError(f"target_kl must be > 0 or None, got {target_kl}")
        if finite(factor, "factor") <= 1.0:
            raise ValueError(f"factor must be > 1, got {factor}")
        if not 0.0 <= finite(min_lr, "min_lr") < finite(max_lr, "max_lr"):
            raise ValueError(f"need 0 <= min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}")
        self.target_kl = target_kl
        self.factor = factor
        self.min_lr = min_lr
        self.max_lr = max_lr
        self.last_kl: float | None = None
        self._snapshot: tuple[PyTorchObs, th.distributions.Normal] | None = None

    def _init_callback(self) -> None:
        refuse_reptile(self.model, "KLMonitorCallback")
        if not isinstance(self.model, OnPolicyAlgorithm):
            raise TypeError(f"KLMonitorCallback needs an on-policy algorithm (PPO, A2C), got {type(self.model).__name__}")
        refuse_recurrent(self.model, "KLMonitorCallback")
        if not isinstance(self.model.policy.action_dist, (DiagGaussianDistribution, StateDependentNoiseDistribution)):
            raise TypeError(f"KLMonitorCallback needs a diagonal-Gaussian policy, got {type(self.model.policy.action_dist).__name__}")
        if self.target_kl is not None:
            self.schedule = lr_scale_schedule(self.model)
            self.schedule.bound(self.min_lr, self.max_lr)

    def _gaussian(self, obs: PyTorchObs) -> th.distributions.Normal:
        # on the clean weights: a ParameterNoiseCallback's perturbation (on from rollout start to end) is no update
        with th.no_grad(), unperturbed(self.model.policy):
            return self.model.policy.get_distribution(obs).distribution

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        obs = rollout_observations(self.model.rollout_buffer)
        self._snapshot = (obs, self._gaussian(obs))

    def _on_rollout_start(self) -> None:
        if self._snapshot is None:
            return  # no update since the last snapshot (first rollout of a learn() call)
        kl = self._measure()
        if self.target_kl is not None:
            if kl > 2.0 * self.target_kl:
                self.schedule.rescale(1.0 / self.factor, self.model._current_progress_remaining)
            elif kl < 0.5 * self.target_kl:
                self.schedule.rescale(self.factor, self.model._current_progress_remaining)
            self.logger.record("train/lr_scale", self.schedule.scale)
            self.logger.record("train/lr_effective", self.model.lr_schedule(self.model._current_progress_remaining))

    def _on_training_end(self) -> None:
        if self._snapshot is not None:  # the last update of learn() is followed by no rollout
            self._measure()

    def _measure(self) -> float:
        obs, old = self._snapshot
        self._snapshot = None
        kl = th.distributions.kl_divergence(old, self._gaussian(obs))
        self.last_kl = float(kl.sum(dim=-1).mean())
        self.logger.record("train/kl_exact", self.last_kl)
        if self.verbose >= 1:
            print(f"KLMonitorCallback: KL(old || new) of the last update = {self.last_kl:.3g}")
        return self.last_kl
