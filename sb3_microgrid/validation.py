"""Model selection on the validation year: score the policy during training, keep the best, stop on a budget.

:class:`ValidationCallback` scores the policy every ``eval_freq`` steps on the first ``days`` days of
the validation split, through :func:`~sb3_microgrid.evaluation.evaluate` and as the controller the run
will be evaluated as (a policy trained on a wrapper with ``controller_for``, such as
:class:`~sb3_microgrid.wrappers.ResidualWrapper`, is scored with its base controller). The gap closed
uses the naive and optimal costs of the same days, computed once. At the end of training it puts back the
best-scoring parameters and normalisation statistics, so the saved model is the one chosen on validation
days; the test year stays unseen. It lives above ``evaluation``: callbacks/ may not import it.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv

from .baselines import Controller, NaiveController, OptimalController, SB3Controller
from .evaluation import evaluate, gap_closed


class ValidationCallback(BaseCallback):
    """Score on validation days, keep the best parameters, stop after ``max_minutes`` of training.

    :param days: the first ``days`` days of the validation split
    :param eval_freq: env steps between scores (checked after each update)
    :param seed: day ``i`` is reset with ``seed + i``, as ``evaluate`` does
    :param max_minutes: stop training after this many minutes of training, the scoring time not counted
        (``None``: no limit)
    :param restore_best: at the end, load the best-scoring parameters and statistics into the model
    :param log_path: folder for ``validation.json`` (the scores); ``None``: the logger's folder, if any
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
        if max_minutes is not None and not (isinstance(max_minutes, (int, float)) and max_minutes > 0):
            raise ValueError(f"max_minutes must be a number > 0 or None, got {max_minutes!r}")
        self.days, self.eval_freq, self.seed, self.max_minutes = days, eval_freq, seed, max_minutes
        self.restore_best, self.log_path = restore_best, log_path
        self.history: list[dict[str, float]] = []
        self.best: dict[str, float] | None = None
        self._best_state: tuple[Any, Any] | None = None

    # ---- events ---------------------------------------------------------------------------------
    def _on_training_start(self) -> None:
        self._scenario = self.training_env.get_attr("scenario", [0])[0]
        self._naive = self._summary(NaiveController())["cost_per_day"]
        self._optimal = self._summary(OptimalController())["cost_per_day"]
        self._start, self._scoring = time.perf_counter(), 0.0
        self._last = self.num_timesteps
        self._score()

    def _on_rollout_start(self) -> None:
        # after the update of the previous rollout: the parameters scored are those that will be saved
        if self.num_timesteps - self._last >= self.eval_freq:
            self._score()

    def _on_step(self) -> bool:
        return self.max_minutes is None or self.training_minutes < self.max_minutes

    def _on_training_end(self) -> None:
        if self.history[-1]["steps"] != self.num_timesteps:
            self._score()
        if self.restore_best and self._best_state is not None:
            parameters, statistics = self._best_state
            self.model.set_parameters(parameters, exact_match=True, device=self.model.device)
            normalizer = self.model.get_vec_normalize_env()
            if normalizer is not None:
                normalizer.obs_rms, normalizer.ret_rms = copy.deepcopy(statistics)
        folder = self.log_path or (self.logger.get_dir() if self.logger is not None else None)
        if folder is not None:
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / "validation.json").write_text(json.dumps({"best": self.best, "history": self.history}, indent=2))

    # ---- scoring --------------------------------------------------------------------------------
    @property
    def training_minutes(self) -> float:
        """Minutes since training started, the scoring time not counted."""
        return (time.perf_counter() - self._start - self._scoring) / 60.0

    def controller(self) -> Controller:
        """The model as the controller it will be evaluated as (wrappers with ``controller_for``, outermost first)."""
        controller: Controller = SB3Controller.from_model(self.model, self.model.get_vec_normalize_env(), name="validation")
        venv = self.training_env.unwrapped
        env = venv.envs[0] if isinstance(venv, DummyVecEnv) else None
        while isinstance(env, gym.Wrapper):
            if hasattr(env, "controller_for"):
                controller = env.controller_for(controller)
            env = env.env
        return controller

    def _summary(self, controller: Controller) -> dict[str, Any]:
        return evaluate(controller, scenario=self._scenario, split="validation", days=self.days, seed=self.seed, reference=False).summary

    def _score(self) -> None:
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
        if self.best is None or row["gap_closed"] > self.best["gap_closed"]:
            self.best = row
            normalizer = self.model.get_vec_normalize_env()
            statistics = None if normalizer is None else (normalizer.obs_rms, normalizer.ret_rms)
            self._best_state = (copy.deepcopy(self.model.get_parameters()), copy.deepcopy(statistics))
        for key in ("gap_closed", "cost_per_day", "unmet_ev_kwh_per_day"):
            self.logger.record(f"validation/{key}", row[key])
        self.logger.record("validation/best_gap_closed", self.best["gap_closed"])
        if self.verbose:
            print(f"validation: {row}")
        self._scoring += time.perf_counter() - began
