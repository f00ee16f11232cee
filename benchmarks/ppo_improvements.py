"""The planning guide's PPO improvements, each switched on alone on top of ``hyperparams/ppo.yml``:
selected on the validation year, scored on the test year.

The base configuration is ``hyperparams/ppo.yml`` as ``sb3-microgrid train`` builds it (the same env,
normalisation and model); each other configuration changes one thing. Every run trains for ``--steps``
environment steps on the training years with one of ``--seeds`` seeds. A
:class:`~sb3_microgrid.validation.ValidationCallback` scores it every ``--eval-every`` steps on the first
``--days`` validation days (2023) and puts back the best-scoring weights and normalisation statistics at
the end; that model is then scored once on the whole test year (2024), the same days and forecast noise for
every run. Reported per configuration: best validation gap closed and test-year gap closed (mean and 95 %
interval over seeds), the test gap's paired difference from the base (same seeds), test unmet EV energy
and violations, and training throughput (steps/s, scoring excluded; comparable only when every run had a
core of its own). Runs are appended to ``results/<--name>_runs.jsonl`` as they finish, so an interrupted
benchmark keeps them (``--resume`` skips them); the summary goes to ``results/<--name>.{json,md}`` and the
validation curves to ``docs/<--name>.png``.

The off-policy arm (``--configs sac_fast,per_sac,dyna_sac``) changes ``hyperparams/sac_fast.yml`` instead and is
paired with ``sac_fast``.

Usage: python benchmarks/ppo_improvements.py [--steps 2000000] [--seeds 5] [--workers 2] [--configs a,b]
       [--override '{"kwargs": {"gamma": 0.99}, "policy_kwargs": {"log_std_init": -1.0}, "scenario": {...}}']
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import multiprocessing as mp
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
from learning import ci95
from reporting import RESULTS, run_metadata, write_results

ROOT = Path(__file__).resolve().parent.parent
BASE_FILE = ROOT / "hyperparams" / "ppo.yml"
BASE = "ppo_tuned"
#: The guide's improvements measured by default (``--configs`` picks others, e.g. ``lr_warmup``).
GUIDE = [BASE, "attention", "twin_value", "kl_adaptive_lr", "plateau_lr", "curriculum", "epsilon", "param_noise"]
#: The off-policy arm: its configurations change ``hyperparams/sac_fast.yml`` instead, and pair with its base.
OFF_POLICY_FILE = ROOT / "hyperparams" / "sac_fast.yml"
OFF_POLICY_BASE = "sac_fast"
OFF_POLICY = [OFF_POLICY_BASE, "per_sac", "dyna_sac"]


def base_of(name: str) -> str:
    """The configuration ``name`` changes one thing of, and is paired with."""
    return OFF_POLICY_BASE if name in OFF_POLICY else BASE


def configs() -> dict[str, Callable[[], dict[str, Any]]]:
    """Each configuration's changes to ``hyperparams/ppo.yml`` (the off-policy arm's to ``sac_fast.yml``; see :func:`build`)."""
    from sb3_microgrid.callbacks import CurriculumCallback, KLMonitorCallback, ReduceLROnPlateau
    from sb3_microgrid.exploration import EpsilonActorCriticPolicy, ParameterNoiseCallback
    from sb3_microgrid.policies import ForecastAttentionExtractor
    from sb3_microgrid.schedules import LinearSchedule, WarmupSchedule
    from sb3_microgrid.dyna import DynaSAC
    from sb3_microgrid.hyperparams import load_hyperparams
    from sb3_microgrid.per_sac import PerSAC
    from sb3_microgrid.twin_ppo import TwinValuePPO

    attention = dict(features_extractor_class=ForecastAttentionExtractor, features_extractor_kwargs=dict(embed_dim=16, n_heads=2, ff_dim=32, static_dim=32, features_dim=64))
    curriculum = dict(start=dict(renewable_noise=0.05, price_volatility=0.5, ev_count=4), end=dict(renewable_noise=0.2, price_volatility=1.0, ev_count=None), n_levels=5)
    return {
        BASE: lambda: {},
        "attention": lambda: dict(policy_kwargs=attention),
        "twin_value": lambda: dict(algo=TwinValuePPO),
        "kl_adaptive_lr": lambda: dict(callbacks=[lambda: KLMonitorCallback(target_kl=0.02)]),
        "plateau_lr": lambda: dict(callbacks=[lambda: ReduceLROnPlateau(mode="rollout", patience=5, factor=0.5, min_lr=1e-5)]),
        "lr_warmup": lambda: dict(kwargs=dict(learning_rate=WarmupSchedule(LinearSchedule(3e-4, 0.0, 1.0), 0.05))),
        "curriculum": lambda: dict(callbacks=[lambda: CurriculumCallback(**curriculum)]),
        "epsilon": lambda: dict(policy=EpsilonActorCriticPolicy, policy_kwargs=dict(epsilon=0.05)),
        # KL-adapted (target_kl 0.01 by default): the action-distance default misfired on a Gaussian policy
        "param_noise": lambda: dict(callbacks=[lambda: ParameterNoiseCallback()]),
        OFF_POLICY_BASE: lambda: {},
        "per_sac": lambda: dict(algo=PerSAC),
        # the world model's settings of the shipped dyna_sac.yml, refitted every 8,000 env steps instead of 1,000:
        # as there, every 1,000 gradient steps (sac_fast takes 2 per 16 env steps)
        "dyna_sac": lambda: dict(algo=DynaSAC, kwargs={**_world_model(load_hyperparams(ROOT / "hyperparams" / "dyna_sac.yml", DynaSAC).algo_kwargs), "model_train_freq": 8_000}),
    }


def _world_model(dyna_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The world-model settings of a ``DynaSAC`` file (those SAC does not take)."""
    from stable_baselines3 import SAC

    return {k: v for k, v in dyna_kwargs.items() if k not in inspect.signature(SAC).parameters}


