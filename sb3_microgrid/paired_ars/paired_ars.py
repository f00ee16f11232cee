"""ARS whose antithetic candidates are scored on the same days: paired comparisons.

sb3-contrib's ARS scores each candidate ``w + δ`` and ``w − δ`` on episodes of their own. Here most of
an episode's return is its weather, load and prices, so that difference is mostly the days' and barely
the decisions'. ``PairedARS`` seeds the env identically before scoring the two candidates of a pair (a
fresh seed per pair and per update), so both run the same days with the same forecast noise and their
return difference is the effect of ``±δ`` alone: common random numbers. The pair seeds are drawn from the
algorithm's ``seed`` and the update's index, so a loaded model goes on with the days an uninterrupted run
would see. With ``VecNormalize``, all candidates of an update act on the same statistics, updated
afterwards with the observations they saw (ARS updates them as it goes, so that two candidates of a pair
would see different inputs for the same state); reward normalisation is refused, as its scale would stay frozen.

The update is ARS's, ``sum((r+ − r−) δ)`` over the ``n_top`` kept pairs divided by ``n_top`` times the std of
their returns, with each return taken against its pair's mean (``±`` half the pair's difference). Each pair runs
days of its own, which set most of its return; against their level, the better candidate of a pair returns
``|r+ − r−| / 2``. So ARS's rule, keep the pairs whose better candidate returns most, keeps the pairs whose
decisions mattered most rather than those that drew cheap days, and the step is divided by the spread of the
decisions' effects rather than by that of the days. Otherwise PairedARS differs from ARS only in
that the learning rate is read after the update's steps are counted, as in SB3's other algorithms (ARS
reads it before, so its first update gets the rate at progress 1, which is 0 for a
:class:`~sb3_microgrid.schedules.WarmupSchedule`); that ``num_timesteps`` counts env steps exactly (ARS's
synchronous loop counts ``n_envs`` times too many); that callbacks are called once per vector step as in
SB3's other algorithms (ARS calls them once per env and step; ``ProgressBarCallback`` adds ``n_envs`` per
call, so it is exact when ``n_eval_episodes`` is a multiple of ``n_envs``); and that a callback returning
``False`` stops training (ARS ignores it).
"""

from __future__ import annotations

import copy
from functools import partial
from typing import Any

import numpy as np
import torch as th
from sb3_contrib import ARS
from sb3_contrib.common.vec_env.async_eval import AsyncEval
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.evaluation import evaluate_policy


