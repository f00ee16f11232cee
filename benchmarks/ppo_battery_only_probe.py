"""Probe: does PPO learn the battery when it controls nothing else?

The 12 EV ports are fixed at full power (naive EV charging) by a ``VecEnvWrapper`` that exposes only
the battery action; the tuned PPO trains for 150k steps (one seed) and the cost on the first 14 test
days is printed beside naive's and the optimum's. A diagnostic for the stuck 13-action PPO, not a
benchmark.

Usage: python benchmarks/ppo_battery_only_probe.py [--log-std-init X] [--ent-coef C] [--gamma G] [--gae-lambda L] [--steps N]
"""

import argparse

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnvWrapper, VecMonitor, VecNormalize

from sb3_microgrid import MicrogridVecEnv
from sb3_microgrid.evaluation import evaluate


class BatteryOnly(VecEnvWrapper):
    """Expose only the battery action; every port asks for full power."""

    def __init__(self, venv: MicrogridVecEnv) -> None:
        super().__init__(venv, action_space=spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32))
        self.ports = venv.action_space.shape[0] - 1

    def reset(self) -> np.ndarray:
        return self.venv.reset()

    def step_async(self, actions: np.ndarray) -> None:
        full = np.ones((actions.shape[0], 1 + self.ports))
        full[:, 0] = actions[:, 0]
        self.venv.step_async(full)

    def step_wait(self):
        return self.venv.step_wait()


class Controller:
    """The trained battery-only policy as an evaluation controller."""

    name = "ppo_battery_only"

    def __init__(self, model: PPO, normalizer: VecNormalize) -> None:
        self.model, self.normalizer = model, normalizer

    def reset(self, env, obs) -> None:
        self.ports = env.action_space.shape[0] - 1

    def act(self, obs: np.ndarray) -> np.ndarray:
        action, _ = self.model.predict(self.normalizer.normalize_obs(obs), deterministic=True)
        return np.r_[action, np.ones(self.ports)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-std-init", type=float, default=0.0, help="initial log std of the Gaussian policy (SB3 default 0)")
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--ent-coef", type=float, default=0.02)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--gae-lambda", type=float, default=0.97)
    args = parser.parse_args()
    torch.set_num_threads(1)
    env = VecNormalize(VecMonitor(BatteryOnly(MicrogridVecEnv(8, split="train", seed=0))), clip_obs=10.0, clip_reward=10.0)
    model = PPO("MlpPolicy", env, seed=0, device="cpu", learning_rate=3e-4, n_steps=512, batch_size=1024, gamma=args.gamma, gae_lambda=args.gae_lambda, ent_coef=args.ent_coef, policy_kwargs=dict(log_std_init=args.log_std_init))
    model.learn(args.steps)
    summary = evaluate(Controller(model, env), split="test", days=14).summary
    print({k: round(summary[k], 3) for k in ("cost_per_day", "cost_naive_per_day", "cost_optimal_per_day", "gap_closed")})


if __name__ == "__main__":
    main()
