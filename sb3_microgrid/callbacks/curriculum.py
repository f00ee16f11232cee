"""Move the microgrid's difficulty from an easy setting to the full task, by progress or by performance."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from ..common.arguments import checked_number
from ..scenario import Difficulty, Scenario
from ..schedules import finite

_FIELDS = tuple(f.name for f in dataclasses.fields(Difficulty))
_INT_FIELDS = frozenset(name for name, hint in typing.get_type_hints(Difficulty).items() if hint is int or int in typing.get_args(hint))


class CurriculumCallback(BaseCallback):
    """Set the env's :class:`~sb3_microgrid.scenario.Difficulty` along ``n_levels`` levels from
    ``start`` (level 0) to ``end`` (level ``n_levels - 1``).

    Level ``i`` interpolates each parameter linearly at ``i / (n_levels - 1)``; integer parameters
    (``ev_count``) are rounded. ``None`` in ``start`` or ``end`` means the scenario's own value (its
    ``difficulty`` section, or for ``soc_min`` / ``soc_max`` the battery's bounds; on an env of several
    sites, :class:`~sb3_microgrid.envs.MultiSiteVecEnv`, each site's own, and ``curriculum/<parameter>`` is
    logged only where the sites agree); a parameter whose own value is ``None`` too (``ev_count``: every
    session) keeps its ``start`` value until the last level. The level is applied with
    ``training_env.env_method("set_difficulty", ...)``, which reaches
    the env through ``Monitor``, ``DummyVecEnv``, ``SubprocVecEnv`` and ``VecNormalize`` and is what
    ``MicrogridVecEnv`` accepts (``set_attr`` would only set an attribute on the outermost wrapper).
    A new level takes effect at each env's next reset, i.e. from the next episode. At the start of
    a fresh ``learn()`` the env, already reset by SB3 before callbacks start, is reset once more so
    that the first episodes play level 0.

    - ``mode="progress"``: the level follows training progress, level ``i`` over the ``i``-th of
      ``n_levels`` equal shares of ``total_timesteps``, checked at each rollout start.
    - ``mode="performance"``: pass it as ``EvalCallback(..., callback_after_eval=CurriculumCallback(...))``.
      After an evaluation whose ``parent.last_mean_reward`` is at least the threshold of the current
      level, it advances one level. The evaluation env follows the level too, so the threshold is
      compared with the return at the level being trained (and ``EvalCallback``'s best model compares
      returns across levels).

    :param start: ``Difficulty`` fields of level 0, e.g. ``{"ev_count": 2, "renewable_noise": 0.0}``
    :param end: the same fields at the last level
    :param n_levels: number of levels, >= 2
    :param mode: ``"progress"`` or ``"performance"``
    :param threshold: for ``"performance"``: mean evaluation return (reward units; the env's reward is
        ``-cost / scale_inr`` per step) needed to leave a level; one number for all levels, or a list
        of ``n_levels - 1`` numbers, one per level left
    :param verbose: 1 prints each level change
    """

    def __init__(
        self,
        start: dict[str, Any],
        end: dict[str, Any],
        n_levels: int = 5,
        mode: str = "progress",
        threshold: float | list[float] | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose=verbose)
        if set(start) != set(end):
            raise ValueError(f"start and end must name the same parameters, got {sorted(start)} and {sorted(end)}")
        unknown = sorted(set(start) - set(_FIELDS))
        if unknown:
            raise ValueError(f"unknown difficulty parameter(s) {unknown}; allowed: {list(_FIELDS)}")
        for values in (start, end):
            Difficulty(**{k: v for k, v in values.items() if v is not None})  # range checks now, not mid-training
        if isinstance(n_levels, bool) or not isinstance(n_levels, int) or n_levels < 2:
            raise ValueError(f"n_levels must be an integer >= 2, got {n_levels!r}")
        if mode not in ("progress", "performance"):
            raise ValueError(f"mode must be 'progress' or 'performance', got {mode!r}")
        if mode == "performance":
            if threshold is None:
                raise ValueError("mode='performance' needs a threshold")
            values = threshold if isinstance(threshold, (list, tuple)) else [threshold] * (n_levels - 1)
            thresholds = [finite(t, "threshold") for t in values]
            if len(thresholds) != n_levels - 1:
                raise ValueError(f"threshold needs n_levels - 1 = {n_levels - 1} values, got {len(thresholds)}")
            self.thresholds = thresholds
        self.start = dict(start)
        self.end = dict(end)
        self.n_levels = n_levels
        self.mode = mode
        self.level = 0

    def _init_callback(self) -> None:
        if self.mode == "performance" and not (hasattr(self.parent, "last_mean_reward") and hasattr(self.parent, "eval_env")):
            raise ValueError("CurriculumCallback(mode='performance') must be the callback_after_eval of an EvalCallback")
        self._sites = _sites(self.training_env)
        self._eval_sites = _sites(self.parent.eval_env) if self.mode == "performance" else []

    def params(self, level: int, scenario: Scenario | None = None) -> dict[str, Any]:
        """The ``set_difficulty`` keyword arguments of a level (available once training has started).

        :param level: the level, in ``[0, n_levels - 1]``
        :param scenario: the site whose own values a ``None`` takes; default the training env's first
        """
        if not 0 <= level < self.n_levels:
            raise ValueError(f"level must be in [0, {self.n_levels - 1}], got {level}")
        scenario = self._sites[0][0] if scenario is None else scenario
        last = self.n_levels - 1
        out: dict[str, Any] = {}
        for key, value in self.start.items():
            a, b = _own(scenario, key, value), _own(scenario, key, self.end[key])
            if a is None or b is None:
                out[key] = b if level == last else a
            else:
                value = a + (b - a) * level / last
                out[key] = round(value) if key in _INT_FIELDS else float(value)
        return out

    def state_dict(self) -> dict[str, int]:
        """The level, which a resumed run in ``"performance"`` mode cannot recompute (in ``"progress"`` mode it
        follows the steps). Saved in checkpoint sets (``sb3-microgrid train``)."""
        return {"level": self.level}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Take back a :meth:`state_dict`.

        :raises ValueError: for a level outside ``[0, n_levels - 1]``
        """
        self.level = checked_number("level", state["level"], 0, self.n_levels - 1, integer=True)

    def _on_training_start(self) -> None:
        if self.mode == "progress":
            self.level = self._progress_level()
        self._apply()
        if self.num_timesteps == 0:
            # SB3 reset the env before callbacks started; without a second reset the first episodes
            # would play the scenario's difficulty instead of this level
            self.model._last_obs = self.training_env.reset()
            vec_normalize = self.model.get_vec_normalize_env()
            if vec_normalize is not None:
                self.model._last_original_obs = vec_normalize.get_original_obs()

    def _on_rollout_start(self) -> None:
        if self.mode == "progress":
            level = self._progress_level()
            if level != self.level:
                self.level = level
                self._apply()
            self._log()

    def _on_step(self) -> bool:
        if self.mode == "performance":
            if self.level < self.n_levels - 1 and self.parent.last_mean_reward >= self.thresholds[self.level]:
                self.level += 1
                self._apply()
            self._log()
        return True

    def _progress_level(self) -> int:
        elapsed = self.model.num_timesteps / self.model._total_timesteps
        return min(int(elapsed * self.n_levels), self.n_levels - 1)

    def _apply(self) -> None:
        envs = [(self.training_env, self._sites)] + ([(self.parent.eval_env, self._eval_sites)] if self.mode == "performance" else [])
        for venv, sites in envs:
            for scenario, indices in sites:
                venv.env_method("set_difficulty", indices=indices, **self.params(self.level, scenario))
        if self.verbose >= 1:
            print(f"CurriculumCallback: level {self.level}/{self.n_levels - 1} {self.params(self.level)}")

    def _log(self) -> None:
        self.logger.record("curriculum/level", self.level)
        per_site = [self.params(self.level, scenario) for scenario, _ in self._sites]
        for key, value in per_site[0].items():
            # a value that differs between sites (a site's own) has no one figure
            if value is not None and all(params[key] == value for params in per_site):
                self.logger.record(f"curriculum/{key}", value)


def _sites(venv: VecEnv) -> list[tuple[Scenario, list[int]]]:
    """Each distinct scenario of ``venv`` (several on a :class:`~sb3_microgrid.envs.MultiSiteVecEnv`) with the
    indices of its envs, in env order."""
    sites: list[tuple[Scenario, list[int]]] = []
    for i, scenario in enumerate(venv.get_attr("scenario")):
        same = next((indices for known, indices in sites if known == scenario), None)
        if same is None:
            sites.append((scenario, [i]))
        else:
            same.append(i)
    return sites


def _own(scenario: Scenario, key: str, value: Any) -> Any:
    """``value``, or where it is ``None`` the scenario's own setting of ``key``."""
    if value is not None:
        return value
    value = getattr(scenario.difficulty, key)
    if value is None and key in ("soc_min", "soc_max"):
        value = getattr(scenario.battery, key)
    return value
