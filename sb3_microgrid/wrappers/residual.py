"""A learned residual on top of a controller engineers trust: the agent's action is a correction.

The env receives ``clip(base + scale * residual, -1, 1)``, where ``base`` is the action of a
baseline controller (``rule``, ``planner``, ``mpc``, ...) on the same observation. A zero residual
reproduces the controller exactly, so training starts from it instead of from a random policy. The
base action is also appended to the static block of the observation, so the policy sees what it
corrects; the observation space carries the extended :class:`~sb3_microgrid.envs.ObservationLayout`.
With ``features`` the policy sees only the named static features and the base action: a small input
for a population method such as :class:`~sb3_microgrid.paired_ars.PairedARS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from ..baselines import CONTROLLERS, Controller, make_controller
from ..common.arguments import checked_number
from ..envs import MicrogridEnv, ObservationLayout
from ..envs.microgrid_env import observation_space
from .policy_view import AgentPolicy, PolicyView, require_dispatch, require_plain_microgrid


@dataclass(frozen=True)
class ResidualObservation:
    """What a residual policy observes: the env's observation, or only some of its static features,
    with the base action appended to the static block.

    :param layout: the env's observation layout
    :param n_actions: entries of the base action
    :param features: names of static features to keep, without the window (``None``: the whole observation)
    """

    layout: ObservationLayout
    n_actions: int
    features: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.features is not None:
            unknown = sorted(set(self.features) - set(self.layout.static_names))
            if unknown or not self.features:
                raise ValueError(f"features must be a non-empty list of static feature names; unknown: {unknown}; allowed: {list(self.layout.static_names)}")

    @property
    def policy_layout(self) -> ObservationLayout:
        """The layout of what the policy observes."""
        base = tuple(f"base_action_{k}" for k in range(self.n_actions))
        lay = self.layout
        if self.features is None:
            return ObservationLayout(static_names=lay.static_names + base, window_names=lay.window_names, history_steps=lay.history_steps, forecast_steps=lay.forecast_steps)
        return ObservationLayout(static_names=tuple(self.features) + base, window_names=(), history_steps=0, forecast_steps=0)

    def __call__(self, obs: np.ndarray, base: np.ndarray) -> np.ndarray:
        """The policy's observation for the env's ``obs`` and the base action ``base``."""
        lay = self.layout
        if self.features is None:
            parts = [obs[lay.static], base, obs[lay.window]]
        else:
            parts = [obs[[lay.index(name) for name in self.features]], base]
        return np.concatenate(parts).astype(np.float32)


def combine(base: np.ndarray, residual: np.ndarray, scale: float, battery_only: bool = False) -> np.ndarray:
    """The action the env receives: ``clip(base + scale * residual, -1, 1)``; with ``battery_only``
    the residual has one entry and moves the battery entry alone.

    :raises ValueError: if the residual has another number of entries (broadcast, it would move every entry)
    """
    size = 1 if battery_only else base.size
    if np.size(residual) != size:
        raise ValueError(f"the residual must have {size} entries ({'the battery' if battery_only else 'one per action entry'}), got shape {np.shape(residual)}")
    residual = np.asarray(residual, dtype=np.float64).reshape(-1)
    if battery_only:
        residual = np.r_[residual, np.zeros(base.size - 1)]
    return np.clip(base + scale * residual, -1.0, 1.0)


class ResidualWrapper(gym.Wrapper):
    """Turns ``Microgrid-v0`` into a residual task around a baseline controller.

    :param env: a ``Microgrid-v0`` env (possibly wrapped; the controller gets the unwrapped one)
    :param controller: the base controller, or the name of a baseline (:data:`~sb3_microgrid.baselines.CONTROLLERS`)
    :param scale: how far (in action units) a residual of 1 moves the base action
    :param battery_only: the residual corrects the battery entry alone (action shape ``(1,)``); the EV
        ports keep the base controller's dispatch
    :param features: names of the static features the policy observes (with the base action); ``None``:
        the whole observation
    """

    def __init__(
        self,
        env: gym.Env,
        controller: str | Controller = "rule",
        scale: float = 0.5,
        battery_only: bool = False,
        features: list[str] | None = None,
    ) -> None:
        super().__init__(env)
        require_plain_microgrid(env, "ResidualWrapper")
        self._settings = {"controller": controller, "scale": scale, "battery_only": battery_only, "features": features}
        self.residual = ResidualController(AgentPolicy(), **self._settings)
        require_dispatch(env, self.residual.controller, "ResidualWrapper")
        self.residual.bind(env.unwrapped)
        if self.residual.battery_only:
            self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.obs_layout = self.residual.view.policy_layout
        self.observation_space = observation_space(self.obs_layout)
        self._base = np.zeros(env.action_space.shape[0])

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(**kwargs)
        self.residual.controller.reset(self.env.unwrapped, obs)
        return self._observe(obs), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(self.residual.combine(self._base, action))
        # The final observation needs no decision; controllers may not expect a step past the end.
        return (self._observe(obs, decide=not (terminated or truncated)), reward, terminated, truncated, info)

    @classmethod
    def as_controller(
        cls, policy: Controller, controller: str | Controller = "rule", scale: float = 0.5, battery_only: bool = False, features: list[str] | None = None
    ) -> ResidualController:
        """A policy trained on this wrapper (with these arguments) as a controller of the plain env:
        how ``sb3-microgrid evaluate`` scores a run whose ``env_wrapper`` is this class."""
        return ResidualController(policy, controller, scale, battery_only, features, name=getattr(policy, "name", "residual"))

    def controller_for(self, policy: Controller) -> ResidualController:
        """``policy``, trained on this wrapper, as a controller of the plain env with this wrapper's settings."""
        return type(self).as_controller(policy, **self._settings)

    @property
    def base_action(self) -> np.ndarray:
        """The base controller's action for the current observation."""
        return self._base.copy()

    def _observe(self, obs: np.ndarray, decide: bool = True) -> np.ndarray:
        self._base = np.asarray(self.residual.controller.act(obs), dtype=np.float64) if decide else np.zeros_like(self._base)
        return self.residual.view(obs, self._base)


