"""Probe: PPO learning a residual on top of a baseline controller (rule or planner), scored on
validation days during training. Exploratory: not a published table.

python benchmarks/probes/residual_probe.py --base planner --steps 1000000 --out benchmarks/probes/results/residual_planner.json
python benchmarks/probes/residual_probe.py --base rule --battery-only --scale 0.5 --zero-head --critic-warmup 200000 ...
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_microgrid.baselines import SB3Controller
from sb3_microgrid.envs import MicrogridEnv
from sb3_microgrid.evaluation import evaluate
from sb3_microgrid.wrappers import ResidualWrapper
from sb3_microgrid.wrappers.residual import ResidualController


class ValidationScore(BaseCallback):
    def __init__(self, every: int, days: int, base: str, scale: float, scenario: str, log: list, battery_only: bool) -> None:
        super().__init__()
        self.battery_only = battery_only
        self.every, self.days, self.base, self.scale, self.scenario, self.log = every, days, base, scale, scenario, log
        self._next = 0
        self._t0 = time.perf_counter()

    def _score(self) -> None:
        policy = SB3Controller.from_model(self.model, self.model.get_vec_normalize_env())
        ev = evaluate(ResidualController(policy, self.base, self.scale, self.battery_only), scenario=self.scenario, split="validation", days=self.days, seed=0)
        row = {"steps": self.num_timesteps, "minutes": (time.perf_counter() - self._t0) / 60, **{k: ev.summary[k] for k in ("gap_closed", "cost_per_day", "unmet_ev_kwh_per_day", "safety_violations")}}
        self.log.append(row)
        print(row, flush=True)

    def _on_training_start(self) -> None:
        self._score()
        self._next = self.every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.every
            self._score()
        return True


class CriticWarmup(BaseCallback):
    """Train only the critic for the first ``steps``: the actor (its own MLP, action head and log std) is frozen,
    so PPO's first updates fit the value of the base controller instead of moving the policy on an untrained critic."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def _actor(self) -> list[torch.nn.Parameter]:
        policy = self.model.policy
        return [*policy.mlp_extractor.policy_net.parameters(), *policy.action_net.parameters(), policy.log_std]

    def _on_training_start(self) -> None:
        for parameter in self._actor():
            parameter.requires_grad_(False)

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self.steps:
            for parameter in self._actor():
                parameter.requires_grad_(True)

    def _on_step(self) -> bool:
        return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="planner")
    ap.add_argument("--scenario", default="campus")
    ap.add_argument("--scale", type=float, default=0.3)
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--every", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--n-envs", type=int, default=16)
    ap.add_argument("--log-std", type=float, default=-2.5)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--battery-only", action="store_true")
    ap.add_argument("--zero-head", action="store_true", help="action head initialised to zero: the policy's mean starts at the base exactly")
    ap.add_argument("--critic-warmup", type=int, default=0, help="env steps during which only the critic learns")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    scenario = {"base": args.scenario, "reward": {"exogenous_baseline": True}}
    venv = make_vec_env(MicrogridEnv, n_envs=args.n_envs, seed=args.seed, env_kwargs={"scenario": scenario},
                        wrapper_class=ResidualWrapper, wrapper_kwargs={"controller": args.base, "scale": args.scale, "battery_only": args.battery_only})
    venv = VecNormalize(venv, gamma=1.0, norm_obs=True, norm_reward=True, clip_obs=10.0)
    model = PPO("MlpPolicy", venv, n_steps=256, batch_size=1024, n_epochs=10, gamma=1.0, gae_lambda=1.0, ent_coef=0.0,
                clip_range=0.1, learning_rate=args.lr, seed=args.seed, device="cpu",
                policy_kwargs={"log_std_init": args.log_std})
    if args.zero_head:
        torch.nn.init.zeros_(model.policy.action_net.weight)
        torch.nn.init.zeros_(model.policy.action_net.bias)
    log: list = []
    callbacks = [ValidationScore(args.every, args.days, args.base, args.scale, args.scenario, log, args.battery_only)]
    if args.critic_warmup:
        callbacks.append(CriticWarmup(args.critic_warmup))
    model.learn(args.steps, callback=callbacks)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "curve": log}, indent=2))


if __name__ == "__main__":
    main()
