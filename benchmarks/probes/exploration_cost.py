"""Probe: what exploration costs here. A base controller (rule or MPC) with its battery entry perturbed, every step,
by independent Gaussian noise of a given standard deviation (action units), or offset by a constant, on the first
validation days; Rs per day by cost component against the base on the same days and forecast noise.

A policy-gradient learner explores this way (PPO's Gaussian policy; ``ppo.yml``'s ``log_std_init`` -1.5 is a standard
deviation of 0.22), so its training returns are those of its mean action plus this noise.

python benchmarks/probes/exploration_cost.py --base rule --out benchmarks/probes/results/exploration_cost_rule_campus.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from sb3_microgrid.baselines import Controller, make_controller
from sb3_microgrid.envs import COST_COMPONENTS, MicrogridEnv
from sb3_microgrid.evaluation import day_seed, evaluate, gap_closed, run_day


class PerturbedBattery:
    """``base`` with ``offset`` plus Gaussian noise of standard deviation ``std`` added to its battery entry."""

    def __init__(self, base: Controller, std: float, offset: float, seed: int) -> None:
        self.base, self.std, self.offset, self.seed = base, std, offset, seed
        self.ev_dispatch = getattr(base, "ev_dispatch", None)
        self.name = f"{base.name} {offset:+g} ~ N(0, {std:g})"
        self._episodes = 0

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        self.base.reset(env, obs)
        self._rng = np.random.default_rng([self.seed, self._episodes])
        self._episodes += 1

    def act(self, obs: np.ndarray) -> np.ndarray:
        action = np.array(self.base.act(obs), dtype=np.float64)
        action[0] = np.clip(action[0] + self.offset + self.std * self._rng.standard_normal(), -1.0, 1.0)
        return action


def components_per_day(controller: Controller, scenario: str, days: list[str]) -> dict[str, float]:
    """Mean Rs per day of each cost component and in all, over ``days`` (day ``i`` reset as evaluate resets it)."""
    env = MicrogridEnv(scenario=scenario, split="validation")
    sums = dict.fromkeys((*COST_COMPONENTS, "total"), 0.0)
    for i, day in enumerate(days):
        trace = run_day(controller, env, day, day_seed(0, i))[1]
        for c in COST_COMPONENTS:
            sums[c] += float(trace[f"cost_{c}"].sum())
        sums["total"] += float(trace[[f"cost_{c}" for c in COST_COMPONENTS]].to_numpy().sum())
    return {k: v / len(days) for k, v in sums.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="rule", help="rule or mpc")
    ap.add_argument("--scenario", default="campus")
    ap.add_argument("--days", type=int, default=30, help="first N validation days")
    ap.add_argument("--stds", default="0.005,0.01,0.02,0.05,0.1,0.22", help="noise standard deviations (action units)")
    ap.add_argument("--offsets", default="-0.02,-0.005,0.005,0.02", help="constant offsets (action units)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    reference = evaluate(args.base, scenario=args.scenario, split="validation", days=args.days, seed=0)
    days = [str(day) for day in reference.days.index]
    naive, optimal = reference.summary["cost_naive_per_day"], reference.summary["cost_optimal_per_day"]
    base = components_per_day(make_controller(args.base), args.scenario, days)
    assert abs(base["total"] - reference.summary["cost_per_day"]) < 1e-6 * naive, "the components must add up to evaluate's cost"
    rows = [{"std": 0.0, "offset": 0.0, "gap_closed": float(gap_closed(base["total"], naive, optimal)), **base}]
    settings = [(float(s), 0.0) for s in args.stds.split(",")] + [(0.0, float(o)) for o in args.offsets.split(",")]
    for std, offset in settings:
        costs = components_per_day(PerturbedBattery(make_controller(args.base), std, offset, seed=0), args.scenario, days)
        rows.append({"std": std, "offset": offset, "gap_closed": float(gap_closed(costs["total"], naive, optimal)), **costs})
        print(rows[-1], flush=True)

    lines = [
        f"`{' '.join(['python benchmarks/probes/exploration_cost.py', *sys.argv[1:]])}`",
        "",
        f"{args.base} on the first {len(days)} validation days ({args.scenario}), its battery entry perturbed; Rs/day against "
        f"the unperturbed {args.base} (naive {naive:,.0f}, optimum {optimal:,.0f}).",
        "",
        "| noise std | offset | gap closed | total | " + " | ".join(COST_COMPONENTS) + " |",
        "|---:|---:|---:|---:|" + "---:|" * len(COST_COMPONENTS),
    ]
    for row in rows:
        delta = [row[c] - base[c] for c in ("total", *COST_COMPONENTS)]
        lines.append(f"| {row['std']:g} | {row['offset']:+g} | {row['gap_closed']:.3f} | " + " | ".join(f"{d:+,.0f}" for d in delta) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "naive": naive, "optimal": optimal, "rows": rows}, indent=2))
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
