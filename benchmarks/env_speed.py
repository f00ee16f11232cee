"""Environment throughput and peak memory, all configurations measured in one run.

Configurations: the raw env and ``gym.make`` (one env, one core), ``MicrogridVecEnv`` with per-step info
dicts (as SB3 expects by default) and with ``step_infos=False``, and SB3's ``DummyVecEnv`` and
``SubprocVecEnv`` over the single env. Each configuration runs in a fresh process (so its peak RSS is its own) and is timed ``--repeats``
times; the median is reported. Results go to ``benchmarks/results/env_speed.{json,md}`` with the
command that produced them.

Usage: python benchmarks/env_speed.py [--repeats 5] [--steps 20000] [--vec-n 1024]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from reporting import run_metadata, write_results



def _measure(kind: str, n_envs: int, steps: int, repeats: int, queue: mp.Queue) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    import sb3_microgrid  # noqa: F401
    from sb3_microgrid import MicrogridEnv, MicrogridVecEnv

    rates = []
    if kind in ("env", "gym.make"):
        env = MicrogridEnv() if kind == "env" else gym.make("Microgrid-v0")
        actions = np.random.default_rng(0).uniform(-1, 1, size=(1024, env.action_space.shape[0])).astype(np.float32)
        env.reset(seed=0)
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(steps):
                _, _, terminated, truncated, _ = env.step(actions[i % 1024])
                if terminated or truncated:
                    env.reset()
            rates.append(steps / (time.perf_counter() - start))
    else:
        if kind.startswith("MicrogridVecEnv"):
            venv = MicrogridVecEnv(n_envs, seed=0, step_infos=kind == "MicrogridVecEnv")
        else:
            cls = DummyVecEnv if kind == "DummyVecEnv" else SubprocVecEnv
            venv = cls([MicrogridEnv for _ in range(n_envs)])
            venv.seed(0)
        venv.reset()
        actions = np.random.default_rng(0).uniform(-1, 1, size=(64, n_envs, venv.action_space.shape[0])).astype(np.float32)
        vec_steps = max(steps // n_envs, 48)
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(vec_steps):
                venv.step(actions[i % 64])
            rates.append(vec_steps * n_envs / (time.perf_counter() - start))
        venv.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    queue.put({"rates": rates, "peak_rss_mb": peak_mb})


def measure(kind: str, n_envs: int, steps: int, repeats: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(kind, n_envs, steps, repeats, queue))
    proc.start()
    out = queue.get()
    proc.join()
    rates = out["rates"]
    return {
        "config": kind,
        "n_envs": n_envs,
        "median_env_steps_per_s": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "repeats": len(rates),
        "peak_rss_mb": out["peak_rss_mb"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20000, help="env steps per timed repeat (single env)")
    parser.add_argument("--vec-n", type=int, default=1024)
    args = parser.parse_args()

    configs = [
        ("env", 1, args.steps),
        ("gym.make", 1, args.steps),
        ("MicrogridVecEnv", args.vec_n, args.steps * 50),
        ("MicrogridVecEnv step_infos=False", args.vec_n, args.steps * 100),
        ("MicrogridVecEnv", 8, args.steps),
        ("DummyVecEnv", 8, args.steps),
        ("SubprocVecEnv", 2, args.steps // 2),
    ]
    rows = [measure(kind, n, steps, args.repeats) for kind, n, steps in configs]
    reference = rows[0]["median_env_steps_per_s"]
    for row in rows:
        row["ratio_to_single_env"] = row["median_env_steps_per_s"] / reference
    meta = run_metadata()
    command = meta["command"]
    lines = [
        "# Environment speed",
        "",
        f"Command: `{command}` ({meta['time']}, Python {meta['python']}, {meta['cpus']} CPUs; shared machine, medians of {args.repeats} repeats).",
        "",
        "| configuration | N | median env-steps/s | min | max | ratio to single env | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['n_envs']} | {r['median_env_steps_per_s']:,.0f} | {r['min']:,.0f} | {r['max']:,.0f} | {r['ratio_to_single_env']:.2f} | {r['peak_rss_mb']:.0f} |"
        )
    write_results("env_speed", meta, {"results": rows}, lines)


if __name__ == "__main__":
    main()
