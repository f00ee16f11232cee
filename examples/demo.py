"""The main job on the default campus scenario: learn the forecast corrector that MPC plans on and the errors it
leaves (seconds), train plain SB3 PPO for comparison (about a minute), set MPC on the corrected forecast, MPC on
forecast scenarios and PPO beside every baseline on test days, scored by the env, and draw one test day for the
learned controller and the optimum.

Usage: python examples/demo.py [--corrector-days 4096] [--timesteps 200000] [--days 30] [--out runs/demo]
Writes ``OUT/summary.json``: one object per controller with its summary (``cost_per_day``, ``gap_closed``,
``safety_violations``, ``unmet_ev_kwh_per_day``, ...).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from sb3_microgrid import MicrogridEnv, training
from sb3_microgrid.baselines import SB3Controller, make_controller
from sb3_microgrid.cli import format_table, positive_int, seed_int
from sb3_microgrid.common.json_values import plain
from sb3_microgrid.evaluation import day_seed, evaluate, run_day, split_dates
from sb3_microgrid.forecasting import CorrectedForecastController, fit_corrector
from sb3_microgrid.plotting import plot_dispatch
from sb3_microgrid.scenario import load_scenario

CONF = Path(__file__).resolve().parent.parent / "hyperparams" / "ppo.yml"
#: Forecast scenarios MPC hedges on: the smallest number within 0.002 of the best on validation days (docs/results.md).
SCENARIOS = 32


def train(timesteps: int, out: Path, seed: int) -> Path:
    """PPO with the settings of ``hyperparams/ppo.yml`` (the tuned starting point); returns the saved
    model's path (its VecNormalize statistics lie beside it). A previous demo run in ``out`` (a run of
    the same file) is replaced; any other run there is left alone and stops the demo, since
    ``sb3-microgrid train`` refuses to start a new run over an old one."""
    config = out / "config.yml"
    if (out / "run.json").is_file() and config.is_file() and config.read_bytes() == CONF.read_bytes():
        print(f"Replacing the previous demo run in {out}.")
        shutil.rmtree(out)
    training.train("ppo", CONF, out, timesteps=timesteps, seed=seed, save_freq=timesteps)
    return out / "model.zip"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corrector-days", type=positive_int, default=4096, help="training days the forecast corrector is fitted on")
    parser.add_argument("--timesteps", type=positive_int, default=200_000, help="PPO steps")
    parser.add_argument("--days", type=positive_int, default=30, help="first N days of the test year")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--seed", type=seed_int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # small networks on 2 cores: one thread is several times faster
    scenario = load_scenario("campus")

    print(f"Training PPO ({CONF.name}) for {args.timesteps:,} steps on the campus scenario (train years 2015-2022)...")
    model_path = train(args.timesteps, args.out, args.seed)
    print(f"Saved {model_path} and its normalisation statistics.\n")

    print(f"Learning how forecast errors persist, on {args.corrector_days:,} training days (docs/forecast_correction.md)...")
    corrector = fit_corrector(scenario, days=args.corrector_days, seed=args.seed, residual_days=min(256, args.corrector_days))
    corrector_dir = args.out / "forecast_corrector"
    corrector.save(corrector_dir, base="mpc", scenarios=SCENARIOS)
    print(f"Fitted in {corrector.fit_info['seconds']:.1f} s; saved {corrector_dir} (sb3-microgrid evaluate --controller {corrector_dir}).\n")

    summaries = {}
    hedged = CorrectedForecastController("mpc", corrector, name="mpc+scenarios", scenarios=SCENARIOS, seed=args.seed)
    learned = CorrectedForecastController("mpc", corrector, name="mpc+learned")
    agent = SB3Controller(model_path)
    agent.name = "ppo"
    for controller in (hedged, learned, agent, *(make_controller(n) for n in ("naive", "rule", "mpc", "planner", "optimal"))):
        summaries[controller.name] = evaluate(controller, scenario=scenario, split="test", days=args.days, seed=args.seed).summary
    print(f"Campus scenario, first {args.days} test days (2024), mean per day, scored by the env:")
    print(format_table(summaries, reference=True))
    summary_path = args.out / "summary.json"
    summary_path.write_text(json.dumps(plain([{"controller": name, **summary} for name, summary in summaries.items()]), indent=2, allow_nan=False))
    print(f"Wrote {summary_path} (one object per controller).")

    day = split_dates(scenario, "test", args.days)[-1]
    env = MicrogridEnv(scenario=scenario, split="test")
    makers = (
        ("MPC on forecast scenarios", lambda: CorrectedForecastController("mpc", corrector, scenarios=SCENARIOS, seed=args.seed)),
        ("optimal", lambda: make_controller("optimal")),
    )
    # the reset seed evaluate() gave this day: the same forecast noise here as in the table
    traces = {name: run_day(make(), env, day, day_seed(args.seed, args.days - 1))[1] for name, make in makers}
    figure = plot_dispatch(traces, scenario, args.out / f"dispatch_{day}.png", title=f"Campus, {day}")
    print(f"\nDispatch of {day}, the learned controller beside the optimum: {figure}")


if __name__ == "__main__":
    main()
