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
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..common.json_values import plain, refuse_constant
from ..envs import MicrogridVecEnv, ObservationLayout, observation_layout
from ..scenario import Difficulty, Scenario, ScenarioError, check_range, from_dict, load_scenario, to_dict

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


def _numbers(value: Any, name: str) -> np.ndarray:
    """``value`` as a float array, if it holds numbers only; nested lists (from a file) are checked element by
    element, since numpy would read ``True``, ``"0.1"`` or a 400-digit integer as a float without a word.

    :raises ValueError: naming ``name``, for strings, booleans, ragged lists or numbers beyond a float
    """
    if isinstance(value, np.ndarray):
        numbers = value.dtype.kind in "iuf"
    else:
        value = np.asarray(value, dtype=object)
        numbers = all(type(x) in (int, float) for x in value.flat)
    if not numbers:
        raise ValueError(f"{name} must be an array of numbers, not strings, booleans or ragged lists")
    try:
        return np.asarray(value, dtype=np.float64)
    except OverflowError as err:
        raise ValueError(f"{name} must hold finite numbers: {err}") from None


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


def divide_out(windows: np.ndarray, predicted: np.ndarray, history_steps: int) -> np.ndarray:
    """``windows`` with their forecast rows divided by ``1 +`` the predicted relative errors, each bounded to
    +-:data:`_BOUND`.

    :param windows: (N, H + F, S) observed windows
    :param predicted: (N, F, S) relative errors of their forecast rows
    :param history_steps: ``H``
    :return: (N, H + F, S)
    """
    out = windows.copy()
    out[:, history_steps:] = windows[:, history_steps:] / (1.0 + np.clip(predicted, -_BOUND, _BOUND))
    return out


