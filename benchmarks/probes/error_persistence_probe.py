"""Probe: how much would the planner gain from what past forecasts tell about the current ones?

Forecast errors persist (each error increment is an AR(1) path over target steps, docs/environment.md), and
a controller that remembers its past observations knows every increment already revealed: those of past
targets (their forecasts against the measured values) and those a revision dropped. This probe plans on the
forecasts corrected by the conditional mean of the remaining error given those revealed increments, computed
from the episode's own error draws with the scenario's rho: an upper reference for a learned corrector with
memory, using only information a site has. Exploratory: not a published table.

python benchmarks/probes/error_persistence_probe.py --days 60
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sb3_microgrid.baselines.planner import PlannerController
from sb3_microgrid.evaluation import evaluate


class PlannerOnCorrectedForecasts(PlannerController):
    """The planner on forecasts divided by ``1 + E[relative error | revealed increments]``."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        env = self._env
        core, lay = env.core, env.obs_layout
        ep, t = core.episode, core.t
        h, f = lay.history_steps, lay.forecast_steps
        rho = env.scenario.forecast.error_autocorrelation
        truth, issued = ep.window_mean[0], ep.window_error[0]  # (H + T + F, S); (T + 1, F, S) by issue step and lead
        predicted = np.zeros((f, truth.shape[1]))
        # Every increment used at step t is a revision between the observations of t - 1 and t (or a forecast of
        # t - 1 against its measurement); the first step of an episode has no earlier observation. Increment k of
        # step t + k - 1 is its error at lead k (issued at t - 1) less its error at lead k - 1 (issued at t).
        for lead in range(f if t > 0 else 0):
            for k in range(lead + 1):
                step_truth = truth[t + h + k - 1]
                below = issued[t, k - 1] if k > 0 else 0.0
                with np.errstate(divide="ignore", invalid="ignore"):
                    inc = np.where(step_truth > 0, (issued[t - 1, k] - below) / step_truth, 0.0)
                predicted[lead] += rho ** (lead - k + 1) * inc
        obs = obs.copy()
        window = lay.windows(obs)  # a view: writing it writes obs
        window[h:] = np.maximum(window[h:] / (1.0 + predicted), 0.0)
        return super().act(obs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "error_persistence.json")
    args = ap.parse_args()
    result = {}
    for scenario in ("campus", "campus_tod"):
        for name, controller in (("mpc", "mpc"), ("planner", PlannerController()), ("planner_corrected", PlannerOnCorrectedForecasts()), ("planner_true_series", PlannerController(perfect_forecasts=True))):
            result[f"{scenario}/{name}"] = evaluate(controller, scenario=scenario, split="validation", days=args.days, seed=0).summary["gap_closed"]
            print(scenario, name, round(result[f"{scenario}/{name}"], 3), flush=True)
    args.out.write_text(json.dumps({"days": args.days, "validation_gap_closed": result}, indent=2))


if __name__ == "__main__":
    main()