class PairedARS(ARS):
    """Augmented Random Search with common random numbers for each antithetic pair.

    Takes ARS's arguments. ``n_eval_episodes`` episodes per candidate; with a ``VecEnv`` of
    ``n_envs`` envs, ``n_eval_episodes = n_envs`` scores each candidate on ``n_envs`` days at once.
    Asynchronous evaluation (``AsyncEval``) is not supported: the pairs must share one env's seeds.
    """

    def evaluate_candidates(self, candidate_weights: th.Tensor, callback: BaseCallback, async_eval: AsyncEval | None) -> th.Tensor:
        """Score every candidate; candidates ``k`` and ``k + n_delta`` (``w ± δ_k``) on the same days.

        :param candidate_weights: (2 n_delta, n_params) weights, the ``+δ`` half first (ARS's order)
        :param callback: called at each step
        :param async_eval: must be ``None``
        :return: each candidate's summed episode return
        """
        if async_eval is not None:
            raise ValueError("PairedARS scores both candidates of a pair on one env's seeds: async_eval is not supported")
        returns = th.zeros(self.pop_size, device=self.device)
        policy = copy.deepcopy(self.policy)
        self._calls_left = 0  # a step cut short by an exception leaves none to skip
        self.ep_info_buffer = []
        # One seed per pair, drawn from (seed, update index) alone: a loaded model continues the sequence.
        rng = np.random.default_rng(None if self.seed is None else [self.seed, self._n_updates])
        pair_seeds = rng.integers(0, 2**31 - 1, size=self.n_delta)
        # Every candidate sees the same normalisation statistics: updated between the two of a pair, they
        # would act differently on the same state, a difference shared by all pairs that swamps the
        # decisions'. The statistics take this update's observations afterwards.
        normalizer = self._vec_normalize_env
        updating = normalizer is not None and normalizer.training
        seen: list[np.ndarray] = []
        if updating:
            normalizer.training = False
        callback.on_rollout_start()
        try:
            for index in range(self.pop_size):
                policy.load_from_vector(candidate_weights[index].cpu())
                self.env.seed(int(pair_seeds[index % self.n_delta]))
                rewards, lengths = evaluate_policy(
                    policy,
                    self.env,
                    n_eval_episodes=self.n_eval_episodes,
                    return_episode_rewards=True,
                    callback=partial(self._on_eval_step, callback=callback, seen=seen if updating else None),
                    warn=False,
                )
                returns[index] = sum(rewards) + self.alive_bonus_offset * sum(lengths)
                self._mimic_monitor_wrapper(rewards, lengths)
        finally:
            if updating:
                normalizer.training = True
        if seen:
            normalizer.obs_rms.update(np.concatenate(seen))
        callback.on_rollout_end()
        return returns

    def _do_one_update(self, callback: BaseCallback, async_eval: AsyncEval | None) -> None:
        """ARS's update (:meth:`sb3_contrib.ARS._do_one_update`) on the returns centred on their pair's mean
        (module docstring), with the learning rate read after the candidates' steps are counted.

        :param callback: called at each step
        :param async_eval: must be ``None``
        """
        delta_std = self.delta_std_schedule(self._current_progress_remaining)
        deltas = th.normal(mean=0.0, std=1.0, size=(self.n_delta, self.n_params), device=self.device)
        policy_deltas = deltas * delta_std
        candidate_weights = th.cat([self.weights + policy_deltas, self.weights - policy_deltas])
        with th.no_grad():
            returns = self.evaluate_candidates(candidate_weights, callback, async_eval)
        # As SB3's algorithms do before train(): the first update gets the rate after its own steps, not at progress 1.
        self._update_current_progress_remaining(self.num_timesteps, self._total_timesteps)
        learning_rate = self.lr_schedule(self._current_progress_remaining)

        # Centred on its pair's mean (which the pair's days set), a return is +-half the pair's difference: ranked
        # by the better one and scaled by their std, as ARS does, the pairs' decisions count and not their days.
        differences = returns[: self.n_delta] - returns[self.n_delta :]
        top_idx = th.argsort(differences.abs(), descending=True)[: self.n_top]
        differences = differences[top_idx]
        return_std = th.cat([differences, -differences]).std() / 2
        step_size = learning_rate / (self.n_top * return_std + 1e-6)
        self.weights = self.weights + step_size * (differences @ deltas[top_idx])
        self.policy.load_from_vector(self.weights.cpu())

        self.logger.record("train/iterations", self._n_updates, exclude="tensorboard")
        self.logger.record("train/delta_std", delta_std)
        self.logger.record("train/learning_rate", learning_rate)
        self.logger.record("train/step_size", step_size.item())
        self.logger.record("rollout/return_std", return_std.item())
        self._n_updates += 1

    def _on_eval_step(self, locals_: dict[str, Any], globals_: dict[str, Any], callback: BaseCallback, seen: list[np.ndarray] | None) -> None:
        """``evaluate_policy``'s callback, called once per env still scoring and step. At the first call of a
        vector step it counts the envs still scoring (ARS counts ``n_envs`` per call, ``n_envs`` times too
        many) and calls the callback once, as SB3's other algorithms do per vector step (so
        ``CheckpointCallback``'s ``save_freq`` counts vector steps), with ``evaluate_policy``'s locals; notes
        whether it asks to stop; keeps the step's raw observations. The calls left in the step are counted down."""
        if self._calls_left > 0:
            self._calls_left -= 1
            return
        # the first call of a step: no env has finished in it yet, so every env still scoring will be called
        active = int(np.sum(locals_["episode_counts"] < locals_["episode_count_targets"]))
        self._calls_left = active - 1
        self.num_timesteps += active
        callback.update_locals(locals_)
        self._continue_training = callback.on_step() and self._continue_training
        if seen is not None:
            seen.append(self._vec_normalize_env.get_original_obs())

    def learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "PairedARS",
        reset_num_timesteps: bool = True,
        async_eval: AsyncEval | None = None,
        progress_bar: bool = False,
    ) -> "PairedARS":
        """ARS's ``learn``, except that a callback returning ``False`` stops training after the current
        update, as in SB3's other algorithms (ARS ignores it), and that with ``reset_num_timesteps=False``
        the progress of the schedules runs to the total including the earlier steps, as in SB3's other
        algorithms (ARS divides by ``total_timesteps`` alone), so the progress bar of a resumed run counts to its total
        too. Arguments as :meth:`sb3_contrib.ARS.learn`."""
        self._check_normalizer()  # again: set_env may have brought another env since
        # the total including earlier steps, under the name callbacks read from locals() (ProgressBarCallback)
        total_timesteps, callback = self._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        self._continue_training = True
        callback.on_training_start(locals(), globals())
        while self.num_timesteps < total_timesteps and self._continue_training:
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            self._do_one_update(callback, async_eval)
            if log_interval is not None and self._n_updates % log_interval == 0:
                self.dump_logs()
        callback.on_training_end()
        return self

    def _setup_model(self) -> None:
        self._check_normalizer()  # at construction: sb3-microgrid train refuses the file before writing the run folder
        super()._setup_model()
        self._continue_training = True
        self._calls_left = 0

    def _check_normalizer(self) -> None:
        """Refuse ``VecNormalize(norm_reward=True)``: the candidates act with frozen statistics
        (:meth:`evaluate_candidates`), so the reward scale would never move from its start and the rewards would only
        be clipped; the step is scaled by the spread of the returns anyway."""
        normalizer = self._vec_normalize_env
        if normalizer is not None and normalizer.norm_reward:
            raise ValueError("PairedARS needs VecNormalize(norm_reward=False): it scales its step by the spread of the returns itself")

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_continue_training", "_calls_left"]
