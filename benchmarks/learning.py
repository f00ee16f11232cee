"""Shared parts of the learning benchmarks: test-day scoring during training, 95 % intervals, and the
per-configuration summary (final cost, gap closed, steps to a target gap, throughput)."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
from scipy import stats
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecNormalize


def ci95(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the t-based 95 % confidence interval."""
    arr = np.asarray(values, dtype=float)
    if arr.size < 2:
        return float(arr.mean()), float("nan")
    return float(arr.mean()), float(stats.t.ppf(0.975, arr.size - 1) * arr.std(ddof=1) / np.sqrt(arr.size))


def reference_costs(days: int, split: str = "validation") -> dict[str, list[float]]:
    """Naive's and the optimum's cost on each of the first ``days`` days of ``split``."""
    from sb3_microgrid.evaluation import evaluate

    return {ref: evaluate(ref, split=split, days=days, reference=False).days["cost"].tolist() for ref in ("naive", "optimal")}


class DayScoreCallback(BaseCallback):
    """Every ``eval_every`` steps, the current policy (deterministic) on the first ``days`` days of ``split``,
    the same days and forecast noise for every run; ``curve`` holds ``(steps, Rs/day, gap closed)``. Scores
    that choose settings belong on validation days (the default); the test year is for final figures.

    :param eval_every: environment steps between scores
    :param days: number of days
    :param references: :func:`reference_costs` of the same days
    :param name: controller name in the evaluation
    :param split: the days' split
    """

    def __init__(self, eval_every: int, days: int, references: dict[str, list[float]], name: str = "agent", split: str = "validation") -> None:
        super().__init__()
        self.eval_every, self.days, self.references, self.name, self.split = eval_every, days, references, name, split
        self.next_eval = eval_every
        self.curve: list[tuple[int, float, float]] = []
        self.eval_seconds = 0.0

    def score(self, model: BaseAlgorithm, env: VecEnv) -> tuple[int, float, float]:
        from sb3_microgrid.baselines.sb3_model import SB3Controller
        from sb3_microgrid.evaluation import evaluate, gap_closed

        start = time.perf_counter()
        normalizer = env if isinstance(env, VecNormalize) else None
        controller = SB3Controller.from_model(model, normalizer, name=self.name)
        cost = float(evaluate(controller, split=self.split, days=self.days, reference=False).days["cost"].mean())
        gap = float(gap_closed(cost, np.mean(self.references["naive"]), np.mean(self.references["optimal"])))
        self.eval_seconds += time.perf_counter() - start
        return model.num_timesteps, cost, gap

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            self.curve.append(self.score(self.model, self.model.get_env()))
            self.next_eval += self.eval_every
        return True


def train_and_score(model: BaseAlgorithm, steps: int, scorer: DayScoreCallback, callbacks: list[BaseCallback], **record: Any) -> dict[str, Any]:
    """``model.learn(steps)`` with ``callbacks`` and ``scorer``; the run's record: its curve, final
    cost and gap, and training steps/s (scoring time excluded)."""
    start = time.perf_counter()
    model.learn(steps, callback=[*callbacks, scorer])
    train_seconds = time.perf_counter() - start - scorer.eval_seconds
    final = scorer.score(model, model.get_env())
    # a periodic score at the last step came before the gradient steps after it (off-policy): the final one replaces it
    curve = [point for point in scorer.curve if point[0] != final[0]] + [final]
    return {**record, "curve": curve, "final_cost": final[1], "final_gap": final[2], "steps_per_s": steps / max(train_seconds, 1e-9)}


def summarize(runs: list[dict[str, Any]], names: list[str], target_gap: float, extra: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per configuration: mean and 95 % CI of the final cost and gap, the median steps to first
    reach ``target_gap`` over the seeds that reached it, and the median steps/s."""
    rows = []
    for name in names:
        mine = [r for r in runs if r["config"] == name]
        cost, cost_ci = ci95([r["final_cost"] for r in mine])
        gap, gap_ci = ci95([r["final_gap"] for r in mine])
        reached = [next((s for s, _, g in r["curve"] if g >= target_gap), None) for r in mine]
        hit = [s for s in reached if s is not None]
        rows.append(
            {
                "config": name,
                "cost_per_day": cost,
                "cost_ci95": cost_ci,
                "gap_closed": gap,
                "gap_ci95": gap_ci,
                "steps_to_target_median": float(np.median(hit)) if hit else None,
                "seeds_reaching_target": f"{len(hit)}/{len(mine)}",
                "steps_per_s_median": float(np.median([r["steps_per_s"] for r in mine])),
                **(extra(mine) if extra else {}),
            }
        )
    return rows


def table(rows: list[dict[str, Any]], target_gap: float, reference: str, extra_columns: dict[str, str] | None = None) -> list[str]:
    """Markdown rows of :func:`summarize`; throughput as a ratio to the ``reference`` configuration."""
    extra_columns = extra_columns or {}
    base = next((r["steps_per_s_median"] for r in rows if r["config"] == reference), None)
    head = f"| config | Rs/day (±95 % CI) | gap closed (±95 % CI) | steps to gap {target_gap} (median) | seeds reaching it | steps/s | vs {reference} |"
    lines = [head + "".join(f" {title} |" for title in extra_columns.values()), "|---|" + "---:|" * (6 + len(extra_columns))]
    for r in rows:
        steps = "not reached" if r["steps_to_target_median"] is None else f"{r['steps_to_target_median']:,.0f}"
        ratio = "" if not base else f"{r['steps_per_s_median'] / base:.2f}"
        cells = "".join(f" {r[key]} |" for key in extra_columns)
        lines.append(
            f"| {r['config']} | {r['cost_per_day']:,.0f} ± {r['cost_ci95']:,.0f} | {r['gap_closed']:.2f} ± {r['gap_ci95']:.2f} | {steps} | {r['seeds_reaching_target']} | {r['steps_per_s_median']:,.0f} | {ratio} |{cells}"
        )
    return lines
