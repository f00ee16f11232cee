"""Quick check of the auxiliary prioritized value replay: PPO with and without it, value error at the end.

Each run trains PPO with the settings of ``--conf`` (default ``hyperparams/ppo.yml``: its env, VecNormalize and
algorithm keywords; ``--steps`` replaces ``n_timesteps``) for ``--seeds`` seeds, without and with
:class:`~sb3_microgrid.callbacks.AuxiliaryValueReplayCallback` (its defaults, changed by ``--aux-kwargs``). At the
end, the final (stochastic) policy plays ``--episodes`` fresh episodes per env on the training split (other seeds,
frozen normalisation statistics) and its value function is compared with the discounted Monte-Carlo returns of those
episodes, in reward units (``V`` times the training env's reward scale): RMSE, bias (mean ``V - G``) and explained
variance. Also reported: the mean cost per day of those episodes (Rs), SB3's ``train/explained_variance`` of the last
update (against GAE returns, normalised scale), the wall clock of ``learn()`` and the time spent in the callback's
auxiliary phases. Runs are sequential in one process (one torch thread).

Usage: python benchmarks/aux_value_replay_check.py [--conf hyperparams/ppo.yml] [--steps 49152] [--seeds 2] [--episodes 8]
       [--aux-kwargs '{"gradient_steps": 128}'] [--name aux_value_replay_check]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from reporting import run_metadata, write_results

CONF = Path(__file__).resolve().parents[1] / "hyperparams" / "ppo.yml"


def value_error(model: Any, hp: Any, seed: int, episodes: int) -> dict[str, float]:
    """RMSE, bias and explained variance of the model's values against Monte-Carlo returns on fresh episodes of the
    training env's configuration (``hp``), observations normalised with the model's frozen statistics."""
    import torch as th
    from stable_baselines3.common.utils import explained_variance

    from sb3_microgrid.callbacks.aux_value_replay import reward_scale
    from sb3_microgrid.callbacks.metrics import monte_carlo_returns
    from sb3_microgrid.training import make_env

    play, trained = make_env(hp, seed), model.get_vec_normalize_env()
    if trained is not None:
        play.training, play.norm_reward, play.obs_rms = False, False, copy.deepcopy(trained.obs_rms)
    obs = play.reset()
    rows, rewards, dones, costs = [], [], [], []
    while len(costs) < episodes * play.num_envs:
        rows.append(obs)
        action, _ = model.predict(obs, deterministic=False)
        obs, reward, done, infos = play.step(action)
        rewards.append(reward)
        dones.append(done)
        costs += [info["episode_metrics"]["total_cost"] for info in infos if "episode_metrics" in info]
    returns, complete = monte_carlo_returns(np.array(rewards), np.array(dones), model.gamma)
    with th.no_grad():
        values = model.policy.predict_values(th.as_tensor(np.array(rows)[complete], dtype=th.float32)).numpy().ravel()
    values *= reward_scale(trained)
    returns = returns[complete]
    return {
        "value_rmse": float(np.sqrt(np.mean((values - returns) ** 2))),
        "value_bias": float(np.mean(values - returns)),
        "explained_variance": float(explained_variance(values, returns)),
        "return_std": float(returns.std()),
        "cost_per_day": float(np.mean(costs)),
    }


def run(conf: Path, aux: dict[str, Any] | None, seed: int, steps: int, episodes: int) -> dict[str, Any]:
    """Train one PPO from ``conf``, with the auxiliary replay built from ``aux`` unless it is ``None``,
    then measure its values."""
    import torch
    from stable_baselines3 import PPO

    from sb3_microgrid.callbacks import AuxiliaryValueReplayCallback
    from sb3_microgrid.hyperparams import load_hyperparams
    from sb3_microgrid.training import make_env

    torch.set_num_threads(1)
    hp = load_hyperparams(conf, PPO)
    env = make_env(hp, seed)
    model = PPO(hp.policy, env, seed=seed, device="cpu", verbose=0, **hp.algo_kwargs)
    aux_seconds = [0.0]

    class Timed(AuxiliaryValueReplayCallback):
        def fit(self) -> float | None:
            start = time.perf_counter()
            loss = super().fit()
            aux_seconds[0] += time.perf_counter() - start
            return loss

    callbacks = [cls(**kwargs) for cls, kwargs in hp.callbacks] + ([] if aux is None else [Timed(**aux)])
    start = time.perf_counter()
    model.learn(steps, callback=callbacks)
    seconds = time.perf_counter() - start
    train_ev = float(model.logger.name_to_value.get("train/explained_variance", np.nan))
    result = {"aux": aux is not None, "seed": seed, "learn_seconds": seconds, "aux_seconds": aux_seconds[0], "train_explained_variance": train_ev}
    return result | value_error(model, hp, seed=10_000 + seed, episodes=episodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conf", type=Path, default=CONF, help="zoo-format PPO hyperparameters (default: hyperparams/ppo.yml)")
    parser.add_argument("--steps", type=int, default=49_152, help="env steps per run (12 PPO updates of 4096)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=8, help="evaluation episodes per env (8 envs)")
    parser.add_argument("--aux-kwargs", type=json.loads, default={}, help="JSON keyword arguments of the callback")
    parser.add_argument("--name", default="aux_value_replay_check", help="results file stem")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    runs = [run(args.conf, aux, seed, args.steps, args.episodes) for seed in range(args.seeds) for aux in (None, args.aux_kwargs)]

    # the file's text, not only its name: the hyperparameter files change as PPO is tuned
    meta = run_metadata(conf=str(args.conf), conf_text=args.conf.read_text(), steps=args.steps, aux_kwargs=args.aux_kwargs)
    lines = [
        "# Auxiliary prioritized value replay: quick check",
        "",
        f"Command: `{meta['command']}` ({meta['time']}). PPO with `{args.conf.name}` (its text is in the JSON), {args.steps:,} env steps,"
        f" {args.seeds} seeds, callback arguments {args.aux_kwargs or 'defaults'}; values against Monte-Carlo returns (reward units)"
        f" on {args.episodes} fresh episodes per env. Runs one after another on a shared machine: compare `aux s` with `learn s`.",
        "",
        "| aux replay | seed | value RMSE | value bias | explained var. | return std | train/explained_variance | Rs/day | learn s | aux s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {'yes' if r['aux'] else 'no'} | {r['seed']} | {r['value_rmse']:.3f} | {r['value_bias']:+.3f} |"
            f" {r['explained_variance']:.3f} | {r['return_std']:.3f} | {r['train_explained_variance']:.3f} |"
            f" {r['cost_per_day']:,.0f} | {r['learn_seconds']:.1f} | {r['aux_seconds']:.1f} |"
        )
    write_results(args.name, meta, {"runs": runs}, lines)


if __name__ == "__main__":
    main()
