"""Training throughput of the PPO configurations, timed back to back.

The steps/s column of ``ppo_improvements.py`` comes from runs that shared the machine with different
jobs at different times. Here each repeat trains every configuration of ``--configs`` for ``--steps``
steps one after the other (one process, one torch thread, no scoring) and divides each one's steps/s
by ``ppo_tuned``'s in the same repeat; the table gives medians over ``--repeats``.

Usage: python benchmarks/ppo_throughput.py [--configs ppo_tuned,attention,twin_value] [--steps 8192] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from ppo_improvements import build
from reporting import run_metadata, write_results


def steps_per_second(name: str, steps: int, seed: int) -> float:
    """Train ``name`` for ``steps`` steps; its steps/s (model construction excluded)."""
    model, callbacks = build(name, seed)
    start = time.perf_counter()
    model.learn(steps, callback=callbacks)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="ppo_tuned,attention,twin_value")
    parser.add_argument("--steps", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    names = args.configs.split(",")
    if "ppo_tuned" not in names:
        names.insert(0, "ppo_tuned")
    rates = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names:
            rates[name].append(steps_per_second(name, args.steps, repeat))
    rows = [
        {
            "config": name,
            "steps_per_s_median": float(np.median(rates[name])),
            "ratio_median": float(np.median(np.array(rates[name]) / np.array(rates["ppo_tuned"]))),
            "ratios": (np.array(rates[name]) / np.array(rates["ppo_tuned"])).tolist(),
        }
        for name in names
    ]
    meta = run_metadata()
    lines = [
        "# PPO training throughput, back to back",
        "",
        f"Command: `{meta['command']}` ({meta['time']}). {args.steps:,} steps per run, {args.repeats} repeats; ratio = median of per-repeat ratios to ppo_tuned.",
        "",
        "| config | steps/s (median) | vs ppo_tuned (median) | per-repeat ratios |",
        "|---|---:|---:|---|",
        *(f"| {r['config']} | {r['steps_per_s_median']:,.0f} | {r['ratio_median']:.2f} | {', '.join(f'{x:.2f}' for x in r['ratios'])} |" for r in rows),
    ]
    write_results("ppo_throughput", meta, {"rows": rows, "rates": rates}, lines)


if __name__ == "__main__":
    main()
