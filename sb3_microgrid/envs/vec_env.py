"""``MicrogridVecEnv``: the SB3 ``VecEnv`` face of the core, N microgrids in one numpy call.

Given the same seeds it returns the same observations, rewards and infos as N ``Microgrid-v0`` envs
in a ``DummyVecEnv``. Every episode has the same length, so all N end, and are reset, together.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from ..data import MicrogridData
from ..scenario import Scenario, load_scenario
from .core import STEP_KEYS, MicrogridCore, reset_day
from .microgrid_env import action_space, observation_space


def check_options(options: list[dict] | dict | None, num_envs: int) -> None:
    """Refuse a list of reset options whose length is not ``num_envs``: a short one would fail inside the reset, a
    long one would be cut without a word.

    :raises ValueError: naming both lengths
    """
    if isinstance(options, list) and len(options) != num_envs:
        raise ValueError(f"options must be a dict or a list of {num_envs} dicts (one per microgrid), got a list of {len(options)}")


class MicrogridVecEnv(VecEnv):
    """N microgrids of one scenario stepped together.

    :param n_envs: number of microgrids
    :param scenario: preset name, YAML path, mapping or :class:`~sb3_microgrid.scenario.Scenario`
    :param split: ``"train"``, ``"validation"``, ``"test"`` or ``"all"``
    :param seed: seeds ``seed + i`` for microgrid ``i`` at the first reset (as ``VecEnv.seed``)
    :param data: data to use instead of the scenario's own source
    :param step_infos: build every step's info dict for each microgrid, as N single envs would; with
        ``False`` the dicts stay empty except at episode ends (``episode_metrics``,
        ``terminal_observation``), which saves most of the time of a step at large N. Either way the
        last step's values are in :attr:`last_step_info`, an (N, len(STEP_KEYS)) array.
    """

    def __init__(
        self,
        n_envs: int,
        scenario: str | Scenario | dict | None = None,
        split: str = "train",
        seed: int | None = None,
        data: MicrogridData | None = None,
        step_infos: bool = True,
    ) -> None:
        self.scenario = load_scenario(scenario)
        self.core = MicrogridCore(self.scenario, n_envs, split, data)
        self.obs_layout = self.core.layout
        self.render_mode = None
        self.step_infos = step_infos
        self.last_step_info = np.zeros((n_envs, len(STEP_KEYS)))
        self._rngs: list[np.random.Generator | None] = [None] * n_envs
        self._actions: np.ndarray | None = None
        super().__init__(n_envs, observation_space(self.core.layout), action_space(self.scenario))
        if seed is not None:
            self.seed(seed)

    # ---- VecEnv API ---------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        for i, seed in enumerate(self._seeds):
            if seed is not None or self._rngs[i] is None:
                self._rngs[i] = seeding.np_random(seed)[0]
        try:
            obs = self._reset_core(self.requested_days(self._options))
        finally:
            # Options (and seeds) apply to one reset, failed or not: a bad day must not make every later reset fail.
            self._reset_seeds()
            self._reset_options()
        return obs

    def requested_days(self, options: list[dict | None]) -> list[str | None] | None:
        """The start day each microgrid's reset options ask for (``None`` entries draw one), each checked against
        the split; ``None`` when none asks for a day.

        :param options: one entry per microgrid, as :meth:`set_options` leaves them
        :raises ValueError: for options that are not a mapping, an unknown key, or a day that is not a start day
        """
        days = [reset_day(opts or None) for opts in options]
        if all(day is None for day in days):
            return None
        for day in days:
            if day is not None:
                self.core.day_index(day)
        return days

    def set_options(self, options: list[dict] | dict | None = None) -> None:
        """Options for the next reset: one dict for every microgrid, or a list of one per microgrid.

        :param options: e.g. ``{"day": "2016-03-01"}``
        :raises ValueError: for a list whose length is not ``num_envs``
        """
        check_options(options, self.num_envs)
        super().set_options(options)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        obs, reward, done, step_info = self.core.step(self._actions)
        self.last_step_info = step_info
        if self.step_infos:
            infos: list[dict[str, Any]] = [dict(zip(STEP_KEYS, row)) for row in step_info.tolist()]
        else:
            infos = [{} for _ in range(self.num_envs)]
        if done:
            metrics = self.core.episode_metrics()
            names, rows = list(metrics), zip(*(v.tolist() for v in metrics.values()))
            for info, row, last in zip(infos, rows, obs):
                info["episode_metrics"] = dict(zip(names, row))
                info["terminal_observation"] = last
                info["TimeLimit.truncated"] = False
            obs = self._reset_core()
        return obs, reward.astype(np.float32), np.full(self.num_envs, done), infos

    def _reset_core(self, days: list[str | None] | None = None) -> np.ndarray:
        """New episodes for all microgrids (each continuing its own generator), with their reset infos."""
        obs = self.core.reset(self._rngs, days)
        self.reset_infos = [{"date": d} for d in self.core.episode_dates()]
        return obs

    def close(self) -> None:
        """Nothing to release: the core holds only arrays."""

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        idx = list(self._get_indices(indices))
        if attr_name == "difficulty":
            return [self.core.difficulty[i] for i in idx]
        if attr_name in ("scenario", "obs_layout", "render_mode", "action_space", "observation_space"):
            return [getattr(self, attr_name)] * len(idx)
        raise AttributeError(f"MicrogridVecEnv has no per-env attribute {attr_name!r}")

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"MicrogridVecEnv attributes are read-only; use env_method('set_difficulty', ...) (got {attr_name!r})")

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        if method_name != "set_difficulty":
            raise AttributeError(f"MicrogridVecEnv supports env_method('set_difficulty', ...) only, not {method_name!r}")
        if method_args:
            raise TypeError("set_difficulty takes keyword arguments only")
        return [self.core.set_difficulty(i, **method_kwargs) for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))
