"""Parameter-space noise (Plappert et al. 2018, "Parameter Space Noise for Exploration") as a callback.

The actor's mean network acts with perturbed weights during each rollout and is restored before ``train()``,
so the perturbation explores without ever being trained into the network.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy

Obs = np.ndarray | dict[str, np.ndarray]


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
    none and the perturbation is applied to them as they are, which is why σ is adapted on the action distance
    rather than fixed.

    **Adaptation.** When a noise draw is retired, the distance ``d = sqrt(mean((μ̃(s) − μ(s))²))`` between the
    perturbed and clean deterministic actions on the last ``n_recent_obs`` observations is measured, and
    ``σ ← σ·α`` if ``d < δ`` else ``σ ← σ/α``. Actions are compared in the policy's action space, clipped to the
    Box for unsquashed (PPO) policies, i.e. as the env would execute them. Logs
    ``exploration/param_noise_sigma`` and ``exploration/param_noise_distance``.

    **PPO.** The perturbed network is the one acting, so ``forward()`` stores the perturbed policy's log-probability
    of each action in the rollout buffer; ``train()`` then evaluates the clean policy, and its ratio
    ``π_clean(a|s) / π_perturbed(a|s)`` is the correct importance weight from the behaviour policy to the policy
    being trained. It is not 1 at the first epoch: the perturbation's KL, about ``action_dim · δ² / (2 · std²)``
    for a Gaussian of std ``std``, enters ``train/approx_kl`` and ``train/clip_fraction`` (and ``target_kl``), so
    keep δ well below the policy's std.

    :param initial_sigma: initial σ, the std of the noise added to each parameter (SB3's default initialisation
        gives weights of about ``1/sqrt(fan_in)``, 0.07 for the 206 microgrid inputs)
    :param target_distance: δ, the action distance σ is adapted to
    :param adaptation_coef: α > 1; σ moves once per noise draw (once per rollout for PPO, far less often than
        the paper's every 50 steps, hence a larger default than its 1.01)
    :param resample_freq: env steps (summed over envs) a noise draw is kept for; the noise is redrawn at the first
        rollout start after that many steps, 0 redraws at every rollout. A draw kept over several rollouts is
        re-added to the freshly trained weights at each of them. For SAC/TD3 with ``train_freq=1`` a rollout is
        one step, so set it to about an episode (Plappert et al. perturb once per episode).
    :param n_recent_obs: number of most recent observations the distance is measured on
    :param module_names: dotted paths (from the policy) of the modules to perturb; default
        :func:`actor_module_names`
    :param verbose: verbosity
    """

    def __init__(
        self,
        initial_sigma: float = 0.01,
        target_distance: float = 0.1,
        adaptation_coef: float = 1.05,
        resample_freq: int = 0,
        n_recent_obs: int = 512,
        module_names: list[str] | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if initial_sigma <= 0 or target_distance <= 0 or adaptation_coef <= 1:
            raise ValueError("need initial_sigma > 0, target_distance > 0 and adaptation_coef > 1")
        self.sigma = initial_sigma
        self.target_distance = target_distance
        self.adaptation_coef = adaptation_coef
        self.resample_freq = resample_freq
        self.n_recent_obs = n_recent_obs
        self.module_names = module_names
        self.distance: float | None = None
        self._noise: list[th.Tensor] | None = None
        self._clean: list[th.Tensor] | None = None
        self._drawn_at = 0

    def _init_callback(self) -> None:
        policy = self.model.policy
        names = self.module_names or actor_module_names(policy)
        self._params = [param for name in names for param in policy.get_submodule(name).parameters()]
        self._recent: deque[Obs] = deque(maxlen=max(1, self.n_recent_obs // self.model.n_envs))

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
        perturbed_actions = self._deterministic_actions(obs)
        self._restore()
        self.distance = float(th.sqrt(th.mean((perturbed_actions - self._deterministic_actions(obs)) ** 2)))
        self.sigma = self.sigma * self.adaptation_coef if self.distance < self.target_distance else self.sigma / self.adaptation_coef
        self.logger.record("exploration/param_noise_sigma", self.sigma)
        self.logger.record("exploration/param_noise_distance", self.distance)

    def _on_training_end(self) -> None:
        if self.perturbed:
            self._restore()

    def _restore(self) -> None:
        assert self._clean is not None
        with th.no_grad():
            for param, clean in zip(self._params, self._clean):
                param.copy_(clean)
        self._clean = None

    def _deterministic_actions(self, obs: PyTorchObs) -> th.Tensor:
        policy = self.model.policy
        with th.no_grad():
            actions = policy._predict(obs, deterministic=True)
        if not policy.squash_output and isinstance(policy.action_space, spaces.Box):
            low, high = (th.as_tensor(bound.flatten(), device=actions.device) for bound in (policy.action_space.low, policy.action_space.high))
            actions = th.clamp(actions.reshape(len(actions), -1), low, high)
        return actions
