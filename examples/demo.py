"""Run the default campus scenario on test days with a random and a simple policy; print daily KPIs.

Usage: python examples/demo.py [--days N]
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import pandas as pd

import sb3_microgrid  # noqa: F401  (registers Microgrid-v0)


def charge_evs_idle_battery(obs: np.ndarray, n_actions: int) -> np.ndarray:
    """Today's operation: battery idle, every EV charged at full power from arrival."""
    return np.r_[0.0, np.ones(n_actions - 1)]


def run(policy_name: str, days: int) -> pd.DataFrame:
    env = gym.make("Microgrid-v0", scenario="campus", split="test")
    n_actions = env.action_space.shape[0]
    env.action_space.seed(0)
    rows = []
    for day in range(days):
        obs, info = env.reset(seed=day)
        done = False
        while not done:
            action = env.action_space.sample() if policy_name == "random" else charge_evs_idle_battery(obs, n_actions)
            obs, _, terminated, truncated, step_info = env.step(action)
            done = terminated or truncated
        rows.append({"date": info["date"], **step_info["episode_metrics"]})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=14)
    args = parser.parse_args()
    summary = {}
    for name in ("random", "naive"):
        frame = run(name, args.days)
        summary[name] = frame.drop(columns="date").mean()
    table = pd.DataFrame(summary).T[["total_cost", "emissions_kg", "safety_violations", "safety_interventions", "unmet_ev_kwh", "curtailed_kwh"]]
    table.columns = ["Rs/day", "kg CO2/day", "violations/day", "interventions/day", "unmet EV kWh/day", "curtailed kWh/day"]
    print(f"Campus scenario, {args.days} test days (2024), mean per day:")
    print(table.round(1).to_string())


if __name__ == "__main__":
    main()
