"""Rollout buffer that keeps the behaviour policy's Gaussian, for an exact KL against it."""

from collections.abc import Generator
from typing import NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.vec_env import VecNormalize


class BehaviourRolloutBufferSamples(NamedTuple):
    """SB3's ``RolloutBufferSamples`` fields, plus the mean and std of the Gaussian that drew each action."""

    observations: th.Tensor
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    behaviour_mean: th.Tensor
    behaviour_std: th.Tensor


class BehaviourRolloutBuffer(RolloutBuffer):
    """
    A :class:`~stable_baselines3.common.buffers.RolloutBuffer` that also stores, per step and env, the mean and std of
    the diagonal Gaussian the behaviour policy sampled the action from (before any tanh squashing).

    They are the policy that collected the data, which is not always the weights ``train()`` starts from: a
    callback may act with other weights (parameter noise restores the clean ones before ``train()``). The algorithm
    calls :meth:`record_behaviour` with the distribution of each step before :meth:`add` stores that step.

    Parameters are those of :class:`~stable_baselines3.common.buffers.RolloutBuffer`.
    """

    behaviour_mean: np.ndarray
    behaviour_std: np.ndarray

    def reset(self) -> None:
        self.behaviour_mean = np.zeros((self.buffer_size, self.n_envs, self.action_dim), dtype=np.float32)
        self.behaviour_std = np.zeros((self.buffer_size, self.n_envs, self.action_dim), dtype=np.float32)
        super().reset()

    def record_behaviour(self, distribution: th.distributions.Normal) -> None:
        """
        Store the Gaussian of the step about to be added (at ``pos``).

        :param distribution: the policy's ``Normal`` over the ``n_envs`` observations of this step
        """
        self.behaviour_mean[self.pos] = distribution.mean.detach().reshape(self.n_envs, -1).cpu().numpy()
        self.behaviour_std[self.pos] = distribution.stddev.detach().reshape(self.n_envs, -1).cpu().numpy()

    def get(self, batch_size: int | None = None) -> Generator[BehaviourRolloutBufferSamples, None, None]:  # type: ignore[override]
        if not self.generator_ready:  # flattened like the base fields, which super().get() flattens next
            self.behaviour_mean = self.swap_and_flatten(self.behaviour_mean)
            self.behaviour_std = self.swap_and_flatten(self.behaviour_std)
        yield from super().get(batch_size)  # type: ignore[misc]

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> BehaviourRolloutBufferSamples:  # type: ignore[override]
        samples = super()._get_samples(batch_inds, env)
        return BehaviourRolloutBufferSamples(
            *samples, self.to_torch(self.behaviour_mean[batch_inds]), self.to_torch(self.behaviour_std[batch_inds])
        )
