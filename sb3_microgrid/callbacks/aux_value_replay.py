"""Auxiliary prioritized value replay for PPO: refit the value head(s) between updates, never the policy."""

from __future__ import annotations

import copy

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecNormalize

from ..buffers import SumTree, priorities_from_errors, sample_prioritized
from ..buffers.prioritized import checked_priority_arguments
from ..reptile import refuse_reptile
from ..schedules import finite
from ..twin_ppo import TwinValueActorCriticPolicy
from ..common.requirements import refuse_recurrent


def value_parameters(policy: ActorCriticPolicy) -> list[th.nn.Parameter]:
    """
    The parameters only the value estimate depends on: the critic latent (``mlp_extractor.value_net``), the linear
    ``value_net``, the second head of a :class:`TwinValueActorCriticPolicy`, and the critic's features extractor when
    it is not shared with the actor. A shared extractor is left out, so fitting these never changes the policy.

    :param policy: an SB3 actor-critic policy
    :return: the parameters, in a fixed order
    """
    modules: list[th.nn.Module] = [policy.mlp_extractor.value_net, policy.value_net]
    if isinstance(policy, TwinValueActorCriticPolicy):
        modules += [policy.value_latent_net_2, policy.value_net_2]
    if not policy.share_features_extractor:
        modules.append(policy.vf_features_extractor)
    return [param for module in modules for param in module.parameters()]


def reward_scale(venv: VecNormalize | None) -> float:
    """What ``venv`` currently divides rewards (and hence value targets) by; 1 without reward normalisation."""
    return 1.0 if venv is None else float(venv.unnormalize_reward(np.float64(1.0)))


