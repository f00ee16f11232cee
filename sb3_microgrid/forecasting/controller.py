"""A baseline controller that plans on corrected forecasts (:class:`~.correction.ForecastCorrector`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..baselines import Controller, make_controller
from ..envs import MicrogridEnv
from .correction import BASES, ForecastCorrector


class CorrectedForecastController:
    """``base`` acting on observations whose forecast rows the corrector has corrected with what the
    previous observation revealed; the first step of an episode, with no previous observation, is left as it is.
    ``reset`` refuses an env whose layout or forecast errors (:func:`~.correction.noise_signature`) differ from
    the fit's.

    :param base: the controller that reads the forecasts: a name of :data:`~.correction.BASES` (``mpc``,
        ``planner``, ``rule``) or a :class:`~sb3_microgrid.baselines.Controller`
    :param corrector: the fitted corrector
    :param name: the label in tables
    """

    def __init__(self, base: str | Controller, corrector: ForecastCorrector, name: str | None = None) -> None:
        if isinstance(base, str) and base not in BASES:
            raise ValueError(f"base must be one of {list(BASES)} or a Controller object, got {base!r}")
        self.base = make_controller(base) if isinstance(base, str) else base
        #: it acts as its base does (per EV port for the baselines)
        self.ev_dispatch = getattr(self.base, "ev_dispatch", None)
        self.corrector = corrector
        self.name = name or f"{self.base.name}+corrected forecasts"
        self._layout = corrector.layout
        self._previous: np.ndarray | None = None

    @classmethod
    def load(cls, folder: str | Path) -> "CorrectedForecastController":
        """The controller a folder written by ``sb3-microgrid fit-forecast`` describes."""
        corrector, base = ForecastCorrector.load(folder)
        return cls(base, corrector)

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        self.corrector.check(env.scenario, env.obs_layout)
        self._previous = None
        self.base.reset(env, obs)

    def act(self, obs: np.ndarray) -> np.ndarray:
        lay = self._layout
        window = lay.windows(obs)
        if self._previous is not None:
            obs = obs.copy()
            obs[lay.window] = self.corrector.correct(self._previous[None], window[None])[0].ravel()
        self._previous = window.copy()
        return self.base.act(obs)
