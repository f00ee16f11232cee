"""Per-rollout microgrid KPIs, policy and value diagnostics, and throughput, to SB3's logger."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch as th
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import DiagGaussianDistribution, StateDependentNoiseDistribution
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import VecNormalize, unwrap_vec_wrapper

from ..envs.kpi import DAY_COLUMNS
from ..exploration.rnd import RNDRewardWrapper
from .kl import rollout_observations
from ..common.requirements import refuse_plain_ars


def monte_carlo_returns(rewards: np.ndarray, next_starts: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Discounted returns within a rollout, and which steps have one (their episode ended in it).

    :param rewards: (n_steps, n_envs)
    :param next_starts: (n_steps, n_envs), true where the step is the last of its episode
    :param gamma: discount factor
    :return: returns and a boolean mask of the steps whose episode finished inside the rollout
    """
    returns = np.zeros_like(rewards, dtype=np.float64)
    complete = np.zeros(rewards.shape, dtype=bool)
    running = np.zeros(rewards.shape[1:])
    after = np.zeros(rewards.shape[1:], dtype=bool)
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running * ~next_starts[t]
        after = next_starts[t] | after
        returns[t], complete[t] = running, after
    return returns, complete


@dataclasses.dataclass
class _Tally:
    """Episodes ended and rewards summed over some steps."""

    episodes: list[dict[str, float]] = dataclasses.field(default_factory=list)
    reward_sum: float = 0.0
    reward_count: int = 0


