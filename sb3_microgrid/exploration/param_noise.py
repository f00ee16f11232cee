"""Parameter-space noise (Plappert et al. 2018, "Parameter Space Noise for Exploration") as a callback.

The actor's mean network acts with perturbed weights during each rollout and is restored before ``train()``,
so the perturbation explores without ever being trained into the network. Callbacks that save or measure the
policy during a rollout do so inside :func:`unperturbed`, which takes the perturbation off meanwhile.
"""

from __future__ import annotations

import math
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import DiagGaussianDistribution, StateDependentNoiseDistribution
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy

from ..common.arguments import checked_number
from ..common.requirements import refuse_recurrent
from ..reptile import refuse_reptile
from ..schedules import finite

Obs = np.ndarray | dict[str, np.ndarray]

# The noise callback of each policy, so that other callbacks reach its clean weights without knowing of it.
_noise_of: weakref.WeakKeyDictionary[BasePolicy, ParameterNoiseCallback] = weakref.WeakKeyDictionary()


def end_perturbation(policy: BasePolicy) -> None:
    """Put the clean weights back for good if a :class:`ParameterNoiseCallback`'s perturbation is on (before loading
    other parameters into the model: the callback would otherwise load its clean weights over them at training end);
    without a noise callback or a perturbation it does nothing.

    :param policy: the model's policy
    """
    noise = _noise_of.get(policy)
    if noise is not None and noise.perturbed:
        noise._restore()


@contextmanager
def unperturbed(policy: BasePolicy) -> Iterator[None]:
    """Within the block, ``policy`` holds its clean weights: a :class:`ParameterNoiseCallback`'s perturbation,
    if one is on, is taken off and put back afterwards. A callback that saves or measures the policy being
    trained at a rollout start (after the noise is added) or during a rollout uses it; without a noise
    callback it does nothing.

    :param policy: the model's policy
    """
    noise = _noise_of.get(policy)
    with nullcontext() if noise is None else noise.clean_weights():
        yield


def actor_module_names(policy: BasePolicy) -> list[str]:
    """The submodules that compute ``policy``'s deterministic action (mean), as dotted paths.

    :param policy: an :class:`ActorCriticPolicy` (PPO, A2C), :class:`SACPolicy` or :class:`TD3Policy` (TD3, DDPG)
    """
    if isinstance(policy, ActorCriticPolicy):
        return ["mlp_extractor.policy_net", "action_net"]
    if isinstance(policy, SACPolicy):
        return ["actor.latent_pi", "actor.mu"]
    if isinstance(policy, TD3Policy):
        return ["actor.mu"]
    raise TypeError(f"no default actor modules for {type(policy).__name__}; pass module_names")


def _copy_obs(obs: Obs) -> Obs:
    return {key: value.copy() for key, value in obs.items()} if isinstance(obs, dict) else obs.copy()


def _concat_obs(batches: list[Obs]) -> Obs:
    if isinstance(batches[0], dict):
        return {key: np.concatenate([batch[key] for batch in batches]) for key in batches[0]}  # type: ignore[index]
    return np.concatenate(batches)  # type: ignore[arg-type]


