"""Prioritized experience replay (Schaul et al., 2016) as a drop-in SB3 ``ReplayBuffer``."""

from __future__ import annotations

import math
import warnings
from numbers import Integral
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize

from sb3_microgrid.buffers.sum_tree import SumTree
from sb3_microgrid.common.arguments import checked_number


def checked_priority_arguments(alpha: float, beta: float, beta_final: float, epsilon: float) -> tuple[float, float, float, float]:
    """
    The prioritized-replay arguments as Python numbers, if they are in range: a negative ``alpha`` would silently
    favour the items of *smallest* error, a ``beta`` outside ``[0, 1]`` over- or mis-corrects the sampling bias, a
    non-finite value gives NaN priorities or weights, and an ``epsilon <= 0`` zero or NaN priorities.

    :param alpha: prioritization exponent, finite and ``>= 0``
    :param beta: initial importance-sampling exponent, in ``[0, 1]``
    :param beta_final: final importance-sampling exponent, in ``[0, 1]``
    :param epsilon: added to ``|delta|``, finite and ``> 0``
    :return: ``(alpha, beta, beta_final, epsilon)``
    :raises ValueError: naming the first argument out of range and its allowed range
    """
    return (
        checked_number("alpha", alpha, 0, math.inf),
        checked_number("beta", beta, 0, 1),
        checked_number("beta_final", beta_final, 0, 1),
        checked_number("epsilon", epsilon, 0, math.inf, lo_open=True),
    )


def priorities_from_errors(errors: np.ndarray | th.Tensor, alpha: float, epsilon: float) -> np.ndarray:
    """
    Proportional priorities ``p_i = (|delta_i| + epsilon) ** alpha``.

    :param errors: errors ``delta_i`` (TD errors, value errors)
    :param alpha: prioritization exponent (0: uniform sampling)
    :param epsilon: added to ``|delta_i|`` so that no item gets a zero priority
    :return: float64 priorities, flattened
    """
    if isinstance(errors, th.Tensor):
        errors = errors.detach().cpu().numpy()
    return (np.abs(np.asarray(errors, dtype=np.float64).ravel()) + epsilon) ** alpha