class ResidualController:
    """A residual policy as a controller for ``evaluate()``: the base controller's action plus ``scale``
    times the policy's, the policy observing what :class:`ResidualWrapper` showed it in training. The
    wrapper itself runs on one of these, so training and evaluation share every step of the logic.

    :param policy: maps the policy's observation to the residual (e.g. an ``SB3Controller``)
    :param controller: the base controller, or the name of a baseline (:data:`~sb3_microgrid.baselines.CONTROLLERS`)
    :param scale: how far (in action units) a residual of 1 moves the base action, in [0, 2]
    :param battery_only: the residual has one entry, for the battery
    :param features: the static features the policy observes (``None``: the whole observation)
    :param name: the label in tables
    """

    def __init__(
        self,
        policy: Controller,
        controller: str | Controller = "rule",
        scale: float = 0.5,
        battery_only: bool = False,
        features: list[str] | None = None,
        name: str = "residual",
    ) -> None:
        scale = checked_number("scale", scale, 0.0, 2.0)  # numpy numbers too
        if not isinstance(battery_only, (bool, np.bool_)):  # "no" would be true
            raise ValueError(f"battery_only must be true or false, got {battery_only!r}")
        if features is not None and (isinstance(features, str) or not all(isinstance(f, str) for f in features)):
            raise ValueError(f"features must be a list of static feature names, got {features!r}")
        if (isinstance(controller, str) and controller not in CONTROLLERS) or not isinstance(controller, (str, Controller)):
            # only a baseline by name: a model path here would load (unpickle) a file named by a YAML file
            raise ValueError(f"controller must be one of {sorted(CONTROLLERS)} or a Controller object, got {controller!r}")
        self.policy = policy
        self.controller = make_controller(controller) if isinstance(controller, str) else controller
        #: it corrects its base's action, so it acts in the base's EV interface
        self.ev_dispatch = getattr(self.controller, "ev_dispatch", None)
        self.scale = float(scale)
        self.battery_only = bool(battery_only)
        self.features = None if features is None else tuple(features)
        self.name = name
        self.view: ResidualObservation | None = None

    def bind(self, env: MicrogridEnv) -> None:
        """Read the env's layout and action size (checks ``features`` against it)."""
        self.view = ResidualObservation(env.obs_layout, env.action_space.shape[0], self.features)

    def combine(self, base: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """The action the env receives (:func:`combine`)."""
        return combine(base, residual, self.scale, self.battery_only)

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        self.bind(env)
        self.controller.reset(env, obs)
        self.policy.reset(PolicyView(env, self.view.policy_layout), obs)

    def act(self, obs: np.ndarray) -> np.ndarray:
        base = np.asarray(self.controller.act(obs), dtype=np.float64)
        return self.combine(base, self.policy.act(self.view(obs, base)))
