"""Probe: does hedging against the forecast error that remains after correction pay (the value of the stochastic
solution)?

MPC on the least-squares corrector's forecasts plans on one forecast: certainty-equivalent. With ``scenarios=K``
(:class:`~sb3_microgrid.forecasting.CorrectedForecastController`) it plans on ``K`` forecasts at once, one LP whose
blocks share the first step's decisions and are otherwise free, at their mean cost (sample-average approximation).
The scenarios are the corrected forecasts times ``1 +`` residual vectors of the corrector. Here the residuals come
from ``--residual-days`` other training days than the fit's (fit seed 1, out of sample; the package keeps in-sample
residuals of the fit's own days), all of them kept. Scored on the same validation days and noise for every K.

python benchmarks/probes/stochastic_mpc.py --scenario campus --days 60 --scenarios 8,16,32 --out benchmarks/probes/results/stochastic_mpc_campus.json
"""

from __future__ import annotations

import argparse
import time

from probe_output import write_probe

from sb3_microgrid.evaluation import evaluate
from sb3_microgrid.forecasting import CorrectedForecastController, episode_batches, fit_corrector
from sb3_microgrid.scenario import load_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="campus")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--scenarios", default="8,16,32", help="comma-separated numbers of scenarios")
    parser.add_argument("--residual-days", type=int, default=512)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    corrector = fit_corrector(args.scenario, days=4096, seed=0)
    corrector.fit_residuals(episode_batches(load_scenario(args.scenario), args.residual_days, seed=1), samples=10**9)
    rows = []
    for k in [0, *map(int, args.scenarios.split(","))]:
        start = time.time()
        s = evaluate(CorrectedForecastController("mpc", corrector, scenarios=k), scenario=args.scenario, split="validation", days=args.days, seed=0).summary
        rows.append({"scenarios": k, "gap_closed": s["gap_closed"], "cost_per_day": s["cost_per_day"], "seconds": time.time() - start})
        print(rows[-1], flush=True)
    command = f"python benchmarks/probes/stochastic_mpc.py --scenario {args.scenario} --days {args.days} --scenarios {args.scenarios} --out {args.out}"
    lines = [f"Command: `{command}` (first {args.days} validation days; {corrector.residuals.shape[0]:,} residual vectors of {args.residual_days} other training days)", "",
             "| scenarios | gap closed | Rs/day | seconds |", "|---:|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {r['scenarios']} | {r['gap_closed']:.3f} | {r['cost_per_day']:,.0f} | {r['seconds']:.0f} |" for r in rows]
    print("\n".join(lines))
    write_probe(args.out, command, {"rows": rows}, lines)


if __name__ == "__main__":
    main()