def _checked_batches(batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], layout: ObservationLayout) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``batches``, each checked against ``layout`` (a site's own history may have gaps: a NaN would count as no error
    and shrink the fit without a word). The arrays are passed on as they are (the env's are float32).

    :raises ValueError: naming the batch and the array, for a wrong shape or a value that is not finite
    """
    h, f, s = layout.history_steps, layout.forecast_steps, len(layout.window_names)
    for i, batch in enumerate(batches):
        if len(batch) != 3:
            raise ValueError(f"batch {i}: expected (windows, previous, truth), got {len(batch)} arrays")
        arrays = [np.asarray(a) for a in batch]
        n = arrays[0].shape[0] if arrays[0].ndim else 0
        for array, name, shape in zip(arrays, ("windows", "previous", "truth"), ((n, h + f, s), (n, h + f, s), (n, f, s))):
            if array.dtype.kind not in "iuf":
                raise ValueError(f"batch {i} {name} must be an array of numbers, got dtype {array.dtype}")
            if array.shape != shape:
                raise ValueError(f"batch {i} {name} must have shape (samples, {', '.join(map(str, shape[1:]))}) of the layout, got {array.shape}")
            if not np.isfinite(array).all():
                raise ValueError(f"batch {i} {name} holds values that are not finite: leave out the steps with gaps")
        yield arrays[0], arrays[1], arrays[2]


#: Baselines that plan on the observation's forecasts, the only ones a corrector file may name.
BASES = ("mpc", "planner", "rule")
#: Fit seed ``s`` seeds its microgrid ``i`` with ``FIT_SEED_STRIDE * (s + 1) + i``: the streams of two fit seeds
#: never overlap (``MicrogridVecEnv`` seeds microgrid ``i`` with ``seed + i``). Fitted on training days, they share
#: no day with an evaluation (validation and test days), whatever its seeds.
FIT_SEED_STRIDE = 1_000_000
_FORMAT = 1


def noise_signature(scenario: Scenario, difficulty: Difficulty | None = None) -> dict[str, Any]:
    """What the forecast errors depend on besides the layout: the forecast settings, the step, the tariff (a
    ToD price is published, so exact) and the renewable noise of the difficulty.

    :param difficulty: the difficulty in use (an env's after ``set_difficulty``, e.g. by a curriculum); default the
        scenario's
    """
    difficulty = scenario.difficulty if difficulty is None else difficulty
    return {
        "forecast": asdict(scenario.forecast), "step_hours": scenario.step_hours,
        "tariff": scenario.grid.tariff, "renewable_noise": difficulty.renewable_noise,
    }  # fmt: skip


def _window_of(layout: ObservationLayout) -> tuple[tuple[str, ...], int, int]:
    """What of an observation layout a corrector reads: the window's series and its history and forecast steps."""
    return layout.window_names, layout.history_steps, layout.forecast_steps


@dataclass
class ForecastCorrector:
    """Per series, a linear map from the revealed errors to the relative error of each current forecast.

    :param layout: the observation layout it was fitted on
    :param weights: (S, F, F): ``error[lead] = weights[s, lead] @ revealed[:, s]``
    :param signature: :func:`noise_signature` of the scenario it was fitted on
    :param fit_info: how it was fitted (days, samples, seconds, scenario, seed), kept in the file
    :param residuals: (M, F, S) relative errors ``truth / corrected - 1`` of corrected forecasts on training days
        (:meth:`fit_residuals`), each in [-0.5, 0.5]: the error that remains, for planning on scenarios; ``None``
        if not fitted
    """

    layout: ObservationLayout
    weights: np.ndarray
    signature: dict[str, Any]
    fit_info: dict[str, Any] = field(default_factory=dict)
    residuals: np.ndarray | None = None

    def __post_init__(self) -> None:
        f, s = self.layout.forecast_steps, len(self.layout.window_names)
        self.weights = _numbers(self.weights, "weights")
        if self.weights.shape != (s, f, f) or not np.isfinite(self.weights).all():
            raise ValueError(f"weights must be finite with shape (series, leads, leads) = {(s, f, f)}, got {self.weights.shape}")
        if self.residuals is not None:
            self.set_residuals(self.residuals)

    def set_residuals(self, residuals: np.ndarray) -> None:
        """Set :attr:`residuals`, checked.

        :raises ValueError: for anything but a non-empty (M, F, S) array of relative errors in [-0.5, 0.5]
        """
        f, s = self.layout.forecast_steps, len(self.layout.window_names)
        r = _numbers(residuals, "residuals")
        if r.ndim != 3 or r.shape[0] < 1 or r.shape[1:] != (f, s) or not np.isfinite(r).all() or np.abs(r).max() > _BOUND:
            raise ValueError(f"residuals must be a non-empty (samples, {f}, {s}) array of finite relative errors in [-{_BOUND}, {_BOUND}], got shape {r.shape}")
        self.residuals = r

    def fit_residuals(self, batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], samples: int, seed: int = 0) -> None:
        """Keep ``samples`` residual vectors (:attr:`residuals`) drawn without replacement from those of ``batches``.

        :param batches: ``(windows, previous, truth)`` triples as for :meth:`fit`
        :param samples: vectors to keep, at least 1 (all of them if there are fewer)
        :param seed: seed of the draw
        """
        check_range("samples", samples, 1, math.inf, integer=True)
        h = self.layout.history_steps
        # all of them before the draw (memory of every batch, about 22 KB a day at campus's layout)
        every = [_relative(truth, self.correct(previous, windows)[:, h:]) for windows, previous, truth in _checked_batches(batches, self.layout)]
        if not every:
            raise ValueError("no samples to draw residuals from")
        every = np.concatenate(every)
        keep = np.random.default_rng(seed).permutation(every.shape[0])[:samples]
        self.set_residuals(every[np.sort(keep)])

    @classmethod
    def fit(
        cls, batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], layout: ObservationLayout, signature: dict[str, Any], ridge: float = 1e-3, **fit_info: Any
    ) -> "ForecastCorrector":
        """Least squares of the current forecasts' relative errors on the revealed ones, accumulated batch by
        batch in the normal equations (memory of one batch, whatever the number of days).

        :param batches: ``(windows, previous, truth)`` triples: (N, H + F, S) observed windows, the windows one
            step earlier, and (N, F, S) true values of the forecast rows (normalised)
        :param layout: their observation layout
        :param signature: :func:`noise_signature` of their scenario
        :param ridge: Tikhonov weight, relative to the mean diagonal of each series' normal matrix
        :param fit_info: recorded in :attr:`fit_info`, with the number of samples and ``ridge``
        :return: the fitted corrector
        """
        check_range("ridge", ridge, 0, 1e3)
        h, f, s = layout.history_steps, layout.forecast_steps, len(layout.window_names)
        gram, cross, samples = np.zeros((s, f, f)), np.zeros((s, f, f)), 0
        for windows, previous, truth in _checked_batches(batches, layout):
            x = revealed_errors(previous, windows, h).astype(np.float64)
            y = _relative(windows[:, h:], truth).astype(np.float64)
            gram += np.einsum("nks,njs->skj", x, x)
            cross += np.einsum("nks,nls->skl", x, y)
            samples += x.shape[0]
        if samples == 0:
            raise ValueError("no samples to fit on")
        scale = np.maximum(np.trace(gram, axis1=1, axis2=2) / f, _TINY)
        try:
            weights = np.linalg.solve(gram + ridge * scale[:, None, None] * np.eye(f), cross).transpose(0, 2, 1)
        except np.linalg.LinAlgError:
            # a series without forecast errors (a published ToD price) has an all-zero normal matrix
            singular = [name for name, g in zip(layout.window_names, gram) if np.linalg.matrix_rank(g) < f]
            raise ValueError(f"ridge {ridge} leaves the normal equations of series {singular} singular (too few revealed errors): use ridge > 0") from None
        return cls(layout, weights, signature, dict(fit_info, samples=samples, ridge=ridge))

    def check(self, scenario: Scenario, layout: ObservationLayout, difficulty: Difficulty | None = None) -> None:
        """Refuse an env whose observation window or forecast errors differ from those it was fitted on. The rest of
        the observation may differ: a corrector fitted under the aggregate EV interface serves a per-port base on
        the ports twin, whose window is the same.

        :param difficulty: the env's difficulty in use (``MicrogridEnv.difficulty``), which a curriculum changes;
            default the scenario's
        """
        fitted, given = _window_of(self.layout), _window_of(layout)
        if given != fitted:
            raise ValueError(f"the corrector was fitted on the window (series, history steps, forecast steps) {fitted}, the env has {given}")
        env = noise_signature(scenario, difficulty)
        differ = {key: (self.signature.get(key), env[key]) for key in env if self.signature.get(key) != env[key]}
        if differ:
            raise ValueError(f"the corrector was fitted on other forecast errors; (fitted, env): {differ}")

    def predict(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        """The relative errors of the current forecasts that the revealed ones predict, before any bound.

        :param previous: (N, H + F, S) windows of the previous step
        :param current: (N, H + F, S) windows of the current step
        :return: (N, F, S)
        """
        return np.einsum("slk,nks->nls", self.weights, revealed_errors(previous, current, self.layout.history_steps))

    def correct(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        """The current windows with their forecast rows divided by ``1 +`` the predicted relative error.

        :param previous: (N, H + F, S) windows of the previous step
        :param current: (N, H + F, S) windows of the current step
        """
        return divide_out(current, self.predict(previous, current), self.layout.history_steps)

    # ---- files --------------------------------------------------------------------------------
    def save(self, folder: str | Path, base: str, scenarios: int = 0) -> Path:
        """Write ``folder/forecast_corrector.json`` (plain JSON, nothing executable).

        :param base: the baseline that plans on the corrected forecasts, one of :data:`BASES`
        :param scenarios: forecast scenarios it plans on (:class:`~.controller.CorrectedForecastController`)
        """
        if base not in BASES:
            raise ValueError(f"base must be one of {list(BASES)}, got {base!r}")
        check_scenarios(scenarios, base, self)
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        record = {"format": _FORMAT, "base": base, "layout": self.layout.to_dict(), "signature": self.signature,
                  "weights": self.weights.tolist(), "fit": plain(self.fit_info), "scenarios": scenarios,
                  "residuals": None if self.residuals is None else np.round(self.residuals, 5).tolist()}  # fmt: skip
        target = path / CORRECTOR_FILE
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, allow_nan=False))
        tmp.replace(target)
        return target

    @classmethod
    def load(cls, folder: str | Path) -> tuple["ForecastCorrector", str, int]:
        """Read a folder written by :meth:`save`; return the corrector, its base controller's name and the number
        of forecast scenarios it plans on.

        :raises ValueError: naming the file and the field, for anything but such a file
        """
        target = Path(folder) / CORRECTOR_FILE
        try:
            record = json.loads(target.read_text(), parse_constant=refuse_constant)
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot read {target}: {err}") from None
        except (ValueError, RecursionError) as err:  # JSONDecodeError, or an integer of more digits than Python reads
            raise ValueError(f"{target} is not JSON: {str(err)[:200]}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{target}: expected a JSON object, got {type(record).__name__}")

        def field_error(name: str, problem: str) -> ValueError:
            return ValueError(f"{target}: field {name!r} {problem}")

        if type(record.get("format")) is not int or record["format"] != _FORMAT:  # not True, which equals 1
            raise field_error("format", f"must be {_FORMAT}, got {record.get('format')!r}")
        if record.get("base") not in BASES:
            raise field_error("base", f"must be one of {list(BASES)}, got {record.get('base')!r}")
        for name in ("layout", "signature"):
            if not isinstance(record.get(name), dict):
                raise field_error(name, f"must be an object, got {type(record.get(name)).__name__}")
        if not isinstance(record.get("fit", {}), dict):
            raise field_error("fit", f"must be an object, got {type(record['fit']).__name__}")
        try:
            layout = ObservationLayout.from_dict(record["layout"])
        except (KeyError, TypeError, ValueError, OverflowError) as err:
            raise field_error("layout", f"is not an observation layout: {err!r}") from None
        try:
            corrector = cls(layout, record.get("weights"), record["signature"], dict(record.get("fit", {})))
        except (TypeError, ValueError) as err:
            raise field_error("weights", f"must be a finite (series, leads, leads) array of numbers: {str(err)[:200]}") from None
        if record.get("residuals") is not None:
            try:
                corrector.set_residuals(record["residuals"])
            except (TypeError, ValueError) as err:
                raise field_error("residuals", f"is not valid: {str(err)[:200]}") from None
        scenarios = record.get("scenarios", 0)
        try:
            check_scenarios(scenarios, record["base"], corrector)
        except ValueError as err:
            raise field_error("scenarios", str(err)) from None
        return corrector, record["base"], scenarios


