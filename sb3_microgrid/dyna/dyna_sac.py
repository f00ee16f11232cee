"""DynaSAC: SAC trained on real transitions mixed with short rollouts of a learned world model (MBPO-style)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.type_aliases import GymEnv, ReplayBufferSamples, Schedule
from stable_baselines3.common.vec_env import VecNormalize
from stable_baselines3.sac.policies import SACPolicy

from sb3_microgrid.dyna.world_model import TooFewTransitions, WorldModel

# Fields of ReplayBufferSamples that both buffers fill (``discounts`` is None: n-step returns are refused).
_SAMPLE_FIELDS = ("observations", "actions", "next_observations", "dones", "rewards")


class ModelReplayBuffer(ReplayBuffer):
    """
    An SB3 ``ReplayBuffer`` (one env column, no timeouts) that also stores a whole batch of imagined transitions
    at once with :meth:`extend`; the oldest are overwritten first. It samples like any ``ReplayBuffer``.
    """

    def extend(self, obs: np.ndarray, next_obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        """
        Store ``n`` transitions (arrays with a leading ``n`` axis; rewards and dones ``(n,)``).

        :param obs: observations
        :param next_obs: next observations
        :param actions: actions (in the buffer's scaled ``[-1, 1]`` space)
        :param rewards: rewards
        :param dones: episode ends (1.0) or not (0.0)
        """
        n = len(obs)
        if n > self.buffer_size:  # only the newest fit
            obs, next_obs, actions, rewards, dones = (a[-self.buffer_size :] for a in (obs, next_obs, actions, rewards, dones))
            n = self.buffer_size
        slots = (self.pos + np.arange(n)) % self.buffer_size
        self.observations[slots, 0] = obs
        self.next_observations[slots, 0] = next_obs
        self.actions[slots, 0] = actions
        self.rewards[slots, 0] = rewards
        self.dones[slots, 0] = dones
        self.full = self.full or self.pos + n >= self.buffer_size
        self.pos = int((self.pos + n) % self.buffer_size)


class MixedSampler:
    """
    Stands in for the replay buffer while ``SAC.train()`` runs. SAC reads its batches only through
    ``replay_buffer.sample()``, so mixing real and imagined transitions here reuses SAC's update unchanged.

    :param real: buffer of real transitions
    :param imagined: buffer of imagined transitions
    :param real_ratio: fraction of each batch taken from ``real`` (all of it while ``imagined`` is empty)
    """

    def __init__(self, real: ReplayBuffer, imagined: ReplayBuffer, real_ratio: float) -> None:
        self.real = real
        self.imagined = imagined
        self.real_ratio = real_ratio

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        n_imagined = batch_size - round(self.real_ratio * batch_size) if self.imagined.size() > 0 else 0
        real = self.real.sample(batch_size - n_imagined, env=env)
        if n_imagined == 0:
            return real
        imagined = self.imagined.sample(n_imagined, env=env)
        return ReplayBufferSamples(*(th.cat([getattr(real, f), getattr(imagined, f)]) for f in _SAMPLE_FIELDS))


class DynaSAC(SAC):
    """
    SAC with a learned world model, in the manner of MBPO (Janner et al., 2019).

    Every ``model_train_freq`` env steps (checked at each training call, the first at ``learning_starts``) the
    :class:`~sb3_microgrid.dyna.world_model.WorldModel` is refitted on the real replay buffer (from the first call
    at which it holds enough transitions to fit on: with ``learning_starts`` below 2 the first batches are all
    real), then ``rollout_batch_size`` real states drawn from the buffer are rolled forward ``rollout_length``
    imagined steps with the current (stochastic) policy. An imagined transition whose ensemble disagreement exceeds
    ``max_disagreement`` is dropped and ends its branch; the others go to :attr:`model_buffer`, a FIFO SB3
    ``ReplayBuffer``. Each gradient step then trains SAC on a batch with a fraction ``real_ratio`` of real
    transitions, the rest imagined.

    The model works in the replay buffer's raw (unnormalised) space: SB3 buffers store raw data and apply
    ``VecNormalize`` at sample time, so the model learns from raw data, imagined transitions are stored raw, and
    both buffers are normalised the same way when sampled; the policy sees normalised observations during the
    imagined rollouts too. Imagined episodes end by the clock: with ``termination_feature`` (the observation
    layout's ``time_left`` by default, which counts down to 0 at the end of the day) the number of steps left is
    read from the real start state and counted down exactly during the rollout, and the transition out of the
    last step gets ``done = 1``, as the real one does (``Microgrid-v0`` ends its day with ``terminated``). With
    ``termination_feature=None`` imagined transitions never end an episode (for envs that only time out).

    All of the model's randomness (initial weights, data splits, start states, member choice, Gaussian and policy
    noise) comes from its own generator seeded with ``seed``, so the world model never draws from the global
    numpy or torch streams: with ``real_ratio=1`` the model is still fitted and rolled out but SAC trains exactly
    as plain ``SAC`` with the same seed. ``use_sde``, n-step returns and ``optimize_memory_usage`` are not
    supported. The world model (weights, optimizer, standardisation statistics) and its generator are saved with the
    algorithm, and ``load`` leaves the generator in its saved state; the model buffer is not saved (it is refilled at
    the next rollout, batches being all real until then).

    Parameters are those of :class:`~stable_baselines3.SAC`, plus:

    :param model_train_freq: env steps (summed over envs) between refits of the world model and rollouts
    :param rollout_length: imagined steps per branch
    :param rollout_batch_size: branches started at each rollout
    :param real_ratio: fraction of real transitions in each batch, in ``[0, 1]``
    :param max_disagreement: imagined transitions whose ensemble disagreement (standardised units, see
        :class:`~sb3_microgrid.dyna.world_model.WorldModel`) is above this are dropped
    :param model_buffer_size: capacity of the imagined-transition buffer
    :param model_train_samples: the model is fitted on at most this many real transitions drawn at random from
        the buffer (``None``: all of them)
    :param termination_feature: static feature of the observation layout giving the fraction of the episode left,
        or ``None`` for imagined transitions that never end an episode
    :param world_model_kwargs: keyword arguments of :class:`~sb3_microgrid.dyna.world_model.WorldModel`
        (``ensemble_size``, ``net_arch``, ``learning_rate``, ``weight_decay``, ``min_log_var``, ``max_log_var``,
        ``nll_beta``)
    :param model_fit_kwargs: keyword arguments of :meth:`~sb3_microgrid.dyna.world_model.WorldModel.fit`
        (``holdout_ratio``, ``max_epochs``, ``patience``, ``batch_size``)
    """

    world_model: WorldModel
    model_buffer: ModelReplayBuffer

    def __init__(
        self,
        policy: str | type[SACPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        ent_coef: str | float = "auto",
        target_update_interval: int = 1,
        target_entropy: str | float = "auto",
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        use_sde_at_warmup: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        model_train_freq: int = 1_000,
        rollout_length: int = 1,
        rollout_batch_size: int = 5_000,
        real_ratio: float = 0.5,
        max_disagreement: float = 0.25,
        model_buffer_size: int = 25_000,
        model_train_samples: int | None = 10_000,
        termination_feature: str | None = "time_left",
        world_model_kwargs: dict[str, Any] | None = None,
        model_fit_kwargs: dict[str, Any] | None = None,
        _init_setup_model: bool = True,
    ) -> None:
        for name, value, low in (
            ("model_train_freq", model_train_freq, 1),
            ("rollout_length", rollout_length, 1),
            ("rollout_batch_size", rollout_batch_size, 1),
            ("model_buffer_size", model_buffer_size, 1),
            ("model_train_samples", model_train_samples, 10),
        ):
            if value is not None and (int(value) != value or value < low):
                raise ValueError(f"{name} must be an integer >= {low}, got {value}")
        if not 0.0 <= real_ratio <= 1.0:
            raise ValueError(f"real_ratio must be in [0, 1], got {real_ratio}")
        if not max_disagreement > 0.0:
            raise ValueError(f"max_disagreement must be > 0, got {max_disagreement}")
        # Set before SAC's constructor, which calls _setup_model(); load() overwrites them with the saved values.
        self.model_train_freq = model_train_freq
        self.rollout_length = rollout_length
        self.rollout_batch_size = rollout_batch_size
        self.real_ratio = real_ratio
        self.max_disagreement = max_disagreement
        self.model_buffer_size = model_buffer_size
        self.model_train_samples = model_train_samples
        self.termination_feature = termination_feature
        self.world_model_kwargs = dict(world_model_kwargs or {})
        self.model_fit_kwargs = dict(model_fit_kwargs or {})
        self.dyna_rng: np.random.Generator | None = None
        self._last_model_update: int | None = None
        self._clock_step = 0.0
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            action_noise=action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            ent_coef=ent_coef,
            target_update_interval=target_update_interval,
            target_entropy=target_entropy,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            use_sde_at_warmup=use_sde_at_warmup,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )

    def _setup_model(self) -> None:
        if not isinstance(self.observation_space, spaces.Box) or len(self.observation_space.shape) != 1:
            raise ValueError(f"DynaSAC needs a flat Box observation space, got {self.observation_space}")
        if self.use_sde:
            raise ValueError("DynaSAC does not support use_sde=True (imagined actions are drawn from the squashed Gaussian)")
        if self.n_steps != 1 or self.optimize_memory_usage:
            raise ValueError(f"DynaSAC needs n_steps=1 and optimize_memory_usage=False, got {self.n_steps} and {self.optimize_memory_usage}")
        super()._setup_model()
        self._clock_index = self._termination_index()
        if self.dyna_rng is None:
            self.dyna_rng = np.random.default_rng(self.seed)
            init_rng = self.dyna_rng
        else:
            # load() restored the saved generator and will replace this network's weights with the saved ones:
            # drawing them from a copy leaves the stream where the saved run left it
            init_rng = copy.deepcopy(self.dyna_rng)
        obs_dim, action_dim = self.observation_space.shape[0], self.action_space.shape[0]
        self.world_model = WorldModel(obs_dim, action_dim, init_rng, device=self.device, **self.world_model_kwargs)
        self.model_buffer = ModelReplayBuffer(
            self.model_buffer_size, self.observation_space, self.action_space, device=self.device, handle_timeout_termination=False
        )

    def _termination_index(self) -> int | None:
        if self.termination_feature is None:
            return None
        layout = getattr(self.observation_space, "layout", None)
        if layout is None or self.termination_feature not in layout.static_names:
            raise ValueError(
                f"termination_feature={self.termination_feature!r} is not a static feature of the observation layout "
                f"({'no layout' if layout is None else list(layout.static_names)}); pass termination_feature=None "
                "for imagined transitions that never end an episode"
            )
        return layout.index(self.termination_feature)

    def _excluded_save_params(self) -> list[str]:
        # the model buffer is not saved, so a loaded model refits and rolls out at its first training call
        return [*super()._excluded_save_params(), "world_model", "model_buffer", "_last_model_update"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, tensors = super()._get_torch_save_params()
        return [*state_dicts, "world_model", "world_model.optimizer"], tensors

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        last = self._last_model_update
        # a negative difference: learn(reset_num_timesteps=True) restarted the step counter
        if last is None or not 0 <= self.num_timesteps - last < self.model_train_freq:
            self.update_model()
        real = self.replay_buffer
        self.replay_buffer = MixedSampler(real, self.model_buffer, self.real_ratio)  # type: ignore[assignment]
        try:
            super().train(gradient_steps, batch_size)
        finally:
            self.replay_buffer = real

    def _stored(self, n: int | None, replace: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(position, env)`` indices of ``n`` stored real transitions drawn with the model's generator (all of
        them if ``n`` is ``None`` or, without replacement, not smaller than the number stored)."""
        buffer = self.replay_buffer
        total = (buffer.buffer_size if buffer.full else buffer.pos) * buffer.n_envs
        if n is None or (not replace and n >= total):
            flat = np.arange(total)
        else:
            flat = self.dyna_rng.choice(total, n, replace=replace)
        return np.divmod(flat, buffer.n_envs)

    def update_model(self) -> None:
        """Refit the world model on the real buffer, then add a round of imagined rollouts to the model buffer.
        Does nothing (the next training call tries again) while the buffer holds too few transitions to fit on."""
        buffer = self.replay_buffer
        pos, env = self._stored(self.model_train_samples, replace=False)
        obs, next_obs = buffer.observations[pos, env], buffer.next_observations[pos, env]
        try:
            fit = self.world_model.fit(obs, buffer.actions[pos, env], next_obs, buffer.rewards[pos, env], self.dyna_rng, **self.model_fit_kwargs)
        except TooFewTransitions:
            if len(pos) == self.model_train_samples:
                raise  # the sample is as large as it gets: model_train_samples is too small for the holdout
            return
        if self._clock_index is not None:
            # one step's decrement of the episode clock: the same in every real transition
            self._clock_step = float(np.median(obs[:, self._clock_index] - next_obs[:, self._clock_index]))
            if not self._clock_step > 0:
                raise ValueError(f"termination_feature={self.termination_feature!r} does not count down (median step {self._clock_step})")
        self._last_model_update = self.num_timesteps
        tried, kept, disagreement = self.imagine()
        self.logger.record("dyna/model_epochs", fit.epochs)
        self.logger.record("dyna/model_holdout_nll", float(fit.holdout_nll.mean()))
        self.logger.record("dyna/model_holdout_mse", float(fit.holdout_mse.mean()))
        self.logger.record("dyna/kept_fraction", kept / tried)
        self.logger.record("dyna/disagreement_median", float(np.median(disagreement)))
        self.logger.record("dyna/model_buffer_size", self.model_buffer.size())

    def imagine(self) -> tuple[int, int, np.ndarray]:
        """
        Branch ``rollout_batch_size`` imagined rollouts from real states and store the kept transitions.

        :return: imagined transitions tried, transitions kept, and the disagreement of every tried transition
        """
        buffer = self.replay_buffer
        self.policy.set_training_mode(False)
        pos, env = self._stored(self.rollout_batch_size, replace=True)
        obs = buffer.observations[pos, env]
        steps_left = None if self._clock_index is None else np.rint(obs[:, self._clock_index] / self._clock_step)
        tried, kept, disagreements = 0, 0, []
        for _ in range(self.rollout_length):
            actions = self._imagined_actions(obs)
            next_obs, rewards, disagreement = self.world_model.sample(obs, actions, self.dyna_rng)
            keep = disagreement <= self.max_disagreement
            dones = np.zeros(len(obs), dtype=bool) if steps_left is None else steps_left <= 1
            self.model_buffer.extend(obs[keep], next_obs[keep], actions[keep], rewards[keep], dones[keep])
            tried, kept = tried + len(obs), kept + int(keep.sum())
            disagreements.append(disagreement)
            alive = keep & ~dones
            obs = next_obs[alive]
            steps_left = None if steps_left is None else steps_left[alive] - 1
            if len(obs) == 0:
                break
        return tried, kept, np.concatenate(disagreements)

    def _imagined_actions(self, raw_obs: np.ndarray) -> np.ndarray:
        """Actions of the current stochastic policy (squashed Gaussian) for raw observations, noise from the
        model's generator."""
        obs = raw_obs if self._vec_normalize_env is None else self._vec_normalize_env.normalize_obs(raw_obs)
        with th.no_grad():
            mean, log_std, _ = self.actor.get_action_dist_params(th.as_tensor(obs, dtype=th.float32, device=self.device))
        noise = self.dyna_rng.standard_normal(mean.shape, dtype=np.float32)
        return np.tanh(mean.cpu().numpy() + np.exp(log_std.cpu().numpy()) * noise)
