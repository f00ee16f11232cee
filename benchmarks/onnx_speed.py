"""Speed of one decision of an exported policy: onnxruntime (``OnnxPolicy.act``) against SB3
(``SB3Controller.act``: ``VecNormalize.normalize_obs`` + ``model.predict(deterministic=True)``), batch 1,
one thread each, in one run.

Both act on the same real observations (``--days`` test days stepped with the model's own actions), in
alternating blocks so that a busy machine slows both alike. Per decision: decisions per second (1 / mean
latency), p50 and p99 latency. The exported actions are checked against the model's first. Results go to
``benchmarks/results/<--name>.{json,md}`` with the command that produced them.

The model is ``--model RUN/model.zip`` (exported into a temporary folder), or by default an untrained
``--algo`` policy of ``hyperparams/ppo.yml``'s shape (SB3's default MLP; the time does not depend on
the weights) with ``VecNormalize`` statistics of ``--days`` days of steps.

Usage: python benchmarks/onnx_speed.py [--model RUN/model.zip | --algo ppo] [--days 30] [--repeats 5] [--name onnx_speed]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from reporting import run_metadata, write_results  # noqa: E402
from stable_baselines3.common.vec_env import VecNormalize  # noqa: E402

from sb3_microgrid.algos import ALGOS  # noqa: E402
from sb3_microgrid.baselines import SB3Controller  # noqa: E402
from sb3_microgrid.envs import MicrogridEnv, MicrogridVecEnv  # noqa: E402
from sb3_microgrid.export import OnnxPolicy  # noqa: E402
from sb3_microgrid.export.onnx_export import export_model  # noqa: E402


def untrained(algo: str, folder: Path, steps: int) -> Path:
    """An untrained ``algo`` model with ``VecNormalize`` statistics of ``steps`` random steps, saved in ``folder``."""
    env = VecNormalize(MicrogridVecEnv(1, seed=0), clip_obs=10.0)
    env.reset()
    for _ in range(steps):
        env.step(np.array([env.action_space.sample()]))
    model = ALGOS[algo]("MlpLstmPolicy" if algo == "ppo_lstm" else "LinearPolicy" if "ars" in algo else "MlpPolicy", env, device="cpu", seed=0)
    model.save(folder / "model.zip")
    env.save(folder / "model_vecnormalize.pkl")
    return folder / "model.zip"


def observations(controller: SB3Controller, days: int) -> np.ndarray:
    """The observations of ``days`` test days, stepped with the model's actions."""
    env, seen = MicrogridEnv(split="test"), []
    for day in range(days):
        obs, _ = env.reset(seed=day)
        controller.reset(env, obs)
        done = False
        while not done:
            seen.append(obs)
            obs, _, done, _, _ = env.step(controller.act(obs))
    return np.array(seen, dtype=np.float32)


def latencies(act, obs: np.ndarray) -> np.ndarray:
    """Seconds of each ``act(o)`` for ``o`` in ``obs``."""
    out = np.empty(len(obs))
    for i, o in enumerate(obs):
        start = time.perf_counter()
        act(o)
        out[i] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="a saved model (default: an untrained --algo policy)")
    parser.add_argument("--algo", default="ppo", choices=sorted(set(ALGOS) - {"ppo_lstm"}), help="algorithm of the untrained policy (default: ppo)")
    parser.add_argument("--days", type=int, default=30, help="test days of observations (24 decisions each)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating blocks per runtime, each over every observation")
    parser.add_argument("--name", default="onnx_speed", help="results file name under benchmarks/results/")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or untrained(args.algo, Path(tmp), 24 * args.days)
        manifest = export_model(path, Path(tmp) / "export")
        if manifest["recurrent"] or manifest["env_wrappers"]:
            raise SystemExit("this benchmark times feed-forward policies of the plain env: not a recurrent one (its decision carries state) or one under env wrappers")
        onnx = OnnxPolicy(Path(tmp) / "export", intra_op_threads=1)
        sb3 = SB3Controller(path)
        obs = observations(sb3, args.days)
        diff = float(max(np.max(np.abs(onnx.act(o) - sb3.act(o))) for o in obs))
        runtimes = {"onnxruntime": onnx.act, "sb3 predict": sb3.act}
        for act in runtimes.values():  # warm-up: first-call costs are not a decision's
            latencies(act, obs[:50])
        times: dict[str, list[np.ndarray]] = {name: [] for name in runtimes}
        for _ in range(args.repeats):
            for name, act in runtimes.items():
                times[name].append(latencies(act, obs))

    rows = []
    for name, blocks in times.items():
        t = np.concatenate(blocks)
        rows.append({"runtime": name, "decisions": len(t), "decisions_per_s": 1.0 / t.mean(), "p50_ms": 1e3 * np.percentile(t, 50), "p99_ms": 1e3 * np.percentile(t, 99)})
    speedup = rows[0]["decisions_per_s"] / rows[1]["decisions_per_s"]
    meta = run_metadata(algorithm=manifest["algorithm"], model=str(args.model) if args.model else f"untrained {args.algo}", onnxruntime_threads=1, torch_threads=1)
    lines = [
        "# Exported policy speed: one decision, batch 1",
        "",
        f"Command: `{meta['command']}` ({meta['time']}, Python {meta['python']}, {meta['cpus']} CPUs, one thread per runtime).",
        "",
        f"Model: {meta['model']} ({manifest['algorithm']}), {len(obs)} observations of {args.days} test days, {args.repeats} alternating blocks; "
        f"largest action difference {diff:.1e}.",
        "",
        "| runtime | decisions/s | p50 latency (ms) | p99 latency (ms) |",
        "|---|---:|---:|---:|",
        *(f"| {r['runtime']} | {r['decisions_per_s']:,.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} |" for r in rows),
        "",
        f"onnxruntime: {speedup:.1f}x the decisions per second of SB3's predict.",
    ]
    write_results(args.name, meta, {"results": rows, "max_abs_action_diff": diff, "speedup": speedup}, lines)


if __name__ == "__main__":
    main()
