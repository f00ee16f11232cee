"""Probe: the planner's gap closed on the first test days against its grid (energy levels, import caps),
on the observation's forecasts and on the true series (future EV arrivals unknown either way), with MPC's
on the same days.

python benchmarks/probes/planner_levels.py --days 20
"""

import argparse

from sb3_microgrid.baselines import PlannerController
from sb3_microgrid.evaluation import evaluate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--scenario", default="campus")
    args = parser.parse_args()
    print("| energy levels | import caps | forecasts | gap closed | Rs/day |\n|---:|---:|---|---:|---:|")
    for levels, caps in [(21, 8), (41, 12), (81, 12), (41, 24)]:
        for perfect in (False, True):
            s = evaluate(PlannerController(levels, caps, perfect), scenario=args.scenario, split="test", days=args.days, seed=0).summary
            print(f"| {levels} | {caps} | {'true series' if perfect else 'observation'} | {s['gap_closed']:.3f} | {s['cost_per_day']:,.0f} |", flush=True)
    s = evaluate("mpc", scenario=args.scenario, split="test", days=args.days, seed=0).summary
    print(f"| MPC | | observation | {s['gap_closed']:.3f} | {s['cost_per_day']:,.0f} |")


if __name__ == "__main__":
    main()
