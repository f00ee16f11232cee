"""Probe of the stuck PPO: where the battery action's mean sits, plain Gaussian vs squashed gSDE.

Trains the tuned PPO for 150k steps (``plain``) or the same with ``use_sde=True, squash_output=True``
(``squash``), prints the battery action's (pre-squash) mean over 64 test-day start states and the
cost on the first 14 test days. One seed: a diagnostic, not a benchmark.

Usage: python benchmarks/ppo_battery_probe.py plain|squash
"""

import sys, numpy as np, torch
torch.set_num_threads(1)
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize
from sb3_microgrid import MicrogridVecEnv
from sb3_microgrid.baselines.sb3_model import SB3Controller
from sb3_microgrid.evaluation import evaluate
variant = sys.argv[1]
env = VecNormalize(VecMonitor(MicrogridVecEnv(8, split="train", seed=0)), clip_obs=10.0, clip_reward=10.0)
kw = dict(learning_rate=3e-4, n_steps=512, batch_size=1024, gae_lambda=0.97, ent_coef=0.02)
if variant == "squash":
    kw.update(use_sde=True, policy_kwargs=dict(squash_output=True))
model = PPO("MlpPolicy", env, seed=0, device="cpu", **kw).learn(150_000)
obs = env.normalize_obs(MicrogridVecEnv(64, split="test", seed=1).reset())
with torch.no_grad():
    dist = model.policy.get_distribution(torch.as_tensor(obs))
    mean = dist.distribution.mean[:, 0].numpy() if variant != "squash" else dist.distribution.mean[:, 0].numpy()
print(variant, "battery pre-squash mean: min %.2f median %.2f max %.2f" % (mean.min(), np.median(mean), mean.max()))
c = SB3Controller.from_model(model, env, name=variant)
r = evaluate(c, split="test", days=14)
print(variant, {k: round(v, 3) if isinstance(v, float) else v for k, v in r.summary.items() if k in ("cost_per_day", "gap_closed", "cost_naive_per_day", "unmet_ev_kwh_per_day")})
