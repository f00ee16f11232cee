"""Probe: PairedARS (common random numbers per antithetic pair) learning a residual on a baseline
controller, scored on validation days during training. Exploratory: not a published table.

python benchmarks/probes/paired_ars_probe.py --base planner --battery-only --minutes 15 --out benchmarks/probes/results/paired_ars.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_microgrid.baselines import SB3Controller
from sb3_microgrid.envs import MicrogridEnv
from sb3_microgrid.evaluation import evaluate
from sb3_microgrid.paired_ars import PairedARS
from sb3_microgrid.wrappers import ResidualWrapper
from sb3_microgrid.wrappers.residual import ResidualController


class ValidationScore(BaseCallback):
    def __init__(self, args: argparse.Namespace, log: list) -> None:
        super().__init__()
        self.args, self.log = args, log
        self._t0 = time.perf_counter()
        self._next = 0.0

    def _score(self) -> None:
        a = self.args
        norm = self.model.get_vec_normalize_env()
        policy = SB3Controller.from_model(self.model, norm)
        ev = evaluate(ResidualController(policy, a.base, a.scale, a.battery_only, a.features), scenario=a.scenario, split="validation", days=a.days, seed=0)
        row = {"steps": self.num_timesteps, "minutes": (time.perf_counter() - self._t0) / 60, **{k: ev.summary[k] for k in ("gap_closed", "cost_per_day", "unmet_ev_kwh_per_day", "safety_violations")}}
        self.log.append(row)
        print(row, flush=True)

    def _on_rollout_end(self) -> None:
        if (time.perf_counter() - self._t0) / 60 >= self._next:
            self._next += self.args.every_minutes
            self._score()

    def _on_step(self) -> bool:
        return (time.perf_counter() - self._t0) / 60 < self.args.minutes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="planner")
    ap.add_argument("--scenario", default="campus")
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--battery-only", action="store_true")
    ap.add_argument("--features", nargs="*", default=None, help="static features the policy sees (default: the whole observation)")
    ap.add_argument("--minutes", type=float, default=15)
    ap.add_argument("--every-minutes", type=float, default=2)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--n-envs", type=int, default=8)
    ap.add_argument("--n-delta", type=int, default=8)
    ap.add_argument("--n-top", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--delta-std", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    scenario = {"base": args.scenario, "reward": {"exogenous_baseline": True}}
    venv = make_vec_env(MicrogridEnv, n_envs=args.n_envs, seed=args.seed, env_kwargs={"scenario": scenario},
                        wrapper_class=ResidualWrapper, wrapper_kwargs={"controller": args.base, "scale": args.scale, "battery_only": args.battery_only, "features": args.features})
    venv = VecNormalize(venv, norm_obs=True, norm_reward=False, clip_obs=10.0)
    model = PairedARS("LinearPolicy", venv, n_delta=args.n_delta, n_top=args.n_top, learning_rate=args.lr, delta_std=args.delta_std,
                      n_eval_episodes=args.n_envs, seed=args.seed, device="cpu")
    log: list = []
    model.learn(10**9, callback=ValidationScore(args, log))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "curve": log}, indent=2))


if __name__ == "__main__":
    main()
