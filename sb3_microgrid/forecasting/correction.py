"""A forecast-error corrector learnt from the training years: what the last revision says about the rest.

Forecast errors persist: a forecast that was too high an hour ago, for a step that has now been measured or
forecast again, says which way the current forecasts err. A controller that keeps its previous observation
sees, for every series, ``F`` such revealed errors (:func:`revealed_errors`): the previous forecast of the
step just measured against its measurement, and each previous forecast against the revised forecast of the
same step now. :class:`ForecastCorrector` regresses the relative error of each current forecast on them (one
least-squares fit per series on the training years, no model of the noise assumed) and divides it out.

The env's forecast model (docs/environment.md, section 4) has such persistence (AR(1) error increments, rho
0.8 per step); how much a real site gains depends on how persistent its own forecast provider's errors are,
which the same fit measures on the site's own history.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..envs import MicrogridVecEnv, ObservationLayout
from ..scenario import Scenario, load_scenario

#: File in a corrector folder (:meth:`ForecastCorrector.save`).
CORRECTOR_FILE = "forecast_corrector.json"
#: A relative error is only formed against values above this (normalised units): PV at night is 0.
_TINY = 1e-6
#: Bound on each revealed and predicted relative error: a forecast is never scaled by more than 2x either way.
_BOUND = 0.5


def _relative(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator - 1`` where both are above :data:`_TINY`, else 0; clipped to +-:data:`_BOUND`."""
    ok = (numerator > _TINY) & (denominator > _TINY)
    ratio = np.divide(numerator, denominator, out=np.ones_like(numerator), where=ok)
    return np.clip(ratio - 1.0, -_BOUND, _BOUND)


def revealed_errors(previous: np.ndarray, current: np.ndarray, history_steps: int) -> np.ndarray:
    """The relative forecast errors revealed between two successive windows, per revision and series.

    Entry ``k = 0`` compares the previous lead-0 forecast with the measurement now in the history; entry ``k``
    compares the previous lead-``k`` forecast with the current lead-``k - 1`` forecast of the same step.

    :param previous: (N, H + F, S) windows (normalised, as observed) of the previous step
    :param current: (N, H + F, S) windows of the current step
    :param history_steps: ``H``
    :return: (N, F, S)
    """
    h = history_steps
    if h == 0:  # no measured row: the first revision is unknown
        first = np.zeros_like(current[:, :1])
    else:
        first = _relative(previous[:, h : h + 1], current[:, h - 1 : h])
    return np.concatenate([first, _relative(previous[:, h + 1 :], current[:, h:-1])], axis=1)


@dataclass
class ForecastCorrector:
    """Per series, a linear map from the revealed errors to the relative error of each current forecast.

    :param layout: the observation layout it was fitted on
    :param weights: (S, F, F): ``error[lead] = weights[s, lead] @ revealed[:, s]``
    :param fit_info: how it was fitted (days, samples, seconds, scenario, seed), kept in the file
    """

    layout: ObservationLayout
    weights: np.ndarray
    fit_info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        f, s = self.layout.forecast_steps, len(self.layout.window_names)
        self.weights = np.asarray(self.weights, dtype=np.float64)
        if self.weights.shape != (s, f, f) or not np.isfinite(self.weights).all():
            raise ValueError(f"weights must be finite with shape (series, leads, leads) = {(s, f, f)}, got {self.weights.shape}")

    @classmethod
    def fit(cls, windows: np.ndarray, previous: np.ndarray, truth: np.ndarray, layout: ObservationLayout, ridge: float = 1e-3, **fit_info: Any) -> "ForecastCorrector":
        """Least squares of the current forecasts' relative errors on the revealed ones.

        :param windows: (N, H + F, S) observed windows
        :param previous: (N, H + F, S) the windows one step earlier
        :param truth: (N, F, S) true values of the forecast rows (normalised)
        :param layout: their observation layout
        :param ridge: Tikhonov weight, relative to the mean diagonal of the normal matrix
        """
        h = layout.history_steps
        x = revealed_errors(previous, windows, h)
        y = _relative(windows[:, h:], truth)
        weights = np.empty((x.shape[2], x.shape[1], x.shape[1]))
        for s in range(x.shape[2]):
            gram = x[:, :, s].T @ x[:, :, s]
            gram += ridge * max(np.trace(gram) / gram.shape[0], _TINY) * np.eye(gram.shape[0])
            weights[s] = np.linalg.solve(gram, x[:, :, s].T @ y[:, :, s]).T
        return cls(layout, weights, dict(fit_info, samples=int(x.shape[0]), ridge=ridge))

    def correct(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        """The current windows with their forecast rows divided by ``1 +`` the predicted relative error.

        :param previous: (N, H + F, S) windows of the previous step
        :param current: (N, H + F, S) windows of the current step
        """
        h = self.layout.history_steps
        revealed = revealed_errors(previous, current, h)
        predicted = np.clip(np.einsum("slk,nks->nls", self.weights, revealed), -_BOUND, _BOUND)
        out = current.copy()
        out[:, h:] = current[:, h:] / (1.0 + predicted)
        return out

    # ---- files --------------------------------------------------------------------------------
    def save(self, folder: str | Path, base: str) -> Path:
        """Write ``folder/forecast_corrector.json`` (plain JSON, nothing executable).

        :param base: the baseline controller that plans on the corrected forecasts
        """
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        record = {"format": 1, "base": base, "layout": self.layout.to_dict(), "weights": self.weights.tolist(), "fit": self.fit_info}
        target = path / CORRECTOR_FILE
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, allow_nan=False))
        tmp.replace(target)
        return target

    @classmethod
    def load(cls, folder: str | Path) -> tuple["ForecastCorrector", str]:
        """Read a folder written by :meth:`save`; return the corrector and its base controller's name."""
        target = Path(folder) / CORRECTOR_FILE
        try:
            record = json.loads(target.read_text())
            layout = ObservationLayout.from_dict(record["layout"])
            return cls(layout, np.asarray(record["weights"], dtype=np.float64), dict(record.get("fit", {}))), str(record["base"])
        except FileNotFoundError:
            raise ValueError(f"{target}: no such file") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{target} is not a forecast corrector: {err}") from None


