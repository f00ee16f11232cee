"""Actor-critic policy with two independent value heads, aggregated by their minimum or their mean."""

from functools import partial
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor, MlpExtractor
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

VALUE_AGGREGATIONS = ("min", "mean")


class TwinValueActorCriticPolicy(ActorCriticPolicy):
    """
    Actor-critic policy with two value heads, each with its own latent MLP (the ``vf`` part of ``net_arch``).

    Head 1 is SB3's ``mlp_extractor.value_net`` + ``value_net``; head 2 is ``value_latent_net_2`` + ``value_net_2``.
    Separate latents make the two estimates' errors less correlated than two linear heads on one latent would,
    which is what makes their minimum a useful pessimistic estimate. Both heads read the critic's features
    (``vf_features_extractor``): with ``share_features_extractor=True`` that is the single shared extractor.

    ``forward()`` and ``predict_values()`` return the aggregated value, so the rollout values, the GAE and the
    final and time-limit bootstraps all use it; ``evaluate_actions()`` returns both heads for the value loss.

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule (could be constant)
    :param net_arch: The specification of the policy and value networks; both value heads use the ``vf`` layers.
    :param activation_fn: Activation function
    :param ortho_init: Whether to use or not orthogonal initialization
    :param use_sde: Whether to use State Dependent Exploration or not
    :param log_std_init: Initial value for the log standard deviation
    :param full_std: Whether to use (n_features x n_actions) parameters
        for the std instead of only (n_features,) when using gSDE
    :param use_expln: Use ``expln()`` function instead of ``exp()`` to ensure a positive standard deviation
    :param squash_output: Whether to squash the output using a tanh function (gSDE only)
    :param features_extractor_class: Features extractor to use.
    :param features_extractor_kwargs: Keyword arguments to pass to the features extractor.
    :param share_features_extractor: If True, the features extractor is shared between the policy and value networks.
    :param normalize_images: Whether to normalize images or not, dividing by 255.0 (True by default)
    :param optimizer_class: The optimizer to use, ``th.optim.Adam`` by default
    :param optimizer_kwargs: Additional keyword arguments, excluding the learning rate, to pass to the optimizer
    :param value_aggregation: How the two values become the one used for advantages and bootstraps:
        ``"min"`` (pessimistic, counters overestimation) or ``"mean"`` (lower variance)
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        ortho_init: bool = True,
        use_sde: bool = False,
        log_std_init: float = 0.0,
        full_std: bool = True,
        use_expln: bool = False,
        squash_output: bool = False,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        share_features_extractor: bool = True,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        value_aggregation: str = "min",
    ):
        if value_aggregation not in VALUE_AGGREGATIONS:
            raise ValueError(f"value_aggregation must be one of {VALUE_AGGREGATIONS}, not {value_aggregation!r}")
        # Set before super().__init__(), which builds the networks
        self.value_aggregation = value_aggregation
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            activation_fn,
            ortho_init,
            use_sde,
            log_std_init,
            full_std,
            use_expln,
            squash_output,
            features_extractor_class,
            features_extractor_kwargs,
            share_features_extractor,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        # ActorCriticPolicy leaves out share_features_extractor: policy.save()/load() then rebuilds one shared
        # extractor and silently loads the critic extractor's weights into it, so the actor changes
        data.update(value_aggregation=self.value_aggregation, share_features_extractor=self.share_features_extractor)
        return data

    def _build_mlp_extractor(self) -> None:
        # ActorCriticPolicy._build() creates the optimizer from self.parameters() at its end: the second head
        # is created here, the last hook before that, so the optimizer covers it
        super()._build_mlp_extractor()
        vf_arch = self.net_arch.get("vf", []) if isinstance(self.net_arch, dict) else self.net_arch
        critic_2 = MlpExtractor(
            self.features_dim, net_arch=dict(vf=vf_arch), activation_fn=self.activation_fn, device=self.device
        )
        self.value_latent_net_2 = critic_2.value_net
        self.value_net_2 = nn.Linear(critic_2.latent_dim_vf, 1)

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        if self.ortho_init:
            # Same gains as head 1. In place, before any optimizer step, so the optimizer's references still hold
            self.value_latent_net_2.apply(partial(self.init_weights, gain=np.sqrt(2)))
            self.value_net_2.apply(partial(self.init_weights, gain=1))

    def _aggregate(self, values_1: th.Tensor, values_2: th.Tensor) -> th.Tensor:
        if self.value_aggregation == "min":
            return th.minimum(values_1, values_2)
        return (values_1 + values_2) / 2

    def _latents(self, obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """:return: actor latent, critic-1 latent and the critic features (input of critic 2)"""
        features = self.extract_features(obs)
        pi_features, vf_features = (features, features) if self.share_features_extractor else features
        return self.mlp_extractor.forward_actor(pi_features), self.mlp_extractor.forward_critic(vf_features), vf_features

    def _both_values(self, latent_vf: th.Tensor, vf_features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return self.value_net(latent_vf), self.value_net_2(self.value_latent_net_2(vf_features))

    def forward(self, obs: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """
        :param obs: Observation
        :param deterministic: Whether to sample or use deterministic actions
        :return: action, aggregated value and log probability of the action
        """
        latent_pi, latent_vf, vf_features = self._latents(obs)
        values = self._aggregate(*self._both_values(latent_vf, vf_features))
        distribution = self._get_action_dist_from_latent(latent_pi)
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        actions = actions.reshape((-1, *self.action_space.shape))  # type: ignore[misc]
        return actions, values, log_prob

    def evaluate_actions(self, obs: PyTorchObs, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """
        :param obs: Observation
        :param actions: Actions
        :return: the values of both heads stacked as ``(batch, 2)``, log likelihood of the actions
            and entropy of the action distribution.
        """
        latent_pi, latent_vf, vf_features = self._latents(obs)
        distribution = self._get_action_dist_from_latent(latent_pi)
        values = th.cat(self._both_values(latent_vf, vf_features), dim=1)
        return values, distribution.log_prob(actions), distribution.entropy()

    def predict_both_values(self, obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor]:
        """
        :param obs: Observation (a tensor, as for ``predict_values()``)
        :return: the values of head 1 and head 2, each ``(batch, 1)``
        """
        # BaseModel's extract_features: ActorCriticPolicy's would also run the actor's extractor when not shared
        features = super(ActorCriticPolicy, self).extract_features(obs, self.vf_features_extractor)
        return self._both_values(self.mlp_extractor.forward_critic(features), features)

    def predict_values(self, obs: PyTorchObs) -> th.Tensor:
        """
        :param obs: Observation
        :return: the aggregated value, ``(batch, 1)``
        """
        return self._aggregate(*self.predict_both_values(obs))


MlpPolicy = TwinValueActorCriticPolicy
