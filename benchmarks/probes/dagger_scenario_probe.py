"""Probe: DAgger distillation of MPC on forecast scenarios into a battery correction of a fast corrected base.

The expert (MPC on 32 forecast scenarios of the corrector's residuals, about 45 ms a step) is too slow to run on
site or inside RL; its decisions depend only on the observations so far (and its draws), unlike the clairvoyant
expert of ``dagger_probe.py``, so they can be learned. The learner (``dagger_probe.Regressor``) sees the observation
and the base's action (``--base``: the planner or MPC on the corrected forecasts, a few ms a step), regresses the expert's battery entry minus the base's
in the states the learner itself visits (iteration 0 drives with the base alone) and acts as that correction on the
base, EVs as the base places them. Scored on the first validation days after each iteration, beside the base, the
expert and MPC on the same days and noise. Exploratory: not a published table.

cd benchmarks/probes && python dagger_scenario_probe.py --scenario campus --base mpc --out results/dagger_scenario_mpc_campus.json
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from dagger_probe import Regressor
from probe_output import write_probe

from sb3_microgrid.envs import MicrogridEnv
from sb3_microgrid.evaluation import evaluate
from sb3_microgrid.forecasting import CorrectedForecastController, fit_corrector
from sb3_microgrid.wrappers.residual import ResidualController, ResidualObservation


def collect(env: MicrogridEnv, base, expert, learner: Regressor | None, scale: float, days: list[str], seed: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Drive with the base plus the learner's correction; label each visited state with the expert's."""
    xs, ys = [], []
    view = ResidualObservation(env.obs_layout, env.action_space.shape[0])
    for i, day in enumerate(days):
        obs, _ = env.reset(seed=seed + i, options={"day": day})
        base.reset(env, obs)
        expert.reset(env, obs)
        done = False
        while not done:
            a_base = np.asarray(base.act(obs), dtype=np.float64)
            a_expert = np.asarray(expert.act(obs), dtype=np.float64)
            x = view(obs, a_base)
            xs.append(x)
            ys.append((a_expert[0] - a_base[0]) / scale)
            correction = learner.act(x)[0] if learner is not None else 0.0
            action = np.r_[np.clip(a_base[0] + scale * correction, -1.0, 1.0), a_base[1:]]
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    return np.array(xs), np.clip(np.array(ys), -1.0, 1.0)


class ExpertBattery:
    """The base's action with the expert's battery entry: what a perfect learner of the correction would do."""

    name = "expert battery, base EVs"

    def __init__(self, base, expert) -> None:  # noqa: ANN001
        self.base, self.expert = base, expert
        self.ev_dispatch = getattr(base, "ev_dispatch", None)

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        self.base.reset(env, obs)
        self.expert.reset(env, obs)

    def act(self, obs: np.ndarray) -> np.ndarray:
        action = np.asarray(self.base.act(obs), dtype=np.float64).copy()
        action[0] = self.expert.act(obs)[0]
        return action


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="campus")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--days-per-iter", type=int, default=96)
    ap.add_argument("--base", choices=("planner", "mpc"), default="planner")
    ap.add_argument("--scenarios", type=int, default=32)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--val-days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    corrector = fit_corrector(args.scenario, days=4096, seed=args.seed, residual_days=256)
    base = CorrectedForecastController(args.base, corrector)
    expert = CorrectedForecastController("mpc", corrector, scenarios=args.scenarios, seed=args.seed)
    fit_minutes = (time.perf_counter() - t0) / 60

    def score(controller) -> dict:  # noqa: ANN001
        summary = evaluate(controller, scenario=args.scenario, split="validation", days=args.val_days, seed=0).summary
        return {"gap_closed": summary["gap_closed"], "unmet": summary["unmet_ev_kwh_per_day"], "violations": summary["safety_violations"]}

    reference = {"mpc": score("mpc"), "base": score(base), "expert": score(expert), "expert_battery": score(ExpertBattery(base, expert))}
    print(reference, flush=True)
    env = MicrogridEnv(scenario=args.scenario, split="train")
    dates = [str(d.date()) for d in env.core.site.dates[env.core.starts]]
    learner = Regressor(args.hidden, args.seed)
    xs, ys, curve, train_seconds = [], [], [], 0.0
    for it in range(args.iterations):
        started = time.perf_counter()
        days = list(rng.choice(dates, args.days_per_iter, replace=False))
        x, y = collect(env, base, expert, learner if it > 0 else None, args.scale, days, seed=10_000 * (it + 1) + args.seed)
        xs.append(x)
        ys.append(y)
        mse = learner.fit(np.concatenate(xs), np.concatenate(ys), args.epochs, args.lr)
        train_seconds += time.perf_counter() - started
        row = {"iteration": it, "samples": int(sum(len(a) for a in xs)), "label_var": float(np.var(np.concatenate(ys))), "train_mse": mse,
               "train_minutes": (fit_minutes * 60 + train_seconds) / 60,
               **score(ResidualController(learner, base, args.scale, battery_only=True, name="distilled")),
               # the same correction halved: if this scores better, the learner's errors cost more than its signal earns
               "half_gap_closed": score(ResidualController(learner, base, args.scale / 2, battery_only=True, name="distilled, halved"))["gap_closed"]}
        curve.append(row)
        print(row, flush=True)
    command = "python " + " ".join(sys.argv)
    lines = [f"# DAgger of scenario MPC onto corrected {args.base}, {args.scenario}", "", f"Command: `{command}`", "",
             f"First {args.val_days} validation days: MPC {reference['mpc']['gap_closed']:.3f}, corrected {args.base} (base) "
             f"{reference['base']['gap_closed']:.3f}, scenario MPC (expert) {reference['expert']['gap_closed']:.3f}, the expert's battery "
             f"entry with the base's EVs (a perfect learner) {reference['expert_battery']['gap_closed']:.3f}.", "",
             "| iteration | samples | label variance | train MSE | minutes (fit + DAgger) | gap closed | halved correction | unmet kWh/day | violations |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['iteration']} | {r['samples']} | {r['label_var']:.4f} | {r['train_mse']:.4f} | {r['train_minutes']:.1f} | {r['gap_closed']:.3f} | "
              f"{r['half_gap_closed']:.3f} | {r['unmet']:.2f} | {r['violations']} |" for r in curve]
    write_probe(args.out, command, {"args": vars(args), "reference": reference, "curve": curve}, lines)


if __name__ == "__main__":
    main()
