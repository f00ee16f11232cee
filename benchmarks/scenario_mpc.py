"""MPC hedging against the forecast error that remains after correction: the number of scenarios chosen on
validation days, then the test year with five fit seeds, paired with MPC and with MPC on the corrected forecast.

Per scenario (tariff): MPC on ``--select`` numbers of scenarios of the fit-seed-0 corrector's residuals is scored on
the first ``--val-days`` validation days; the smallest number within 0.002 of the best is kept. Then for every seed
s: the corrector fitted with fit seed s (4,096 training days, residuals of the first ``--residual-days``), and on
the test year under forecast noise seed s, MPC on the raw forecasts, MPC on the corrected forecast and MPC on the
kept number of scenarios: the same days and noise for the three, so their differences are the decisions'.

Results: ``benchmarks/results/<--name>_<scenario>.{json,md}``.

Usage: python benchmarks/scenario_mpc.py --scenario campus [--seeds 5] [--select 8 16 32] [--val-days 60] [--test-days N]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from forecast_correction import score  # noqa: E402
from learning import ci95  # noqa: E402
from reporting import run_metadata, write_results  # noqa: E402

from sb3_microgrid.forecasting import CorrectedForecastController, fit_corrector  # noqa: E402

ARMS = ("mpc", "corrected", "scenarios")


def interval(values: list[float]) -> dict[str, float]:
    return dict(zip(("mean", "ci95_half_width"), ci95(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="campus")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--select", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--residual-days", type=int, default=256)
    parser.add_argument("--val-days", type=int, default=60)
    parser.add_argument("--test-days", type=int, default=None, help="first N test days (default: the whole test year)")
    parser.add_argument("--name", default="scenario_mpc")
    args = parser.parse_args()
    if args.seeds < 1 or not args.select or min(args.select) < 1:
        raise SystemExit(f"--seeds must be at least 1 and --select numbers of scenarios at least 1, got {args.seeds} and {args.select}")
    start = time.perf_counter()
    fit: Any = lambda seed: fit_corrector(args.scenario, days=4096, seed=seed, residual_days=args.residual_days)  # noqa: E731
    corrector = fit(0)
    validation = {k: score(CorrectedForecastController("mpc", corrector, scenarios=k), args.scenario, "validation", args.val_days) for k in [0, *args.select]}
    best = max(validation[k]["gap_closed"] for k in args.select)
    chosen = min(k for k in args.select if validation[k]["gap_closed"] >= best - 0.002)
    print(args.scenario, "validation", {k: round(v["gap_closed"], 4) for k, v in validation.items()}, "chosen", chosen, flush=True)
    test = []
    for seed in range(args.seeds):
        corrector = corrector if seed == 0 else fit(seed)
        arms = {"mpc": "mpc", "corrected": CorrectedForecastController("mpc", corrector), "scenarios": CorrectedForecastController("mpc", corrector, scenarios=chosen, seed=seed)}
        row: dict[str, Any] = {"seed": seed}
        for arm, controller in arms.items():
            t0 = time.perf_counter()
            row[arm] = {**score(controller, args.scenario, "test", args.test_days, seed), "seconds": time.perf_counter() - t0}
        test.append(row)
        print(args.scenario, "test", row, flush=True)
    gaps = {arm: [r[arm]["gap_closed"] for r in test] for arm in ARMS}
    summary = {
        **{arm: interval(gaps[arm]) for arm in ARMS},
        "scenarios_minus_mpc": interval([s - m for s, m in zip(gaps["scenarios"], gaps["mpc"])]),
        "scenarios_minus_corrected": interval([s - c for s, c in zip(gaps["scenarios"], gaps["corrected"])]),
    }
    meta = run_metadata(minutes=(time.perf_counter() - start) / 60)
    days = f"first {args.test_days} test days" if args.test_days else "the whole test year"
    lines = [f"# MPC on forecast scenarios, {args.scenario}", "", f"Command: `{meta['command']}` ({meta['time']}, {meta['minutes']:.0f} min).", "",
             f"Validation (first {args.val_days} days, fit seed 0): " + ", ".join(f"{k} scenarios {v['gap_closed']:.3f}" for k, v in validation.items()) + f"; kept: {chosen}.", "",
             f"Test ({days}; seed s: fit seed s, scenario draws seed s, forecast noise seed s, the same for the three arms):", "",
             "| arm | gap closed, mean ± 95 % CI | per seed | Rs/day (mean) | violations (max) | unmet EV kWh/day (max) | s per run (median) |",
             "|---|---:|---|---:|---:|---:|---:|"]  # fmt: skip
    for arm in ARMS:
        lines.append(
            f"| {arm} | {summary[arm]['mean']:.3f} ± {summary[arm]['ci95_half_width']:.3f} | {', '.join(f'{g:.3f}' for g in gaps[arm])} "
            f"| {np.mean([r[arm]['cost_per_day'] for r in test]):,.0f} | {max(r[arm]['safety_violations'] for r in test):.0f} "
            f"| {max(r[arm]['unmet_ev_kwh_per_day'] for r in test):.2g} | {np.median([r[arm]['seconds'] for r in test]):.0f} |"
        )
    for key, label in (("scenarios_minus_mpc", "scenarios − MPC"), ("scenarios_minus_corrected", "scenarios − corrected")):
        lines.append(f"| {label} (paired) | {summary[key]['mean']:+.3f} ± {summary[key]['ci95_half_width']:.3f} | | | | | |")
    write_results(f"{args.name}_{args.scenario}", meta, {"validation": validation, "chosen": chosen, "test": test, "summary": summary}, lines)


if __name__ == "__main__":
    main()
