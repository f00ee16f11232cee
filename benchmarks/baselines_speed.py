"""Speed of the baselines: the optimal LP for one day and for the whole test year, MPC and planner
steps/s through the env, MPC on corrected forecasts and on forecast scenarios (``--scenarios``), and the
planner's batched decisions per second over N microgrids.

All figures come from one run; each timing is the median of ``--repeats`` repeats. Results go to
``benchmarks/results/baselines_speed.{json,md}`` with the command that produced them.

Usage: python benchmarks/baselines_speed.py [--repeats 5] [--scenario campus] [--mpc-days 5] [--scenarios 32] [--batch 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from reporting import run_metadata, write_results  # noqa: E402

from sb3_microgrid.baselines import MPCController, OptimalController, PlannerController  # noqa: E402
from sb3_microgrid.baselines.planner import ObservationReader, plan  # noqa: E402
from sb3_microgrid.baselines.lp import solve_dispatch  # noqa: E402
from sb3_microgrid.baselines.optimal import episode_problem  # noqa: E402
import numpy as np  # noqa: E402

from sb3_microgrid.envs import MicrogridEnv, MicrogridVecEnv  # noqa: E402
from sb3_microgrid.evaluation import run_day, split_dates  # noqa: E402
from sb3_microgrid.forecasting import CorrectedForecastController, fit_corrector  # noqa: E402
from sb3_microgrid.scenario import load_scenario  # noqa: E402



def median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scenario", default="campus")
    parser.add_argument("--mpc-days", type=int, default=5)
    parser.add_argument("--scenarios", type=int, default=32, help="forecast scenarios of the hedged MPC")
    parser.add_argument("--batch", type=int, default=64, help="microgrids planned in one call")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    dates = split_dates(scenario, "test")
    env = MicrogridEnv(scenario=scenario, split="test")

    problems = []
    for i, day in enumerate(dates):
        env.reset(seed=i, options={"day": day})
        problems.append(episode_problem(env))
    solve_dispatch(problems[0])  # warm-up: imports and first-call costs are not the LP's

    one_day, _ = median_time(lambda: solve_dispatch(problems[0]), args.repeats * 4)
    year, year_times = median_time(lambda: [solve_dispatch(p) for p in problems], args.repeats)

    def replay_year() -> None:
        for i, day in enumerate(dates):
            run_day(OptimalController(), env, day, seed=i)

    replay, _ = median_time(replay_year, max(1, args.repeats // 2))
    mpc_days = dates[: args.mpc_days]
    steps = len(mpc_days) * scenario.episode_steps
    mpc, _ = median_time(lambda: [run_day(MPCController(), env, d, seed=i) for i, d in enumerate(mpc_days)], args.repeats)

    # the corrector as make demo and scenario_mpc.py fit it; its fit is not timed
    corrector = fit_corrector(scenario, days=4096, seed=0, residual_days=256)
    corrected, _ = median_time(lambda: [run_day(CorrectedForecastController("mpc", corrector), env, d, seed=i) for i, d in enumerate(mpc_days)], args.repeats)
    hedged, _ = median_time(
        lambda: [run_day(CorrectedForecastController("mpc", corrector, scenarios=args.scenarios), env, d, seed=i) for i, d in enumerate(mpc_days)], args.repeats
    )

    run_day(PlannerController(), env, mpc_days[0], seed=0)  # warm-up: numba's compilation or cache load
    planner, _ = median_time(lambda: [run_day(PlannerController(), env, d, seed=i) for i, d in enumerate(mpc_days)], args.repeats)

    # One batched call for N microgrids, at every step of a day (the horizon shrinks as the day goes).
    venv = MicrogridVecEnv(args.batch, scenario=scenario, split="test", seed=0)
    observations = [venv.reset()]
    reader = ObservationReader(scenario, venv.obs_layout, venv.core.site.window_scale)
    reader.reset(observations[0])
    inputs = []
    for _ in range(scenario.episode_steps - 1):
        inputs.append(reader.inputs(observations[-1], venv.core))
        observations.append(venv.step(np.zeros((args.batch, venv.action_space.shape[0]), dtype=np.float32))[0])
    batched, _ = median_time(lambda: [plan(x, scenario) for x in inputs], args.repeats)
    decisions = args.batch * len(inputs)

    rows = [
        {"what": "optimal LP, one day (build + solve)", "median_s": one_day, "per": "day"},
        {"what": f"optimal LP, test year ({len(problems)} days, build + solve)", "median_s": year, "per": "year"},
        {"what": f"optimal, test year solved and replayed through the env", "median_s": replay, "per": "year"},
        {"what": f"MPC, {len(mpc_days)} days ({steps} steps, one LP per step)", "median_s": mpc, "per": f"{steps / mpc:.1f} steps/s"},
        {"what": "MPC on corrected forecasts, the same days", "median_s": corrected, "per": f"{steps / corrected:.1f} steps/s"},
        {"what": f"MPC on {args.scenarios} forecast scenarios (one LP of {args.scenarios} blocks per step), the same days", "median_s": hedged,
         "per": f"{steps / hedged:.1f} steps/s ({hedged / mpc:.1f}x MPC's time)"},
        {"what": f"planner, the same {len(mpc_days)} days through the env", "median_s": planner, "per": f"{steps / planner:.1f} steps/s ({mpc / planner:.1f}x MPC)"},
        {"what": f"planner, batched plan() of {args.batch} microgrids at each step of a day ({decisions} decisions)", "median_s": batched, "per": f"{decisions / batched:,.0f} decisions/s"},
    ]
    meta = run_metadata()
    command = meta["command"]
    lines = [
        "# Baselines speed",
        "",
        f"Command: `{command}` ({meta['time']}, Python {meta['python']}, {meta['cpus']} CPUs; shared machine, medians of repeats).",
        "",
        "| what | median time (s) | rate |",
        "|---|---:|---:|",
        *(f"| {r['what']} | {r['median_s']:.3f} | {r['per']} |" for r in rows),
    ]
    write_results("baselines_speed", meta, {"results": rows, "year_times_s": year_times, "mpc_steps_per_s": steps / mpc, "corrected_mpc_steps_per_s": steps / corrected, "scenario_mpc_steps_per_s": steps / hedged, "planner_steps_per_s": steps / planner, "planner_batched_decisions_per_s": decisions / batched}, lines)


if __name__ == "__main__":
    main()
