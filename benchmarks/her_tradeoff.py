"""What one goal-conditioned policy buys: SAC with hindsight replay on ``MicrogridGoal-v0``, asked for several
(Rs, kg CO2) budgets on test days, beside the optimum's cost-CO2 trade-off and naive operation.

1. Train SAC + ``HerReplayBuffer`` from ``hyperparams/her_sac.yml`` for ``--steps`` steps (one process, one
   thread), or reuse the model of ``--run-dir`` with ``--reuse``.
2. On the first ``--days`` test days (day ``i`` reset with seed ``seed + i`` for every controller), score in
   ``MicrogridGoal-v0``'s accounting (percent above (+) or below (-) naive operation's cost and CO2 that day,
   CO2 counting the refill of a battery left below its start): naive operation; the perfect-foresight
   dispatch LP solved with each carbon price of ``--prices`` (on imports and on that refill) and replayed
   through the env, which charges no carbon price (so Rs/day is the bill and the price only moves the
   schedule); and the SAC policy asked for each budget of ``--budgets``.
3. Write ``benchmarks/results/her_tradeoff.{json,md}`` (with the command) and ``her_tradeoff.png``.

Usage: python benchmarks/her_tradeoff.py [--steps 36000] [--days 14] [--prices 0,2,5,10,20,50,100]
       [--budgets=-3:-3,-3:0,-3:3,0:-3,0:0,0:3,3:-3,3:0,3:3] [--run-dir runs/her_tradeoff] [--reuse]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from reporting import RESULTS, run_metadata, write_results  # noqa: E402

from sb3_microgrid.baselines import NaiveController, OptimalController, SB3Controller  # noqa: E402
from sb3_microgrid.baselines.lp import solve_dispatch  # noqa: E402
from sb3_microgrid.baselines.optimal import episode_problem  # noqa: E402
from sb3_microgrid.envs import MicrogridEnv  # noqa: E402
from sb3_microgrid.goal_env import MicrogridGoalEnv  # noqa: E402
from sb3_microgrid.evaluation import run_day, split_dates  # noqa: E402

CONF = Path(__file__).parent.parent / "hyperparams" / "her_sac.yml"
#: Columns of :func:`score`.
COLUMNS = ("cost_pct", "co2_pct", "naive_cost", "naive_co2", "imported_co2", "unmet_ev_kwh", "unserved_kwh")


class CarbonPricedOptimal(OptimalController):
    """The perfect-foresight LP solved with a carbon price on imports, replayed through an env that charges none.

    The end-of-day shortfall is priced with the carbon of its refill too (the goal env's CO2 rule): with the
    env's rupee-only shortfall price, from about Rs 10/kg on emptying the battery is the LP's cheapest CO2.

    :param price: Rs per kg CO2 in the LP's objective
    """

    def __init__(self, price: float) -> None:
        super().__init__()
        self.price = price

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        self._env = env
        problem = episode_problem(env)
        priced = env.scenario.replace(reward__carbon_price_inr_per_kg=self.price)
        refill = self.price * problem.emission.max() / env.scenario.battery.charge_efficiency
        self.schedule = solve_dispatch(dataclasses.replace(problem, scenario=priced, shortfall_price=problem.shortfall_price + refill))


def score(controller, env: MicrogridGoalEnv, dates: list[str], seed: int) -> np.ndarray:
    """(days, len(COLUMNS)): the achieved goal at each day's end (percent vs naive), naive's Rs and kg that
    day, and the env's own kg CO2 of imports, unmet EV kWh and shed load kWh."""
    rows = []
    for i, day in enumerate(dates):
        metrics, _ = run_day(controller, env, day, seed + i)
        rows.append([*env.achieved_goal()[:2], *env.naive_totals, metrics["emissions_kg"], metrics["unmet_ev_kwh"], metrics["unserved_kwh"]])
    return np.array(rows)


def summary(days: np.ndarray) -> dict[str, float]:
    """Means over the days: percent vs naive, and the absolute Rs/day and kg/day they stand for."""
    absolute = days[:, 2:4] * (1 + days[:, :2] / 100)
    return {
        "cost_vs_naive_pct": float(days[:, 0].mean()), "co2_vs_naive_pct": float(days[:, 1].mean()),
        "cost_per_day": float(absolute[:, 0].mean()), "emissions_kg_per_day": float(absolute[:, 1].mean()),
        "imported_co2_kg_per_day": float(days[:, 4].mean()), "unmet_ev_kwh_per_day": float(days[:, 5].mean()),
        "unserved_kwh_per_day": float(days[:, 6].mean()),
    }  # fmt: skip


def parse_budgets(text: str) -> list[tuple[float, float]]:
    budgets = []
    for item in text.split(","):
        cost, _, co2 = item.partition(":")
        budgets.append((float(cost), float(co2)))
    return budgets


def train_or_load(args: argparse.Namespace) -> tuple[object, object, dict]:
    """The SAC model and its VecNormalize, and what the training cost."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from sb3_microgrid.training import train

    run = Path(args.run_dir)
    if args.reuse:
        # the default MicrogridGoalEnv calibrates the same budget range as the training env did
        venv = VecNormalize.load(str(run / "model_vecnormalize.pkl"), DummyVecEnv([MicrogridGoalEnv]))
        model = SAC.load(run / "model.zip", env=venv, device="cpu")
        return model, venv, {"steps": int(model.num_timesteps), "seconds": None, "reused": str(run)}
    start = time.perf_counter()
    model = train("sac", CONF, run, timesteps=args.steps, seed=args.seed, save_freq=args.steps, progress_bar=False)
    seconds = time.perf_counter() - start
    return model, model.get_vec_normalize_env(), {"steps": int(model.num_timesteps), "seconds": seconds, "steps_per_s": model.num_timesteps / seconds}


def plot(naive: dict[str, float], lp: list[dict], her: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    ax.plot([r["cost_per_day"] for r in lp], [r["emissions_kg_per_day"] for r in lp], "o-", color="#2ca02c", label="optimum with a carbon price (LP)")
    for r in lp:
        ax.annotate(f"Rs {r['carbon_price']:g}/kg", (r["cost_per_day"], r["emissions_kg_per_day"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.plot(naive["cost_per_day"], naive["emissions_kg_per_day"], "ks", markersize=9, label="naive operation")
    for i, r in enumerate(her):
        ax.annotate("", (r["cost_per_day"], r["emissions_kg_per_day"]), (r["requested_cost_per_day"], r["requested_emissions_kg_per_day"]),
                    arrowprops=dict(arrowstyle="->", color="#1f77b4", alpha=0.5))  # fmt: skip
        ax.plot(r["requested_cost_per_day"], r["requested_emissions_kg_per_day"], "o", mfc="none", color="#1f77b4", label="budget asked" if i == 0 else None)
        ax.plot(r["cost_per_day"], r["emissions_kg_per_day"], "o", color="#1f77b4", label="HER-SAC achieved" if i == 0 else None)
    ax.set_xlabel("cost (Rs/day, mean over the test days)")
    ax.set_ylabel("emissions incl. refilling the battery (kg CO2/day)")
    ax.set_title("Budgets asked of one goal-conditioned SAC policy, against the optimum's trade-off")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=36_000, help="SAC training steps (env steps)")
    parser.add_argument("--days", type=int, default=14, help="first N test days")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prices", default="0,2,5,10,20,50,100", help="carbon prices of the LP sweep (Rs/kg CO2)")
    parser.add_argument("--budgets", default="-3:-3,-3:0,-3:3,0:-3,0:0,0:3,3:-3,3:0,3:3", help="cost:CO2 budgets, percent vs naive (--budgets=-3:-3,...)")
    parser.add_argument("--run-dir", default="runs/her_tradeoff")
    parser.add_argument("--reuse", action="store_true", help="evaluate the model already in --run-dir instead of training")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)

    model, venv, training = train_or_load(args)
    print("training:", training, flush=True)
    venv.training = False
    (budget_range,) = venv.get_attr("budget_range", indices=[0])
    env = MicrogridGoalEnv(split="test", budget_range=budget_range)
    dates = split_dates(env.scenario, "test", args.days)

    naive = summary(score(NaiveController(), env, dates, args.seed))
    print("naive:", naive, flush=True)
    lp = []
    for price in [float(p) for p in args.prices.split(",")]:
        lp.append({"carbon_price": price, **summary(score(CarbonPricedOptimal(price), env, dates, args.seed))})
        print(lp[-1], flush=True)

    her = []
    controller = SB3Controller.from_model(model, venv, name="her_sac")
    for budget in parse_budgets(args.budgets):
        env.set_budget(budget)
        days = score(controller, env, dates, args.seed)
        requested = days[:, 2:4] * (1 + np.asarray(budget) / 100)
        her.append({
            "budget_cost_pct": budget[0], "budget_co2_pct": budget[1], **summary(days),
            "success_rate": float((days[:, :2] <= np.asarray(budget, dtype=np.float32)).all(axis=1).mean()),
            "requested_cost_per_day": float(requested[:, 0].mean()), "requested_emissions_kg_per_day": float(requested[:, 1].mean()),
        })  # fmt: skip
        print(her[-1], flush=True)

    # Does the achieved point move with the request? Least-squares slope of achieved on requested, per component.
    asked = np.array([[r["budget_cost_pct"], r["budget_co2_pct"]] for r in her])
    got = np.array([[r["cost_vs_naive_pct"], r["co2_vs_naive_pct"]] for r in her])
    slopes = [float(np.polyfit(asked[:, k], got[:, k], 1)[0]) if np.ptp(asked[:, k]) > 0 else None for k in range(2)]

    meta = run_metadata(training=training, days=len(dates), dates=dates, seed=args.seed, budget_range=budget_range, conf=str(CONF.name))
    plot(naive, lp, her, RESULTS / "her_tradeoff.png")
    steps_line = f"{training['steps']:,} env steps"
    steps_line += f" in {training['seconds'] / 60:.1f} min ({training['steps_per_s']:.0f} steps/s)" if training["seconds"] else " (reused model)"
    lines = [
        "# HER-SAC asked for budgets, against the optimum's cost-CO2 trade-off",
        "",
        f"Command: `{meta['command']}` ({meta['time']}). SAC + HerReplayBuffer from `hyperparams/{CONF.name}`, {steps_line}, seed {args.seed}; "
        f"{len(dates)} test days from {dates[0]}. Every figure is the env's own accounting in the goal units of `MicrogridGoal-v0`: "
        "means over the days of the excess over naive operation that day, CO2 counting the refill of a battery left below its start "
        "(kg CO2/day); \"imported\" is the env's `emissions_kg` alone.",
        "",
        f"Naive operation: Rs {naive['cost_per_day']:,.0f}/day, {naive['emissions_kg_per_day']:,.0f} kg CO2/day.",
        "",
        "| LP carbon price (Rs/kg) | Rs/day | kg CO2/day | cost vs naive | CO2 vs naive | imported kg CO2/day | unmet EV kWh/day | load shed kWh/day |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['carbon_price']:g} | {r['cost_per_day']:,.0f} | {r['emissions_kg_per_day']:,.0f} | {r['cost_vs_naive_pct']:+.2f} % | "
        f"{r['co2_vs_naive_pct']:+.2f} % | {r['imported_co2_kg_per_day']:,.0f} | {r['unmet_ev_kwh_per_day']:.1f} | {r['unserved_kwh_per_day']:.1f} |"
        for r in lp
    ]
    lines += [
        "",
        "| budget asked (cost, CO2) | achieved cost | achieved CO2 | days within both | Rs/day | kg CO2/day | imported kg CO2/day | unmet EV kWh/day |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['budget_cost_pct']:+g} %, {r['budget_co2_pct']:+g} % | {r['cost_vs_naive_pct']:+.2f} % | {r['co2_vs_naive_pct']:+.2f} % | {r['success_rate']:.0%} | "
        f"{r['cost_per_day']:,.0f} | {r['emissions_kg_per_day']:,.0f} | {r['imported_co2_kg_per_day']:,.0f} | {r['unmet_ev_kwh_per_day']:.1f} |"
        for r in her
    ]
    fmt = lambda s: "n/a" if s is None else f"{s:+.2f}"  # noqa: E731
    lines += ["", f"Slope of achieved on asked (1 = follows the request, 0 = ignores it): cost {fmt(slopes[0])}, CO2 {fmt(slopes[1])}.",
              "", "Plot: `benchmarks/results/her_tradeoff.png`."]  # fmt: skip
    write_results("her_tradeoff", meta, {"naive": naive, "lp": lp, "her": her, "slopes": slopes}, lines)


if __name__ == "__main__":
    main()
