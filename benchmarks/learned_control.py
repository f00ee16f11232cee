"""Learned controllers against the baselines: validation curves during training, the validation-selected
model scored on the test year, and the learning-curve figure.

Each recipe is a hyperparameter file trained by ``sb3-microgrid train`` (``training.train``) with a
``ValidationCallback`` added (the first ``--val-days`` validation days every ``--eval-freq`` steps, a
training-time budget of ``--minutes``, the best-scoring weights kept), per scenario and seed, one run
after another on this process's core. The selected model is then scored on the test year through
``make_controller(RUN/model.zip)``, the path ``sb3-microgrid evaluate`` takes, beside rule, MPC and the
planner on the same days. Settings and checkpoints are chosen on validation days only.

Results: ``benchmarks/results/<--name>.{json,md}`` and ``docs/<--name>.png``.

Usage: python benchmarks/learned_control.py --recipe ppo=ppo:hyperparams/ppo.yml
       --recipe residual_ars=paired_ars:hyperparams/residual_ars.yml [--scenarios campus campus_tod]
       [--seeds 5] [--minutes 15] [--val-days 30] [--eval-freq 100000] [--test-days N | 0 to skip] [--name learned_control]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402
from learning import ci95  # noqa: E402
from reporting import run_metadata, write_results  # noqa: E402

from sb3_microgrid import training  # noqa: E402
from sb3_microgrid.baselines import make_controller  # noqa: E402
from sb3_microgrid.evaluation import evaluate, gap_closed  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"
BASELINES = ("rule", "mpc", "planner")


def recipe_file(conf: Path, scenario: str, args: argparse.Namespace, run_dir: Path, folder: Path) -> Path:
    """A copy of ``conf`` for ``scenario`` (its ``env_kwargs.scenario.base``) with a ValidationCallback added."""
    raw = yaml.safe_load(conf.read_text())
    (env_id, section), = raw.items()
    env_kwargs = section.setdefault("env_kwargs", {})
    spec = env_kwargs.get("scenario", {})
    env_kwargs["scenario"] = {**spec, "base": scenario} if isinstance(spec, dict) else scenario
    callbacks = [c for c in section.get("callback", []) if "ValidationCallback" not in str(c)]
    validation = {"days": args.val_days, "eval_freq": args.eval_freq, "max_minutes": args.minutes, "log_path": str(run_dir)}
    section["callback"] = [*callbacks, {"sb3_microgrid.validation.ValidationCallback": validation}]
    section["n_timesteps"] = 10**9  # the time budget stops training
    path = folder / f"{conf.stem}_{scenario}.yml"
    path.write_text(yaml.safe_dump({env_id: section}))
    return path


def test_scores(controller: Any, scenario: str, days: int | None) -> dict[str, float]:
    s = evaluate(controller, scenario=scenario, split="test", days=days, seed=0).summary
    return {k: s[k] for k in ("gap_closed", "cost_per_day", "unmet_ev_kwh_per_day", "safety_violations", "cost_naive_per_day", "cost_optimal_per_day")}


def validation_lines(scenario: str, days: int) -> dict[str, float]:
    """Gap closed of the baselines on the validation days the callback scores."""
    return {name: evaluate(name, scenario=scenario, split="validation", days=days, seed=0).summary["gap_closed"] for name in BASELINES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", action="append", required=True, metavar="LABEL=ALGO:FILE")
    parser.add_argument("--scenarios", nargs="+", default=["campus", "campus_tod"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=15.0, help="training-time budget per run (scoring not counted)")
    parser.add_argument("--val-days", type=int, default=30)
    parser.add_argument("--eval-freq", type=int, default=100_000)
    parser.add_argument("--test-days", type=int, default=None, help="first N test days (default: the whole year; 0: skip the test year)")
    parser.add_argument("--name", default="learned_control")
    parser.add_argument("--runs", type=Path, default=Path("runs/learned_control"))
    args = parser.parse_args()
    recipes = {}
    for spec in args.recipe:
        label, _, rest = spec.partition("=")
        algo, _, conf = rest.partition(":")
        recipes[label] = (algo, Path(conf))

    runs: list[dict[str, Any]] = []
    baselines: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in args.scenarios:
            baselines[scenario] = {"validation": validation_lines(scenario, args.val_days)}
            if args.test_days != 0:
                baselines[scenario]["test"] = {name: test_scores(name, scenario, args.test_days) for name in BASELINES}
            for label, (algo, conf) in recipes.items():
                for seed in range(args.seeds):
                    run_dir = args.runs / f"{label}_{scenario}_{seed}"
                    if (run_dir / "run.json").is_file():  # this benchmark's own earlier run: train refuses to start over it
                        shutil.rmtree(run_dir)
                    path = recipe_file(conf, scenario, args, run_dir, Path(tmp))
                    start = time.perf_counter()
                    model = training.train(algo, path, run_dir, seed=seed, save_freq=10**9, progress_bar=False)
                    wall = (time.perf_counter() - start) / 60
                    record = json.loads((run_dir / "validation.json").read_text())
                    run = {"recipe": label, "algo": algo, "conf": str(conf), "scenario": scenario, "seed": seed, "steps": model.num_timesteps,
                           "wall_minutes": wall, "training_minutes": record["history"][-1]["minutes"], "best": record["best"], "history": record["history"]}
                    if args.test_days != 0:
                        run["test"] = test_scores(make_controller(str(run_dir / "model.zip")), scenario, args.test_days)
                    runs.append(run)
                    print({k: v for k, v in run.items() if k != "history"}, flush=True)

    summary = []
    for scenario in args.scenarios:
        for label in recipes:
            mine = [r for r in runs if r["scenario"] == scenario and r["recipe"] == label]
            row = {"scenario": scenario, "recipe": label, "seeds": len(mine), "steps": ci95([r["steps"] for r in mine])[0],
                   "training_minutes": ci95([r["training_minutes"] for r in mine])[0], "val_best": ci95([r["best"]["gap_closed"] for r in mine])}
            if args.test_days != 0:
                row["test_gap"] = ci95([r["test"]["gap_closed"] for r in mine])
                row["test_unmet"] = ci95([r["test"]["unmet_ev_kwh_per_day"] for r in mine])[0]
                row["test_violations"] = sum(r["test"]["safety_violations"] for r in mine)
            summary.append(row)

    meta = run_metadata()
    figure = DOCS / f"{args.name}.png"
    draw(runs, baselines, args.scenarios, list(recipes), figure)
    lines = [
        "# Learned controllers against the baselines",
        "",
        f"Command: `{meta['command']}` ({meta['time']}, Python {meta['python']}, {meta['cpus']} CPUs; one run at a time).",
        f"Validation: first {args.val_days} days of 2023, every {args.eval_freq:,} steps; the best-scoring weights are kept. "
        f"Test: {'the whole of 2024' if args.test_days is None else f'the first {args.test_days} days of 2024' if args.test_days else 'not run'}. "
        f"Budget: {args.minutes} minutes of training per run (scoring not counted). Figure: `docs/{figure.name}`.",
        "",
        "| scenario | recipe | seeds | steps | training min | best validation gap (mean ± 95 %) | test gap (mean ± 95 %) | test unmet EV kWh/day | test violations |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary:
        test = f"{r['test_gap'][0]:.3f} ± {r['test_gap'][1]:.3f}" if "test_gap" in r else "n/a"
        lines.append(f"| {r['scenario']} | {r['recipe']} | {r['seeds']} | {r['steps']:,.0f} | {r['training_minutes']:.1f} | {r['val_best'][0]:.3f} ± {r['val_best'][1]:.3f} | "
                     f"{test} | {r.get('test_unmet', float('nan')):.2f} | {r.get('test_violations', float('nan')):.0f} |")
    lines += ["", "Baselines on the same days (gap closed):", "", "| scenario | split | " + " | ".join(BASELINES) + " |", "|---|---|" + "---:|" * len(BASELINES)]
    for scenario, split_scores in baselines.items():
        for split, scores in split_scores.items():
            values = [scores[n] if split == "validation" else scores[n]["gap_closed"] for n in BASELINES]
            lines.append(f"| {scenario} | {split} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    write_results(args.name, meta, {"summary": summary, "runs": runs, "baselines": baselines}, lines)


def draw(runs: list[dict[str, Any]], baselines: dict[str, Any], scenarios: list[str], recipes: list[str], path: Path) -> None:
    """Validation gap closed against env steps and against training minutes, one row per scenario."""
    fig, axes = plt.subplots(len(scenarios), 2, figsize=(11, 3.6 * len(scenarios)), squeeze=False)
    colors = dict(zip(recipes, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for row, scenario in zip(axes, scenarios):
        for ax, x, xlabel in ((row[0], "steps", "environment steps"), (row[1], "minutes", "training minutes (one core)")):
            for run in (r for r in runs if r["scenario"] == scenario):
                ax.plot([h[x] for h in run["history"]], [h["gap_closed"] for h in run["history"]], color=colors[run["recipe"]], alpha=0.7,
                        label=run["recipe"] if run["seed"] == 0 else None)
            for name, style in zip((*BASELINES, "optimal"), (":", "--", "-.", "-")):
                value = 1.0 if name == "optimal" else baselines[scenario]["validation"][name]
                ax.axhline(value, color="grey", linestyle=style, linewidth=1, label=f"{name} ({value:.2f})")
            ax.set(xlabel=xlabel, ylabel="gap closed (validation days)", title=scenario)
            ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
