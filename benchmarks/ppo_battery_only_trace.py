"""Trace of the battery-only PPO: training-episode cost (stochastic policy, VecMonitor) every 30k
steps beside naive's on the training days, then the deterministic policy on 14 test days and the battery
action's mean and std at 16 test start states. One seed; a diagnostic, not a benchmark.

Usage: python benchmarks/ppo_battery_only_trace.py  (run from the benchmarks folder or with it on sys.path)
"""

import numpy as np
import torch
torch.set_num_threads(1)
from ppo_battery_only_probe import BatteryOnly, Controller
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize
from sb3_microgrid import MicrogridVecEnv
from sb3_microgrid.evaluation import evaluate
env = VecNormalize(VecMonitor(BatteryOnly(MicrogridVecEnv(8, split="train", seed=0))), clip_obs=10.0, clip_reward=10.0)
model = PPO("MlpPolicy", env, seed=0, device="cpu", learning_rate=3e-4, n_steps=512, batch_size=1024, gae_lambda=0.97, ent_coef=0.02)
for k in range(3):
    model.learn(30_000, reset_num_timesteps=False)
    print("train ep cost (Rs)", -1000 * np.mean([e["r"] for e in model.ep_info_buffer]))
# naive on train split with same wrapper: battery 0
v = VecMonitor(BatteryOnly(MicrogridVecEnv(8, split="train", seed=1)))
v.reset(); costs=[]
for _ in range(24*20):
    _, r, d, infos = v.step(np.zeros((8, 1)))
    costs += [i["episode"]["r"] for i in infos if "episode" in i]
print("naive train ep cost", -1000*np.mean(costs))
# deterministic vs stochastic on test
c = Controller(model, env)
print("eval det", evaluate(c, split="test", days=14, reference=False).summary["cost_per_day"])
with torch.no_grad():
    obs = env.normalize_obs(MicrogridVecEnv(16, split="test", seed=2).reset())
    d = model.policy.get_distribution(torch.as_tensor(obs)).distribution
    print("battery mean", d.mean[:, 0].numpy().round(2), "std", d.stddev[0, 0].item())
