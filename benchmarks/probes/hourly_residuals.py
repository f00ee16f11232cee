"""Probe: should MPC's forecast scenarios be drawn from residuals of the same hour?

A residual vector holds the errors left after correction at every lead of one observation; drawn at another hour,
its leads land on other hours of the day (PV's errors on night steps, where they multiply a forecast of zero).
Here the residuals of ``--residual-days`` training days the fit did not use are kept with the step they were
observed at, and MPC on ``--scenarios`` scenarios draws either from all of them (as the package does) or from those
of the current step only. Same validation days, noise and number of scenarios for both.

python benchmarks/probes/hourly_residuals.py --scenario campus --out benchmarks/probes/results/hourly_residuals_campus.json
"""

from __future__ import annotations

import argparse

import numpy as np

from probe_output import write_probe

from sb3_microgrid.evaluation import evaluate
from sb3_microgrid.forecasting import CorrectedForecastController, ForecastCorrector, episode_batches, fit_corrector
from sb3_microgrid.forecasting.correction import _relative
from sb3_microgrid.scenario import load_scenario


class HourlyScenarios(CorrectedForecastController):
    """Draws each step's scenarios from the residuals observed at the same step of the day."""

    def __init__(self, corrector: ForecastCorrector, by_step: list[np.ndarray], scenarios: int) -> None:
        super().__init__("mpc", corrector, name="mpc, scenarios of the same hour", scenarios=scenarios)
        self.by_step, self.everything = by_step, corrector.residuals

    def act(self, obs: np.ndarray) -> np.ndarray:
        self.corrector.residuals = self.by_step[self.base._env.core.t]
        try:
            return super().act(obs)
        finally:
            self.corrector.residuals = self.everything


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="campus")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--scenarios", type=int, default=32)
    parser.add_argument("--residual-days", type=int, default=512)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    corrector = fit_corrector(scenario, days=4096, seed=0)
    h, steps = corrector.layout.history_steps, scenario.episode_steps
    by_step: list[list[np.ndarray]] = [[] for _ in range(steps)]
    # episode_batches yields steps 1 .. steps - 1 of each group of days in order
    for i, (windows, previous, truth) in enumerate(episode_batches(scenario, args.residual_days, seed=1)):
        by_step[i % (steps - 1) + 1].append(_relative(truth, corrector.correct(previous, windows)[:, h:]))
    stacked = [np.concatenate(r) if r else None for r in by_step]
    stacked[0] = np.concatenate(stacked[1:])  # the first step has no revealed errors: draw from all
    corrector.set_residuals(stacked[0])
    rows = {}
    for name, controller in (("all residuals", CorrectedForecastController("mpc", corrector, scenarios=args.scenarios)),
                             ("residuals of the same step", HourlyScenarios(corrector, stacked, args.scenarios))):  # fmt: skip
        rows[name] = evaluate(controller, scenario=scenario, split="validation", days=args.days, seed=0).summary["gap_closed"]
        print(name, round(rows[name], 4), flush=True)
    command = f"python benchmarks/probes/hourly_residuals.py --scenario {args.scenario} --out {args.out}"
    lines = [f"Command: `{command}` ({args.scenarios} scenarios, first {args.days} validation days)", "", "| drawn from | gap closed |", "|---|---:|"]
    lines += [f"| {name} | {gap:.3f} |" for name, gap in rows.items()]
    write_probe(args.out, command, {"rows": rows}, lines)


if __name__ == "__main__":
    main()