def sample_prioritized(tree: SumTree, batch_size: int, beta: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """
    Draw items in proportion to their priority (stratified), with their importance weights.

    The weights are ``(N * P(i)) ** -beta`` divided by their maximum *over the batch* (not over all items, which
    would need a min-tree), ``P(i) = p_i / sum_k p_k`` and ``N`` the number of items: ``N`` and the total cancel,
    leaving ``(p_i / min_j p_j) ** -beta`` over the batch.

    :param tree: the priorities
    :param batch_size: number of items
    :param beta: importance-sampling exponent
    :param rng: random generator
    :return: item indices and their weights, both ``(batch_size,)``
    """
    indices = tree.sample_stratified(batch_size, rng)
    priorities = tree[indices]
    return indices, (priorities / priorities.min()) ** -beta


class PrioritizedReplayBufferSamples(NamedTuple):
    """SB3's ``ReplayBufferSamples`` fields, plus the importance weights and the tree indices of the batch."""

    observations: th.Tensor
    actions: th.Tensor
    next_observations: th.Tensor
    dones: th.Tensor
    rewards: th.Tensor
    discounts: th.Tensor | None
    weights: th.Tensor
    indices: np.ndarray


class PrioritizedReplayBuffer(ReplayBuffer):
    """
    Proportional prioritized replay: transition ``i`` is sampled with probability ``P(i) = p_i / sum_k p_k``, where
    ``p_i = (|delta_i| + epsilon) ** alpha`` and ``delta_i`` is its last TD error. New transitions get the largest
    priority stored so far, so each is replayed at least once soon.

    The sum tree indexes the flattened ``(pos, env)`` storage: leaf ``pos * n_envs + env``. Importance weights are
    those of :func:`sample_prioritized`. ``beta`` rises linearly from ``beta`` to
    ``beta_final``, either over ``beta_steps`` calls to :meth:`sample` or as set by :meth:`set_progress` (which
    :class:`~sb3_microgrid.per_sac.PerSAC` and
    :class:`~sb3_microgrid.per_td3.PerTD3` call with the training progress when
    ``beta_steps`` is ``None``).

    The buffer only samples; the algorithm must weight its loss by ``weights`` and call :meth:`update_priorities`
    (SB3's SAC/TD3 ignore both, hence ``PerSAC`` and ``PerTD3``). A second :meth:`sample` with no
    :meth:`update_priorities` since the previous one warns (once): the priorities never change, so the replay is
    uniform and the weights only scale the loss, which is what plain SAC/TD3 given this buffer through
    ``replay_buffer_class`` would silently do.

    :param buffer_size: Max number of transitions in the buffer (over all envs)
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param n_envs: Number of parallel environments
    :param optimize_memory_usage: Not supported (must be ``False``)
    :param handle_timeout_termination: Handle timeout termination (due to timelimit) separately and treat the task
        as infinite horizon task.
    :param alpha: Prioritization exponent (0: uniform sampling), finite and ``>= 0``
    :param beta: Initial importance-sampling exponent, in ``[0, 1]``
    :param beta_final: Importance-sampling exponent at the end of the annealing, in ``[0, 1]``
    :param beta_steps: Number of ``sample()`` calls over which ``beta`` is annealed (an integer ``>= 1``); ``None``
        to drive it with :meth:`set_progress` instead
    :param epsilon: Added to ``|delta|`` so that no transition gets a zero priority, finite and ``> 0``
    :raises ValueError: for an argument out of its range (see :func:`checked_priority_arguments`)
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        alpha: float = 0.6,
        beta: float = 0.4,
        beta_final: float = 1.0,
        beta_steps: int | None = None,
        epsilon: float = 1e-6,
    ) -> None:
        if optimize_memory_usage:
            # the memory-efficient layout makes the transition at `pos` invalid, which the sum tree cannot exclude
            raise ValueError("PrioritizedReplayBuffer does not support optimize_memory_usage=True")
        alpha, beta, beta_final, epsilon = checked_priority_arguments(alpha, beta, beta_final, epsilon)
        if beta_steps is not None:
            # a count of sample() calls: a NaN one (which `< 1` lets through) makes the annealed beta NaN
            beta_steps = checked_number("beta_steps", beta_steps, 1, math.inf, integer=True)
        super().__init__(buffer_size, observation_space, action_space, device, n_envs, False, handle_timeout_termination)
        self.alpha = alpha
        self.beta_initial = beta
        self.beta_final = beta_final
        self.beta_steps = beta_steps
        self.epsilon = epsilon
        self.tree = SumTree(self.buffer_size * self.n_envs)
        self.max_priority = 1.0
        self.progress = 0.0
        self.n_sampled = 0
        self._updated_since_sample = True
        self._warned_no_update = False
        # seeded from the global generator, so the algorithm's `seed` makes sampling reproducible
        self.rng = np.random.default_rng(np.random.randint(2**31))

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled buffer whose sum tree has one leaf per stored transition: a tree of another size would
        sample or update the wrong transitions (the tree checks its own layout against its capacity). Its arguments are
        checked as the constructor checks them: a resumed run would otherwise train with a NaN or negative exponent.

        :raises ValueError: if the tree does not fit ``buffer_size * n_envs``, or naming an argument out of its range
        """
        tree, buffer_size, n_envs = state.get("tree"), state.get("buffer_size"), state.get("n_envs")
        if not (isinstance(buffer_size, Integral) and isinstance(n_envs, Integral) and isinstance(tree, SumTree) and tree.capacity == buffer_size * n_envs):
            raise ValueError(f"a pickled PrioritizedReplayBuffer's tree must be a SumTree of capacity buffer_size * n_envs ({buffer_size!r} * {n_envs!r})")
        try:
            checked_priority_arguments(state.get("alpha"), state.get("beta_initial"), state.get("beta_final"), state.get("epsilon"))
            if state.get("beta_steps") is not None:
                checked_number("beta_steps", state["beta_steps"], 1, math.inf, integer=True)
            checked_number("max_priority", state.get("max_priority"), 0, math.inf, lo_open=True)
            checked_number("progress", state.get("progress"), 0, 1)
        except ValueError as err:
            raise ValueError(f"a pickled PrioritizedReplayBuffer: {err}") from None
        self.__dict__.update(state)

    @property
    def beta(self) -> float:
        """Current importance-sampling exponent."""
        return self.beta_initial + self.progress * (self.beta_final - self.beta_initial)

    def set_progress(self, fraction: float) -> None:
        """
        Set the annealing progress of ``beta``.

        :param fraction: 0 at the start of training (``beta``), 1 at the end (``beta_final``); clipped to [0, 1]
        :raises ValueError: for a fraction that is not a finite number (NaN would pass the clip and make ``beta`` NaN)
        """
        self.progress = min(max(checked_number("fraction", fraction, -math.inf, math.inf), 0.0), 1.0)

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        # the leaves of the row about to be written, before super().add() advances (and maybe wraps) pos
        first_leaf = self.pos * self.n_envs
        super().add(obs, next_obs, action, reward, done, infos)
        self.tree.update(first_leaf + np.arange(self.n_envs), np.full(self.n_envs, self.max_priority))

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> PrioritizedReplayBufferSamples:  # type: ignore[override]
        """
        Sample transitions in proportion to their priority.

        :param batch_size: Number of transitions to sample
        :param env: associated VecEnv, to normalize the observations/rewards when sampling
        :return: the batch, its importance weights ``(batch_size, 1)`` and its tree indices (for
            :meth:`update_priorities`)
        """
        if self.beta_steps is not None:
            self.set_progress(self.n_sampled / self.beta_steps)
        self.n_sampled += 1
        if not self._updated_since_sample and not self._warned_no_update:
            warnings.warn(
                "PrioritizedReplayBuffer.sample() was called again with no update_priorities() since the last sample: "
                "the priorities never change and the replay is uniform. Train with an algorithm that updates them "
                "(PerSAC, PerTD3), not plain SAC/TD3 with replay_buffer_class=PrioritizedReplayBuffer.",
                stacklevel=2,
            )
            self._warned_no_update = True
        self._updated_since_sample = False
        indices, weights = sample_prioritized(self.tree, batch_size, self.beta, self.rng)
        return self._get_prioritized_samples(indices, weights, env)

    def _get_prioritized_samples(
        self, indices: np.ndarray, weights: np.ndarray, env: VecNormalize | None
    ) -> PrioritizedReplayBufferSamples:
        # The storage is (buffer_size, n_envs, ...) in C order, so tree leaf pos * n_envs + env is row `leaf` of the
        # flattened arrays: one np.take per field (faster than indexing with a (pos, env) pair of arrays), and its
        # fresh result becomes a tensor without a second copy.
        def rows(array: np.ndarray) -> np.ndarray:
            return np.take(array.reshape(-1, *array.shape[2:]), indices, axis=0)

        data = (
            self._normalize_obs(rows(self.observations), env),
            rows(self.actions),
            self._normalize_obs(rows(self.next_observations), env),
            # Only use dones that are not due to timeouts
            (rows(self.dones) * (1 - rows(self.timeouts))).reshape(-1, 1),
            self._normalize_reward(rows(self.rewards).reshape(-1, 1), env),
            weights.astype(np.float32).reshape(-1, 1),
        )
        observations, actions, next_observations, dones, rewards, weights_th = (self.to_torch(x, copy=False) for x in data)
        return PrioritizedReplayBufferSamples(observations, actions, next_observations, dones, rewards, None, weights_th, indices)

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray | th.Tensor) -> None:
        """
        Store ``(|td_error| + epsilon) ** alpha`` as the priority of the transitions ``indices``.

        :param indices: tree indices, as returned in ``PrioritizedReplayBufferSamples.indices``
        :param td_errors: TD errors of those transitions
        """
        priorities = priorities_from_errors(td_errors, self.alpha, self.epsilon)
        self.tree.update(indices, priorities)
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self._updated_since_sample = True

