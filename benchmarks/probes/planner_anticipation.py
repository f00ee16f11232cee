"""Probe: does the planner gain from planning on more future load than it sees (a stand-in for EV arrivals
still to come)? ``extra_kw`` is added to the forecast load of every future step of the window (not the
current one); 0 is the planner. Scored on validation days, the way a learned parameter would be chosen.

python benchmarks/probes/planner_anticipation.py --days 30
"""

import argparse
from dataclasses import dataclass, replace

import numpy as np

from sb3_microgrid.baselines import PlannerController
from sb3_microgrid.baselines import planner as planner_module
from sb3_microgrid.evaluation import evaluate


@dataclass
class AnticipatingPlanner(PlannerController):
    extra_kw: float = 0.0

    def act(self, obs: np.ndarray) -> np.ndarray:
        original = planner_module.plan

        def plan_with_extra(inputs, scenario, n_levels, n_caps):
            load = inputs.load_kw.copy()
            load[:, 1:] += self.extra_kw
            return original(replace(inputs, load_kw=load), scenario, n_levels, n_caps)

        planner_module.plan = plan_with_extra
        try:
            return super().act(obs)
        finally:
            planner_module.plan = original


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--extra", type=float, nargs="+", default=[0, 10, 20, 40, 80])
    args = parser.parse_args()
    print("| scenario | extra kW | validation gap closed | Rs/day |\n|---|---:|---:|---:|")
    for scenario in ("campus", "campus_tod"):
        for extra in args.extra:
            s = evaluate(AnticipatingPlanner(extra_kw=extra), scenario=scenario, split="validation", days=args.days, seed=0).summary
            print(f"| {scenario} | {extra:g} | {s['gap_closed']:.3f} | {s['cost_per_day']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
