"""A learned residual on top of a controller engineers trust: the agent's action is a correction.

The env receives ``clip(base + scale * residual, -1, 1)``, where ``base`` is the action of a
baseline controller (``rule``, ``planner``, ``mpc``, ...) on the same observation. A zero residual
reproduces the controller exactly, so training starts from it instead of from a random policy. The
base action is also appended to the static block of the observation, so the policy sees what it
corrects; the observation space carries the extended :class:`~sb3_microgrid.envs.ObservationLayout`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from ..baselines import Controller, make_controller
from ..envs import MicrogridEnv, ObservationLayout


def residual_layout(layout: ObservationLayout, n_actions: int) -> ObservationLayout:
    """``layout`` with ``base_action_<k>`` features appended to its static block."""
    names = layout.static_names + tuple(f"base_action_{k}" for k in range(n_actions))
    return ObservationLayout(static_names=names, window_names=layout.window_names, history_steps=layout.history_steps, forecast_steps=layout.forecast_steps)


def with_base_action(obs: np.ndarray, base: np.ndarray, layout: ObservationLayout) -> np.ndarray:
    """The observation (of ``layout``) with the base action inserted after its static block."""
    return np.concatenate([obs[layout.static], base.astype(np.float32), obs[layout.window]]).astype(np.float32)


def combine(base: np.ndarray, residual: np.ndarray, scale: float, battery_only: bool = False) -> np.ndarray:
    """The action the env receives: ``clip(base + scale * residual, -1, 1)``; with ``battery_only``
    the residual has one entry and moves the battery entry alone."""
    residual = np.asarray(residual, dtype=np.float64).reshape(-1)
    if battery_only:
        residual = np.r_[residual[:1], np.zeros(base.size - 1)]
    return np.clip(base + scale * residual, -1.0, 1.0)


class ResidualWrapper(gym.Wrapper):
    """Turns ``Microgrid-v0`` into a residual task around a baseline controller.

    :param env: a ``Microgrid-v0`` env (possibly wrapped; the controller gets the unwrapped one)
    :param controller: the base controller, or a name for :func:`~sb3_microgrid.baselines.make_controller`
    :param scale: how far (in action units) a residual of 1 moves the base action
    :param battery_only: the residual corrects the battery entry alone (action shape ``(1,)``); the EV
        ports keep the base controller's dispatch
    """

    def __init__(self, env: gym.Env, controller: str | Controller = "rule", scale: float = 0.5, battery_only: bool = False) -> None:
        super().__init__(env)
        if not isinstance(env.unwrapped, MicrogridEnv):
            raise TypeError(f"ResidualWrapper needs a Microgrid-v0 env, got {type(env.unwrapped).__name__}")
        if not (isinstance(scale, (int, float)) and 0.0 <= scale <= 2.0):
            raise ValueError(f"scale must be a number in [0, 2], got {scale!r}")
        self.controller = make_controller(controller) if isinstance(controller, str) else controller
        self.scale = float(scale)
        self.battery_only = bool(battery_only)
        self._inner_layout = env.unwrapped.obs_layout
        n_actions = env.action_space.shape[0]
        if self.battery_only:
            self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.obs_layout = residual_layout(self._inner_layout, n_actions)
        space = gym.spaces.Box(-np.inf, np.inf, shape=(self.obs_layout.size,), dtype=np.float32)
        space.layout = self.obs_layout
        self.observation_space = space
        self._base = np.zeros(n_actions)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(**kwargs)
        self.controller.reset(self.env.unwrapped, obs)
        return self._observe(obs), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(combine(self._base, action, self.scale, self.battery_only))
        # The final observation needs no decision; controllers may not expect a step past the end.
        return (self._observe(obs, decide=not (terminated or truncated)), reward, terminated, truncated, info)

    @classmethod
    def as_controller(cls, policy: Controller, controller: str | Controller = "rule", scale: float = 0.5, battery_only: bool = False) -> "ResidualController":
        """A policy trained on this wrapper (with these arguments) as a controller of the plain env:
        how ``sb3-microgrid evaluate`` scores a run whose ``env_wrapper`` is this class."""
        return ResidualController(policy, controller, scale, battery_only, name=getattr(policy, "name", "residual"))

    @property
    def base_action(self) -> np.ndarray:
        """The base controller's action for the current observation."""
        return self._base.copy()

    def _observe(self, obs: np.ndarray, decide: bool = True) -> np.ndarray:
        self._base = np.asarray(self.controller.act(obs), dtype=np.float64) if decide else np.zeros_like(self._base)
        return with_base_action(obs, self._base, self._inner_layout)


class ResidualController:
    """A residual policy trained on :class:`ResidualWrapper`, as a controller for ``evaluate()``: the
    base controller's action plus ``scale`` times the policy's, on the observation the policy was trained on.

    :param policy: maps the augmented observation to the residual (e.g. an ``SB3Controller``)
    :param controller: the base controller, or its name
    :param scale: the wrapper's ``scale``
    :param battery_only: the wrapper's ``battery_only``
    :param name: the label in tables
    """

    def __init__(self, policy: Controller, controller: str | Controller = "rule", scale: float = 0.5, battery_only: bool = False, name: str = "residual") -> None:
        self.policy = policy
        self.controller = make_controller(controller) if isinstance(controller, str) else controller
        self.scale = float(scale)
        self.battery_only = bool(battery_only)
        self.name = name

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        self._layout = env.obs_layout
        self.controller.reset(env, obs)
        self.policy.reset(_AugmentedView(env, residual_layout(env.obs_layout, env.action_space.shape[0])), obs)

    def act(self, obs: np.ndarray) -> np.ndarray:
        base = np.asarray(self.controller.act(obs), dtype=np.float64)
        residual = self.policy.act(with_base_action(obs, base, self._layout))
        return combine(base, residual, self.scale, self.battery_only)


class _AugmentedView(gym.Wrapper):
    """The env as the residual policy sees it: its observation space and layout include the base action
    (what the policy's checks and its ``VecNormalize`` statistics are matched against)."""

    def __init__(self, env: MicrogridEnv, layout: ObservationLayout) -> None:
        super().__init__(env)
        self.obs_layout = layout
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(layout.size,), dtype=np.float32)
        self.observation_space.layout = layout
