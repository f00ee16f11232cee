"""One evaluation for every controller: the env itself scores it, day by day, beside the references.

Each day of the split is an episode started with ``reset(seed=day_seed(seed, i), options={"day": day})``, so
every controller sees the same days and the same forecast noise, and two evaluation seeds share no noise draw.
The LP's schedule is replayed through the env like any other controller; no figure here comes from a
controller's own accounting.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .baselines import CONTROLLERS, Controller, NaiveController, OptimalController, env_for, make_controller, model_spec
from .common.json_values import plain
from .envs import STEP_KEYS, MicrogridEnv
from .envs.kpi import DAY_COLUMNS
from .export import scenario_fingerprint
from .scenario import SEED_MAX, Scenario, check_range, load_scenario


#: More days than any split has: the days of two evaluation seeds never share a reset seed (:func:`day_seed`).
DAY_SEED_STRIDE = 2**20


@dataclass
class Evaluation:
    """Per-day KPIs (index: date) and their summary."""

    controller: str
    days: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``{"controller", "summary", "days": [{"date", "cost", ...}, ...]}`` with plain floats and
        ``None`` where a value is undefined (a gap closed where naive and optimal cost the same)."""
        days = self.days.reset_index().to_dict(orient="records")
        return plain({"controller": self.controller, "summary": self.summary, "days": days})

    def to_json(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as strict JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False))


def split_dates(scenario: Scenario, split: str, days: int | Sequence[str] | None = None) -> list[str]:
    """Episode start days of a split: all of them, the first ``days`` ones, or the dates given.

    :raises ValueError: for ``days`` outside :data:`DAYS_ACCEPTED`, or a split shorter than the scenario's ``horizon_days``
    """
    return _select_dates(MicrogridEnv(scenario=scenario, split=split), days)


#: What ``days`` may be, for every error about it.
DAYS_ACCEPTED = "a whole number >= 1, a non-empty list of dates or None (every day of the split)"


def _select_dates(env: MicrogridEnv, days: int | Sequence[str] | None) -> list[str]:
    every = env.core.start_days
    if days is None:
        return every
    # a string is iterable (its characters) and a bool is an int: neither is what a caller means
    if isinstance(days, (str, bytes)):
        raise ValueError(f"days must be {DAYS_ACCEPTED}, got the string {days!r}: pass a list of dates, [{days!r}]")
    if isinstance(days, numbers.Integral) and not isinstance(days, bool):  # numpy integers too
        if not 1 <= days <= len(every):  # more would silently score fewer days than asked
            raise ValueError(f"days must be in [1, {len(every)}] (the start days of split {env.core.split!r}), got {days}")
        return every[: int(days)]
    try:
        days = list(days)
    except TypeError:
        raise ValueError(f"days must be {DAYS_ACCEPTED}, got {days!r} ({type(days).__name__})") from None
    if not days:
        raise ValueError(f"days must be {DAYS_ACCEPTED}, got an empty list")
    for i, day in enumerate(days):  # every date before any is run, not a failure after the days before it
        try:
            env.core.day_index(day)
        except ValueError as err:
            raise ValueError(f"days[{i}]: {err}") from None
    return [str(pd.Timestamp(d).date()) for d in days]


def run_day(controller: Controller, env: MicrogridEnv, day: str, seed: int) -> tuple[dict[str, float], pd.DataFrame]:
    """Run one episode from ``day``; return its episode metrics and a per-step trace (the info
    values plus the action taken, the available PV, wind and load, and the import price).

    A controller whose actions are per EV port (the baselines) runs on the ports twin of an aggregate
    ``env`` (:func:`~sb3_microgrid.baselines.env_for`): the same day, noise and physics."""
    rows = []

    def record(played: MicrogridEnv, t: int, action: np.ndarray, info: dict[str, Any]) -> None:
        ep = played.core.episode
        rows.append(
            {
                "step": t,
                **{k: info[k] for k in STEP_KEYS},
                "pv_kw": ep.pv_kw[0, t],
                "wind_kw": ep.wind_kw[0, t],
                "import_price": ep.import_price[0, t],
                "action_battery": action[0],
            }
        )

    return _play(controller, env, day, seed, record), pd.DataFrame(rows)