class ValueReplayStore:
    """
    The observations and value targets of the last ``n_rollouts`` rollouts, sampled in proportion to priority.

    Rollout ``b`` of the ring fills items ``[b * rollout_size, (b + 1) * rollout_size)``; a new rollout overwrites the
    oldest one whole. Item ``i`` is drawn with probability ``P(i) = p_i / sum_k p_k``, ``p_i = (|delta_i| + epsilon)
    ** alpha`` (:func:`~sb3_microgrid.buffers.priorities_from_errors`), over a :class:`~sb3_microgrid.buffers.SumTree`,
    with the importance weights of :class:`~sb3_microgrid.buffers.PrioritizedReplayBuffer`. A new rollout's items start at priority 0 (never
    drawn) until :meth:`update_priorities` sets them.

    :param n_rollouts: number of rollouts kept
    :param rollout_size: items per rollout (``n_steps * n_envs``)
    :param obs_shape: shape of one observation
    :param alpha: prioritization exponent (0: uniform sampling)
    :param epsilon: added to ``|delta|`` so that no item gets a zero priority
    """

    def __init__(self, n_rollouts: int, rollout_size: int, obs_shape: tuple[int, ...], alpha: float, epsilon: float) -> None:
        self.n_rollouts = n_rollouts
        self.rollout_size = rollout_size
        self.alpha = alpha
        self.epsilon = epsilon
        # float64: under VecNormalize an unnormalised feature of tiny variance needs more than float32's digits to
        # normalise back to the value the policy saw
        self.observations = np.zeros((n_rollouts * rollout_size, *obs_shape), dtype=np.float64)
        self.targets = np.zeros(n_rollouts * rollout_size, dtype=np.float64)
        self.tree = SumTree(n_rollouts * rollout_size)
        self.n_full = 0
        self._next = 0

    @property
    def n_stored(self) -> int:
        """Number of stored items."""
        return self.n_full * self.rollout_size

    def add(self, observations: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """
        Store one rollout in place of the oldest.

        :param observations: ``(rollout_size, *obs_shape)``
        :param targets: ``(rollout_size,)``
        :return: the item indices it occupies
        """
        indices = np.arange(self._next * self.rollout_size, (self._next + 1) * self.rollout_size)
        self.observations[indices] = observations
        self.targets[indices] = targets
        self.tree.update(indices, np.zeros(self.rollout_size))
        self._next = (self._next + 1) % self.n_rollouts
        self.n_full = min(self.n_full + 1, self.n_rollouts)
        return indices

    def sample(self, batch_size: int, beta: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """
        Draw items in proportion to priority, as :func:`~sb3_microgrid.buffers.sample_prioritized`.

        :param batch_size: number of items
        :param beta: importance-sampling exponent
        :param rng: random generator
        :return: item indices, and their importance weights over the batch's maximum
        """
        return sample_prioritized(self.tree, batch_size, beta, rng)

    def update_priorities(self, indices: np.ndarray, abs_errors: np.ndarray) -> None:
        """
        :param indices: item indices
        :param abs_errors: ``|target - V|`` of those items
        """
        self.tree.update(indices, priorities_from_errors(abs_errors, self.alpha, self.epsilon))


class AuxiliaryValueReplayCallback(BaseCallback):
    """
    Between PPO updates, refit the value head(s) on a prioritized replay of the last rollouts' states and value
    targets, with an optimizer of its own over the value parameters only. PPO's own losses are not touched.

    - At each rollout end, the rollout's observations and ``rollout_buffer.returns`` (GAE(λ) returns, the targets
      PPO's value loss uses) are copied into a :class:`ValueReplayStore` of ``n_rollouts`` rollouts. Old targets were
      computed under older policies and value functions: keeping only a few recent rollouts is what bounds that
      staleness (PPO moves the policy little per update).
    - After each ``train()`` (at the next rollout start, or at the end of ``learn()``), the newest rollout's
      priorities are set from the updated value function, then ``gradient_steps`` minibatches are drawn by priority
      and ``mean(w * (target - V)^2)`` is minimised, ``w`` being the importance weights, ``beta`` annealed from
      ``beta`` to ``beta_final`` with training progress. The ``|target - V|`` of each minibatch, from before its
      step, is written back as its priorities. With :class:`~sb3_microgrid.twin_ppo.TwinValueActorCriticPolicy`
      both heads are fitted (the loss is the mean over heads) and the priority is the mean over heads of
      ``|target - V_h|``.
    - Only :func:`value_parameters` are optimized, and gradients are computed for them only: a features extractor
      shared with the actor stays frozen, so the action distribution is exactly unchanged by these steps.
      The steps run in eval mode, as rollout collection does (the previous mode is restored after them).
    - Under ``VecNormalize`` the store keeps raw observations and raw-unit targets and normalises them with the
      current statistics at sample time, so entries do not drift as the statistics move. Both are recorded as the
      data arrives, not recovered afterwards with end-of-rollout statistics (which differ from those each step
      was normalised with, most on the first rollouts): the observation each step acted on is the env's
      ``get_original_obs()`` of the step before (or of the reset), and the targets are GAE(λ) returns computed,
      as SB3 computes ``rollout_buffer.returns``, from ``get_original_reward()`` and the rollout values in raw
      units (each times the reward scale in force at its step). A time-limit bootstrap, which SB3 adds to the
      buffer's rewards at truncations, is not in them (``Microgrid-v0`` never truncates).

    Logged (to SB3's logger, dumped with the next rollout's values): ``aux_value/loss`` (mean weighted loss over
    the steps), ``aux_value/abs_error`` (mean ``|target - V|`` of the drawn minibatches, before their steps),
    ``aux_value/new_rollout_abs_error`` (mean ``|target - V|`` on the newest rollout after PPO's update, before the
    auxiliary steps), ``aux_value/mean_priority``, ``aux_value/beta`` and ``aux_value/n_stored``.

    Nothing is added to the model, so it saves and loads as usual. The callback can be reused with another model
    (e.g. a loaded one): its optimizer and store are rebuilt when the policy object changes.

    :param gradient_steps: minibatch steps after each PPO update
    :param batch_size: minibatch size
    :param learning_rate: Adam learning rate of the auxiliary optimizer (constant; the model's schedule does not
        reach it)
    :param n_rollouts: number of most recent rollouts kept
    :param alpha: prioritization exponent (0: uniform sampling)
    :param beta: importance-sampling exponent at the start of training
    :param beta_final: importance-sampling exponent at the end of training
    :param epsilon: added to ``|target - V|`` so that no item gets a zero priority
    :param max_grad_norm: clip the gradient norm of the value parameters; ``None``: no clipping
    :param verbose: 1 prints the loss of each auxiliary phase
    """

    def __init__(
        self,
        gradient_steps: int = 32,
        batch_size: int = 256,
        learning_rate: float = 3e-4,
        n_rollouts: int = 4,
        alpha: float = 0.6,
        beta: float = 0.4,
        beta_final: float = 1.0,
        epsilon: float = 1e-6,
        max_grad_norm: float | None = 0.5,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose=verbose)
        for name, value in (("gradient_steps", gradient_steps), ("batch_size", batch_size), ("n_rollouts", n_rollouts)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if finite(learning_rate, "learning_rate") < 0.0:
            raise ValueError(f"learning_rate must be >= 0, got {learning_rate}")
        alpha, beta, beta_final, epsilon = checked_priority_arguments(alpha, beta, beta_final, epsilon)
        if max_grad_norm is not None and finite(max_grad_norm, "max_grad_norm") <= 0.0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {max_grad_norm}")
        self.gradient_steps = gradient_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.n_rollouts = n_rollouts
        self.alpha = alpha
        self.beta = beta
        self.beta_final = beta_final
        self.epsilon = epsilon
        self.max_grad_norm = max_grad_norm
        self.store: ValueReplayStore | None = None
        self.optimizer: th.optim.Optimizer | None = None
        self._policy: ActorCriticPolicy | None = None
        self._params: list[th.nn.Parameter] = []
        self._new_rollout: np.ndarray | None = None
        self._rng: np.random.Generator | None = None
        self._raw: tuple[list[np.ndarray], list[np.ndarray], list[float]] = ([], [], [])
        self._next_raw_obs: np.ndarray | None = None

    def _init_callback(self) -> None:
        refuse_reptile(self.model, "AuxiliaryValueReplayCallback")
        if not isinstance(self.model, OnPolicyAlgorithm) or not isinstance(self.model.policy, ActorCriticPolicy):
            raise TypeError(
                f"AuxiliaryValueReplayCallback needs an on-policy actor-critic algorithm (PPO, TwinValuePPO, A2C), got {type(self.model).__name__}"
            )
        refuse_recurrent(self.model, "AuxiliaryValueReplayCallback")
        if not isinstance(self.model.observation_space, spaces.Box):
            raise TypeError(f"AuxiliaryValueReplayCallback needs a Box observation space, got {self.model.observation_space}")
        if self._rng is None:
            # seeded from the global generator, so the model's `seed` makes sampling reproducible
            self._rng = np.random.default_rng(np.random.randint(2**31))
        if self.model.policy is not self._policy:
            self._policy = self.model.policy
            self._params = value_parameters(self._policy)
            self.optimizer = th.optim.Adam(self._params, lr=self.learning_rate)
            self.store, self._new_rollout = None, None

    def _on_rollout_start(self) -> None:
        venv = self.model.get_vec_normalize_env()
        # what the policy acts on first: the last step's observation, or at the first rollout the reset's (or a
        # previous learn()'s last); read here, not at training start, which a later callback's reset follows
        # (CurriculumCallback)
        self._next_raw_obs = None if venv is None else venv.get_original_obs().copy()
        self._raw = ([], [], [])
        self.fit()

    def _on_step(self) -> bool:
        venv = self.model.get_vec_normalize_env()
        if venv is not None:
            observations, rewards, scales = self._raw
            observations.append(self._next_raw_obs)
            rewards.append(venv.get_original_reward().copy())
            scales.append(reward_scale(venv))  # the scale this step's reward was just normalised with
            self._next_raw_obs = venv.get_original_obs().copy()
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        if self.store is None or self.store.rollout_size != buffer.buffer_size * buffer.n_envs:
            self.store = ValueReplayStore(self.n_rollouts, buffer.buffer_size * buffer.n_envs, buffer.obs_shape, self.alpha, self.epsilon)
        if self.model.get_vec_normalize_env() is None:
            observations, targets = buffer.observations, buffer.returns
        else:
            observations, targets = np.stack(self._raw[0]), self._raw_returns(buffer)
        self._new_rollout = self.store.add(observations.reshape(-1, *buffer.obs_shape), targets.reshape(-1))

    def _raw_returns(self, buffer: RolloutBuffer) -> np.ndarray:
        """GAE(λ) returns in raw reward units, by SB3's own computation on a copy of the buffer."""
        _, rewards, scales = self._raw
        step_scales = np.array(scales)[:, None]
        raw = copy.copy(buffer)  # shallow: each array the computation reads or writes is replaced below
        raw.rewards = np.stack(rewards)
        raw.values = buffer.values * step_scales
        raw.advantages = np.zeros_like(buffer.advantages)
        # collect_rollouts' locals at its end: the last observation's values and dones
        raw.compute_returns_and_advantage(last_values=self.locals["values"] * scales[-1], dones=self.locals["dones"])
        return raw.returns

    def _on_training_end(self) -> None:
        self.fit()  # the last update of learn() is followed by no rollout start

    def _batch(self, indices: np.ndarray) -> tuple[th.Tensor, th.Tensor]:
        """Observations and targets of store items, normalised with the current ``VecNormalize`` statistics."""
        observations, targets = self.store.observations[indices], self.store.targets[indices]
        venv = self.model.get_vec_normalize_env()
        if venv is not None:
            observations, targets = venv.normalize_obs(observations), targets / reward_scale(venv)
        device = self.model.device
        return th.as_tensor(observations, dtype=th.float32, device=device), th.as_tensor(targets[:, None], dtype=th.float32, device=device)

    def _errors(self, observations: th.Tensor, targets: th.Tensor) -> th.Tensor:
        """``target - V`` for each value head, ``(batch, n_heads)``."""
        policy = self.model.policy
        if isinstance(policy, TwinValueActorCriticPolicy):
            return targets - th.cat(policy.predict_both_values(observations), dim=1)
        return targets - policy.predict_values(observations)

    def fit(self) -> float | None:
        """
        Run the auxiliary phase now if a rollout arrived since the last one (the callback's hooks call this).

        :return: the mean weighted loss over the steps, or ``None`` if there was nothing new to fit
        """
        if self._new_rollout is None or self.store is None:
            return None
        policy = self.model.policy
        was_training = policy.training
        policy.set_training_mode(False)
        with th.no_grad():
            new_errors = self._errors(*self._batch(self._new_rollout)).abs().mean(dim=1).cpu().numpy()
        self.store.update_priorities(self._new_rollout, new_errors)
        self._new_rollout = None
        beta = self.beta + (self.beta_final - self.beta) * (1.0 - self.model._current_progress_remaining)
        losses, abs_errors = [], []
        for _ in range(self.gradient_steps):
            indices, weights = self.store.sample(self.batch_size, beta, self._rng)
            errors = self._errors(*self._batch(indices))
            loss = (th.as_tensor(weights[:, None], dtype=th.float32, device=errors.device) * errors**2).mean()
            self.optimizer.zero_grad()
            loss.backward(inputs=self._params)  # no gradient reaches (or accumulates in) the actor's parameters
            if self.max_grad_norm is not None:
                th.nn.utils.clip_grad_norm_(self._params, self.max_grad_norm)
            self.optimizer.step()
            batch_errors = errors.detach().abs().mean(dim=1).cpu().numpy()
            self.store.update_priorities(indices, batch_errors)
            losses.append(loss.item())
            abs_errors.append(batch_errors.mean())
        policy.set_training_mode(was_training)
        mean_loss = float(np.mean(losses))
        record = self.logger.record
        record("aux_value/loss", mean_loss)
        record("aux_value/abs_error", float(np.mean(abs_errors)))
        record("aux_value/new_rollout_abs_error", float(new_errors.mean()))
        record("aux_value/mean_priority", self.store.tree.total / self.store.n_stored)
        record("aux_value/beta", beta)
        record("aux_value/n_stored", self.store.n_stored)
        if self.verbose >= 1:
            print(f"AuxiliaryValueReplayCallback: loss {mean_loss:.4g} over {self.gradient_steps} steps, {self.store.n_stored} stored")
        return mean_loss
