"""Probe: does PairedARS improve the residual on the days it trains on? Scores the policy on 64 fixed
training days (the same days and noise each time, normalisation frozen) before and after blocks of updates.

python benchmarks/probes/paired_ars_training_days.py
"""

import numpy as np
import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

from sb3_microgrid.envs import MicrogridEnv
from sb3_microgrid.paired_ars import PairedARS
from sb3_microgrid.wrappers import ResidualWrapper

FEATURES = ["hour_sin", "hour_cos", "weekend", "time_left", "soc", "day_peak"]


def main() -> None:
    torch.set_num_threads(1)
    venv = make_vec_env(MicrogridEnv, n_envs=8, seed=0, env_kwargs={"scenario": {"base": "campus", "reward": {"exogenous_baseline": True}}},
                        wrapper_class=ResidualWrapper, wrapper_kwargs={"controller": "planner", "scale": 0.5, "battery_only": True, "features": FEATURES})
    venv = VecNormalize(venv, norm_obs=True, norm_reward=False, clip_obs=10.0)
    model = PairedARS("LinearPolicy", venv, n_delta=16, n_top=8, learning_rate=0.01, delta_std=0.02, n_eval_episodes=8, seed=0, device="cpu")

    def score() -> float:
        venv.training = False
        venv.seed(12345)
        returns, _ = evaluate_policy(model.policy, venv, n_eval_episodes=64, warn=False, return_episode_rewards=True)
        venv.training = True
        return float(np.mean(returns))

    print("updates 0: mean return", score())
    for block in range(1, 7):
        model.learn(6144 * 5, reset_num_timesteps=False)
        print(f"updates {5 * block}: mean return {score():.3f}, |w| {float(model.weights.norm()):.3f}")


if __name__ == "__main__":
    main()
