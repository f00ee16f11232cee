"""Probe: the planner on learned forecasts. An MLP regresses the true series of the forecast rows from the
whole observation (its forecasts, the measured history, the time features) on training days; the planner
then plans on its prediction instead of the raw forecasts. Scored on the first validation days, against the
planner on the raw forecasts and on the true series. Exploratory: not a published table.

python benchmarks/probes/forecast_probe.py --scenario campus --days 2000 --out benchmarks/probes/results/forecast_campus.json
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
from sb3_microgrid.envs import MicrogridVecEnv
from sb3_microgrid.evaluation import evaluate


def collect(scenario: str, days: int, n_envs: int, seed: int, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Observations of training days and the true values of their forecast rows (normalised, flattened)."""
    venv = MicrogridVecEnv(scenario=scenario, n_envs=n_envs, split=split)
    venv.seed(seed)
    core, lay = venv.core, venv.obs_layout
    h, f = lay.history_steps, lay.forecast_steps
    obs = venv.reset()
    zeros = np.zeros((n_envs, *venv.action_space.shape), dtype=np.float32)
    xs, ys = [], []
    for _ in range(-(-days // n_envs) * core.scenario.episode_steps):
        t = core.t
        xs.append(obs.copy())
        ys.append(core.episode.window_mean[:, t + h : t + h + f].reshape(n_envs, -1).copy())
        obs, *_ = venv.step(zeros)
    return np.concatenate(xs), np.concatenate(ys)


class Forecaster:
    """Predicts the true forecast rows; the planner sees an observation whose forecast rows are replaced."""

    def __init__(self, layout, hidden: int, seed: int, series: list[str]) -> None:  # noqa: ANN001
        self.layout, self.hidden, self.seed = layout, hidden, seed
        # only these columns of the forecast rows take the prediction; the others keep the raw forecast
        self.keep = ~np.tile(np.isin(layout.window_names, series), layout.forecast_steps)
        h = layout.history_steps * len(layout.window_names)
        self.rows = slice(layout.window.start + h, layout.window.stop)

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int, lr: float) -> None:
        torch.manual_seed(self.seed)
        fc = x[:, self.rows]
        self.xm, self.xs = x.mean(0), x.std(0) + 1e-6
        resid = y - fc
        self.ym, self.ys = resid.mean(0), resid.std(0) + 1e-6
        xt = torch.as_tensor((x - self.xm) / self.xs, dtype=torch.float32)
        yt = torch.as_tensor((resid - self.ym) / self.ys, dtype=torch.float32)
        self.net = nn.Sequential(nn.Linear(x.shape[1], self.hidden), nn.Tanh(), nn.Linear(self.hidden, self.hidden), nn.Tanh(), nn.Linear(self.hidden, y.shape[1]))
        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        for epoch in range(epochs):
            perm = torch.randperm(len(xt))
            for i in range(0, len(xt), 512):
                idx = perm[i : i + 512]
                loss = ((self.net(xt[idx]) - yt[idx]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            print({"epoch": epoch, "loss": float(loss)}, flush=True)

    def predict(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self.net(torch.as_tensor((x - self.xm) / self.xs, dtype=torch.float32)).numpy()
        raw = x[:, self.rows]
        return np.where(self.keep, raw, np.maximum(raw + out * self.ys + self.ym, 0.0))


class PlannerOnForecaster(PlannerController):
    forecaster: Forecaster | None = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = obs.copy()
        obs[self.forecaster.rows] = self.forecaster.predict(obs[None])[0]
        return super().act(obs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="campus")
    ap.add_argument("--days", type=int, default=2000)
    ap.add_argument("--n-envs", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--val-days", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--series", default="pv,wind,load,price,emission", help="window columns that take the learned forecast")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    x, y = collect(args.scenario, args.days, args.n_envs, args.seed)
    xv, yv = collect(args.scenario, 256, 64, 999, split="validation")  # for the error figure only
    t_collect = time.perf_counter() - t0
    venv_layout = MicrogridVecEnv(scenario=args.scenario, n_envs=1).obs_layout
    model = Forecaster(venv_layout, args.hidden, args.seed, args.series.split(","))
    model.fit(x, y, args.epochs, args.lr)
    t_fit = time.perf_counter() - t0 - t_collect
    raw_mae = float(np.abs(xv[:, model.rows] - yv).mean())
    learned_mae = float(np.abs(model.predict(xv) - yv).mean())
    controller = PlannerOnForecaster()
    controller.forecaster = model
    scores = {
        name: evaluate(c, scenario=args.scenario, split="validation", days=args.val_days, seed=0).summary["gap_closed"]
        for name, c in (("planner", PlannerController()), ("planner_learned_forecasts", controller), ("planner_true_series", PlannerController(perfect_forecasts=True)))
    }
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "samples": len(x), "collect_s": t_collect, "fit_s": t_fit,
              "mae_raw_forecast": raw_mae, "mae_learned": learned_mae, "validation_gap_closed": scores}
    print(result, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
