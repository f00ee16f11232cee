"""A learned, state-dependent calibration of the forecast corrector, trained on the cost of the decisions.

The least-squares corrector (:mod:`sb3_microgrid.forecasting`) predicts how much each current forecast errs
from the errors the last revision revealed; a baseline then plans on the corrected forecasts. Least squares
minimises the forecast error, not the cost of the plan made on it. Here a policy sets, at every step and per
series ``s``, three numbers applied to the corrector's predicted relative errors ``p[lead, s]``::

    p'[lead, s] = (1 + gain * a[0, s]) * p[lead, s] + bias * a[1, s] + slope * a[2, s] * lead / F

with its action ``a`` in ``[-1, 1]^(3, S)``, then the baseline plans on the forecasts divided by ``1 + p'``. A
zero action is the least-squares corrector itself, so a linear policy started from zero weights (ARS's default)
starts from :class:`~sb3_microgrid.forecasting.CorrectedForecastController`. The policy observes a few static
features of the observation (the hour, the state of charge...), so the calibration may depend on them.
"""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np

from ..baselines import Controller, make_controller
from ..common.arguments import checked_number
from ..envs import MicrogridEnv, ObservationLayout
from ..envs.microgrid_env import observation_space
from ..forecasting import BASES, ForecastCorrector, divide_out, fit_corrector
from ..scenario import Scenario, to_dict
from .policy_view import AgentPolicy, PolicyView, require_dispatch, require_plain_microgrid
from .residual import ResidualObservation

#: What the policy observes by default: when in the day it is and how much room the battery and the peak leave.
FEATURES = ("hour_sin", "hour_cos", "weekend", "time_left", "soc", "day_peak")
#: The knobs per series, in the order of the action's rows.
KNOBS = ("gain", "bias", "slope")
#: Correctors fitted in this process, by (scenario as JSON, days, seed).
_FITTED: dict[tuple[str, int, int], ForecastCorrector] = {}


def corrector_for(scenario: Scenario, days: int, seed: int) -> ForecastCorrector:
    """The least-squares corrector of ``scenario`` fitted on ``days`` training days with fit seed ``seed``
    (:func:`~sb3_microgrid.forecasting.fit_corrector`), fitted once per process (the envs of a ``DummyVecEnv``
    training share it; each ``SubprocVecEnv`` worker fits its own); a refit gives the same weights, so the
    evaluation of a run refits exactly what it trained on."""
    key = (json.dumps(to_dict(scenario), sort_keys=True, default=str), days, seed)
    if key not in _FITTED:
        _FITTED[key] = fit_corrector(scenario, days=days, seed=seed)
    return _FITTED[key]