class MicrogridMetricsCallback(BaseCallback):
    """Log, over the steps since the previous log dump (TensorBoard too when the model has ``tensorboard_log``):

    - ``microgrid/<kpi>``: means over the episodes that ended in that window of the env's
      ``info["episode_metrics"]`` (``cost`` in Rs, ``emissions_kg``, ``safety_violations``,
      ``safety_interventions``, ``battery_fade``, ``unmet_ev_kwh``, ``curtailed_kwh``, ``unserved_kwh``,
      ``grid_import_kwh``, ``grid_export_kwh``; names as in :mod:`sb3_microgrid.evaluation`), and
      ``microgrid/episodes``, their number. Nothing when no episode ended in the window.
    - ``microgrid/return_per_1k_steps``: the window's reward per step × 1000, unnormalised under
      ``VecNormalize`` and without an :class:`~sb3_microgrid.exploration.RNDRewardWrapper`'s bonus (its
      ``info["extrinsic_reward"]``); it needs no ``Monitor`` and compares runs with different episode lengths.
    - on-policy algorithms only, from the last rollout buffer before the update:
      ``microgrid/action_std``, the policy's mean standard deviation over the rollout's observations
      (diagonal-Gaussian policies); ``microgrid/value_mc_bias`` (mean of ``V − G``),
      ``microgrid/value_mc_rmse`` and ``microgrid/explained_variance_mc`` of the values against
      Monte-Carlo returns ``G`` computed from ``rollout_buffer.rewards`` and the episode starts, on the
      steps whose episode finished inside the rollout. SB3's ``train/explained_variance`` instead
      compares the values with the GAE(λ) returns, which bootstrap from the same values. The buffer
      holds rewards as the agent saw them (normalised under ``VecNormalize(norm_reward=True)``, and
      with SB3's time-limit bootstrap added at truncations, which ``Microgrid-v0`` never has). Under ``Reptile``,
      whose rollout ends after the outer update has consumed the buffer, the three value figures are not logged.
    - ``time/steps_per_s``: env steps per second over the window (collection and updates), and
      ``time/wall_clock_s``: seconds since training started.

    When the values are recorded: on-policy, at each rollout end (SB3 dumps after it); off-policy, at
    each step in which an episode ended, because SB3 dumps off-policy logs inside the rollout, at an
    episode end and before ``on_rollout_end``. The window restarts after each dump (SB3's every
    ``log_interval`` rollouts or episodes, or another callback's, e.g. ``EvalCallback``): the callback
    sees it as its recorded values having left the logger. What arrived after the last record stays in the window
    (a dump by another callback took only what was recorded). Refused under sb3-contrib's ``ARS``, whose
    ``on_step()`` has no step locals (``PairedARS`` has them).

    :param verbose: unused beyond SB3's convention
    """

    # a key recorded with every record(): its absence from the logger means a dump happened since
    _SENTINEL = "microgrid/return_per_1k_steps"

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose=verbose)
        self._window = _Tally()  # what the last record covered
        self._pending = _Tally()  # what arrived after it: no dump has taken it yet
        self._recorded = False

    def _init_callback(self) -> None:
        refuse_plain_ars(self.model, "MicrogridMetricsCallback", "its on_step() gets no rewards or infos in self.locals")

    def _on_training_start(self) -> None:
        self._start = self._recorded_at = time.perf_counter()
        self._recorded_timesteps = self.num_timesteps
        rnd = unwrap_vec_wrapper(self.training_env, RNDRewardWrapper)
        # its info["extrinsic_reward"] is the env's reward unless a VecNormalize under it normalised that reward
        # (whose get_original_reward() then has no bonus)
        self._extrinsic_in_infos = rnd is not None and unwrap_vec_wrapper(rnd.venv, VecNormalize) is None
        self._pending = _Tally()
        self._new_window()

    def _new_window(self) -> None:
        # it starts at the last record, which the dump followed: the updates after it count in the next window, and
        # so does what arrived after it (a dump between SB3's, e.g. EvalCallback's, took only what was recorded)
        self._window = _Tally()
        self._window_start, self._window_timesteps = self._recorded_at, self._recorded_timesteps
        self._recorded = False

    def _on_step(self) -> bool:
        if self._recorded and self._SENTINEL not in self.logger.name_to_value:
            self._new_window()
        infos = self.locals["infos"]
        vec_normalize = self.model.get_vec_normalize_env()
        if self._extrinsic_in_infos:  # without an RNDRewardWrapper's bonus
            rewards = np.array([info["extrinsic_reward"] for info in infos])
        else:
            rewards = vec_normalize.get_original_reward() if vec_normalize is not None else self.locals["rewards"]
        self._pending.reward_sum += float(np.sum(rewards))
        self._pending.reward_count += np.size(rewards)
        ended = [info["episode_metrics"] for info in infos if "episode_metrics" in info]
        self._pending.episodes.extend(ended)
        if ended and not isinstance(self.model, OnPolicyAlgorithm):
            self._record()
        return True

    def _on_rollout_end(self) -> None:
        if isinstance(self.model, OnPolicyAlgorithm):
            self._record()
            self._policy_and_value()

    def _record(self) -> None:
        window = self._window
        window.episodes += self._pending.episodes
        window.reward_sum += self._pending.reward_sum
        window.reward_count += self._pending.reward_count
        self._pending = _Tally()
        record = self.logger.record
        if window.episodes:
            for key, name in DAY_COLUMNS.items():
                record(f"microgrid/{name}", float(np.mean([ep[key] for ep in window.episodes])))
            record("microgrid/episodes", len(window.episodes))
        record(self._SENTINEL, 1000.0 * window.reward_sum / window.reward_count)
        now = time.perf_counter()
        if now > self._window_start:
            record("time/steps_per_s", (self.num_timesteps - self._window_timesteps) / (now - self._window_start))
        record("time/wall_clock_s", now - self._start)
        self._recorded_at, self._recorded_timesteps = now, self.num_timesteps
        self._recorded = True

    def _policy_and_value(self) -> None:
        buffer = self.model.rollout_buffer
        policy = self.model.policy
        if isinstance(policy.action_dist, DiagGaussianDistribution):
            # state-independent: no observation needed, so recurrent policies (whose distribution needs their LSTM states) log it too
            self.logger.record("microgrid/action_std", float(policy.log_std.detach().exp().mean()))
        elif isinstance(policy.action_dist, StateDependentNoiseDistribution) and not isinstance(policy, RecurrentActorCriticPolicy):
            with th.no_grad():
                std = policy.get_distribution(rollout_observations(buffer)).distribution.stddev
            self.logger.record("microgrid/action_std", float(std.mean()))
        if buffer.generator_ready:
            return  # already consumed by an update (Reptile ends its rollout after them): no per-step rows to read
        # the last step of an episode is followed by an episode start, the next row's or (last row) the env's
        next_starts = np.concatenate([buffer.episode_starts[1:], self.model._last_episode_starts[None]]).astype(bool)
        returns, complete = monte_carlo_returns(buffer.rewards, next_starts, self.model.gamma)
        if complete.any():
            values, returns = buffer.values[complete], returns[complete]
            error = values - returns
            self.logger.record("microgrid/value_mc_bias", float(error.mean()))
            self.logger.record("microgrid/value_mc_rmse", float(np.sqrt(np.mean(error**2))))
            self.logger.record("microgrid/explained_variance_mc", float(explained_variance(values, returns)))