def merged(changes: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``changes`` with ``override`` on top; ``kwargs``, ``policy_kwargs`` and ``scenario`` mappings merge."""
    out = {**changes}
    for key, value in override.items():
        out[key] = {**out.get(key, {}), **value} if key in ("kwargs", "policy_kwargs", "scenario") else value
    return out


def build(name: str, seed: int, override: dict[str, Any] | None = None) -> tuple[Any, list[Any]]:
    """A configuration's model on its training env, built as ``sb3-microgrid train`` builds
    ``hyperparams/ppo.yml`` (``sac_fast.yml`` for the off-policy arm; ``training.make_env`` / ``build_model``) after the configuration's changes:
    ``algo`` and ``policy`` replace, ``kwargs`` / ``policy_kwargs`` merge into the algorithm's keyword
    arguments, ``scenario`` into the env's scenario mapping; ``callbacks`` are factories. ``override``
    applies on top of every configuration. Returns the model and its callbacks, ready for ``learn``."""
    from stable_baselines3 import PPO, SAC

    from sb3_microgrid import training
    from sb3_microgrid.hyperparams import load_hyperparams

    changes = merged(configs()[name](), override or {})
    off_policy = name in OFF_POLICY
    algo = changes.get("algo", SAC if off_policy else PPO)
    hp = load_hyperparams(OFF_POLICY_FILE if off_policy else BASE_FILE, algo)
    algo_kwargs = {**hp.algo_kwargs, **changes.get("kwargs", {})}
    algo_kwargs["policy_kwargs"] = {**algo_kwargs.get("policy_kwargs", {}), **changes.get("policy_kwargs", {})}
    env_kwargs = {**hp.env_kwargs, "scenario": {**hp.env_kwargs["scenario"], **changes.get("scenario", {})}}
    hp = dataclasses.replace(hp, policy=changes.get("policy", hp.policy), algo_kwargs=algo_kwargs, env_kwargs=env_kwargs)
    model = training.build_model(algo, hp, training.make_env(hp, seed), seed)
    return model, [make() for make in changes.get("callbacks", [])]


def run(name: str, seed: int, steps: int, eval_every: int, days: int, test_refs: dict[str, float], override: dict[str, Any]) -> dict[str, Any]:
    """Train one configuration with one seed, keep its best validation weights, score them on the test year."""
    import torch

    from sb3_microgrid.baselines import SB3Controller
    from sb3_microgrid.evaluation import evaluate, gap_closed
    from sb3_microgrid.exploration import ParameterNoiseCallback
    from sb3_microgrid.validation import ValidationCallback

    torch.set_num_threads(1)
    model, callbacks = build(name, seed, override)
    validation = ValidationCallback(days=days, eval_freq=eval_every)
    model.learn(steps, callback=[*callbacks, validation])
    training_minutes = validation.training_minutes  # read now: the test-year score below is no training
    controller = SB3Controller.from_model(model, model.get_vec_normalize_env(), name=name)
    test = evaluate(controller, scenario=model.get_env().get_attr("scenario", [0])[0], split="test", seed=0, reference=False).summary
    record = {
        "config": name,
        "seed": seed,
        "steps": steps,
        "steps_per_s": (model.num_timesteps - validation.history[0]["steps"]) / (60.0 * training_minutes),
        "validation": validation.history,
        "val_best": validation.best,
        "test_gap": float(gap_closed(test["cost_per_day"], test_refs["naive"], test_refs["optimal"])),
        **{f"test_{key}": test[key] for key in ("cost_per_day", "unmet_ev_kwh_per_day", "safety_violations")},
    }
    noise = next((c for c in callbacks if isinstance(c, ParameterNoiseCallback)), None)
    if noise is not None:  # the perturbation's size at the end, to show the KL adaptation held
        record.update(param_noise_sigma=noise.sigma, param_noise_kl=noise.kl)
    return record


def _job(args: tuple) -> dict[str, Any]:
    return run(*args)


def summarize(runs: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """One row per configuration: means and 95 % intervals over seeds, and the paired test difference from the base."""
    base = {(r["config"], r["seed"]): r["test_gap"] for r in runs if r["config"] in (BASE, OFF_POLICY_BASE)}
    rows = []
    for name in names:
        mine = sorted((r for r in runs if r["config"] == name), key=lambda r: r["seed"])
        if not mine:
            continue
        paired = [r["test_gap"] - base[base_of(name), r["seed"]] for r in mine if (base_of(name), r["seed"]) in base]
        rows.append(
            {
                "config": name,
                "seeds": len(mine),
                "val_best_gap": ci95([r["val_best"]["gap_closed"] for r in mine]),
                "val_best_steps_median": float(np.median([r["val_best"]["steps"] for r in mine])),
                "test_gap": ci95([r["test_gap"] for r in mine]),
                "test_gap_minus_base": ci95(paired) if paired and name != base_of(name) else None,
                "test_cost_per_day": float(np.mean([r["test_cost_per_day"] for r in mine])),
                "test_unmet_ev_kwh_per_day": float(np.mean([r["test_unmet_ev_kwh_per_day"] for r in mine])),
                "test_violations": float(np.sum([r["test_safety_violations"] for r in mine])),
                "steps_per_s_median": float(np.median([r["steps_per_s"] for r in mine])),
            }
        )
    return rows


def _ci(value: tuple[float, float] | None, signed: bool = False) -> str:
    if value is None:
        return ""
    mean, half = value
    return f"{mean:+.3f} ± {half:.3f}" if signed else f"{mean:.3f} ± {half:.3f}"


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as markdown; each configuration is paired with, and its speed divided by, its base's (the first row's)."""
    head = base_of(rows[0]["config"])
    base = next((r["steps_per_s_median"] for r in rows if r["config"] == head), None)
    lines = [
        f"| config | seeds | best validation gap | its step (median) | test-year gap | test gap − {head} (paired) | test Rs/day | unmet EV kWh/day | violations | steps/s | vs {head} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r['steps_per_s_median'] / base:.2f}" if base else ""
        lines.append(
            f"| {r['config']} | {r['seeds']} | {_ci(r['val_best_gap'])} | {r['val_best_steps_median']:,.0f} | {_ci(r['test_gap'])} | {_ci(r['test_gap_minus_base'], signed=True)} |"
            f" {r['test_cost_per_day']:,.0f} | {r['test_unmet_ev_kwh_per_day']:.2f} | {r['test_violations']:.0f} | {r['steps_per_s_median']:,.0f} | {ratio} |"
        )
    return lines


def figure(runs: list[dict[str, Any]], names: list[str], val_refs: dict[str, float], path: Path) -> None:
    """Validation gap closed against env steps, mean over seeds, one line per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name in names:
        curves = [r["validation"] for r in runs if r["config"] == name]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        steps = [c["steps"] for c in curves[0][:n]]
        gaps = np.mean([[c["gap_closed"] for c in curve[:n]] for curve in curves], axis=0)
        ax.plot(steps, gaps, lw=2.5 if name in (BASE, OFF_POLICY_BASE) else 1.2, label=f"{name} ({len(curves)} seeds)")
    for label, value in val_refs.items():
        ax.axhline(value, ls="--", lw=0.8, color="grey")
        ax.annotate(label, (0, value), fontsize=8, color="grey", va="bottom")
    base_file = (OFF_POLICY_FILE if names[0] in OFF_POLICY else BASE_FILE).name
    ax.set(xlabel="environment steps", ylabel="gap closed, first validation days", title=f"Improvements on top of {base_file} (campus)")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2_000_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--eval-every", type=int, default=250_000)
    parser.add_argument("--days", type=int, default=30, help="validation days scored during training")
    parser.add_argument("--workers", type=int, default=2, help="one per core")
    parser.add_argument("--configs", default=",".join(GUIDE), help=f"comma-separated (default: {','.join(GUIDE)})")
    parser.add_argument("--name", default="ppo_improvements", help="results file stem (default: ppo_improvements)")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in <name>_runs.jsonl and run only the others")
    parser.add_argument("--override", type=json.loads, default={}, help="JSON changes applied to every config (see build)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from sb3_microgrid.evaluation import evaluate

    names = args.configs.split(",")
    unknown = sorted(set(names) - set(configs()))
    if unknown:
        raise SystemExit(f"unknown config(s) {unknown}; allowed: {list(configs())}")
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be at least 1, got {args.seeds}: a table needs runs")
    if len({base_of(n) for n in names}) > 1:
        raise SystemExit(f"the off-policy arm {OFF_POLICY} and the PPO configurations make separate tables: run them with separate --configs and --name")
    scenario = {"base": "campus", **args.override.get("scenario", {})}
    log = RESULTS / f"{args.name}_runs.jsonl"
    runs = [json.loads(line) for line in log.read_text().splitlines()] if args.resume and log.exists() else []
    if not args.resume:
        log.unlink(missing_ok=True)
    done = {(r["config"], r["seed"]) for r in runs}
    test_refs = {ref: evaluate(ref, scenario=scenario, split="test", seed=0, reference=False).summary["cost_per_day"] for ref in ("naive", "optimal")}
    # seed-major: an interrupted benchmark has every configuration at the same number of seeds
    jobs = [(n, s, args.steps, args.eval_every, args.days, test_refs, args.override) for s in range(args.seeds) for n in names if (n, s) not in done]
    RESULTS.mkdir(exist_ok=True)
    with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
        for record in pool.imap_unordered(_job, jobs):
            runs.append(record)
            with log.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{record['config']} seed {record['seed']}: validation {record['val_best']['gap_closed']:.3f}, test {record['test_gap']:.3f}", flush=True)

    val_refs = {name: evaluate(name, scenario=scenario, split="validation", days=args.days, seed=0).summary["gap_closed"] for name in ("rule", "mpc")}
    rows = summarize(runs, names)
    meta = run_metadata(test_references=test_refs, validation_references=val_refs)
    lines = [
        f"# Improvements, each alone, on top of hyperparams/{(OFF_POLICY_FILE if names[0] in OFF_POLICY else BASE_FILE).name}",
        "",
        f"Command: `{meta['command']}` ({meta['time']}). {args.steps:,} env steps per run, best of the scores every {args.eval_every:,} steps on the"
        f" first {args.days} validation days, scored on the whole test year (naive Rs {test_refs['naive']:,.0f}/day, optimal Rs {test_refs['optimal']:,.0f}/day);"
        f" {args.workers} runs at a time. Validation days: rule {val_refs['rule']:.3f}, MPC {val_refs['mpc']:.3f}.",
        "",
        *table(rows),
    ]
    write_results(args.name, meta, {"summary": rows, "runs": runs}, lines)
    figure(runs, names, val_refs, ROOT / "docs" / f"{args.name}.png")


if __name__ == "__main__":
    main()
