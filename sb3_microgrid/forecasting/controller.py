"""A baseline controller that plans on corrected forecasts (:class:`~.correction.ForecastCorrector`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..baselines import Controller, make_controller
from ..envs import MicrogridEnv, ObservationLayout
from ..scenario import SEED_MAX, check_range
from .correction import BASES, ForecastCorrector, check_scenarios


class CorrectedForecastController:
    """``base`` acting on observations whose forecast rows the corrector has corrected with what the
    previous observation revealed; the first step of an episode, with no previous observation, is left as it is.
    ``reset`` refuses an env whose observation window (series, history and forecast steps) or forecast errors
    (:func:`~.correction.noise_signature`) differ from the fit's; the rest of the observation may differ (a fit
    under the aggregate EV interface serves a per-port base on the ports twin).

    With ``scenarios`` MPC hedges against the error that remains: at every step it draws that many residual
    vectors of the corrector (:attr:`~.correction.ForecastCorrector.residuals`, all leads and series of one
    training observation each), multiplies the corrected forecasts by ``1 +`` each, and plans on all of them at
    once (:func:`~sb3_microgrid.baselines.solve_scenarios`: one first step, recourse after it, the mean cost).

    :param base: the controller that reads the forecasts: a name of :data:`~.correction.BASES` (``mpc``,
        ``planner``, ``rule``) or a :class:`~sb3_microgrid.baselines.Controller`
    :param corrector: the fitted corrector
    :param name: the label in tables
    :param scenarios: forecast scenarios to plan on, in [0, 256] (0: the corrected forecast alone); needs base
        ``mpc`` and a corrector with residuals
    :param seed: seed of the scenario draws, in [0, 2**32 - 1]; an episode draws from ``seed`` and its first observation,
        so the same day under the same forecast noise gets the same draws whatever ran before
    """

    def __init__(self, base: str | Controller, corrector: ForecastCorrector, name: str | None = None, scenarios: int = 0, seed: int = 0) -> None:
        if (isinstance(base, str) and base not in BASES) or not isinstance(base, (str, Controller)):
            raise ValueError(f"base must be one of {list(BASES)} or a Controller object, got {base!r}")
        if not isinstance(corrector, ForecastCorrector):
            raise TypeError(f"corrector must be a ForecastCorrector (fit_corrector, ForecastCorrector.load), got {type(corrector).__name__}")
        self.base = make_controller(base) if isinstance(base, str) else base
        # numpy integers as Python ones (floats stay refused); any controller that plans on several forecasts at once
        # counts as MPC here
        scenarios, seed = (int(value) if isinstance(value, np.integer) else value for value in (scenarios, seed))
        check_scenarios(scenarios, "mpc" if hasattr(self.base, "act_scenarios") else getattr(self.base, "name", "?"), corrector)
        check_range("seed", seed, 0, SEED_MAX, integer=True)
        self.scenarios, self.seed = scenarios, seed
        #: it acts as its base does (per EV port for the baselines)
        self.ev_dispatch = getattr(self.base, "ev_dispatch", None)
        self.corrector = corrector
        self.name = name or f"{self.base.name}+corrected forecasts" + (f", {scenarios} scenarios" if scenarios else "")
        self._layout: ObservationLayout | None = None  # the env's, at reset: only the window is the corrector's
        self._previous: np.ndarray | None = None

    @classmethod
    def load(cls, folder: str | Path) -> "CorrectedForecastController":
        """The controller a folder written by ``sb3-microgrid fit-forecast`` describes."""
        corrector, base, scenarios = ForecastCorrector.load(folder)
        return cls(base, corrector, scenarios=scenarios)

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        self.corrector.check(env.scenario, env.obs_layout, env.difficulty)
        self._layout = env.obs_layout
        self._previous = None
        # the draws depend on the episode's first observation (its day and forecast noise), not on what ran before
        digest = np.frombuffer(hashlib.blake2b(np.ascontiguousarray(obs).tobytes(), digest_size=8).digest(), dtype=np.uint32)
        self._rng = np.random.default_rng([self.seed, *digest.tolist()])
        self.base.reset(env, obs)

    def corrected_window(self, observed: np.ndarray) -> np.ndarray:
        """The window the base plans on: ``observed`` corrected with what the previous observation revealed (as it is
        at the first step of an episode). Remembers ``observed`` for the next step.

        :param observed: the observation's window, ``(H + F, S)``
        """
        window = observed if self._previous is None else self.corrector.correct(self._previous[None], observed[None])[0]
        self._previous = observed.copy()
        return window

    def act(self, obs: np.ndarray) -> np.ndarray:
        lay = self._layout
        window = self.corrected_window(lay.windows(obs))
        obs = obs.copy()
        obs[lay.window] = window.ravel()
        if not self.scenarios:
            return self.base.act(obs)
        drawn = self.corrector.residuals[self._rng.integers(self.corrector.residuals.shape[0], size=self.scenarios)]
        windows = np.repeat(window[None], self.scenarios, axis=0)
        windows[:, lay.history_steps :] *= 1.0 + drawn
        scenarios = np.repeat(obs[None], self.scenarios, axis=0)
        scenarios[:, lay.window] = windows.reshape(self.scenarios, -1)
        return self.base.act_scenarios(obs, scenarios)
