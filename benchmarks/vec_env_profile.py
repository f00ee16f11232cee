"""Where a ``MicrogridVecEnv`` step spends its time: the compiled kernel, writing observations, and the
episode reset (every 24 steps), timed separately on warm kernels. Medians of ``--repeats``; results go to
``benchmarks/results/vec_env_profile.{json,md}`` with the command.

Usage: python benchmarks/vec_env_profile.py [--n 1024] [--repeats 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from reporting import run_metadata, write_results  # noqa: E402

from sb3_microgrid import MicrogridVecEnv  # noqa: E402
from sb3_microgrid.envs.core import MicrogridCore  # noqa: E402
from sb3_microgrid.envs.episode import build_episode, noise_shape  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    venv = MicrogridVecEnv(args.n, seed=0, step_infos=False)
    venv.reset()
    core: MicrogridCore = venv.core
    actions = np.random.default_rng(0).uniform(-1, 1, size=(args.n, venv.action_space.shape[0]))
    rngs = venv._rngs
    shape = noise_shape(core.scenario)

    def step_then_rewind() -> None:
        core.step(actions)
        core.t = 0  # stay inside the episode so every repeat times a real step

    def draws() -> None:
        noise = np.empty((args.n, *shape))
        for i, rng in enumerate(rngs):
            rng.random()
            rng.standard_normal(out=noise[i])

    start = np.resize(core.starts, args.n)
    rows = [
        {"part": "step (kernel + observation)", "median_ms": median_ms(step_then_rewind, args.repeats)},
        {"part": "observation alone", "median_ms": median_ms(core.observe, args.repeats)},
        {"part": "reset (all of it)", "median_ms": median_ms(lambda: core.reset(rngs), max(5, args.repeats // 5))},
        {"part": "reset: per-env generator draws", "median_ms": median_ms(draws, max(5, args.repeats // 5))},
        {"part": "reset: building the episode arrays", "median_ms": median_ms(lambda: build_episode(core.site, core.scenario, start, core.difficulty), max(5, args.repeats // 5))},
    ]
    meta = run_metadata(n_envs=args.n)
    lines = [
        "# MicrogridVecEnv profile",
        "",
        f"Command: `{meta['command']}` ({meta['time']}, {meta['cpus']} CPUs; shared machine). N = {args.n}, warm kernels, medians.",
        "",
        "| part | median (ms) |",
        "|---|---:|",
        *(f"| {r['part']} | {r['median_ms']:.3f} |" for r in rows),
    ]
    write_results("vec_env_profile", meta, {"results": rows}, lines)


if __name__ == "__main__":
    main()
