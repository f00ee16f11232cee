"""``Microgrid-v0``: the gymnasium face of the core, with N = 1."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from ..data import MicrogridData
from ..scenario import Difficulty, Scenario, load_scenario
from .core import STEP_KEYS, MicrogridCore, reset_day
from .layout import ActionLayout, ObservationLayout, action_size


def action_space(scenario: Scenario) -> gym.spaces.Box:
    """``[battery, port_0, ..., port_{P-1}]``, or ``[battery, ev]`` with ``ev.dispatch: aggregate``, in [-1, 1]
    (meaning in ``docs/environment.md``, section 3)."""
    return gym.spaces.Box(-1.0, 1.0, shape=(action_size(scenario),), dtype=np.float32)


def observation_space(layout: ObservationLayout) -> gym.spaces.Box:
    """A flat ``Box`` of ``layout``'s size that carries it as ``.layout``: SB3 builds a features extractor
    from the observation space alone, and the attribute travels with the space through wrappers,
    ``SubprocVecEnv`` and a saved model's pickle."""
    space = gym.spaces.Box(-np.inf, np.inf, shape=(layout.size,), dtype=np.float32)
    space.layout = layout
    return space


class MicrogridEnv(gym.Env):
    """One microgrid of a scenario; an episode is ``scenario.horizon_days`` days from a random day
    of ``split`` (or the day given by ``reset(options={"day": "YYYY-MM-DD"})``).

    :param scenario: preset name (``"campus"``, ``"campus_tod"``), YAML path, mapping or :class:`Scenario`
    :param split: ``"train"`` (years 1-8), ``"validation"`` (year 9), ``"test"`` (year 10) or ``"all"``
    :param seed: seed used by the first ``reset()`` if that call gives none
    :param data: data to use instead of the scenario's own source (see :mod:`sb3_microgrid.data`)
    :param render_mode: unused; present for gymnasium's API
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        scenario: str | Scenario | dict | None = None,
        split: str = "train",
        seed: int | None = None,
        data: MicrogridData | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.scenario = load_scenario(scenario)
        self.core = MicrogridCore(self.scenario, 1, split, data, single=True)
        self.obs_layout = self.core.layout
        self.action_space = action_space(self.scenario)
        self.observation_space = observation_space(self.core.layout)
        self.render_mode = render_mode
        self._default_seed = seed
        self._data = data
        self._twins: dict[str, MicrogridEnv] = {}

    @property
    def action_layout(self) -> ActionLayout:
        """What each action entry asks for, in kW (battery, then each port or the fleet)."""
        b, ev = self.scenario.battery, self.scenario.ev
        return ActionLayout(b.charge_power_kw, b.discharge_power_kw, ev.n_ports, ev.port_power_kw, ev.v2g, ev.dispatch)

    def with_dispatch(self, dispatch: str) -> MicrogridEnv:
        """This env with the EV interface ``ev.dispatch = dispatch``: the same site, data and split, and the same
        episode for the same seed and day (the random streams do not depend on the interface), so a per-port
        controller runs on the ports twin of an aggregate env. ``self`` if it has that interface already; the twin
        is built once and starts from the scenario's difficulty, as a new env does.

        :raises ScenarioError: for a ``dispatch`` that is not one of ``EV_DISPATCH``
        """
        if dispatch == self.scenario.ev.dispatch:
            return self
        if dispatch not in self._twins:
            self._twins[dispatch] = MicrogridEnv(self.scenario.replace(ev__dispatch=dispatch), self.core.split, data=self._data)
        return self._twins[dispatch]

    @property
    def difficulty(self) -> Difficulty:
        return self.core.difficulty[0]

    def set_difficulty(self, **params: float | int | None) -> Difficulty:
        """Set curriculum parameters (see :class:`~sb3_microgrid.scenario.Difficulty`), validated now
        and applied at the next reset. Reachable through ``VecEnv.env_method("set_difficulty", ...)``."""
        return self.core.set_difficulty(0, **params)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        # The constructor's seed stands in for the first reset's only: a later seedless reset continues the stream.
        if self._default_seed is not None:
            seed = self._default_seed if seed is None else seed
            self._default_seed = None
        super().reset(seed=seed)
        day = reset_day(options)
        obs = self.core.reset([self.np_random], None if day is None else [day])
        return obs[0], {"date": self.core.episode_dates()[0]}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, done, step_info = self.core.step(action)
        info: dict[str, Any] = dict(zip(STEP_KEYS, step_info[0].tolist()))
        if done:
            info["episode_metrics"] = {k: float(v[0]) for k, v in self.core.episode_metrics().items()}
        return obs[0], float(reward[0]), done, False, info
