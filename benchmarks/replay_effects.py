"""What the replay pieces buy, at equal environment steps.

Off-policy: SAC against ``PerSAC`` (prioritized replay) and ``DynaSAC`` (world-model replay), and
optionally TD3 against ``PerTD3``, each with the settings of its shipped file (``sac.yml``,
``dyna_sac.yml``, ``td3.yml``) except ``learning_starts``, set equal for all (``--learning-starts``).
On-policy: PPO from ``ppo.yml`` with and without
:class:`~sb3_microgrid.callbacks.AuxiliaryValueReplayCallback` (its defaults).

Every run is scored on the first ``--days`` validation days (2023) every ``--eval-every-*`` steps (the same days
and forecast noise for all): final Rs/day and gap closed (mean and 95 % CI over ``--seeds``), the
steps to first reach ``--target-gap`` and training steps/s. PPO runs also report the value error of
the final value function against Monte-Carlo returns on fresh training-split episodes
(``aux_value_replay_check.value_error``). Results: ``benchmarks/results/replay_effects.{json,md}``.

Usage: python benchmarks/replay_effects.py [--arms sac,per_sac,dyna_sac,ppo,ppo_aux] [--seeds 5]
       [--off-policy-steps 20000] [--ppo-steps 150000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from learning import DayScoreCallback, ci95, reference_costs, summarize, table, train_and_score
from reporting import run_metadata, write_results

HYPERPARAMS = Path(__file__).resolve().parents[1] / "hyperparams"
#: arm: (algorithm name, hyperparameter file, family)
ARMS = {
    "sac": ("sac", "sac.yml", "off"),
    "per_sac": ("per_sac", "sac.yml", "off"),
    "dyna_sac": ("dyna_sac", "dyna_sac.yml", "off"),
    "td3": ("td3", "td3.yml", "off"),
    "per_td3": ("per_td3", "td3.yml", "off"),
    "ppo": ("ppo", "ppo.yml", "on"),
    "ppo_aux": ("ppo", "ppo.yml", "on"),
}


def run(arm: str, seed: int, steps: int, eval_every: int, days: int, learning_starts: int, references: dict[str, list[float]], episodes: int) -> dict[str, Any]:
    """Train one arm with one seed; score it along the way."""
    import torch

    from sb3_microgrid.callbacks import AuxiliaryValueReplayCallback
    from sb3_microgrid.hyperparams import load_hyperparams
    from sb3_microgrid.training import algorithm, build_model, make_env

    torch.set_num_threads(1)
    name, conf, family = ARMS[arm]
    cls = algorithm(name)
    hp = load_hyperparams(HYPERPARAMS / conf, cls)
    if family == "off":
        hp.algo_kwargs["learning_starts"] = learning_starts
    model = build_model(cls, hp, make_env(hp, seed), seed)
    callbacks = [AuxiliaryValueReplayCallback()] if arm == "ppo_aux" else []
    record = train_and_score(model, steps, DayScoreCallback(eval_every, days, references, arm), callbacks, config=arm, seed=seed)
    if family == "on":
        from aux_value_replay_check import value_error

        record.update(value_error(model, hp, seed + 1000, episodes))
    return record


def _job(args: tuple) -> dict[str, Any]:
    return run(*args)


def paired_value_error(runs: list[dict[str, Any]], arm: str, reference: str = "ppo") -> str:
    """``arm``'s value RMSE minus ``reference``'s, paired by seed: mean ± 95 % CI, and the t-test's p-value (each
    seed's two runs share its env streams, so the per-arm intervals overstate the uncertainty of the difference)."""
    by = {(r["config"], r["seed"]): r["value_rmse"] for r in runs}
    seeds = sorted(seed for config, seed in by if config == reference and (arm, seed) in by)
    differences = [by[(arm, seed)] - by[(reference, seed)] for seed in seeds]
    mean, half = ci95(differences)
    return f"value RMSE of {arm} − {reference}, paired over {len(seeds)} seeds: {mean:+.3f} ± {half:.3f} (p = {stats.ttest_1samp(differences, 0.0).pvalue:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", default="sac,per_sac,dyna_sac,ppo,ppo_aux", help=f"comma-separated, from {list(ARMS)}")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--off-policy-steps", type=int, default=20_000)
    parser.add_argument("--ppo-steps", type=int, default=150_000)
    parser.add_argument("--eval-every-off", type=int, default=5_000)
    parser.add_argument("--eval-every-ppo", type=int, default=50_000)
    parser.add_argument("--learning-starts", type=int, default=1_200, help="the same for every off-policy arm")
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--episodes", type=int, default=8, help="fresh episodes per env for the PPO value error")
    parser.add_argument("--target-gap", type=float, default=-1.5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--name", default="replay_effects")
    parser.add_argument("--paired-from", metavar="JSON", help="only print the paired value-error difference of a written run (results/replay_effects_ppo.json)")
    args = parser.parse_args()
    if args.paired_from:
        print(paired_value_error(json.loads(Path(args.paired_from).read_text())["runs"], "ppo_aux"))
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    arms = args.arms.split(",")
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise SystemExit(f"unknown arm(s) {unknown}; allowed: {list(ARMS)}")
    references = reference_costs(args.days)
    budget = {"off": (args.off_policy_steps, args.eval_every_off), "on": (args.ppo_steps, args.eval_every_ppo)}
    jobs = [(arm, seed, *budget[ARMS[arm][2]], args.days, args.learning_starts, references, args.episodes) for arm in arms for seed in range(args.seeds)]
    # Slowest jobs first, so the two workers finish together.
    jobs.sort(key=lambda job: (ARMS[job[0]][2] == "on", job[0] != "dyna_sac"))
    with mp.get_context("spawn").Pool(args.workers) as pool:
        runs = pool.map(_job, jobs, chunksize=1)

    def value_columns(mine: list[dict[str, Any]]) -> dict[str, str]:
        """Value error columns of the PPO arms (the only ones that measure it)."""
        return {key: "{:.3f} ± {:.3f}".format(*ci95([r[key] for r in mine])) for key in ("value_rmse", "explained_variance")}

    meta = run_metadata(references={k: float(np.mean(v)) for k, v in references.items()})
    lines = [
        "# Replay effects at equal environment steps",
        "",
        f"Command: `{meta['command']}` ({meta['time']}). {args.seeds} seeds; off-policy arms {args.off_policy_steps:,} steps"
        f" (learning_starts {args.learning_starts}), PPO arms {args.ppo_steps:,} steps; first {args.days} validation days,"
        f" naive Rs {meta['references']['naive']:,.0f}/day, optimal Rs {meta['references']['optimal']:,.0f}/day.",
        "",
    ]
    summary = []
    for family, reference in (("off", "sac"), ("on", "ppo")):
        names = [arm for arm in arms if ARMS[arm][2] == family]
        if not names:
            continue
        rows = summarize(runs, names, args.target_gap, value_columns if family == "on" else None)
        summary += rows
        extra = {"value_rmse": "value RMSE vs MC (±95 % CI)", "explained_variance": "explained variance (±95 % CI)"} if family == "on" else None
        lines += [*table(rows, args.target_gap, reference if reference in names else names[0], extra), ""]
        if family == "on" and {"ppo", "ppo_aux"} <= set(names):
            lines += [paired_value_error(runs, "ppo_aux"), ""]
    write_results(args.name, meta, {"summary": summary, "runs": runs}, lines)


if __name__ == "__main__":
    main()