class ParameterNoiseCallback(BaseCallback):
    """Adds ``N(0, σ²)`` to every weight and bias of the actor's mean network at each rollout start and puts the
    clean weights back at the rollout end, before ``train()`` (and at training end if a rollout was cut short).

    Modules perturbed by default: PPO/A2C ``mlp_extractor.policy_net`` and ``action_net`` (not ``log_std``, not
    the value network); SAC ``actor.latent_pi`` and ``actor.mu``; TD3/DDPG ``actor.mu`` (not ``actor_target``).
    Plappert et al. put LayerNorm between perturbed layers so that one σ suits every layer; SB3's networks have
    none and the perturbation is applied to them as they are, which is why σ is adapted to a measured change of the
    policy rather than fixed.

    **Adaptation.** When a noise draw is retired, the perturbed and the clean policy are compared on the last
    ``n_recent_obs`` observations, and ``σ ← σ·α`` if the measure is below its target, else ``σ ← σ/α``:

    - Gaussian policies (PPO/A2C with a diagonal-Gaussian or gSDE distribution, SAC): the mean over those
      observations of the exact ``KL(π_perturbed(·|s) || π_clean(·|s))``, summed over action dimensions
      (``torch.distributions.kl_divergence``; for SAC between the Gaussians before the tanh, which leaves the KL
      unchanged), against ``target_kl``. That is the divergence PPO's ratio sees between the behaviour policy and
      the policy being trained, so it is what the perturbation adds to ``train/approx_kl`` and
      ``train/clip_fraction``. Logs ``exploration/param_noise_kl``.
    - Deterministic policies (TD3, DDPG), which have no distribution: Plappert et al.'s action distance
      ``d = sqrt(mean((μ̃(s) − μ(s))²))`` between the perturbed and clean deterministic actions, against
      ``target_distance``. Logs ``exploration/param_noise_distance``.

    Both log ``exploration/param_noise_sigma``. A distance target would ignore the policy's own spread: a mean
    shift ``d`` costs ``action_dim · d² / (2 · std²)`` of KL, so the former default distance 0.1 against a tuned
    std of 0.22 over 13 dimensions gave ``train/approx_kl`` about 1.4 and a clip fraction about 0.9.

    **PPO.** The perturbed network is the one acting, so ``forward()`` stores the perturbed policy's log-probability
    of each action in the rollout buffer; ``train()`` then evaluates the clean policy, and its ratio
    ``π_clean(a|s) / π_perturbed(a|s)`` is the correct importance weight from the behaviour policy to the policy
    being trained. It is not 1 at the first epoch: the perturbation's KL, which ``target_kl`` sets, enters
    ``train/approx_kl``, ``train/clip_fraction`` and PPO's ``target_kl`` early stop, so keep it at or below the
    KL of one update.

    :param initial_sigma: initial σ, the std of the noise added to each parameter (SB3's default initialisation
        gives weights of about ``1/sqrt(fan_in)``, 0.07 for the 206 microgrid inputs)
    :param target_kl: the KL between the perturbed and clean policy σ is adapted to (Gaussian policies)
    :param target_distance: δ, the action distance σ is adapted to (deterministic policies)
    :param adaptation_coef: α > 1; σ moves once per noise draw (once per rollout for PPO, far less often than
        the paper's every 50 steps, hence a larger default than its 1.01)
    :param resample_freq: env steps (summed over envs) a noise draw is kept for; the noise is redrawn at the first
        rollout start after that many steps, 0 redraws at every rollout. A draw kept over several rollouts is
        re-added to the freshly trained weights at each of them. For SAC/TD3 with ``train_freq=1`` a rollout is
        one step, so set it to about an episode (Plappert et al. perturb once per episode).
    :param n_recent_obs: number of most recent observations the KL or distance is measured on
    :param module_names: dotted paths (from the policy) of the modules to perturb; default
        :func:`actor_module_names`
    :param verbose: verbosity
    """

    def __init__(
        self,
        initial_sigma: float = 0.01,
        target_kl: float = 0.01,
        target_distance: float = 0.1,
        adaptation_coef: float = 1.05,
        resample_freq: int = 0,
        n_recent_obs: int = 512,
        module_names: list[str] | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        for name, value in (("initial_sigma", initial_sigma), ("target_kl", target_kl), ("target_distance", target_distance)):
            if not finite(value, name) > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if not finite(adaptation_coef, "adaptation_coef") > 1:
            raise ValueError(f"adaptation_coef must be > 1, got {adaptation_coef}")
        self.sigma = initial_sigma
        self.target_kl = target_kl
        self.target_distance = target_distance
        self.adaptation_coef = adaptation_coef
        self.resample_freq = resample_freq
        self.n_recent_obs = n_recent_obs
        self.module_names = module_names
        self.kl: float | None = None
        self.distance: float | None = None
        self._noise: list[th.Tensor] | None = None
        self._clean: list[th.Tensor] | None = None
        self._drawn_at = 0

    def _init_callback(self) -> None:
        refuse_reptile(self.model, "ParameterNoiseCallback")
        refuse_recurrent(self.model, "ParameterNoiseCallback")
        policy = self.model.policy
        if isinstance(policy, ActorCriticPolicy) and not isinstance(policy.action_dist, (DiagGaussianDistribution, StateDependentNoiseDistribution)):
            raise TypeError(f"ParameterNoiseCallback needs a Gaussian action distribution, got {type(policy.action_dist).__name__}")
        self._gaussian = isinstance(policy, (ActorCriticPolicy, SACPolicy))
        names = self.module_names or actor_module_names(policy)
        self._params = [param for name in names for param in policy.get_submodule(name).parameters()]
        self._recent: deque[Obs] = deque(maxlen=max(1, self.n_recent_obs // self.model.n_envs))

    def state_dict(self) -> dict[str, float]:
        """The adapted σ, which a resumed run would otherwise restart from ``initial_sigma``. Saved in checkpoint
        sets (``sb3-microgrid train``); the noise draw itself is not: a resumed run draws anew."""
        return {"sigma": self.sigma}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Take back a :meth:`state_dict`.

        :raises ValueError: for a σ that is not a finite number > 0
        """
        self.sigma = checked_number("sigma", state["sigma"], 0.0, math.inf, lo_open=True)

    def _on_training_start(self) -> None:
        _noise_of[self.model.policy] = self

    @property
    def perturbed(self) -> bool:
        """Whether the actor currently holds perturbed weights."""
        return self._clean is not None

    def _draw_due(self) -> bool:
        return self._noise is None or self.model.num_timesteps - self._drawn_at >= self.resample_freq

    def _on_rollout_start(self) -> None:
        if self._draw_due():
            self._noise = [self.sigma * th.randn_like(param) for param in self._params]
            self._drawn_at = self.model.num_timesteps
        assert self._noise is not None
        with th.no_grad():
            self._clean = [param.detach().clone() for param in self._params]
            # In place: the optimizer holds these very tensors.
            for param, noise in zip(self._params, self._noise):
                param.add_(noise)

    def _on_step(self) -> bool:
        # model._last_obs is still the observation the policy just acted on (it is replaced after callbacks).
        self._recent.append(_copy_obs(self.model._last_obs))  # type: ignore[arg-type]
        return True

    def _on_rollout_end(self) -> None:
        if not self._draw_due():
            self._restore()
            return
        obs, _ = self.model.policy.obs_to_tensor(_concat_obs(list(self._recent)))
        if self._gaussian:
            perturbed = self._distribution(obs)
            self._restore()
            self.kl = float(th.distributions.kl_divergence(perturbed, self._distribution(obs)).sum(dim=-1).mean())
            measure, target = self.kl, self.target_kl
            self.logger.record("exploration/param_noise_kl", self.kl)
        else:
            perturbed_actions = self._deterministic_actions(obs)
            self._restore()
            self.distance = float(th.sqrt(th.mean((perturbed_actions - self._deterministic_actions(obs)) ** 2)))
            measure, target = self.distance, self.target_distance
            self.logger.record("exploration/param_noise_distance", self.distance)
        self.sigma = self.sigma * self.adaptation_coef if measure < target else self.sigma / self.adaptation_coef
        self.logger.record("exploration/param_noise_sigma", self.sigma)

    def _on_training_end(self) -> None:
        if self.perturbed:
            self._restore()
        _noise_of.pop(self.model.policy, None)

    @contextmanager
    def clean_weights(self) -> Iterator[None]:
        """Within the block the actor holds its clean weights; the perturbed ones, if any, are put back after it."""
        if self._clean is None:
            yield
            return
        perturbed = [param.detach().clone() for param in self._params]
        self._load(self._clean)
        try:
            yield
        finally:
            self._load(perturbed)

    def _restore(self) -> None:
        assert self._clean is not None
        self._load(self._clean)
        self._clean = None

    def _load(self, values: list[th.Tensor]) -> None:
        # In place: the optimizer holds these very tensors.
        with th.no_grad():
            for param, value in zip(self._params, values):
                param.copy_(value)

    def _distribution(self, obs: PyTorchObs) -> th.distributions.Normal:
        """The policy's Gaussian (SAC: before the tanh) on ``obs``."""
        policy = self.model.policy
        with th.no_grad():
            if isinstance(policy, SACPolicy):
                mean, log_std, kwargs = policy.actor.get_action_dist_params(obs)
                return policy.actor.action_dist.proba_distribution(mean, log_std, **kwargs).distribution
            return policy.get_distribution(obs).distribution

    def _deterministic_actions(self, obs: PyTorchObs) -> th.Tensor:
        policy = self.model.policy
        with th.no_grad():
            actions = policy._predict(obs, deterministic=True)
        if not policy.squash_output and isinstance(policy.action_space, spaces.Box):
            low, high = (th.as_tensor(bound.flatten(), device=actions.device) for bound in (policy.action_space.low, policy.action_space.high))
            actions = th.clamp(actions.reshape(len(actions), -1), low, high)
        return actions