class CalibratedController:
    """A baseline planning on forecasts corrected by the least-squares corrector recalibrated by a policy
    (module docstring). The wrapper runs on one of these, so training and evaluation share every step.

    :param policy: maps the policy's observation (``features``) to its action (e.g. an ``SB3Controller``)
    :param controller: the baseline that plans on the forecasts, one of :data:`~sb3_microgrid.forecasting.BASES`
    :param fit_days: training days the corrector is fitted on, in [64, 65,536]
    :param fit_seed: the corrector's fit seed, in [0, 1,000]
    :param features: names of the static features the policy observes
    :param gain: how far an action of 1 scales the predicted errors (``1 +- gain``), in [0, 1]
    :param bias: the relative error an action of 1 adds to every lead, in [0, 0.5]
    :param slope: an action of 1 adds ``slope * lead / F`` to the relative error of lead ``lead`` (0 at the current
        step), in [0, 0.5]
    :param name: the label in tables
    """

    def __init__(
        self,
        policy: Controller,
        controller: str = "planner",
        fit_days: int = 4096,
        fit_seed: int = 0,
        features: list[str] | tuple[str, ...] = FEATURES,
        gain: float = 0.5,
        bias: float = 0.05,
        slope: float = 0.1,
        name: str = "calibrated",
    ) -> None:
        if controller not in BASES:
            # a baseline by name only: anything else in a YAML file could name a file to unpickle
            raise ValueError(f"controller must be one of {list(BASES)}, got {controller!r}")
        # numpy numbers as Python ones (a corrector cache key, a JSON record)
        fit_days = checked_number("fit_days", fit_days, 64, 65_536, integer=True)
        fit_seed = checked_number("fit_seed", fit_seed, 0, 1_000, integer=True)
        gain, bias, slope = (checked_number(knob, value, 0.0, hi) for knob, value, hi in (("gain", gain, 1.0), ("bias", bias, 0.5), ("slope", slope, 0.5)))
        if isinstance(features, str) or not features or not all(isinstance(f, str) for f in features):
            raise ValueError(f"features must be a non-empty list of static feature names, got {features!r}")
        self.policy = policy
        self.base = make_controller(controller)
        #: it acts as its base does (per EV port for the baselines)
        self.ev_dispatch = getattr(self.base, "ev_dispatch", None)
        self.fit_days, self.fit_seed, self.features = fit_days, fit_seed, tuple(features)
        self.ranges = np.array([gain, bias, slope])
        self.name = name
        self.corrector: ForecastCorrector | None = None
        self.view: ResidualObservation | None = None
        self._previous: np.ndarray | None = None

    def bind(self, env: MicrogridEnv) -> None:
        """Check the features against the env's layout, then fit (or take from the process's cache) the corrector of
        its scenario."""
        # the residual policy's view without a base action: the named static features alone
        self.view = ResidualObservation(env.obs_layout, 0, self.features)
        self.corrector = corrector_for(env.scenario, self.fit_days, self.fit_seed)
        self.corrector.check(env.scenario, env.obs_layout, env.difficulty)

    @property
    def policy_layout(self) -> ObservationLayout:
        """The layout of what the policy observes."""
        return self.view.policy_layout

    @property
    def action_shape(self) -> tuple[int, int]:
        """``(len(KNOBS), series)``."""
        return (len(KNOBS), len(self.corrector.layout.window_names))

    def observe(self, obs: np.ndarray) -> np.ndarray:
        """What the policy observes of the env's ``obs``."""
        return self.view(obs, np.empty(0))

    def start(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        """Start an episode of ``env`` (no previous observation: nothing is revealed yet)."""
        self.bind(env)
        self._previous = None
        self.base.reset(env, obs)

    def decide(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        """The base controller's action on ``obs`` with its forecasts corrected and calibrated by ``action``.

        :param obs: the env's observation
        :param action: ``3 * series`` numbers (rows ``gain``, ``bias``, ``slope``), clipped to [-1, 1]; a NaN
            counts as 0, the fit's own value
        :raises ValueError: for an action of another length
        """
        lay = self.corrector.layout
        action = np.asarray(action, dtype=np.float64).ravel()
        if action.size != np.prod(self.action_shape):
            raise ValueError(f"action must have {np.prod(self.action_shape)} entries (rows {list(KNOBS)} x series {list(lay.window_names)}), got {action.size}")
        a = np.clip(np.nan_to_num(action, nan=0.0).reshape(self.action_shape), -1.0, 1.0) * self.ranges[:, None]
        window = lay.windows(obs)
        # the first step of an episode has no revealed error: only the bias and the slope act
        predicted = np.zeros((lay.forecast_steps, a.shape[1])) if self._previous is None else self.corrector.predict(self._previous[None], window[None])[0]
        lead = np.arange(lay.forecast_steps)[:, None] / lay.forecast_steps
        calibrated = (1.0 + a[0]) * predicted + a[1] + a[2] * lead
        self._previous = window.copy()
        planned = obs.copy()
        planned[lay.window] = divide_out(window[None], calibrated[None], lay.history_steps)[0].ravel()
        return self.base.act(planned)

    # ---- the Controller interface of evaluate() -----------------------------------------------
    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        self.start(env, obs)
        self.policy.reset(PolicyView(env, self.policy_layout), obs)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.decide(obs, self.policy.act(self.observe(obs)))


class CalibrationWrapper(gym.Wrapper):
    """Turns ``Microgrid-v0`` into the task of calibrating the forecast corrector for a baseline: the agent's
    action is the calibration (``3 * series`` numbers in [-1, 1]), its observation the static ``features``.
    Arguments as :class:`CalibratedController`; with ``sb3-microgrid evaluate`` a policy trained on it is
    scored as that controller.

    :param env: a ``Microgrid-v0`` env (possibly wrapped; the controller gets the unwrapped one)
    """

    def __init__(
        self,
        env: gym.Env,
        controller: str = "planner",
        fit_days: int = 4096,
        fit_seed: int = 0,
        features: list[str] | tuple[str, ...] = FEATURES,
        gain: float = 0.5,
        bias: float = 0.05,
        slope: float = 0.1,
    ) -> None:
        super().__init__(env)
        require_plain_microgrid(env, "CalibrationWrapper")
        if isinstance(controller, str) and controller in BASES:  # before the fit; a bad name is CalibratedController's to name
            require_dispatch(env, make_controller(controller), "CalibrationWrapper")
        settings = {"controller": controller, "fit_days": fit_days, "fit_seed": fit_seed, "features": features, "gain": gain, "bias": bias, "slope": slope}
        self._settings = settings
        self.calibrated = CalibratedController(AgentPolicy(), **settings)
        self.calibrated.bind(env.unwrapped)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(int(np.prod(self.calibrated.action_shape)),), dtype=np.float32)
        self.obs_layout = self.calibrated.policy_layout
        self.observation_space = observation_space(self.obs_layout)
        self._obs: np.ndarray | None = None

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        self._obs, info = self.env.reset(**kwargs)
        self.calibrated.start(self.env.unwrapped, self._obs)
        return self.calibrated.observe(self._obs), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._obs, reward, terminated, truncated, info = self.env.step(self.calibrated.decide(self._obs, action))
        return self.calibrated.observe(self._obs), reward, terminated, truncated, info

    @classmethod
    def as_controller(cls, policy: Controller, **settings: Any) -> CalibratedController:
        """A policy trained on this wrapper (with these settings, the wrapper's keyword arguments) as a controller of
        the plain env: how ``sb3-microgrid evaluate`` scores a run whose ``env_wrapper`` is this class."""
        return CalibratedController(policy, name=getattr(policy, "name", "calibrated"), **settings)

    def controller_for(self, policy: Controller) -> CalibratedController:
        """``policy``, trained on this wrapper, as a controller of the plain env with this wrapper's settings."""
        return type(self).as_controller(policy, **self._settings)
