"""Probe: why DynaSAC on sac_fast.yml never reaches naive. How well does its world model predict what SAC learns
from (the reward, and the next observation it bootstraps from) on fresh real transitions?

Trains the off-policy arm's ``dyna_sac`` configuration (``benchmarks/ppo_improvements.py``) for ``--steps`` steps,
then runs its policy on fresh training days and compares the model's ensemble mean with what happened: R² of the
reward, and R² of the change of each observation block (static features, window rows) over one step.

python benchmarks/probes/dyna_model_error.py --steps 100000 --out benchmarks/probes/results/dyna_model_error.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ppo_improvements import build  # noqa: E402

from sb3_microgrid.envs import observation_layout  # noqa: E402


def r2(truth: np.ndarray, pred: np.ndarray) -> float:
    """Share of the variance of ``truth`` (over rows, summed over columns) that ``pred`` explains."""
    truth, pred = truth.reshape(len(truth), -1), pred.reshape(len(pred), -1)
    return float(1.0 - ((truth - pred) ** 2).sum() / max(((truth - truth.mean(0)) ** 2).sum(), 1e-12))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--days", type=int, default=4, help="fresh days per microgrid for the comparison")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    model, _ = build("dyna_sac", 0)
    model.learn(a.steps)
    env = model.get_env()
    lay = observation_layout(env.get_attr("scenario", [0])[0])
    obs_raw, acts, rews, next_raw = [], [], [], []
    obs = env.reset()
    for _ in range(a.days * 24):
        before = env.get_original_obs().copy()
        action, _ = model.predict(obs, deterministic=False)
        obs, _, dones, _ = env.step(action)
        after = env.get_original_obs().copy()
        keep = ~dones  # an auto-reset replaces the next observation with a new day's first
        obs_raw.append(before[keep]), acts.append(action[keep]), rews.append(env.get_original_reward()[keep]), next_raw.append(after[keep])
    obs_raw, acts, rews, next_raw = (np.concatenate(x) for x in (obs_raw, acts, rews, next_raw))
    pred = model.world_model.predict(obs_raw, np.asarray(acts, dtype=np.float32)).mean.mean(axis=0)  # ensemble mean
    change, pred_change = next_raw - obs_raw, pred[:, :-1]
    blocks = {"static features": lay.static, "window (history and forecasts)": lay.window}
    result = {
        "command": "python benchmarks/probes/dyna_model_error.py " + " ".join(f"--{k} {v}" for k, v in vars(a).items()),
        "transitions": int(len(rews)),
        "reward R2": r2(rews, pred[:, -1]),
        "reward std": float(rews.std()),
        "reward RMSE": float(np.sqrt(((rews - pred[:, -1]) ** 2).mean())),
        **{f"next-obs change R2, {name}": r2(change[:, idx], pred_change[:, idx]) for name, idx in blocks.items()},
        "imagined reward mean (model) vs real": [float(pred[:, -1].mean()), float(rews.mean())],
    }
    print(json.dumps(result, indent=1))
    Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
