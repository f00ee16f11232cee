"""The main job on the default campus scenario: train SB3 PPO for a few minutes, then set it beside
every baseline on test days, scored by the env, and draw one test day for the agent and the optimum.

Usage: python examples/demo.py [--timesteps 200000] [--days 30] [--out runs/demo]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

from sb3_microgrid import MicrogridEnv, MicrogridVecEnv
from sb3_microgrid.baselines import SB3Controller, make_controller
from sb3_microgrid.cli import format_table
from sb3_microgrid.evaluation import evaluate, run_day, split_dates
from sb3_microgrid.plotting import plot_dispatch
from sb3_microgrid.scenario import load_scenario


def train(timesteps: int, out: Path, seed: int) -> Path:
    """PPO from the tuned starting point (docs: issue "PPO improvements"), observations and rewards
    normalised; returns the saved model's path (its VecNormalize statistics lie beside it)."""
    venv = VecNormalize(VecMonitor(MicrogridVecEnv(8, scenario="campus", split="train", seed=seed)), clip_obs=10.0, clip_reward=10.0)
    model = PPO(
        "MlpPolicy",
        venv,
        learning_rate=3e-4,
        n_steps=512,  # x 8 envs = 4096 steps per update
        batch_size=1024,
        gae_lambda=0.97,
        ent_coef=0.02,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    model.learn(timesteps, progress_bar=True)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "ppo_campus.zip"
    model.save(path)
    venv.save(str(out / "ppo_campus_vecnormalize.pkl"))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=30, help="first N days of the test year")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # small networks on 2 cores: one thread is several times faster

    print(f"Training PPO for {args.timesteps:,} steps on the campus scenario (train years 2015-2022)...")
    model_path = train(args.timesteps, args.out, args.seed)
    print(f"Saved {model_path} and its normalisation statistics.\n")

    scenario = load_scenario("campus")
    summaries = {}
    for controller in (SB3Controller(model_path), *(make_controller(n) for n in ("naive", "rule", "mpc", "optimal"))):
        summaries[controller.name] = evaluate(controller, scenario=scenario, split="test", days=args.days, seed=args.seed).summary
    print(f"Campus scenario, first {args.days} test days (2024), mean per day, scored by the env:")
    print(format_table(summaries, reference=True))

    day = split_dates(scenario, "test", args.days)[-1]
    env = MicrogridEnv(scenario=scenario, split="test")
    traces = {name: run_day(make(), env, day, args.seed)[1] for name, make in (("PPO agent", lambda: SB3Controller(model_path)), ("optimal", lambda: make_controller("optimal")))}
    figure = plot_dispatch(traces, scenario, args.out / f"dispatch_{day}.png", title=f"Campus, {day}")
    print(f"\nDispatch of {day}, agent beside the optimum: {figure}")


if __name__ == "__main__":
    main()
