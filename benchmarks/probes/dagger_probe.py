"""Probe: DAgger of a battery correction on top of the planner, with the planner on the true series as
the expert. The learner sees the observation (and the planner's action) and regresses the expert's
correction of the planner's battery entry in the states the learner itself visits. Scored on the first
validation days after each iteration. Exploratory: not a published table.

python benchmarks/probes/dagger_probe.py --iterations 6 --days-per-iter 128 --out benchmarks/probes/results/dagger.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sb3_microgrid.baselines.planner import PlannerController
from sb3_microgrid.envs import MicrogridEnv
from sb3_microgrid.evaluation import evaluate
from sb3_microgrid.wrappers.residual import ResidualController, ResidualObservation


class Regressor:
    """Standardised inputs, a small MLP, the residual clipped to [-1, 1]."""

    name = "dagger"

    def __init__(self, hidden: int, seed: int) -> None:
        self.hidden, self.seed, self.net = hidden, seed, None

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int, lr: float) -> float:
        torch.manual_seed(self.seed)
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        xt = torch.as_tensor((x - self.mean) / self.std, dtype=torch.float32)
        yt = torch.as_tensor(y, dtype=torch.float32)[:, None]
        self.net = nn.Sequential(nn.Linear(x.shape[1], self.hidden), nn.Tanh(), nn.Linear(self.hidden, self.hidden), nn.Tanh(), nn.Linear(self.hidden, 1))
        opt = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=1e-5)
        n = len(xt)
        for _ in range(epochs):
            perm = torch.randperm(n)
            for i in range(0, n, 256):
                idx = perm[i : i + 256]
                loss = ((self.net(xt[idx]) - yt[idx]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            return float(((self.net(xt) - yt) ** 2).mean())

    def reset(self, env, obs) -> None:  # noqa: ANN001
        pass

    def act(self, x: np.ndarray) -> np.ndarray:
        if self.net is None:
            return np.zeros(1)
        with torch.no_grad():
            out = self.net(torch.as_tensor((x - self.mean) / self.std, dtype=torch.float32)[None])[0].numpy()
        return np.clip(out, -1.0, 1.0)


def collect(env: MicrogridEnv, learner: Regressor | None, scale: float, days: list[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Drive with planner + learner; label each visited state with the expert's battery correction."""
    base, expert = PlannerController(), PlannerController(perfect_forecasts=True)
    xs, ys = [], []
    for i, day in enumerate(days):
        obs, _ = env.reset(seed=seed + i, options={"day": day})
        base.reset(env, obs)
        expert.reset(env, obs)
        view = ResidualObservation(env.obs_layout, env.action_space.shape[0])
        done = False
        while not done:
            a_base = base.act(obs)
            a_exp = expert.act(obs)
            x = view(obs, a_base)
            xs.append(x)
            ys.append((a_exp[0] - a_base[0]) / scale)
            r = learner.act(x) if learner is not None else np.zeros(1)
            action = np.r_[np.clip(a_base[0] + scale * r[0], -1, 1), a_base[1:]]
            obs, _, term, trunc, _ = env.step(action)
            done = term or trunc
    return np.array(xs), np.clip(np.array(ys), -1, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="campus")
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--days-per-iter", type=int, default=128)
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--val-days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    env = MicrogridEnv(scenario=args.scenario, split="train")
    dates = [str(d.date()) for d in env.core.site.dates[env.core.starts]]
    learner = Regressor(args.hidden, args.seed)
    X, Y, log, t0 = [], [], [], time.perf_counter()
    base_score = evaluate(PlannerController(), scenario=args.scenario, split="validation", days=args.val_days, seed=0).summary["gap_closed"]
    print({"planner_validation": base_score}, flush=True)
    for it in range(args.iterations):
        days = list(rng.choice(dates, args.days_per_iter, replace=False))
        x, y = collect(env, learner if it > 0 else None, args.scale, days, seed=10_000 * (it + 1) + args.seed)
        X.append(x)
        Y.append(y)
        mse = learner.fit(np.concatenate(X), np.concatenate(Y), args.epochs, args.lr)
        ev = evaluate(ResidualController(learner, "planner", args.scale, battery_only=True), scenario=args.scenario, split="validation", days=args.val_days, seed=0)
        row = {"iteration": it, "samples": int(sum(len(a) for a in X)), "label_var": float(np.var(np.concatenate(Y))), "train_mse": mse,
               "gap_closed": ev.summary["gap_closed"], "unmet": ev.summary["unmet_ev_kwh_per_day"], "minutes": (time.perf_counter() - t0) / 60}
        log.append(row)
        print(row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "planner_validation": base_score, "curve": log}, indent=2))


if __name__ == "__main__":
    main()