def collect_windows(scenario: str | Scenario | dict, days: int, seed: int, split: str = "train", n_envs: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray, ObservationLayout]:
    """Successive observed windows of random days of ``split`` and the true values of their forecast rows.

    Forecasts do not depend on the actions, so the microgrids idle. Every step but an episode's first gives
    one sample. ``days`` is rounded up to a multiple of ``min(n_envs, days)``.

    :return: ``(windows, previous, truth, layout)`` as :meth:`ForecastCorrector.fit` takes them
    """
    n_envs = min(n_envs, days)
    venv = MicrogridVecEnv(n_envs, scenario=scenario, split=split, seed=seed, step_infos=False)
    core, lay = venv.core, venv.obs_layout
    h, f = lay.history_steps, lay.forecast_steps
    idle = np.zeros((n_envs, *venv.action_space.shape), dtype=np.float32)
    windows, previous, truth = [], [], []
    for _ in range(-(-days // n_envs)):
        obs = venv.reset()
        last = obs[:, lay.window].reshape(n_envs, *lay.window_shape)
        for t in range(1, core.scenario.episode_steps):
            obs, *_ = venv.step(idle)
            now = obs[:, lay.window].reshape(n_envs, *lay.window_shape)
            windows.append(now)
            previous.append(last)
            truth.append(core.episode.window_mean[:, t + h : t + h + f])
            last = now
        venv.step(idle)  # the last step ends the episodes
    return np.concatenate(windows), np.concatenate(previous), np.concatenate(truth), lay


def fit_corrector(scenario: str | Scenario | dict = "campus", days: int = 4096, seed: int = 0, ridge: float = 1e-3) -> ForecastCorrector:
    """Fit a :class:`ForecastCorrector` on ``days`` random days of the training years.

    :param scenario: preset name, YAML path, mapping or :class:`~sb3_microgrid.scenario.Scenario`
    :param days: training days to draw (rounded up to a multiple of 64 above 64)
    :param seed: seed of the day draws and forecast noise
    :param ridge: Tikhonov weight (:meth:`ForecastCorrector.fit`)
    """
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    if not (isinstance(ridge, (int, float)) and 0.0 <= ridge <= 1e3):
        raise ValueError(f"ridge must be a number in [0, 1000], got {ridge!r}")
    sc = load_scenario(scenario)
    start = time.perf_counter()
    windows, previous, truth, layout = collect_windows(sc, days, seed)
    simulated = windows.shape[0] // (sc.episode_steps - 1) * sc.episode_steps
    corrector = ForecastCorrector.fit(windows, previous, truth, layout, ridge, scenario=sc.name, days=days, seed=seed, env_steps=simulated)
    corrector.fit_info["seconds"] = time.perf_counter() - start
    return corrector
