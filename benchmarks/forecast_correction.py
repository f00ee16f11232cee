"""The learned forecast corrector (``sb3-microgrid fit-forecast``) under MPC and the planner: validation curves
against the training data and the fitting time, the validation-selected setting scored on the test year.

Per scenario and seed, a corrector is fitted on each number of training days of ``--sizes`` (the seed draws
the days and their forecast noise) and MPC and the planner on its corrections are scored on the first
``--val-days`` validation days. The (base, size) with the best mean validation score over the seeds is then
scored on the test year for every seed s with the test year's forecast noise drawn from seed s, beside MPC on
the raw forecasts under the same noise (paired), and rule, MPC and the planner under seed 0 (the days and
noise of ``baseline_costs.py``). Settings are chosen on validation days only; the test year is used for the
selected setting only.

Results: ``benchmarks/results/<--name>.{json,md}`` and ``docs/<--name>_<scenario>.png``. ``--ppo-json`` adds
a ``learned_control.py`` run's validation curve (plain ``ppo.yml``) to the figure of its scenario.

Usage: python benchmarks/forecast_correction.py [--scenarios campus campus_tod] [--seeds 5]
       [--sizes 16 64 256 1024 4096] [--val-days 60] [--test-days N] [--ppo-json results/X.json ...] [--redraw]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from learning import ci95  # noqa: E402
from reporting import RESULTS, run_metadata, write_results  # noqa: E402

from sb3_microgrid.evaluation import evaluate  # noqa: E402
from sb3_microgrid.forecasting import CorrectedForecastController, fit_corrector  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"
BASES = ("mpc", "planner")
RAW = ("rule", "mpc", "planner")
KPIS = ("gap_closed", "cost_per_day", "safety_violations", "unmet_ev_kwh_per_day")


def score(controller: Any, scenario: str, split: str, days: int | None, seed: int = 0) -> dict[str, float]:
    summary = evaluate(controller, scenario=scenario, split=split, days=days, seed=seed).summary
    return {key: summary[key] for key in KPIS}


def run_scenario(scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    curve, fitted = [], {}
    for seed in range(args.seeds):
        for size in args.sizes:
            corrector = fit_corrector(scenario, days=size, seed=seed)
            fitted[seed, size] = corrector
            for base in BASES:
                row = {"seed": seed, "days": size, "base": base, "env_steps": corrector.fit_info["env_steps"],
                       "fit_seconds": corrector.fit_info["seconds"], **score(CorrectedForecastController(base, corrector), scenario, "validation", args.val_days)}  # fmt: skip
                curve.append(row)
                print(scenario, row, flush=True)
    mean = {(base, size): np.mean([r["gap_closed"] for r in curve if r["base"] == base and r["days"] == size]) for base in BASES for size in args.sizes}
    base, size = max(mean, key=mean.get)
    raw_validation = {name: score(name, scenario, "validation", args.val_days) for name in RAW}
    # Seed s: the corrector fitted with fit seed s, scored on the test year under forecast noise seed s, beside MPC
    # on the raw forecasts under the same noise: five replicates of training data and evaluation noise, paired.
    test, paired_mpc = [], []
    for seed in range(args.seeds):
        test.append({"seed": seed, **score(CorrectedForecastController(base, fitted[seed, size]), scenario, "test", args.test_days, seed)})
        paired_mpc.append({"seed": seed, **score("mpc", scenario, "test", args.test_days, seed)})
        print(scenario, "test", test[-1], paired_mpc[-1], flush=True)
    raw_test = {name: score(name, scenario, "test", args.test_days) for name in RAW if name != "mpc"} | {"mpc": {k: v for k, v in paired_mpc[0].items() if k != "seed"}}
    gaps = [r["gap_closed"] for r in test]
    mpc_gaps = [r["gap_closed"] for r in paired_mpc]
    return {
        "selected": {"base": base, "days": size, "validation_mean_gap_closed": mean[base, size]},
        "validation_curve": curve, "raw_validation": raw_validation, "test": test, "paired_mpc": paired_mpc, "raw_test": raw_test,
        "test_gap_closed": dict(zip(("mean", "ci95_half_width"), ci95(gaps))),
        "paired_mpc_gap_closed": dict(zip(("mean", "ci95_half_width"), ci95(mpc_gaps))),
        "gain_over_mpc": dict(zip(("mean", "ci95_half_width"), ci95([g - m for g, m in zip(gaps, mpc_gaps)]))),
        "fit_seconds_selected": [r["fit_seconds"] for r in curve if r["base"] == base and r["days"] == size],
    }  # fmt: skip


def figure(scenario: str, result: dict[str, Any], ppo: dict[str, Any] | None, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, x_key, label in ((axes[0], "env_steps", "environment steps"), (axes[1], "fit_seconds", "wall-clock seconds (one core)")):
        for base, colour in zip(BASES, ("C0", "C1")):
            rows = [r for r in result["validation_curve"] if r["base"] == base]
            sizes = sorted({r["days"] for r in rows})
            xs = [np.mean([r[x_key] for r in rows if r["days"] == s]) for s in sizes]
            stats = [ci95([r["gap_closed"] for r in rows if r["days"] == s]) for s in sizes]
            m, h = np.array([s[0] for s in stats]), np.nan_to_num(np.array([s[1] for s in stats]))
            ax.plot(xs, m, "o-", color=colour, label=f"{base} on learned corrections")
            ax.fill_between(xs, m - h, m + h, color=colour, alpha=0.2)
        if ppo is not None:
            hist = ppo["history"]
            xs = [h["steps"] if x_key == "env_steps" else h["minutes"] * 60 for h in hist]
            ax.plot(np.maximum(xs, 1), [h["gap_closed"] for h in hist], "-", color="C2", label="plain ppo.yml (one seed; its first 30 validation days)")
        for name, style in (("rule", ":"), ("mpc", "--"), ("planner", "-.")):
            ax.axhline(result["raw_validation"][name]["gap_closed"], color="grey", linestyle=style, label=f"{name} (raw forecasts)")
        ax.axhline(1.0, color="black", linewidth=0.8, label="perfect-foresight optimum")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation gap closed")
    axes[0].set_ylim(-0.5 if ppo is not None else 0.3, 1.05)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{scenario}: validation gap closed against training data and time")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", default=["campus", "campus_tod"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256, 1024, 4096])
    parser.add_argument("--val-days", type=int, default=60)
    parser.add_argument("--test-days", type=int, default=None, help="first N test days (default: the whole test year)")
    parser.add_argument("--ppo-json", type=Path, nargs="*", default=[], help="learned_control.py outputs whose ppo curve to draw")
    parser.add_argument("--name", default="forecast_correction")
    parser.add_argument("--redraw", action="store_true", help="only redraw the figures from results/<--name>.json (e.g. with a new --ppo-json)")
    args = parser.parse_args()
    ppo_runs = {}
    for path in args.ppo_json:
        for run in json.loads(path.read_text())["runs"]:
            if run["recipe"] == "ppo":
                ppo_runs.setdefault(run["scenario"], run)
    if args.redraw:
        for scenario, result in json.loads((RESULTS / f"{args.name}.json").read_text())["results"].items():
            figure(scenario, result, ppo_runs.get(scenario), DOCS / f"{args.name}_{scenario}.png")
        return
    start = time.perf_counter()
    results = {scenario: run_scenario(scenario, args) for scenario in args.scenarios}
    for scenario, result in results.items():
        figure(scenario, result, ppo_runs.get(scenario), DOCS / f"{args.name}_{scenario}.png")
    meta = run_metadata(minutes=(time.perf_counter() - start) / 60)
    lines = ["# Learned forecast correction under MPC and the planner", "", f"Command: `{meta['command']}` ({meta['time']}, {meta['minutes']:.0f} min).", ""]
    lines += ["Seed s: fit seed s and test-year forecast noise seed s, MPC on the raw forecasts under the same noise (paired).", "",
              "| scenario | selected on validation | fit (s, median) | test gap closed, mean ± 95 % CI | MPC, same noise | gain over MPC | per seed (learned / MPC) | violations | unmet EV kWh/day (max, learned / MPC) |",
              "|---|---|---:|---:|---:|---:|---|---:|---:|"]  # fmt: skip
    for scenario, r in results.items():
        sel, tg, pm, gain = r["selected"], r["test_gap_closed"], r["paired_mpc_gap_closed"], r["gain_over_mpc"]
        per_seed = ", ".join(f"{t['gap_closed']:.3f} / {m['gap_closed']:.3f}" for t, m in zip(r["test"], r["paired_mpc"]))
        lines.append(
            f"| {scenario} | {sel['base']} on a corrector of {sel['days']} days (validation {sel['validation_mean_gap_closed']:.3f}) "
            f"| {np.median(r['fit_seconds_selected']):.1f} | {tg['mean']:.3f} ± {tg['ci95_half_width']:.3f} | {pm['mean']:.3f} ± {pm['ci95_half_width']:.3f} "
            f"| {gain['mean']:+.3f} ± {gain['ci95_half_width']:.3f} | {per_seed} | {max(t['safety_violations'] for t in r['test']):.0f} "
            f"| {max(t['unmet_ev_kwh_per_day'] for t in r['test']):.2g} / {max(m['unmet_ev_kwh_per_day'] for m in r['paired_mpc']):.2g} |"
        )
    lines += ["", "Raw baselines on the test year with noise seed 0 (the days and noise of `baseline_costs.py`):", "",
              "| scenario | rule | MPC | planner | learned, seed 0 |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for scenario, r in results.items():
        raw = r["raw_test"]
        lines.append(f"| {scenario} | {raw['rule']['gap_closed']:.3f} | {raw['mpc']['gap_closed']:.3f} | {raw['planner']['gap_closed']:.3f} | {r['test'][0]['gap_closed']:.3f} |")
    lines += ["", "Validation curve (mean over seeds, first validation days):", "", "| scenario | base | days | env steps | fit s | gap closed |", "|---|---|---:|---:|---:|---:|"]
    for scenario, r in results.items():
        for base in BASES:
            for size in args.sizes:
                rows = [x for x in r["validation_curve"] if x["base"] == base and x["days"] == size]
                lines.append(f"| {scenario} | {base} | {size} | {rows[0]['env_steps']:,} | {np.mean([x['fit_seconds'] for x in rows]):.2f} | {np.mean([x['gap_closed'] for x in rows]):.3f} |")
        lines.append(f"| {scenario} | raw forecasts | | | | rule {r['raw_validation']['rule']['gap_closed']:.3f}, MPC {r['raw_validation']['mpc']['gap_closed']:.3f}, planner {r['raw_validation']['planner']['gap_closed']:.3f} |")
    write_results(args.name, meta, {"results": {s: {**r} for s, r in results.items()}}, lines)


if __name__ == "__main__":
    main()
