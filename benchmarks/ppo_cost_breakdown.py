"""Diagnostic: where does a trained PPO lose money against naive and the optimum?

Trains one configuration of ``ppo_improvements.py`` (with the same ``--override``), then runs it,
naive and the optimum on the first ``--days`` test days and sums each cost component of the env's
``info`` (energy, demand, degradation, ev, carbon, unserved, terminal) and the battery's throughput.
Not a benchmark: one seed, to find which term a learning fix must attack.

Usage: python benchmarks/ppo_cost_breakdown.py [--config ppo_tuned] [--steps 150000] [--override JSON]
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pandas as pd
from ppo_improvements import build
from reporting import run_metadata, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="ppo_tuned")
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--override", type=json.loads, default={})
    parser.add_argument("--name", default="ppo_cost_breakdown")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_microgrid import MicrogridEnv
    from sb3_microgrid.baselines import make_controller
    from sb3_microgrid.baselines.sb3_model import SB3Controller
    from sb3_microgrid.envs import COST_COMPONENTS
    from sb3_microgrid.evaluation import run_day, split_dates
    from sb3_microgrid.scenario import load_scenario

    torch.set_num_threads(1)
    model, callbacks = build(args.config, args.seed, args.override)
    model.learn(args.steps, callback=callbacks)
    env = model.get_env()

    scenario = load_scenario("campus")
    dates = split_dates(scenario, "test", args.days)
    controllers = {
        "ppo": SB3Controller.from_model(model, env if isinstance(env, VecNormalize) else None, name="ppo"),
        "naive": make_controller("naive"),
        "optimal": make_controller("optimal"),
    }
    rows = []
    for name, controller in controllers.items():
        test_env = MicrogridEnv(scenario, split="test")
        traces = [run_day(controller, test_env, day, i)[1] for i, day in enumerate(dates)]
        steps = pd.concat(traces)
        row = {"controller": name, "cost": steps["cost"].sum() / len(dates)}
        row.update({c: steps[f"cost_{c}"].sum() / len(dates) for c in COST_COMPONENTS})
        row["battery_throughput_kwh"] = steps["battery_kwh"].abs().sum() / len(dates)
        row["mean_battery_action"] = float(steps["action_battery"].mean())
        row["ev_kwh"] = steps["ev_kwh"].sum() / len(dates)
        rows.append(row)
    meta = run_metadata()
    columns = list(rows[0])
    lines = [
        "# Where PPO's cost goes (per test day)",
        "",
        f"Command: `{meta['command']}` ({meta['time']}). {args.steps:,} steps, seed {args.seed}, first {args.days} test days.",
        "",
        "| " + " | ".join(columns) + " |",
        "|---|" + "---:|" * (len(columns) - 1),
    ]
    for row in rows:
        lines.append("| " + " | ".join(row["controller"] if k == "controller" else f"{row[k]:,.2f}" for k in columns) + " |")
    write_results(args.name, meta, {"rows": rows}, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
