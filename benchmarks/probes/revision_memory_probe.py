"""Probe: does the forecast corrector gain from remembering more than the last revision?

The forecast errors are sums of AR(1) increments (docs/environment.md, section 4): each step reveals, per target,
the increment its forecast just dropped, and increment ``k`` of one target is correlated (rho = 0.8) with
increment ``k`` of the next. The package's corrector regresses the current errors on the last step's revisions
only; older revisions revealed increments of earlier targets that still carry information (rho**2, rho**3...).
Here the same least squares takes the revisions of the last ``m`` steps (zeros before the episode's first), per
series, and MPC plans on its corrections, on the corrected forecast alone and on forecast scenarios drawn from its
residuals. Same validation days and noise for every arm. Exploratory: not a published table.

cd benchmarks/probes && python revision_memory_probe.py --scenario campus --out results/revision_memory_campus.json
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
from probe_output import write_probe

from sb3_microgrid.envs import MicrogridEnv
from sb3_microgrid.evaluation import evaluate
from sb3_microgrid.forecasting import CorrectedForecastController, ForecastCorrector, episode_batches, fit_corrector
from sb3_microgrid.forecasting.correction import _relative, divide_out, revealed_errors
from sb3_microgrid.scenario import load_scenario


def with_history(batches: Iterator, steps: int, memory: int, h: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(revisions, windows, truth)``: the revisions of the last ``memory`` steps, (N, memory, F, S), newest first."""
    past: deque = deque(maxlen=memory)
    for i, (windows, previous, truth) in enumerate(batches):
        if i % (steps - 1) == 0:  # episode_batches starts a new group of days: steps 1 .. steps - 1
            past.clear()
        past.appendleft(revealed_errors(previous, windows, h))
        yield stack(past, memory), windows, truth


def stack(past: deque, memory: int) -> np.ndarray:
    """The remembered revisions, newest first, as (N, memory, F, S); zeros for steps before the episode's first."""
    stacked = np.zeros((past[0].shape[0], memory, *past[0].shape[1:]))
    for lag, rev in enumerate(past):
        stacked[:, lag] = rev
    return stacked


class MemoryCorrector:
    """Least squares of the current relative errors on the revisions of the last ``memory`` steps, per series."""

    def __init__(self, batches: Iterator, memory: int, h: int, ridge: float = 1e-3) -> None:
        self.h = h
        gram = cross = None
        for revisions, windows, truth in batches:
            n, m, f, s = revisions.shape
            x = revisions.transpose(0, 3, 1, 2).reshape(n, s, m * f)
            y = _relative(windows[:, h:], truth)
            g, c = np.einsum("nsk,nsj->skj", x, x), np.einsum("nsk,nls->skl", x, y)
            gram, cross = (g, c) if gram is None else (gram + g, cross + c)
        scale = np.maximum(np.trace(gram, axis1=1, axis2=2) / gram.shape[1], 1e-12)
        self.weights = np.linalg.solve(gram + ridge * scale[:, None, None] * np.eye(gram.shape[1]), cross)  # (S, m F, F)
        self.memory = memory

    def correct(self, revisions: np.ndarray, windows: np.ndarray) -> np.ndarray:
        n, m, f, s = revisions.shape
        x = revisions.transpose(0, 3, 1, 2).reshape(n, s, m * f)
        return divide_out(windows, np.einsum("nsk,skl->nls", x, self.weights), self.h)


class MemoryController(CorrectedForecastController):
    """MPC on the memory corrector's forecasts (or on scenarios of its own residuals)."""

    def __init__(self, package: ForecastCorrector, memory: MemoryCorrector, scenarios: int, residuals: np.ndarray | None) -> None:
        # the package's corrector for its checks; its weights are not used, its residuals replaced by the memory corrector's
        own = package if residuals is None else replace(package, residuals=residuals)
        super().__init__("mpc", own, name=f"mpc, memory {memory.memory}", scenarios=scenarios)
        self.memory = memory

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        super().reset(env, obs)
        self._past: deque = deque(maxlen=self.memory.memory)

    def corrected_window(self, observed: np.ndarray) -> np.ndarray:
        if self._previous is not None:
            self._past.appendleft(revealed_errors(self._previous[None], observed[None], self._layout.history_steps))
        self._previous = observed.copy()
        return self.memory.correct(stack(self._past, self.memory.memory), observed[None])[0] if self._past else observed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="campus")
    ap.add_argument("--memories", default="1,2,3,4")
    ap.add_argument("--fit-days", type=int, default=4096)
    ap.add_argument("--residual-days", type=int, default=256)
    ap.add_argument("--residual-samples", type=int, default=1024)
    ap.add_argument("--scenarios", type=int, default=32)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    sc = load_scenario(args.scenario)
    steps = sc.episode_steps
    package = fit_corrector(sc, days=args.fit_days, seed=0, residual_days=args.residual_days, residual_samples=args.residual_samples)
    h = package.layout.history_steps

    def score(controller) -> float:  # noqa: ANN001
        return float(evaluate(controller, scenario=sc, split="validation", days=args.days, seed=0).summary["gap_closed"])

    rows = [{"memory": "raw forecasts", "mpc": score("mpc")}, {"memory": "package (1)", "mpc": score(CorrectedForecastController("mpc", package)),
                                                              "scenarios": score(CorrectedForecastController("mpc", package, scenarios=args.scenarios))}]
    print(rows, flush=True)
    for memory in (int(m) for m in args.memories.split(",")):
        started = time.perf_counter()
        model = MemoryCorrector(with_history(episode_batches(sc, args.fit_days, 0), steps, memory, h), memory, h)
        # held-out error: validation days' forecasts, relative mean squared error of the corrected rows
        sq, n = 0.0, 0
        for revisions, windows, truth in with_history(episode_batches(sc, 256, 0, split="validation"), steps, memory, h):
            sq += float((_relative(model.correct(revisions, windows)[:, h:], truth) ** 2).sum())
            n += truth.size
        every = np.concatenate([_relative(truth, model.correct(r, w)[:, h:]) for r, w, truth in with_history(episode_batches(sc, args.residual_days, 0), steps, memory, h)])
        residuals = every[np.sort(np.random.default_rng(0).permutation(every.shape[0])[: args.residual_samples])]
        fit_seconds = time.perf_counter() - started
        row = {"memory": memory, "validation_rmse": (sq / n) ** 0.5, "fit_seconds": fit_seconds,
               "mpc": score(MemoryController(package, model, 0, None)), "scenarios": score(MemoryController(package, model, args.scenarios, residuals))}
        rows.append(row)
        print(row, flush=True)
    command = "python " + " ".join(sys.argv)
    lines = [f"# Corrector memory, {args.scenario}", "", f"Command: `{command}`", "",
             f"Gap closed on the first {args.days} validation days; MPC on the corrected forecast, and on {args.scenarios} scenarios of the corrector's residuals "
             f"({args.residual_samples} vectors of {args.residual_days} training days).", "",
             "| revisions remembered | relative RMSE of the corrected forecasts (256 validation days) | MPC, corrected | MPC on scenarios |", "|---|---:|---:|---:|"]
    cell = lambda r, key, digits: f"{r[key]:.{digits}f}" if key in r else ""  # noqa: E731
    lines += [f"| {r['memory']} | {cell(r, 'validation_rmse', 4)} | {r['mpc']:.3f} | {cell(r, 'scenarios', 3)} |" for r in rows]
    write_probe(args.out, command, {"args": vars(args), "rows": rows}, lines)


if __name__ == "__main__":
    main()