def fitted_scenario(folder: str | Path) -> Scenario | None:
    """The scenario the corrector in ``folder`` was fitted on, as :func:`fit_corrector` records it (``fit.site``);
    ``None`` for a file that records none (written by an older version, or fitted in code without it).

    :raises ValueError: naming the file, for a file :meth:`ForecastCorrector.load` refuses or a recorded scenario that
        is not valid
    """
    corrector, _, _ = ForecastCorrector.load(folder)
    site = corrector.fit_info.get("site")
    if site is None:
        return None
    try:
        if not isinstance(site, dict):
            raise ScenarioError(f"expected a mapping, got {type(site).__name__}")
        return from_dict(site)
    except ScenarioError as err:
        raise ValueError(f"{Path(folder) / CORRECTOR_FILE}: field 'fit.site' is not a scenario: {err}") from None


#: Most forecast scenarios a controller plans on (one LP block each).
MAX_SCENARIOS = 256


def check_scenarios(scenarios: Any, base: str, corrector: ForecastCorrector) -> None:
    """Refuse a number of forecast scenarios outside [0, :data:`MAX_SCENARIOS`], scenarios for a base other than
    ``mpc`` (the only one that plans on several forecasts at once) or for a corrector without residuals."""
    check_range("scenarios", scenarios, 0, MAX_SCENARIOS, integer=True)
    if scenarios and base != "mpc":
        raise ValueError(f"scenarios need base 'mpc' (the scenario LP), got {base!r}")
    if scenarios and corrector.residuals is None:
        raise ValueError("scenarios need a corrector with residuals (fit_corrector(residual_days=...) or fit-forecast --scenarios)")


