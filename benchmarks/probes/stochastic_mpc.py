"""Probe: does hedging against the forecast error that remains after correction pay (the value of the stochastic
solution)?

MPC on the least-squares corrector's forecasts plans on one forecast: certainty-equivalent. Here it plans on ``K``
scenarios instead, one LP whose blocks share the first step's decisions (battery, EV ports) and are otherwise
free (recourse), at the mean cost over the scenarios: sample-average approximation. A scenario is the corrected
forecast divided by ``1 +`` a relative error vector (all leads and series together) drawn from the corrector's
own residuals on training days, so nothing about the env's noise model is assumed. If the scenarios' plan is not
clearly better than the point forecast's on the same validation days and noise, the corrector plus MPC is at what
the observation allows, hedging included, and a learned controller has nothing left above it but the small
knobs measured in docs/results.md.

python benchmarks/probes/stochastic_mpc.py --scenario campus --days 60 --scenarios 1,8 --out benchmarks/probes/results/stochastic_mpc_campus.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from sb3_microgrid.baselines import MPCController
from sb3_microgrid.baselines.base import PORTS
from sb3_microgrid.baselines.lp import DispatchProblem, DispatchSchedule, dispatch_program, solve_dispatch
from sb3_microgrid.evaluation import evaluate
from sb3_microgrid.forecasting import ForecastCorrector, fit_corrector
from sb3_microgrid.forecasting.correction import _relative, collect_windows


def solve_scenarios(problems: list[DispatchProblem]) -> DispatchSchedule:
    """One LP over the scenarios, their first-step decisions shared, at their mean cost; the first scenario's plan."""
    programs = [dispatch_program(p) for p in problems]
    k = len(programs)
    sizes = np.array([p.cost.size for p in programs])
    start = np.r_[0, np.cumsum(sizes)[:-1]]
    shared = programs[0].first_step
    rows = np.repeat(np.arange((k - 1) * shared.size), 2)
    cols = np.concatenate([np.c_[start[i] + shared, shared].ravel() for i in range(1, k)] or [np.zeros(0, dtype=int)])
    vals = np.tile([1.0, -1.0], (k - 1) * shared.size)
    link = sp.csr_array((vals, (rows, cols)), shape=((k - 1) * shared.size, sizes.sum()))
    res = linprog(
        np.concatenate([p.cost for p in programs]) / k,
        A_ub=sp.block_diag([p.a_ub for p in programs], format="csr"),
        b_ub=np.concatenate([p.b_ub for p in programs]),
        A_eq=sp.vstack([sp.block_diag([p.a_eq for p in programs], format="csr"), link], format="csr"),
        b_eq=np.concatenate([*(p.b_eq for p in programs), np.zeros(link.shape[0])]),
        bounds=np.concatenate([p.bounds for p in programs]),
        method="highs",
    )
    if res.status != 0:
        raise RuntimeError(f"scenario LP not solved: {res.message}")
    return programs[0].schedule(res.x[: sizes[0]], float(res.fun))


class ScenarioMPC:
    """MPC on the corrected forecasts, planning on ``n_scenarios`` draws of the corrector's residuals (none: the
    corrected forecast alone, i.e. ``CorrectedForecastController("mpc", corrector)``)."""

    ev_dispatch = PORTS

    def __init__(self, corrector: ForecastCorrector, residuals: np.ndarray | None, n_scenarios: int, seed: int = 0) -> None:
        self.corrector, self.residuals, self.n_scenarios, self.seed = corrector, residuals, n_scenarios, seed
        self.name = f"mpc+corrected, {n_scenarios} scenarios" if residuals is not None else "mpc+corrected"

    def reset(self, env, obs: np.ndarray) -> None:
        self.corrector.check(env.scenario, env.obs_layout)
        self.mpc = MPCController()
        self.mpc.reset(env, obs)
        self._episodes = getattr(self, "_episodes", -1) + 1
        self.rng = np.random.default_rng([self.seed, self._episodes])
        self._previous = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        lay = self.corrector.layout
        window = lay.windows(obs)
        corrected = window if self._previous is None else self.corrector.correct(self._previous[None], window[None])[0]
        self._previous = window.copy()
        planned = obs.copy()
        planned[lay.window] = corrected.ravel()
        base = self.mpc.problem(planned)
        if self.residuals is None:
            return self.mpc.action(solve_dispatch(base))
        problems = []
        for r in self.residuals[self.rng.integers(len(self.residuals), size=self.n_scenarios)]:
            drawn_window = corrected.copy()
            drawn_window[lay.history_steps :] *= 1.0 + r
            drawn = obs.copy()
            drawn[lay.window] = drawn_window.ravel()
            w = self.mpc.window(drawn)
            h, n = lay.history_steps, base.load_kw.size
            problems.append(dataclasses.replace(
                base, load_kw=w["load"][h : h + n], renewable_kw=w["pv"][h : h + n] + w["wind"][h : h + n],
                import_price=w["price"][h : h + n], emission=w["emission"][h : h + n],
            ))  # fmt: skip
        return self.mpc.action(solve_scenarios(problems))


def corrector_residuals(scenario: str, corrector: ForecastCorrector, days: int, seed: int) -> np.ndarray:
    """(N, F, S) relative errors ``truth / corrected - 1`` of the corrected forecasts on ``days`` training days."""
    windows, previous, truth, lay = collect_windows(scenario, days, seed)
    corrected = corrector.correct(previous, windows)[:, lay.history_steps :]
    return _relative(truth, corrected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="campus")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--scenarios", default="1,8", help="comma-separated numbers of scenarios (1: one residual draw)")
    parser.add_argument("--residual-days", type=int, default=512)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    corrector = fit_corrector(args.scenario, days=4096, seed=0)
    residuals = corrector_residuals(args.scenario, corrector, args.residual_days, seed=1)
    controllers = [ScenarioMPC(corrector, None, 1)] + [ScenarioMPC(corrector, residuals, int(k)) for k in args.scenarios.split(",")]
    rows = []
    for controller in controllers:
        start = time.time()
        s = evaluate(controller, scenario=args.scenario, split="validation", days=args.days, seed=0).summary
        rows.append({"controller": controller.name, "gap_closed": s["gap_closed"], "cost_per_day": s["cost_per_day"], "seconds": time.time() - start})
        print(rows[-1], flush=True)
    command = f"python benchmarks/probes/stochastic_mpc.py --scenario {args.scenario} --days {args.days} --scenarios {args.scenarios} --out {args.out}"
    lines = [f"Command: `{command}` (first {args.days} validation days; residuals from {args.residual_days} training days)", "",
             "| controller | gap closed | Rs/day | seconds |", "|---|---:|---:|---:|"]
    lines += [f"| {r['controller']} | {r['gap_closed']:.3f} | {r['cost_per_day']:,.0f} | {r['seconds']:.0f} |" for r in rows]
    print("\n".join(lines))
    with open(args.out, "w") as f:
        json.dump({"command": command, "rows": rows}, f, indent=2)
    with open(args.out.replace(".json", ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
