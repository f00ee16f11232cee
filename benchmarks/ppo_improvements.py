"""Plain SB3 PPO against the tuned PPO and against each improvement switched on alone.

Every configuration trains for the same number of environment steps on the training years, with
``--seeds`` seeds, and is evaluated every ``--eval-every`` steps on the first ``--days`` validation days (2023)
(the same days, seeds and forecast noise for every run), scored by the env. Reported per
configuration: final Rs/day and gap closed (mean and 95 % confidence interval over seeds), the
environment steps to first reach ``--target-gap`` (median over seeds that reached it), and training
throughput (steps/s, wall clock including evaluations excluded). Results go to
``benchmarks/results/ppo_improvements.{json,md}`` with the command that produced them.

Usage: python benchmarks/ppo_improvements.py [--steps 200000] [--seeds 5] [--workers 2] [--configs a,b]
       [--override '{"kwargs": {"gamma": 1.0}, "policy_kwargs": {"log_std_init": -1.0}, "scenario": {...}}']
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
from typing import Any, Callable

import numpy as np
from learning import DayScoreCallback, reference_costs, summarize, table, train_and_score
from reporting import run_metadata, write_results

#: The issue's starting point: learning rate 3e-4, 4,096 steps per update, minibatch 1,024, GAE λ 0.97, entropy 0.02.
ISSUE_START = dict(learning_rate=3e-4, n_steps=512, batch_size=1024, gae_lambda=0.97, ent_coef=0.02)
#: What the probes in docs/results.md changed: no discounting inside the fixed 24-step day (the end-of-day
#: term gets full credit), a smaller initial action std, and the reward's exogenous baseline.
TUNED_CHANGES = dict(kwargs=dict(gamma=1.0, gae_lambda=1.0), policy_kwargs=dict(log_std_init=-1.5), scenario=dict(base="campus", reward=dict(exogenous_baseline=True)))
NORMALIZE = dict(norm_obs=True, norm_reward=True, clip_obs=10.0, clip_reward=10.0)
N_ENVS = 8


def configs() -> dict[str, Callable[[], dict[str, Any]]]:
    """Each configuration: algorithm class, its kwargs, callbacks and whether to normalise."""
    from stable_baselines3 import PPO

    from sb3_microgrid.callbacks import CurriculumCallback, KLMonitorCallback, ReduceLROnPlateau
    from sb3_microgrid.exploration import EpsilonActorCriticPolicy, ParameterNoiseCallback
    from sb3_microgrid.policies import ForecastAttentionExtractor
    from sb3_microgrid.schedules import LinearSchedule, WarmupSchedule
    from sb3_microgrid.twin_ppo import TwinValuePPO

    issue_start = dict(algo=PPO, policy="MlpPolicy", kwargs=dict(ISSUE_START, policy_kwargs=dict(ortho_init=True)), normalize=True, callbacks=[])
    tuned = with_changes(issue_start, TUNED_CHANGES)

    def variant(**changes: Any) -> Callable[[], dict[str, Any]]:
        return lambda: with_changes(tuned, changes)

    return {
        "ppo_default": lambda: dict(algo=PPO, policy="MlpPolicy", kwargs={}, normalize=False, callbacks=[]),
        "ppo_issue_start": lambda: with_changes(issue_start, {}),
        "ppo_tuned": variant(),
        "attention": variant(
            policy_kwargs=dict(features_extractor_class=ForecastAttentionExtractor, features_extractor_kwargs=dict(embed_dim=16, n_heads=2, ff_dim=32, static_dim=32, features_dim=64))
        ),
        "twin_value": variant(algo=TwinValuePPO),
        "kl_adaptive_lr": variant(callbacks=[lambda: KLMonitorCallback(target_kl=0.02)]),
        "plateau_lr": variant(callbacks=[lambda: ReduceLROnPlateau(mode="rollout", patience=5, factor=0.5, min_lr=1e-5)]),
        "lr_warmup": variant(kwargs=dict(learning_rate=WarmupSchedule(LinearSchedule(3e-4, 0.0, 1.0), 0.05))),
        "curriculum": variant(
            callbacks=[lambda: CurriculumCallback(start=dict(renewable_noise=0.05, price_volatility=0.5, ev_count=4), end=dict(renewable_noise=0.2, price_volatility=1.0, ev_count=None), n_levels=5)]
        ),
        "epsilon": variant(policy=EpsilonActorCriticPolicy, policy_kwargs=dict(epsilon=0.05)),
        "param_noise": variant(callbacks=[lambda: ParameterNoiseCallback()]),
    }


def with_changes(cfg: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``cfg`` with ``changes``: ``kwargs``/``policy_kwargs`` are merged into the algorithm's
    keyword arguments, ``scenario`` is the training env's scenario mapping, anything else replaces."""
    out = {**cfg, "kwargs": dict(cfg["kwargs"]), "callbacks": list(cfg["callbacks"])}
    if "policy_kwargs" in out["kwargs"]:
        out["kwargs"]["policy_kwargs"] = dict(out["kwargs"]["policy_kwargs"])
    for key, value in changes.items():
        if key in ("kwargs", "policy_kwargs"):
            target = out["kwargs"] if key == "kwargs" else out["kwargs"].setdefault("policy_kwargs", {})
            target.update(value)
        else:
            out[key] = value
    return out


