"""Probe: PairedARS learns a state-dependent extra future load for the planner (what planner_anticipation.py
tried as one constant). The agent's action a in [-1, 1] is an extra ``a * max_kw`` kW on every future step of
the planner's forecast; the planner then acts. Zero weights are the planner. Scored on validation days.

python benchmarks/probes/planner_shift_ars.py --minutes 15 --out benchmarks/probes/results/planner_shift_ars.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from planner_anticipation import AnticipatingPlanner
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_microgrid.baselines import SB3Controller
from sb3_microgrid.envs import MicrogridEnv
from sb3_microgrid.evaluation import evaluate
from sb3_microgrid.paired_ars import PairedARS

FEATURES = ("hour_sin", "hour_cos", "weekend", "time_left", "soc", "day_peak")


class ShiftWrapper(gym.Wrapper):
    """Action: the planner's extra future load, scaled to ``max_kw``; observation: a few static features."""

    def __init__(self, env: gym.Env, max_kw: float = 40.0) -> None:
        super().__init__(env)
        self.max_kw = max_kw
        self.planner = AnticipatingPlanner()
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(len(FEATURES),), dtype=np.float32)
        lay = env.unwrapped.obs_layout
        self._index = [lay.index(name) for name in FEATURES]

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.planner.reset(self.env.unwrapped, obs)
        self._obs = obs
        return obs[self._index].astype(np.float32), info

    def step(self, action):
        self.planner.extra_kw = float(np.clip(action, -1, 1)[0]) * self.max_kw
        obs, reward, terminated, truncated, info = self.env.step(self.planner.act(self._obs))
        self._obs = obs
        return obs[self._index].astype(np.float32), reward, terminated, truncated, info


class ShiftController:
    """The trained policy as a controller: the planner with the policy's extra load."""

    name = "planner_shift"

    def __init__(self, policy: SB3Controller, max_kw: float) -> None:
        self.policy, self.max_kw, self.planner = policy, max_kw, AnticipatingPlanner()

    def reset(self, env, obs):
        self._index = [env.obs_layout.index(name) for name in FEATURES]
        self.planner.reset(env, obs)
        self.policy.reset(_View(env), obs[self._index])

    def act(self, obs):
        self.planner.extra_kw = float(np.clip(self.policy.act(obs[self._index].astype(np.float32)), -1, 1)[0]) * self.max_kw
        return self.planner.act(obs)


class _View(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(len(FEATURES),), dtype=np.float32)
        self.obs_layout = None


class Score(BaseCallback):
    def __init__(self, args, log):
        super().__init__()
        self.args, self.log, self._t0, self._next = args, log, time.perf_counter(), 0.0

    def _on_rollout_end(self) -> None:
        if (time.perf_counter() - self._t0) / 60 >= self._next:
            self._next += self.args.every_minutes
            policy = SB3Controller.from_model(self.model, self.model.get_vec_normalize_env())
            s = evaluate(ShiftController(policy, self.args.max_kw), scenario="campus", split="validation", days=self.args.days, seed=0).summary
            row = {"steps": self.num_timesteps, "minutes": (time.perf_counter() - self._t0) / 60, "gap_closed": s["gap_closed"]}
            self.log.append(row)
            print(row, flush=True)

    def _on_step(self) -> bool:
        return (time.perf_counter() - self._t0) / 60 < self.args.minutes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=15)
    ap.add_argument("--every-minutes", type=float, default=2)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--max-kw", type=float, default=40.0)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--delta-std", type=float, default=0.05)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    venv = make_vec_env(MicrogridEnv, n_envs=8, seed=0, env_kwargs={"scenario": {"base": "campus", "reward": {"exogenous_baseline": True}}},
                        wrapper_class=ShiftWrapper, wrapper_kwargs={"max_kw": args.max_kw})
    venv = VecNormalize(venv, norm_obs=True, norm_reward=False, clip_obs=10.0)
    model = PairedARS("LinearPolicy", venv, n_delta=8, n_top=8, learning_rate=args.lr, delta_std=args.delta_std, n_eval_episodes=8, seed=0, device="cpu")
    log: list = []
    model.learn(10**9, callback=Score(args, log))
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "curve": log}, indent=2))


if __name__ == "__main__":
    main()
