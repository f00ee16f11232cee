"""Model selection on the validation year: score the policy during training, keep the best, stop on a budget.

:class:`ValidationCallback` scores the policy every ``eval_freq`` steps on the first ``days`` days of
the validation split, through :func:`~sb3_microgrid.evaluation.evaluate` and as the controller the run
will be evaluated as (a policy trained on a wrapper with ``controller_for``, such as
:class:`~sb3_microgrid.wrappers.ResidualWrapper`, is scored with its base controller, in-process or in a
``SubprocVecEnv``). The best score is the lowest cost per day; the gap closed, reported beside it, uses the
naive and optimal costs of the same days, computed once (it is undefined, ``null`` in the file, where the two
coincide). A training env of several sites (:class:`~sb3_microgrid.envs.MultiSiteVecEnv`, as Reptile and pooled
training use) is scored on the validation days of every site, pooled: the mean cost and unmet EV energy per
site-day, the violations summed, and the gap closed of the pooled costs. At the end of training it puts back the
best-scoring parameters and normalisation statistics, so the saved model is the one chosen on validation days; the
test year stays unseen.

``validation.json`` (strict JSON) is rewritten after every score, and the best weights are kept beside it
(``validation_best_<steps>.zip`` and ``.npz``), so a run resumed from a checkpoint (``num_timesteps > 0`` at
the start of training) takes up the scores, the best candidate and the minutes trained of the run it
continues. It lives above ``evaluation``: callbacks/ may not import it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from .baselines import Controller, NaiveController, OptimalController, SB3Controller
from .common.files import write_atomically
from .common.json_values import plain, refuse_constant
from .evaluation import evaluate, gap_closed
from .common.requirements import refuse_plain_ars
from .exploration.param_noise import end_perturbation, unperturbed
from .scenario import SEED_MAX, check_range

VALIDATION_JSON = "validation.json"
#: the best-scoring weights (``<prefix><steps>.zip``) and normalisation statistics (``.npz``) beside validation.json
BEST_PREFIX = "validation_best_"
_ROW_KEYS = ("steps", "minutes", "gap_closed", "cost_per_day", "unmet_ev_kwh_per_day", "safety_violations")


class ValidationFileError(ValueError):
    """A ``validation.json`` (or the best weights it names) that a resumed run cannot take up."""


class _PolicySlot:
    """What a wrapper in another process (``SubprocVecEnv``) receives as the policy in ``controller_for``: it
    builds its controller around this stand-in, which the callback then replaces by the model."""

    name = "validation"


class ValidationCallback(BaseCallback):
    """Score on validation days, keep the best parameters, stop after ``max_minutes`` of training.

    :param days: the first ``days`` days of the validation split
    :param eval_freq: env steps between scores (checked after each update)
    :param seed: the evaluation seed of the validation days, as ``evaluate`` takes it
    :param max_minutes: stop training after this many minutes of training, the scoring time not counted
        (``None``: no limit); a resumed run counts the minutes its ``validation.json`` records
    :param restore_best: at the end, load the best-scoring parameters and statistics into the model
    :param log_path: folder for ``validation.json`` (the scores) and the best weights; ``None``: the logger's
        folder, if any
    :param verbose: print each score
    """

    def __init__(
        self,
        days: int = 30,
        eval_freq: int = 50_000,
        seed: int = 0,
        max_minutes: float | None = None,
        restore_best: bool = True,
        log_path: str | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise ValueError(f"days must be an integer >= 1, got {days!r}")
        if isinstance(eval_freq, bool) or not isinstance(eval_freq, int) or eval_freq < 1:
            raise ValueError(f"eval_freq must be an integer >= 1, got {eval_freq!r}")
        check_range("seed", seed, 0, SEED_MAX, integer=True)  # here, not at training start after the run folder is made
        if max_minutes is not None and not (isinstance(max_minutes, (int, float)) and max_minutes > 0):
            raise ValueError(f"max_minutes must be a number > 0 or None, got {max_minutes!r}")
        self.days, self.eval_freq, self.seed, self.max_minutes = days, eval_freq, seed, max_minutes
        self.restore_best, self.log_path = restore_best, log_path
        #: with ``restore_best``, whether the callback puts the best back at the end of training itself; a caller that
        #: must first save the weights training reached sets it to ``False`` and calls :meth:`restore` after
        #: ``learn()`` (``sb3-microgrid train``, whose final checkpoint set holds them)
        self.restore_at_end = True
        self.history: list[dict[str, float]] = []
        self.best: dict[str, float] | None = None
        self._best_state: tuple[Any, Any] | None = None
        self._best_file: str | None = None  # the best's weights in the folder (None: not saved)
        self._folder: Path | None = None

    # ---- events ---------------------------------------------------------------------------------
    def _init_callback(self) -> None:
        if self.max_minutes is not None:
            refuse_plain_ars(self.model, "ValidationCallback(max_minutes=...)", "its learn() ignores on_step()'s False, so training would not stop")

    def _on_training_start(self) -> None:
        self._sites: list[Any] = []  # each distinct scenario of the training env, in env order
        for scenario in self.training_env.get_attr("scenario"):
            if scenario not in self._sites:
                self._sites.append(scenario)
        folder = self.log_path or (self.logger.get_dir() if self.logger is not None else None)
        self._folder = None if folder is None else Path(folder)
        earlier = 0.0
        if self.num_timesteps > 0 and self._folder is not None and (self._folder / VALIDATION_JSON).exists():
            earlier = self._take_up(self._folder / VALIDATION_JSON)
        self._naive = self._summary(NaiveController())["cost_per_day"]
        self._optimal = self._summary(OptimalController())["cost_per_day"]
        self._start, self._scoring = time.perf_counter() - 60.0 * earlier, 0.0
        self._last = self.num_timesteps
        if not any(row["steps"] == self.num_timesteps for row in self.history):
            self._score()

    def _on_rollout_start(self) -> None:
        # after the update of the previous rollout: the parameters scored are those that will be saved
        if self.num_timesteps - self._last >= self.eval_freq:
            self._score()

    def _on_step(self) -> bool:
        return self.max_minutes is None or self.training_minutes < self.max_minutes

    def _on_training_end(self) -> None:
        if not self.history or self.history[-1]["steps"] != self.num_timesteps:
            self._score()
        if self.restore_best and self.restore_at_end:
            self.restore()
        self._write()

    def restore(self) -> None:
        """Load the best-scoring parameters and normalisation statistics into the model (what ``restore_best`` does at
        the end of training, unless :attr:`restore_at_end` is ``False``). ``sb3-microgrid train`` calls it after
        ``learn()``, once the final checkpoint set holds the weights training reached: a resumed run goes on from
        those, and the published model is the best."""
        if self._best_state is None and self._best_file is not None:  # the best predates the resume
            self._best_state = self._load_best(self._folder / self._best_file)
        if self._best_state is not None:
            parameters, statistics = self._best_state
            # a training stopped mid-rollout leaves the actor perturbed: a noise callback after this one in the list
            # would put its clean weights, the last rollout's, over the best actor
            end_perturbation(self.model.policy)
            self.model.set_parameters(parameters, exact_match=True, device=self.model.device)
            normalizer = self.model.get_vec_normalize_env()
            if normalizer is not None and statistics is not None:
                normalizer.obs_rms, normalizer.ret_rms = copy.deepcopy(statistics)

    # ---- scoring --------------------------------------------------------------------------------
    @property
    def training_minutes(self) -> float:
        """Minutes since training started, the scoring time not counted (with a resumed run's earlier minutes)."""
        return (time.perf_counter() - self._start - self._scoring) / 60.0

    def controller(self) -> Controller:
        """The model as the controller it will be evaluated as (wrappers with ``controller_for``, outermost first).

        In-process envs (``DummyVecEnv``) are walked wrapper by wrapper; other VecEnvs (``SubprocVecEnv``) through
        ``env_method``: the outermost wrapper with ``controller_for`` builds the controller in its process around a
        stand-in for the model, which is put in its place here (only the outermost: nest such wrappers in a
        ``DummyVecEnv``).
        """
        controller: Controller = SB3Controller.from_model(self.model, self.model.get_vec_normalize_env(), name="validation")
        venv = self.training_env.unwrapped
        if isinstance(venv, DummyVecEnv):
            env = venv.envs[0]
            while isinstance(env, gym.Wrapper):
                if hasattr(env, "controller_for"):
                    controller = env.controller_for(controller)
                env = env.env
            return controller
        if not _remote_has(venv, "controller_for"):
            return controller
        built = venv.env_method("controller_for", _PolicySlot(), indices=[0])[0]
        slots = [key for key, value in vars(built).items() if isinstance(value, _PolicySlot)]
        if len(slots) != 1:
            raise TypeError(f"{type(built).__name__}, built by the env's controller_for, does not hold its policy in one attribute: cannot score it from {type(venv).__name__}")
        setattr(built, slots[0], controller)
        return built

    def _summary(self, controller: Controller) -> dict[str, float]:
        """The controller's validation KPIs, pooled over the sites (each scores the same number of days)."""
        summaries = [evaluate(controller, scenario=site, split="validation", days=self.days, seed=self.seed, reference=False).summary for site in self._sites]
        pooled = {key: float(np.mean([s[key] for s in summaries])) for key in ("cost_per_day", "unmet_ev_kwh_per_day")}
        return {**pooled, "safety_violations": float(sum(s["safety_violations"] for s in summaries))}

    def _score(self) -> None:
        # a ParameterNoiseCallback's perturbation (on from rollout start) is exploration, not a candidate
        with unperturbed(self.model.policy):
            self._score_clean()

    def _score_clean(self) -> None:
        began = time.perf_counter()
        summary = self._summary(self.controller())
        row = {
            "steps": float(self.num_timesteps),
            "minutes": self.training_minutes,
            "gap_closed": float(gap_closed(summary["cost_per_day"], self._naive, self._optimal)),
            **{key: summary[key] for key in ("cost_per_day", "unmet_ev_kwh_per_day", "safety_violations")},
        }
        self.history.append(row)
        self._last = self.num_timesteps
        # lowest cost: the same ranking as the gap closed when it is defined (same days), and defined when it is not
        if self.best is None or row["cost_per_day"] < self.best["cost_per_day"]:
            self.best = row
            normalizer = self.model.get_vec_normalize_env()
            statistics = None if normalizer is None else (normalizer.obs_rms, normalizer.ret_rms)
            self._best_state = (copy.deepcopy(self.model.get_parameters()), copy.deepcopy(statistics))
            self._save_best()
        self._write()
        for key in ("gap_closed", "cost_per_day", "unmet_ev_kwh_per_day"):
            self.logger.record(f"validation/{key}", row[key])
        self.logger.record("validation/best_gap_closed", self.best["gap_closed"])
        self.logger.record("validation/best_cost_per_day", self.best["cost_per_day"])
        if self.verbose:
            print(f"validation: {row}")
        self._scoring += time.perf_counter() - began

    # ---- files ----------------------------------------------------------------------------------
    def _write(self) -> None:
        """``validation.json``, strict JSON (an undefined gap closed is ``null``), written atomically."""
        if self._folder is None:
            return
        self._folder.mkdir(parents=True, exist_ok=True)
        record = {"days": self.days, "seed": self.seed, "best": self.best, "best_file": self._best_file, "history": self.history}
        write_atomically(self._folder / VALIDATION_JSON, json.dumps(plain(record), indent=2, allow_nan=False).encode())

    def _save_best(self) -> None:
        """The best's weights (and statistics) beside validation.json, each file atomically, before the json names them."""
        if self._folder is None:
            return
        self._folder.mkdir(parents=True, exist_ok=True)
        stem = f"{BEST_PREFIX}{self.num_timesteps}"
        tmp = self._folder / f"{stem}.tmp.zip"
        self.model.save(tmp)
        os.replace(tmp, self._folder / f"{stem}.zip")
        statistics = self._best_state[1] if self._best_state is not None else None
        if statistics is not None:
            arrays = {f"{which}/{key}": value for which, rms in zip(("obs", "ret"), statistics) for key, value in _rms_arrays(rms).items()}
            tmp = self._folder / f"{stem}.tmp.npz"
            np.savez(tmp, **arrays)
            os.replace(tmp, self._folder / f"{stem}.npz")
        previous, self._best_file = self._best_file, f"{stem}.zip"
        if previous is not None and previous != self._best_file:
            self._write()  # name the new file before the old one goes
            (self._folder / previous).unlink(missing_ok=True)
            (self._folder / previous).with_suffix(".npz").unlink(missing_ok=True)

    def _take_up(self, path: Path) -> float:
        """Read back a resumed run's scores and best (:func:`read_validation`); the minutes it trained."""
        record = read_validation(path)
        if (record["days"], record["seed"]) != (self.days, self.seed):
            raise ValidationFileError(f"{path} scores days={record['days']}, seed={record['seed']}; this run days={self.days}, seed={self.seed}: not comparable (another log_path, or the run's settings)")
        if self.restore_best and record["best"] is not None:
            if record["best_file"] is None or not (path.parent / record["best_file"]).is_file():
                raise ValidationFileError(f"{path}: the best weights {record['best_file']!r} are not in {path.parent}")
        # Scores after the checkpoint resumed from belong to a continuation that no longer exists; its best, whose
        # weights are saved, stays a candidate.
        best = record["best"]
        self.history = [row for row in record["history"] if row["steps"] <= self.num_timesteps or row is best]
        self.best, self._best_file, self._best_state = best, record["best_file"], None
        return max((row["minutes"] for row in self.history if row["steps"] <= self.num_timesteps), default=0.0)

    def _load_best(self, path: Path) -> tuple[Any, Any]:
        """The parameters and statistics saved in ``path`` (and its ``.npz``)."""
        normalizer = self.model.get_vec_normalize_env()
        current = self.model.get_parameters()
        self.model.set_parameters(str(path), exact_match=True, device=self.model.device)
        parameters = copy.deepcopy(self.model.get_parameters())
        self.model.set_parameters(current, exact_match=True, device=self.model.device)
        statistics = None
        if normalizer is not None:
            stats = path.with_suffix(".npz")
            if not stats.is_file():
                raise ValidationFileError(f"{stats} is missing: the best weights' normalisation statistics")
            with np.load(stats, allow_pickle=False) as arrays:
                statistics = tuple(_rms_from(normalizer_rms, {k.split("/", 1)[1]: arrays[k] for k in arrays.files if k.startswith(which + "/")})
                                   for which, normalizer_rms in (("obs", normalizer.obs_rms), ("ret", normalizer.ret_rms)))
        return parameters, statistics


def _remote_has(venv: VecEnv, name: str) -> bool:
    """Whether env 0 of a VecEnv (in any process) has a wrapper attribute ``name``; ``False`` for VecEnvs of no
    gymnasium envs (``MicrogridVecEnv``), whose ``env_method`` refuses other methods."""
    try:
        return bool(venv.env_method("has_wrapper_attr", name, indices=[0])[0])
    except AttributeError:
        return False


def _rms_arrays(rms: Any) -> dict[str, np.ndarray]:
    if isinstance(rms, dict):
        return {f"{key}/{name}": value for key, sub in rms.items() for name, value in _rms_arrays(sub).items()}
    return {"mean": np.asarray(rms.mean), "var": np.asarray(rms.var), "count": np.asarray(rms.count)}


def _rms_from(like: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(like, dict):
        return {key: _rms_from(sub, {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{key}/")}) for key, sub in like.items()}
    rms = RunningMeanStd(shape=np.shape(like.mean))
    rms.mean, rms.var, rms.count = arrays["mean"].copy(), arrays["var"].copy(), float(arrays["count"])
    return rms


def read_validation(path: Path) -> dict[str, Any]:
    """A ``validation.json``, checked: strict JSON, an object with integer ``days`` and ``seed``, ``history`` a list
    of score rows (numbers; ``gap_closed`` a number or ``null``, read as NaN), ``best`` one of them or ``null`` and
    ``best_file`` a file name or ``null``.

    :raises ValidationFileError: naming the file and what is wrong
    """
    try:
        record = json.loads(path.read_text(), parse_constant=refuse_constant)
    except (OSError, ValueError) as err:
        raise ValidationFileError(f"{path} is not readable strict JSON: {err}") from None

    def row_of(value: Any, where: str) -> dict[str, float]:
        if not isinstance(value, dict) or set(value) != set(_ROW_KEYS):
            raise ValidationFileError(f"{path}: {where} must be an object with keys {list(_ROW_KEYS)}, got {value!r}")
        row = {}
        for key in _ROW_KEYS:
            number = value[key]
            if number is None and key == "gap_closed":
                number = math.nan
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise ValidationFileError(f"{path}: {where}.{key} must be a number, got {number!r}")
            row[key] = float(number)
        return row

    if not isinstance(record, dict) or not {"days", "seed", "best", "best_file", "history"} <= set(record):
        raise ValidationFileError(f"{path}: expected an object with days, seed, best, best_file and history (written by an older version?)")
    for key in ("days", "seed"):
        if isinstance(record[key], bool) or not isinstance(record[key], int):
            raise ValidationFileError(f"{path}: {key} must be an integer, got {record[key]!r}")
    if not isinstance(record["history"], list):
        raise ValidationFileError(f"{path}: history must be a list, got {record['history']!r}")
    history = [row_of(value, f"history[{i}]") for i, value in enumerate(record["history"])]
    best = None if record["best"] is None else row_of(record["best"], "best")
    if best is not None and not any(row["steps"] == best["steps"] and row["cost_per_day"] == best["cost_per_day"] for row in history):
        raise ValidationFileError(f"{path}: best is not a row of history")
    best_file = record["best_file"]
    if best_file is not None and (not isinstance(best_file, str) or Path(best_file).name != best_file or not best_file.startswith(BEST_PREFIX)):
        raise ValidationFileError(f"{path}: best_file must be a {BEST_PREFIX}*.zip name in the same folder, got {best_file!r}")
    if best is not None:  # the history row itself: one object for best and its row, as in a run
        best = next(row for row in history if row["steps"] == best["steps"] and row["cost_per_day"] == best["cost_per_day"])
    return {"days": record["days"], "seed": record["seed"], "best": best, "best_file": best_file, "history": history}