def _play(
    controller: Controller, env: MicrogridEnv, day: str, seed: int, record: Callable[[MicrogridEnv, int, np.ndarray, dict[str, Any]], None] | None = None
) -> dict[str, float]:
    """The episode metrics of ``controller`` from ``day`` (as :func:`run_day`), calling ``record(env, step, action,
    info)`` after each step when given: scoring alone builds no per-step trace, which it does not read."""
    env = env_for(controller, env)
    obs, _ = env.reset(seed=seed, options={"day": day})
    controller.reset(env, obs)
    done = False
    while not done:
        t = env.core.t
        action = np.asarray(controller.act(obs), dtype=np.float64)
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        if record is not None:
            record(env, t, action, info)
    return info["episode_metrics"]


class OptimumAboveNaiveWarning(UserWarning):
    """:func:`evaluate`'s reference optimum cost more than naive on some episode, so the gap closed measures nothing."""


def evaluate(
    controller: Controller | str | os.PathLike[str],
    scenario: str | Scenario | dict | None = "campus",
    split: str = "test",
    days: int | Sequence[str] | None = None,
    seed: int = 0,
    reference: bool = True,
    source: str | os.PathLike[str] | None = None,
) -> Evaluation:
    """Run a controller on the days of a split and score it with the env.

    :param controller: a :class:`~sb3_microgrid.baselines.Controller`, or a name or path (a string or an
        ``os.PathLike``) accepted by :func:`~sb3_microgrid.baselines.make_controller` (``naive``, ``rule``,
        ``mpc``, ``optimal`` or the path of a saved SB3 model)
    :param scenario: preset name, YAML path, mapping or :class:`~sb3_microgrid.scenario.Scenario`
    :param split: ``"train"``, ``"validation"``, ``"test"`` or ``"all"``
    :param days: all days of the split (``None``), its first ``days`` days (an int or a numpy integer, not a bool),
        or a list of dates (a single date is a list of one): the start days of the episodes (of ``horizon_days``
        days each; the summary's ``*_per_day`` figures divide by it, the rows of ``Evaluation.days`` are whole
        episodes); checked before any controller runs
    :param seed: day ``i`` is reset with :func:`day_seed` ``(seed, i)`` (forecast noise), the same for every controller
    :param reference: also run ``naive`` and ``optimal`` on the same days for the gap closed
    :param source: the name or path ``controller`` was made from (:func:`~sb3_microgrid.baselines.make_controller`),
        when it is given as a controller; a controller given by name or path is its own. For a saved model, the summary's
        ``model_sha256`` is its file's (:func:`model_sha256`), else ``None``
    :raises ValueError: for ``days`` outside :data:`DAYS_ACCEPTED`, a date that is not a start day of the split, or a
        split shorter than the scenario's ``horizon_days``
    """
    check_range("seed", seed, 0, SEED_MAX, integer=True)
    scenario = load_scenario(scenario)
    if isinstance(controller, (str, os.PathLike)):
        source, controller = controller, make_controller(controller)
    model_file = None if source is None else _saved_model(source)
    model_hash = None if model_file is None else model_sha256(model_file)  # before the run, next to the file's loading
    env = MicrogridEnv(scenario=scenario, split=split)
    dates = _select_dates(env, days)
    frame = _run(controller, env, dates, seed)

    def per_day(column: pd.Series) -> float:
        return float(column.mean()) / scenario.horizon_days  # a row is an episode of horizon_days days

    summary: dict[str, Any] = {
        "controller": controller.name,
        "scenario": scenario.name,
        "split": split,
        "days": len(dates),
        # What was scored, beyond its names (every run saves model.zip; a scenario built on a preset keeps its name):
        # export --kpis compares them with the model and scenario it exports.
        "scenario_fingerprint": scenario_fingerprint(scenario),
        "model_sha256": model_hash,
        "cost_per_day": per_day(frame["cost"]),
        "emissions_kg_per_day": per_day(frame["emissions_kg"]),
        "safety_violations": float(frame["safety_violations"].sum()),
        "safety_interventions": float(frame["safety_interventions"].sum()),
        "unmet_ev_kwh_per_day": per_day(frame["unmet_ev_kwh"]),
        "curtailed_kwh_per_day": per_day(frame["curtailed_kwh"]),
        "battery_fade_per_day": per_day(frame["battery_fade"]),
    }
    if reference:
        # by type, not name: a model file may be called "optimal.zip"
        naive = frame if type(controller) is NaiveController else _run(NaiveController(), env, dates, seed)
        optimal = frame if type(controller) is OptimalController else _run(OptimalController(), env, dates, seed)
        above = int((optimal["cost"] > naive["cost"] + 1e-6).sum())
        if above:  # the gap closed then measures nothing: say so rather than print a figure
            warnings.warn(
                f"the perfect-foresight optimum costs more than naive on {above} of {len(dates)} episodes: the gap closed is "
                "not meaningful here (the LP plans with the battery's capacity at the reset, which a multi-day episode "
                "under strong aging loses at midnight; docs/baselines.md)",
                OptimumAboveNaiveWarning,
                stacklevel=2,
            )
        frame["cost_naive"] = naive["cost"]
        frame["cost_optimal"] = optimal["cost"]
        frame["gap_closed"] = gap_closed(frame["cost"], frame["cost_naive"], frame["cost_optimal"])
        summary["cost_naive_per_day"] = per_day(naive["cost"])
        summary["cost_optimal_per_day"] = per_day(optimal["cost"])
        summary["gap_closed"] = float(gap_closed(frame["cost"].mean(), naive["cost"].mean(), optimal["cost"].mean()))
    return Evaluation(controller=controller.name, days=frame, summary=summary)


