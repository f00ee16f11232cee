"""Probe: can a fixed first-order hedge on MPC's inputs do what planning on scenarios does?

MPC on the least-squares corrector's forecasts, with one of two knobs a learned policy could set: the demand rate
MPC plans with, times ``k`` (a dearer peak: plan a lower one), or an energy reserve ``R`` kWh above the battery's
floor for every planned step after the current one (energy kept for a load that comes in higher). Scored on the
first ``--days`` validation days, then the settings named in ``--confirm`` on the next ``--confirm-days`` days, the
same days and noise for every setting.

python benchmarks/probes/hedge_knobs.py --scenario campus --out benchmarks/probes/results/hedge_knobs_campus.json
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from probe_output import write_probe

from sb3_microgrid.baselines import MPCController
from sb3_microgrid.baselines.lp import DispatchProblem
from sb3_microgrid.evaluation import evaluate, split_dates
from sb3_microgrid.forecasting import CorrectedForecastController, fit_corrector
from sb3_microgrid.scenario import load_scenario


class HedgedMPC(MPCController):
    """MPC planning with the demand rate times ``k`` and ``reserve`` kWh kept above the floor after the current step."""

    def __init__(self, k: float, reserve: float) -> None:
        self.k, self.reserve = k, reserve

    def problem(self, obs: np.ndarray) -> DispatchProblem:
        base = super().problem(obs)
        floor = np.full(base.load_kw.size, base.e_min)
        floor[1:-1] = min(base.e_min + self.reserve, base.e_max)  # the last step keeps the end-of-day rule's room
        return dataclasses.replace(base, demand_rate=base.demand_rate * self.k, e_min=floor)


SETTINGS = [(1.0, 0.0), (0.8, 0.0), (1.25, 0.0), (1.5, 0.0), (2.0, 0.0), (1.0, 100.0), (1.0, 250.0), (1.0, 500.0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="campus")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--confirm-days", type=int, default=90)
    parser.add_argument("--confirm", default="1.0:0,1.25:0,1.5:0", help="k:reserve settings scored again on the next days")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    corrector = fit_corrector(args.scenario, days=4096, seed=0)
    dates = split_dates(load_scenario(args.scenario), "validation", args.days + args.confirm_days)

    def score(k: float, reserve: float, days: list[str], seed: int) -> float:
        controller = CorrectedForecastController(HedgedMPC(k, reserve), corrector)
        return evaluate(controller, scenario=args.scenario, split="validation", days=days, seed=seed).summary["gap_closed"]

    first = {f"{k}:{r:g}": score(k, r, dates[: args.days], 0) for k, r in SETTINGS}
    confirm = {key: score(*map(float, key.split(":")), dates[args.days :], 1000) for key in args.confirm.split(",")}
    command = f"python benchmarks/probes/hedge_knobs.py --scenario {args.scenario} --out {args.out}"
    lines = [f"Command: `{command}`", "", f"| demand-rate factor k : reserve kWh | first {args.days} validation days | next {args.confirm_days} |", "|---|---:|---:|"]
    lines += [f"| {key} | {gap:.3f} | {confirm[key]:.3f} |" if key in confirm else f"| {key} | {gap:.3f} | |" for key, gap in first.items()]
    print("\n".join(lines))
    write_probe(args.out, command, {"first": first, "confirm": confirm}, lines)


if __name__ == "__main__":
    main()