def episode_batches(scenario: Scenario, days: int, seed: int, split: str = "train", n_envs: int = 64) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(windows, previous, truth)`` for every step but the first of ``days`` random days of ``split``, one
    step of ``min(n_envs, days)`` microgrids at a time (days drawn with replacement, rounded up to a multiple of
    that). Forecasts do not depend on the actions, so the microgrids idle.

    :param seed: fit seed (:data:`FIT_SEED_STRIDE`)
    """
    n_envs = min(n_envs, days)
    venv = MicrogridVecEnv(n_envs, scenario=scenario, split=split, seed=FIT_SEED_STRIDE * (seed + 1), step_infos=False)
    core, lay = venv.core, venv.obs_layout
    h, f = lay.history_steps, lay.forecast_steps
    idle = np.zeros((n_envs, *venv.action_space.shape), dtype=np.float32)
    obs = venv.reset()
    for _ in range(-(-days // n_envs)):
        last = lay.windows(obs)
        for t in range(1, core.scenario.episode_steps):
            obs, *_ = venv.step(idle)
            now = lay.windows(obs)
            yield now, last, core.episode.window_mean[:, t + h : t + h + f]
            last = now
        obs, *_ = venv.step(idle)  # ends the episodes; the VecEnv resets them and returns the new first observations


def collect_windows(scenario: str | Scenario | dict, days: int, seed: int, split: str = "train", n_envs: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray, ObservationLayout]:
    """:func:`episode_batches` concatenated, with the layout: ``(windows, previous, truth, layout)``."""
    sc = load_scenario(scenario)
    parts = list(zip(*episode_batches(sc, days, seed, split, n_envs)))
    windows, previous, truth = (np.concatenate(p) for p in parts)
    return windows, previous, truth, observation_layout(sc)


def fit_corrector(
    scenario: str | Scenario | dict = "campus", days: int = 4096, seed: int = 0, ridge: float = 1e-3, residual_days: int = 0, residual_samples: int = 1024
) -> ForecastCorrector:
    """Fit a :class:`ForecastCorrector` on ``days`` random days of the training years.

    :param scenario: preset name, YAML path, mapping or :class:`~sb3_microgrid.scenario.Scenario`
    :param days: training days to draw, with replacement (rounded up to a multiple of 64 above 64)
    :param seed: fit seed: the day draws and their forecast noise (:data:`FIT_SEED_STRIDE`)
    :param ridge: Tikhonov weight (:meth:`ForecastCorrector.fit`)
    :param residual_days: also keep residuals (:meth:`ForecastCorrector.fit_residuals`) of the first
        ``residual_days`` of those days (0: none), in [0, ``days``]
    :param residual_samples: residual vectors kept, in [1, 65,536]
    """
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    check_range("residual_days", residual_days, 0, days, integer=True)
    check_range("residual_samples", residual_samples, 1, 65_536, integer=True)
    sc = load_scenario(scenario)
    start = time.perf_counter()
    # the whole scenario (site), so that evaluate scores the folder where it was fitted; its name alone may be a preset's
    corrector = ForecastCorrector.fit(episode_batches(sc, days, seed), observation_layout(sc), noise_signature(sc), ridge, scenario=sc.name, site=to_dict(sc), seed=seed)
    corrector.fit_info["days"] = corrector.fit_info["samples"] // (sc.episode_steps - 1)
    corrector.fit_info["env_steps"] = corrector.fit_info["days"] * sc.episode_steps
    if residual_days:
        # the first residual_days of the same draw: in sample, as a few hundred weights per series barely overfit
        corrector.fit_residuals(episode_batches(sc, residual_days, seed), residual_samples, seed)
        # the days drawn: rounded up to a multiple of 64 above 64, as for the fit
        drawn = -(-residual_days // min(64, residual_days)) * min(64, residual_days)
        corrector.fit_info.update(residual_days=drawn, residual_samples=corrector.residuals.shape[0])
    corrector.fit_info["seconds"] = time.perf_counter() - start
    return corrector
