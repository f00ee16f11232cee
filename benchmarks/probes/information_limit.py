"""Probe: where the gap that MPC leaves goes, cost component by cost component.

MPC is scored on the same validation days and forecast noise draws four ways: on the observation's forecasts, on
them corrected by the least-squares forecast corrector (error feedback), and with perfect forecasts (the scenario's
forecast noise set to 0; EV arrivals still to come stay unknown), beside naive and the perfect-foresight optimum.
The differences split the gap into what forecast noise costs, what the correction recovers of it, and what the
unknown arrivals and the receding horizon cost. Per cost component (the env's ``info``), so it also says which
term the noise hits.

python benchmarks/probes/information_limit.py --scenario campus --days 60 --out benchmarks/probes/results/information_limit_campus.json
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from probe_output import write_probe

from sb3_microgrid import MicrogridEnv
from sb3_microgrid.baselines import make_controller
from sb3_microgrid.envs import COST_COMPONENTS
from sb3_microgrid.evaluation import run_day, split_dates
from sb3_microgrid.forecasting import CorrectedForecastController, fit_corrector
from sb3_microgrid.scenario import load_scenario


def perfect_forecasts(name: str) -> dict:
    """The scenario ``name`` with every forecast exact (its truth, noise draws and tariff unchanged)."""
    return {"base": name, "forecast": {"load_noise": 0.0, "price_noise": 0.0, "emission_noise": 0.0}, "difficulty": {"renewable_noise": 0.0}}


def day_costs(controller, scenario, dates: list[str], seed: int) -> dict[str, float]:
    """Mean per-day cost and its components over ``dates`` (day ``i`` reset with ``seed + i``: as ``evaluate`` for seed 0, the only seed this probe ran with)."""
    env = MicrogridEnv(scenario=load_scenario(scenario), split="validation")
    steps = pd.concat([run_day(controller, env, day, seed + i)[1] for i, day in enumerate(dates)])
    row = {"cost": steps["cost"].sum() / len(dates)}
    row.update({c: steps[f"cost_{c}"].sum() / len(dates) for c in COST_COMPONENTS})
    row["unmet_ev_kwh"] = steps["unmet_ev_kwh"].sum() / len(dates)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="campus")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    dates = split_dates(load_scenario(args.scenario), "validation", args.days)
    corrector = fit_corrector(args.scenario, days=4096, seed=0)
    runs = {
        "naive": (make_controller("naive"), args.scenario),
        "MPC, observation": (make_controller("mpc"), args.scenario),
        "MPC, corrected forecasts": (CorrectedForecastController("mpc", corrector), args.scenario),
        "MPC, perfect forecasts": (make_controller("mpc"), perfect_forecasts(args.scenario)),
        "optimal": (make_controller("optimal"), args.scenario),
    }
    start = time.time()
    rows = {name: day_costs(ctrl, sc, dates, args.seed) for name, (ctrl, sc) in runs.items()}
    naive, best = rows["naive"]["cost"], rows["optimal"]["cost"]
    for row in rows.values():
        row["gap_closed"] = (naive - row["cost"]) / (naive - best)
    columns = ["gap_closed", "cost", *COST_COMPONENTS, "unmet_ev_kwh"]
    lines = [
        f"Command: `python benchmarks/probes/information_limit.py --scenario {args.scenario} --days {args.days} --out {args.out}` "
        f"(first {args.days} validation days, {time.time() - start:.0f} s). Rs per day.",
        "",
        "| controller | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    lines += [f"| {name} | " + " | ".join(f"{row[c]:,.3f}" if c == "gap_closed" else f"{row[c]:,.1f}" if c == "unmet_ev_kwh" else f"{row[c]:,.0f}" for c in columns) + " |" for name, row in rows.items()]
    print("\n".join(lines))
    write_probe(args.out, lines[0], {"rows": rows}, lines)


if __name__ == "__main__":
    main()
