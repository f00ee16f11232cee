"""Probe: one step of policy improvement on a corrected base by paired rollouts on the same future.

Every learner so far regressed or perturbed the base's action and lost against it: the re-plan of the next
step undoes most of a correction, and the day's weather, load and prices drown the rest in noise. Here the
value of a battery move is measured the way a simulator allows and a site does not: at a state of a training
day the core is forked, the battery entry is moved by +d and by -d, and each branch is driven to the end of the
day by the base itself, on the same future (common random numbers). ``C(0) - C(+d)`` and ``C(0) - C(-d)``, the
cost each move saves, are unbiased samples of the base's advantages given everything observed so far; one MLP
each (``dagger_probe.Regressor``'s, unclipped) regresses them on the observation and the base's action. The
improved policy makes the move whose predicted saving is larger, where it exceeds a margin in Rs (a margin of
``inf`` is the base): policy iteration's first step, with a finite choice of actions. Scored on the first
validation days for each margin, with the regressions' R^2 on held-out training days. Exploratory: not a
published table.

cd benchmarks/probes && python rollout_improvement_probe.py --scenario campus --minutes 12 --out results/rollout_improvement_planner_campus.json
cd benchmarks/probes && python rollout_improvement_probe.py --base rule --scenario campus --minutes 12 --out results/rollout_improvement_rule_campus.json
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import numpy as np
import torch
from dagger_probe import Regressor
from probe_output import write_probe

from sb3_microgrid.baselines import make_controller
from sb3_microgrid.envs import MicrogridEnv
from sb3_microgrid.envs.core import STEP_KEYS
from sb3_microgrid.evaluation import evaluate
from sb3_microgrid.forecasting import CorrectedForecastController, fit_corrector
from sb3_microgrid.wrappers.residual import ResidualObservation

COST = STEP_KEYS.index("cost")
CORE_ARRAYS = ("state", "connected", "remaining", "delivered", "deadline", "info", "reward", "totals")


def snapshot(env: MicrogridEnv) -> tuple:
    core = env.core
    return core.t, {name: getattr(core, name).copy() for name in CORE_ARRAYS}


def restore(env: MicrogridEnv, snap: tuple) -> None:
    core = env.core
    core.t = snap[0]
    for name, array in snap[1].items():
        getattr(core, name)[:] = array


def finish(env: MicrogridEnv, controller, obs: np.ndarray) -> float:  # noqa: ANN001
    """Drive ``controller`` to the end of the episode; the cost from here on."""
    cost, done = 0.0, False
    while not done:
        obs, _, done, _, _ = env.step(controller.act(obs))
        cost += env.core.info[0, COST]
    return cost


def collect(env: MicrogridEnv, base, shared: tuple, days: list[str], seed: int, d: float, branches: int, rng: np.random.Generator) -> tuple:  # noqa: ANN001
    """Drive the base on ``days``; at ``branches`` random steps of each, fork and label x with the cost the base
    saves from there on by moving its battery entry by +d and by -d. ``shared``: objects a branch's copy of the base
    uses as they are (the corrector, earlier iterations' regressors)."""
    view = ResidualObservation(env.obs_layout, env.action_space.shape[0])
    xs, ups, downs, labelled_days = [], [], [], []
    # a branch's copy of the base must read the live env, core and corrector, not copies frozen at the fork (the rule
    # keeps env.core itself)
    memo_shared = {id(env): env, id(env.core): env.core, id(env.scenario): env.scenario, **{id(o): o for o in shared}}
    for i, day in enumerate(days):
        obs, _ = env.reset(seed=seed + i, options={"day": day})
        base.reset(env, obs)
        steps = env.core.episode.n_steps
        chosen = set(rng.choice(steps, min(branches, steps), replace=False).tolist())
        pending = []  # (t, x, cost(+d) from t, cost(-d) from t)
        step_costs = []
        for t in range(steps):
            action = np.asarray(base.act(obs), dtype=np.float64)
            if t in chosen and -1.0 + d <= action[0] <= 1.0 - d:
                snap = snapshot(env)
                branch_costs = []
                for sign in (1.0, -1.0):
                    twin = copy.deepcopy(base, dict(memo_shared))
                    moved = action.copy()
                    moved[0] += sign * d
                    next_obs, _, done, _, _ = env.step(moved)
                    cost = env.core.info[0, COST]
                    branch_costs.append(cost + (0.0 if done else finish(env, twin, next_obs)))
                    restore(env, snap)
                pending.append((t, view(obs, action), *branch_costs))
            obs, _, _, _, _ = env.step(action)
            step_costs.append(env.core.info[0, COST])
        tail = np.cumsum(step_costs[::-1])[::-1]  # the base's cost from each step on
        for t, x, plus, minus in pending:
            xs.append(x)
            ups.append(tail[t] - plus)
            downs.append(tail[t] - minus)
            labelled_days.append(day)
    return np.array(xs), np.array(ups), np.array(downs), np.array(labelled_days)


class GainRegressor(Regressor):
    """``Regressor`` without the output clip: the label is a standardised saving in Rs."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.net(torch.as_tensor((x - self.mean) / self.std, dtype=torch.float32)).numpy()[:, 0]


class Improved:
    """The base, with its battery entry moved by +d or -d where the predicted saving of that move exceeds ``margin`` Rs."""

    def __init__(self, base, up: GainRegressor, down: GainRegressor, scale: float, d: float, margin: float) -> None:  # noqa: ANN001
        self.base, self.up, self.down, self.scale, self.d, self.margin = base, up, down, scale, d, margin
        self.ev_dispatch = getattr(base, "ev_dispatch", None)
        self.name = f"improved, margin {margin}"
        self.moves = 0

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        self.view = ResidualObservation(env.obs_layout, env.action_space.shape[0])
        self.base.reset(env, obs)

    def act(self, obs: np.ndarray) -> np.ndarray:
        action = np.asarray(self.base.act(obs), dtype=np.float64).copy()
        x = self.view(obs, action)[None]
        gains = self.scale * np.array([self.up.predict(x)[0], self.down.predict(x)[0]])
        best = int(np.argmax(gains))
        if gains[best] > self.margin:
            action[0] = np.clip(action[0] + (self.d if best == 0 else -self.d), -1.0, 1.0)
            self.moves += 1
        return action


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="campus")
    ap.add_argument("--base", choices=("planner", "mpc", "rule"), default="planner", help="planner and mpc on corrected forecasts; rule as it is")
    ap.add_argument("--minutes", type=float, default=12.0, help="wall time for collecting labels")
    ap.add_argument("--branches", type=int, default=6, help="forked steps per training day")
    ap.add_argument("--d", type=float, default=0.1, help="battery perturbation (action units)")
    ap.add_argument("--margins", default="inf,100,30,0", help="Rs a predicted saving must exceed for the move")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--val-days", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iterations", type=int, default=1, help="policy-improvement steps, each on the last one's policy at its best margin")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    corrector = None if args.base == "rule" else fit_corrector(args.scenario, days=4096, seed=args.seed, residual_days=256)
    base = make_controller("rule") if corrector is None else CorrectedForecastController(args.base, corrector)
    env = MicrogridEnv(scenario=args.scenario, split="train")
    dates = [str(d.date()) for d in env.core.site.dates[env.core.starts]]
    mpc = evaluate("mpc", scenario=args.scenario, split="validation", days=args.val_days, seed=0).summary["gap_closed"]
    command = "python " + " ".join(sys.argv)
    lines = [f"# Paired-rollout policy improvement on {'the' if corrector is None else 'corrected'} {args.base}, {args.scenario}", "", f"Command: `{command}`", "",
             f"MPC on the same {args.val_days} validation days: {mpc:.3f}."]
    shared, iterations = (corrector,), []
    for k in range(args.iterations):
        stats, rows, up_model, down_model, scale = improve(env, base, shared, dates, rng, args, k)
        iterations.append({**stats, "rows": rows})
        lines += ["", f"Iteration {k + 1}: {stats['labels']} labels of {stats['days']} training days in {stats['collect_minutes']:.1f} minutes. Saving of "
                  f"moving the battery by +{args.d}: mean {stats['up_mean']:.0f} Rs, positive in {stats['up_positive']:.0%} of states, held-out R^2 "
                  f"{stats['r2_held_out_up']:.3f}; by -{args.d}: mean {stats['down_mean']:.0f} Rs, positive in {stats['down_positive']:.0%}, held-out R^2 "
                  f"{stats['r2_held_out_down']:.3f}.", "",
                  "| margin (Rs; inf: the base) | moves per day | gap closed | unmet kWh/day | violations |", "|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['margin']} | {r['moves_per_day']:.1f} | {r['gap_closed']:.3f} | {r['unmet']:.2f} | {r['violations']} |" for r in rows]
        best = max(rows, key=lambda r: r["gap_closed"])  # chosen on the validation days: a probe, not a result
        if best["margin"] == float("inf"):
            break
        # the next iteration improves on this one's policy at its best margin
        base = Improved(base, up_model, down_model, scale, args.d, best["margin"])
        shared += (up_model, down_model)
    write_probe(args.out, command, {"args": vars(args), "mpc": mpc, "iterations": iterations}, lines)


def improve(env: MicrogridEnv, base, shared: tuple, dates: list[str], rng: np.random.Generator, args: argparse.Namespace, k: int) -> tuple:  # noqa: ANN001
    """One step of policy improvement on ``base``: label forks for ``args.minutes``, fit the two savings, score the
    improved policy at each margin on validation days. Returns the labels' statistics, the rows, the two regressors
    and the label scale."""
    t0 = time.perf_counter()
    chunks, n_days = [], 0
    while time.perf_counter() - t0 < args.minutes * 60:
        days = list(rng.choice(dates, 16))
        chunks.append(collect(env, base, shared, days, 100_000 * (k + 1) + n_days, args.d, args.branches, rng))
        n_days += len(days)
    x, up, down, day = (np.concatenate([c[i] for c in chunks]) for i in range(4))
    scale = float(np.concatenate([up, down]).std())
    stats = {"labels": len(up), "days": n_days, "collect_minutes": (time.perf_counter() - t0) / 60, "label_std": scale,
             "up_mean": float(up.mean()), "down_mean": float(down.mean()), "up_positive": float((up > 0).mean()), "down_positive": float((down > 0).mean())}
    # R^2 on held-out days: does the observation predict the saving of a move at all?
    # a fifth of the dates, whatever their draws: two draws of one date share its load, weather, prices and EVs
    held = np.isin(day, dates[::5])
    for name, y in (("up", up), ("down", down)):
        probe = GainRegressor(args.hidden, args.seed)
        probe.fit(x[~held], y[~held] / scale, args.epochs, args.lr)
        stats[f"r2_held_out_{name}"] = 1.0 - float(np.mean((probe.predict(x[held]) - y[held] / scale) ** 2) / np.var(y[held] / scale))
    up_model, down_model = GainRegressor(args.hidden, args.seed), GainRegressor(args.hidden, args.seed)
    up_model.fit(x, up / scale, args.epochs, args.lr)
    down_model.fit(x, down / scale, args.epochs, args.lr)
    print(stats, flush=True)
    rows = []
    for margin in (float(m) for m in args.margins.split(",")):
        controller = Improved(base, up_model, down_model, scale, args.d, margin)
        summary = evaluate(controller, scenario=args.scenario, split="validation", days=args.val_days, seed=0).summary
        rows.append({"margin": margin, "moves_per_day": controller.moves / args.val_days, "gap_closed": summary["gap_closed"],
                     "unmet": summary["unmet_ev_kwh_per_day"], "violations": summary["safety_violations"]})
        print(rows[-1], flush=True)
    return stats, rows, up_model, down_model, scale


if __name__ == "__main__":
    main()
