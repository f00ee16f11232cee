"""Latency of one decision of the site controller: p50 and p99 over HTTP (the real server, ``sb3-microgrid serve``,
pinned to one core) and, for comparison, in-process (``SiteController.decide`` on the same JSON bodies).

The env plays the site for ``--days`` test days under the exported policy; every step's measurements (JSON) are
recorded first, then each body is sent ``--repeats`` times. One HTTP decision is timed from the client's send to
the parsed response, over a kept-alive connection; the client runs on another core than the server when there
is one. Results go to ``benchmarks/results/<--name>.{json,md}`` with the command that produced them.

Usage: python benchmarks/serve_latency.py [--export DIR] [--days 10] [--repeats 5] [--core 0] [--name serve_latency]

Without ``--export`` a PPO with SB3's default network ([64, 64]) is trained for 128 steps and exported into a
temporary folder: the network's size, not its quality, sets the latency.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from reporting import run_metadata, write_results  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from sb3_microgrid.deploy import Measurements, SiteController  # noqa: E402
from sb3_microgrid.deploy.env_site import EnvSite  # noqa: E402
from sb3_microgrid.envs import MicrogridEnv  # noqa: E402

WARM_UP = 20


def tiny_export(folder: Path) -> Path:
    """A PPO (SB3's default MLP) trained for 128 steps on campus, exported into ``folder``."""
    from stable_baselines3 import PPO

    from sb3_microgrid import MicrogridVecEnv
    from sb3_microgrid.export.onnx_export import export_model

    PPO("MlpPolicy", MicrogridVecEnv(1, seed=0), n_steps=64, batch_size=64, seed=0, device="cpu").learn(128).save(folder / "model.zip")
    export_model(folder / "model.zip", folder / "policy")
    return folder / "policy"


def recorded_bodies(export: Path, days: int) -> list[str]:
    """The measurements (JSON) of every step of the first ``days`` test days, the site run by the export's policy."""
    controller = SiteController.from_export(export, clock=None)
    env = MicrogridEnv(split="test")
    bodies: list[str] = []

    def decide(measurements: Measurements):
        bodies.append(measurements.model_dump_json())
        return controller.decide(measurements)

    for seed, day in enumerate(env.core.start_days[:days]):
        EnvSite(env).play(day, seed, decide)
    return bodies


def quantiles_ms(seconds: list[float]) -> dict[str, float]:
    p50, p99 = np.percentile(np.asarray(seconds) * 1e3, [50, 99])
    return {"p50_ms": float(p50), "p99_ms": float(p99), "mean_ms": float(np.mean(seconds) * 1e3), "decisions": len(seconds)}


def in_process(export: Path, bodies: list[str], repeats: int) -> list[float]:
    controller = SiteController.from_export(export, clock=None)
    for body in bodies[:WARM_UP]:
        controller.decide(Measurements.model_validate_json(body))
    times = []
    for _ in range(repeats):
        for body in bodies:
            start = time.perf_counter()
            controller.decide(Measurements.model_validate_json(body))
            times.append(time.perf_counter() - start)
    return times


def over_http(export: Path, bodies: list[str], repeats: int, core: int, log: Path) -> list[float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "sb3_microgrid.cli", "serve", str(export), "--port", str(port), "--replay"]
    with open(log, "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=out, preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    url = f"http://127.0.0.1:{port}"
    try:
        while True:  # the server imports and loads the export first
            if server.poll() is not None:
                raise RuntimeError(f"the server exited:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        headers = {"content-type": "application/json"}
        times = []
        with httpx.Client(base_url=url, headers=headers) as client:
            for body in bodies[:WARM_UP]:
                client.post("/decide", content=body).raise_for_status()
            for _ in range(repeats):
                for body in bodies:
                    start = time.perf_counter()
                    response = client.post("/decide", content=body)
                    response.raise_for_status()
                    response.json()
                    times.append(time.perf_counter() - start)
        return times
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, default=None, help="export folder (default: a tiny PPO exported for this run)")
    parser.add_argument("--days", type=int, default=10, help="test days whose steps are the requests")
    parser.add_argument("--repeats", type=int, default=5, help="times each request is sent")
    parser.add_argument("--core", type=int, default=0, help="the core the server is pinned to")
    parser.add_argument("--name", default="serve_latency", help="results file name")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    others = [c for c in cores if c != args.core]
    if others:  # the client on another core than the server
        os.sched_setaffinity(0, others)
    with tempfile.TemporaryDirectory() as tmp:
        export = args.export if args.export is not None else tiny_export(Path(tmp))
        bodies = recorded_bodies(export, args.days)
        local = quantiles_ms(in_process(export, bodies, args.repeats))
        http = quantiles_ms(over_http(export, bodies, args.repeats, args.core, Path(tmp) / "server.log"))
    meta = run_metadata(export=str(args.export) if args.export else "tiny PPO [64, 64], 128 steps", days=args.days, repeats=args.repeats,
                        server_core=args.core, client_cores=others or cores)  # fmt: skip
    lines = [
        f"# Site controller latency per decision ({len(bodies)} requests x {args.repeats}, server on core {args.core})",
        "",
        f"`{meta['command']}`",
        "",
        "| path | p50 (ms) | p99 (ms) | mean (ms) | decisions |",
        "|---|---:|---:|---:|---:|",
        *(f"| {label} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['mean_ms']:.3f} | {r['decisions']} |" for label, r in (("HTTP (POST /decide)", http), ("in-process (decide)", local))),
    ]
    write_results(args.name, meta, {"http": http, "in_process": local}, lines)


if __name__ == "__main__":
    main()