def build(name: str, seed: int, override: dict[str, Any] | None = None) -> tuple[Any, list[Any]]:
    """A configuration's model on its training env (``N_ENVS`` microgrids of the training years,
    normalised if the configuration says so) and its callbacks, ready for ``learn``."""
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

    from sb3_microgrid import MicrogridVecEnv

    cfg = with_changes(configs()[name](), override or {})
    env = VecMonitor(MicrogridVecEnv(N_ENVS, scenario=cfg.get("scenario"), split="train", seed=seed))
    if cfg["normalize"]:
        env = VecNormalize(env, **NORMALIZE)
    model = cfg["algo"](cfg["policy"], env, seed=seed, device="cpu", verbose=0, **cfg["kwargs"])
    return model, [make() for make in cfg["callbacks"]]


def run(name: str, seed: int, steps: int, eval_every: int, days: int, references: dict[str, list[float]], override: dict[str, Any]) -> dict[str, Any]:
    """Train one configuration with one seed; score it on the fixed validation days along the way."""
    import torch

    torch.set_num_threads(1)
    model, callbacks = build(name, seed, override)
    scorer = DayScoreCallback(eval_every, days, references, name)
    return train_and_score(model, steps, scorer, callbacks, config=name, seed=seed)


def _job(args: tuple) -> dict[str, Any]:
    return run(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--eval-every", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--target-gap", type=float, default=0.25)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--configs", default=None, help="comma-separated subset (default: all)")
    parser.add_argument("--name", default="ppo_improvements", help="results file stem (default: ppo_improvements)")
    parser.add_argument("--override", type=json.loads, default={}, help="JSON changes applied to every config (see with_changes)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    names = args.configs.split(",") if args.configs else list(configs())
    unknown = sorted(set(names) - set(configs()))
    if unknown:
        raise SystemExit(f"unknown config(s) {unknown}; allowed: {list(configs())}")
    references = reference_costs(args.days)
    jobs = [(name, seed, args.steps, args.eval_every, args.days, references, args.override) for name in names for seed in range(args.seeds)]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        runs = pool.map(_job, jobs)

    rows = summarize(runs, names, args.target_gap)
    meta = run_metadata(references={k: float(np.mean(v)) for k, v in references.items()})
    command = meta["command"]
    lines = [
        "# PPO improvements, each alone",
        "",
        f"Command: `{command}` ({meta['time']}). {args.steps:,} env steps per run, {args.seeds} seeds, first {args.days} validation days;"
        f" naive Rs {meta['references']['naive']:,.0f}/day, optimal Rs {meta['references']['optimal']:,.0f}/day on those days.",
        "",
        *table(rows, args.target_gap, "ppo_tuned"),
    ]
    write_results(args.name, meta, {"summary": rows, "runs": runs}, lines)


if __name__ == "__main__":
    main()
