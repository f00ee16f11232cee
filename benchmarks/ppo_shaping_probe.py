"""Probe: does potential-based shaping with the value of stored energy unstick PPO?

Adds ``gamma * phi(s') - phi(s)`` to the reward with ``phi = shortfall price x stored energy / reward
scale`` and ``phi(terminal) = 0`` (so the optimum is unchanged), trains the tuned PPO for 150k steps
(one seed) and prints the cost on the first 14 test days. A diagnostic, not a benchmark.

Usage: python benchmarks/ppo_shaping_probe.py
"""
import numpy as np, torch
torch.set_num_threads(1)
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnvWrapper, VecMonitor, VecNormalize
from sb3_microgrid import MicrogridVecEnv
from sb3_microgrid.baselines.sb3_model import SB3Controller
from sb3_microgrid.evaluation import evaluate

class StoredEnergyShaping(VecEnvWrapper):
    """Potential-based shaping with phi(s) = shortfall price x stored energy (phi(terminal) = 0)."""
    def __init__(self, venv, gamma=0.99):
        super().__init__(venv); self.core = venv.core; self.gamma = gamma; self.scale = venv.scenario.reward.scale_inr
    def _phi(self):
        return self.core.episode.shortfall_price * self.core.energy / self.scale
    def reset(self):
        obs = self.venv.reset(); self.prev = self._phi(); return obs
    def step_wait(self):
        obs, rew, done, infos = self.venv.step_wait()
        if done[0]:
            shaped = rew - self.prev  # phi(terminal) = 0
            self.prev = self._phi()
        else:
            phi = self._phi(); shaped = rew + self.gamma * phi - self.prev; self.prev = phi
        return obs, shaped.astype(np.float32), done, infos

base = MicrogridVecEnv(8, split="train", seed=0)
env = VecNormalize(VecMonitor(StoredEnergyShaping(base)), clip_obs=10.0, clip_reward=10.0)
model = PPO("MlpPolicy", env, seed=0, device="cpu", learning_rate=3e-4, n_steps=512, batch_size=1024, gae_lambda=0.97, ent_coef=0.02).learn(150_000)
c = SB3Controller.from_model(model, env, name="shaped")
r = evaluate(c, split="test", days=14)
print({k: round(v, 3) if isinstance(v, float) else v for k, v in r.summary.items() if k in ("cost_per_day", "gap_closed", "cost_naive_per_day", "cost_optimal_per_day", "unmet_ev_kwh_per_day")})
