"""Epsilon-random actions for PPO/A2C: the mixture ``ε·U + (1−ε)·π`` is the policy, so the log-probability stored in
the rollout buffer and the one ``train()`` recomputes are both the mixture's, and PPO's ratio compares the new
mixture with the behaviour mixture that actually drew the action."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs

from ..common.epsilon import check_epsilon


class EpsilonActorCriticPolicy(ActorCriticPolicy):
    """Actor-critic policy whose stochastic action is, with probability ``epsilon``, uniform over the action Box
    and otherwise the Gaussian policy's sample.

    ``forward()``, ``evaluate_actions()`` and ``predict(deterministic=False)`` all follow the mixture, whose
    log-density is ``log(ε·U(a)·1[a ∈ Box] + (1−ε)·π(a))`` with ``U = 1 / volume(Box)``. The action SB3 stores is
    the unclipped sample (it clips only when stepping the env), so this is the exact density of the stored
    action: a Gaussian sample outside the Box gets the Gaussian term alone, because the uniform part has no
    mass there. Using the clipped action instead would need point masses on the Box faces.

    The entropy returned to PPO is the Gaussian component's (the mixture's has no closed form); the entropy
    bonus therefore acts on the Gaussian's spread, which is the only part with parameters.

    Deterministic actions are the Gaussian mean: ε is exploration, not part of the greedy policy.

    :param epsilon: probability in [0, 1] of a uniform action. Settable (``model.policy.epsilon = x``); change it
        only between ``train()`` and the next rollout (as :class:`EpsilonDecayCallback` does), otherwise the
        ratio of the first epoch compares mixtures with different ε. The current value is kept in the state dict
        and so in a saved model.
    Other arguments are those of :class:`~stable_baselines3.common.policies.ActorCriticPolicy`.
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, *args: Any, epsilon: float = 0.1, **kwargs: Any) -> None:
        super().__init__(observation_space, action_space, *args, **kwargs)
        if not isinstance(action_space, spaces.Box) or not action_space.is_bounded("both"):
            raise ValueError(f"EpsilonActorCriticPolicy needs a bounded Box action space, got {action_space}")
        if self.squash_output:
            raise ValueError("EpsilonActorCriticPolicy does not support squash_output=True")
        # A persistent buffer, so the current (decayed) ε travels in the state dict: an algorithm's save()
        # rebuilds the policy from the model's policy_kwargs (the initial ε), not from _get_constructor_parameters.
        self.register_buffer("_epsilon", th.tensor(check_epsilon(epsilon), dtype=th.float64))
        low = th.as_tensor(action_space.low.flatten(), dtype=th.float32)
        high = th.as_tensor(action_space.high.flatten(), dtype=th.float32)
        # Buffers follow .to(device); not persistent, as they are rebuilt from the action space.
        self.register_buffer("action_low", low, persistent=False)
        self.register_buffer("action_high", high, persistent=False)
        self.log_uniform_density = -float(np.sum(np.log(action_space.high.astype(np.float64) - action_space.low)))

    @property
    def epsilon(self) -> float:
        return float(self._epsilon)

    @epsilon.setter
    def epsilon(self, value: float) -> None:
        self._epsilon.fill_(check_epsilon(value))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(epsilon=self.epsilon)
        return data

    def mixture_log_prob(self, actions: th.Tensor, gaussian_log_prob: th.Tensor) -> th.Tensor:
        """``log(ε·U(a)·1[a ∈ Box] + (1−ε)·π(a))`` for flat actions ``(batch, action_dim)``.

        :param actions: the actions
        :param gaussian_log_prob: ``log π(a)``, shape ``(batch,)``
        """
        inside = ((actions >= self.action_low) & (actions <= self.action_high)).all(dim=-1)
        log_uniform = th.where(inside, self.log_uniform_density, -th.inf)
        epsilon = self._epsilon.to(actions.dtype)
        # log(0) = -inf makes ε = 0 and ε = 1 exact; logaddexp keeps the sum stable when π(a) underflows.
        return th.logaddexp(th.log(epsilon) + log_uniform, th.log1p(-epsilon) + gaussian_log_prob)

    def _mix_uniform(self, actions: th.Tensor) -> th.Tensor:
        uniform = self.action_low + (self.action_high - self.action_low) * th.rand_like(actions)
        take = th.rand(actions.shape[0], 1, device=actions.device) < self._epsilon
        return th.where(take, uniform, actions)

    def forward(self, obs: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        features = self.extract_features(obs)
        if self.share_features_extractor:
            latent_pi, latent_vf = self.mlp_extractor(features)
        else:
            pi_features, vf_features = features
            latent_pi = self.mlp_extractor.forward_actor(pi_features)
            latent_vf = self.mlp_extractor.forward_critic(vf_features)
        values = self.value_net(latent_vf)
        distribution = self._get_action_dist_from_latent(latent_pi)
        actions = distribution.get_actions(deterministic=deterministic)
        if not deterministic:
            actions = self._mix_uniform(actions)
        log_prob = self.mixture_log_prob(actions, distribution.log_prob(actions))
        return actions.reshape((-1, *self.action_space.shape)), values, log_prob  # type: ignore[misc]

    def evaluate_actions(self, obs: PyTorchObs, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        values, log_prob, entropy = super().evaluate_actions(obs, actions)
        return values, self.mixture_log_prob(actions, log_prob), entropy

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        actions = super()._predict(observation, deterministic)
        return actions if deterministic else self._mix_uniform(actions)