def model_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a saved model's file, as the summary of its evaluation records it (``model_sha256``).

    :param path: the model's ``.zip``
    """
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _saved_model(source: str | os.PathLike[str]) -> Path | None:
    """The saved model's file that a controller's name or path names, as :func:`~sb3_microgrid.baselines.make_controller`
    reads it (``PATH.zip``, ``PATH.zip:ALGO``); ``None`` for a baseline's name or a controller folder (an export, a
    forecast corrector).

    :param source: the name or path the controller was made from
    """
    name = os.fspath(source)
    if name in CONTROLLERS:
        return None
    path = Path(model_spec(name)[0])
    return path if path.is_file() else None


def gap_closed(cost: Any, cost_naive: Any, cost_optimal: Any) -> Any:
    """``(C_naive - C) / (C_naive - C_optimal)``: 0 is today's operation, 1 the perfect-foresight
    optimum (NaN where the two coincide)."""
    span = np.asarray(cost_naive, dtype=float) - np.asarray(cost_optimal, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(span) > 1e-9, (np.asarray(cost_naive, dtype=float) - np.asarray(cost, dtype=float)) / span, np.nan)


def day_seed(seed: int, i: int) -> int:
    """The reset seed of the ``i``-th day of an evaluation with ``seed``: ``seed * DAY_SEED_STRIDE + i``.

    Seed 0 resets day ``i`` with ``i``. With ``seed + i``, as before, seeds 0 to 4 shared 362 of the test
    year's 366 noise draws, shifted by a day or more, and their spread understated the noise's.
    """
    return seed * DAY_SEED_STRIDE + i


def _run(controller: Controller, env: MicrogridEnv, dates: list[str], seed: int) -> pd.DataFrame:
    rows = []
    for i, day in enumerate(dates):
        metrics = _play(controller, env, day, day_seed(seed, i))
        rows.append({"date": day, **{DAY_COLUMNS[k]: metrics[k] for k in DAY_COLUMNS}})
    return pd.DataFrame(rows).set_index("date")
