"""Adaptation to held-out sites (issue 11, "Measured, not claimed"): training from scratch against pooled multi-task
pretraining and Reptile, each zero-shot and fine-tuned.

Every arm acts on the interface shared by all sites (``sb3_microgrid.adaptation.SITE_INTERFACE``: aggregate EV
dispatch, site context, ppo.yml's reward) with ``hyperparams/ppo.yml``'s PPO settings (8 microgrids x 512 steps per
update, 10 epochs of minibatch 1,024, lr 3e-4, entropy 0.02, gamma = lambda = 1, normalised observations and rewards):

- ``scratch``: PPO on the held-out site, as ``sb3-microgrid train`` builds ppo.yml for it;
- ``pooled``: one PPO trained for ``--pretrain-steps`` on ``--train-sites`` training sites at once (a
  ``MultiSiteVecEnv``, one microgrid per site, 512 steps each per update), then fine-tuned on the held-out site;
- ``reptile``: Reptile over the same sites for the same steps (inner loops of ``--inner-updates`` ppo.yml updates on
  8 microgrids of one site, ``--meta-batch`` sites per outer update, meta step size ``--meta-step`` annealed linearly
  to 0, as in Nichol et al.), then fine-tuned the same way.

Fine-tuning is ``sb3_microgrid.adaptation.fine_tuning_model`` (what ``sb3-microgrid adapt`` runs): a fresh PPO with the
model's settings, weights and normalisation statistics. A zero-shot arm is its fine-tuning run at step 0. Each
adaptation run trains up to the largest of ``--budgets``; its policy is scored every ``--eval-every`` steps and at
every budget on the first ``--days`` validation days (2023), and at the first update boundary at or after each budget
the weights with the best validation score so far are scored on the whole test year (2024): "gap closed after b
steps". Per arm and site: test gap closed at each budget (mean and 95 % interval over seeds), env steps and training
minutes (scoring excluded) until the mean curve first reaches 90 % of the scratch arm's final gap, and the
pretraining cost. Held-out sites are the presets of ``sb3_microgrid.sites`` (never trained on: the guard refuses
them); ``workshop_bare`` has nothing to control and is not offered.

Runs are appended to ``results/<--name>_runs.jsonl`` as they finish; ``--resume`` keeps them (and the pretrained models
under ``--models``). Summary: ``results/<--name>.{json,md}``; figure: ``--figure`` (default ``docs/<--name>.png``). At
the end the cost of the default configuration is estimated from this run's measured throughputs and scoring times.

Usage: python benchmarks/meta_adaptation.py [--sites clinic_200kw,campus_2mw,factory,hospital_no_battery] [--seeds 5]
       [--workers 2] [--pretrain-steps 4000000] [--budgets 0,25000,50000,100000,200000,400000] [--resume]
Smoke: python benchmarks/meta_adaptation.py --sites clinic_200kw --seeds 1 --train-sites 2 --pretrain-steps 8192
       --budgets 0,4096,8192 --eval-every 4096 --days 3 --name meta_adaptation_smoke --figure /tmp/smoke.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from learning import ci95
from reporting import RESULTS, run_metadata, write_results

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.utils import LinearSchedule

from sb3_microgrid import training
from sb3_microgrid.adaptation import fine_tuning_model, multi_site_env, resolve_site, save_run, site_env
from sb3_microgrid.algos import load
from sb3_microgrid.baselines import SB3Controller
from sb3_microgrid.baselines.sb3_model import statistics_for
from sb3_microgrid.evaluation import evaluate, gap_closed
from sb3_microgrid.hyperparams import load_hyperparams
from sb3_microgrid.reptile import Reptile
from sb3_microgrid.sites import training_sites
from sb3_microgrid.validation import ValidationCallback

ROOT = Path(__file__).resolve().parent.parent
PPO_FILE = ROOT / "hyperparams" / "ppo.yml"
PRETRAINED = ("pooled", "reptile")
ARMS = ("scratch", *PRETRAINED)
#: Held-out sites with something to control, as offered to --sites.
OFFERED = ("clinic_200kw", "campus_2mw", "office_park", "factory", "hospital_no_battery", "office_no_chargers", "campus_windy", "college_small")
#: Fraction of the scratch arm's final gap an arm must reach ("steps to 90 %").
TARGET_FRACTION = 0.9


def recipe() -> Any:
    """``hyperparams/ppo.yml`` read for PPO (the settings of every arm)."""
    return load_hyperparams(PPO_FILE, PPO)


def normalization(hp: Any) -> dict[str, Any]:
    """ppo.yml's ``VecNormalize`` arguments, discounting with its gamma (as ``training.make_env``)."""
    return {**hp.normalize, "gamma": hp.algo_kwargs["gamma"]}


def pretrain(arm: str, seed: int, args: dict[str, Any]) -> dict[str, Any]:
    """Train the pooled PPO or Reptile on the training sites and save it under ``models/seed<seed>/<arm>``."""
    torch.set_num_threads(1)
    hp = recipe()
    sites = training_sites(args["train_sites"], 0)
    if arm == "pooled":  # one microgrid of every site per step, ppo.yml's 512 steps each per update
        model = PPO(hp.policy, multi_site_env(sites, 1, seed, normalization(hp)), seed=seed, device="cpu", **hp.algo_kwargs)
    else:  # each inner update is ppo.yml's: 8 microgrids of one site x 512 steps
        reptile = dict(inner_updates=args["inner_updates"], meta_batch_size=args["meta_batch"], meta_step_size=LinearSchedule(args["meta_step"], 0.0, 1.0))
        env = multi_site_env(sites, hp.n_envs, seed, normalization(hp))
        model = Reptile(hp.policy, env, seed=seed, device="cpu", **reptile, **hp.algo_kwargs)
    began = time.perf_counter()
    model.learn(args["pretrain_steps"])
    seconds = time.perf_counter() - began
    save_run(Path(args["models"]) / f"seed{seed}" / arm, model, seed=seed, sites=[s.name for s in sites])
    return {"kind": "pretrain", "arm": arm, "seed": seed, "steps": model.num_timesteps, "seconds": seconds, "sites": len(sites)}


def adapt_run(arm: str, site_name: str, seed: int, args: dict[str, Any], test_refs: dict[str, float]) -> dict[str, Any]:
    """One arm on one held-out site with one seed: scores at every budget (module docstring)."""
    torch.set_num_threads(1)
    hp = recipe()
    site = resolve_site(site_name)
    if arm == "scratch":
        hp = dataclasses.replace(hp, env_kwargs={**hp.env_kwargs, "scenario": site})
        model = training.build_model(PPO, hp, training.make_env(hp, seed), seed)
    else:
        path = Path(args["models"]) / f"seed{seed}" / arm / "model.zip"
        model = fine_tuning_model(load(path), site_env(site, hp.n_envs, seed, statistics_for(path)[0]), seed)
    budgets = BudgetValidation(args["budgets"], test_refs, days=args["days"], eval_freq=args["eval_every"])
    began = time.perf_counter()
    model.learn(max(args["budgets"]), callback=budgets)
    return {
        "kind": "adapt", "arm": arm, "site": site_name, "seed": seed, "days": args["days"], "budgets": budgets.tests, "validation": budgets.history,
        "seconds": time.perf_counter() - began, "training_minutes": budgets.training_minutes, "test_seconds": budgets.test_seconds,
        "validation_seconds": budgets.validation_seconds,
    }  # fmt: skip


class BudgetValidation(ValidationCallback):
    """A ``ValidationCallback`` that, at the first update boundary at or after each budget, scores on validation days and
    then scores the weights selected so far (best validation gap) on the whole test year.

    :param budgets: env steps
    :param test_refs: naive's and the optimum's test-year cost per day
    :param kwargs: ``ValidationCallback``'s
    """

    def __init__(self, budgets: list[int], test_refs: dict[str, float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.budgets, self.test_refs = sorted(budgets), test_refs
        self.tests: list[dict[str, Any]] = []
        self.test_seconds = 0.0

    @property
    def validation_seconds(self) -> float:
        """Seconds spent scoring on validation days (after the references, which training start computes)."""
        return self._scoring - self.test_seconds

    def _on_training_start(self) -> None:
        super()._on_training_start()
        self._test_due()

    def _on_rollout_start(self) -> None:
        if self._due() and self.history[-1]["steps"] != self.num_timesteps:
            self._score()  # a budget's selection includes the weights reached at it
        super()._on_rollout_start()
        self._test_due()

    def _on_training_end(self) -> None:
        super()._on_training_end()
        self._test_due(final=True)

    def _due(self) -> list[int]:
        return [b for b in self.budgets[len(self.tests) :] if b <= self.num_timesteps]

    def _test_due(self, final: bool = False) -> None:
        for budget in self.budgets[len(self.tests) :] if final else self._due():
            self.tests.append({"budget": budget, "steps": self.num_timesteps, "minutes": self.training_minutes, "selected": self.best, **self._test()})

    def _test(self) -> dict[str, float]:
        """The test-year KPIs of the best-scoring weights and statistics so far; the model is left as it was."""
        began = time.perf_counter()
        parameters, statistics = self._best_state
        current = self.model.get_parameters()
        normalizer = self.model.get_vec_normalize_env()
        kept = None if normalizer is None else (normalizer.obs_rms, normalizer.ret_rms)
        self.model.set_parameters(parameters, exact_match=True, device=self.model.device)
        if normalizer is not None:
            normalizer.obs_rms, normalizer.ret_rms = statistics
        try:
            summary = evaluate(SB3Controller.from_model(self.model, normalizer), scenario=self._sites[0], split="test", reference=False).summary
        finally:
            self.model.set_parameters(current, exact_match=True, device=self.model.device)
            if normalizer is not None:
                normalizer.obs_rms, normalizer.ret_rms = kept
        seconds = time.perf_counter() - began
        self.test_seconds += seconds
        self._scoring += seconds  # not training time
        return {
            "test_gap": float(gap_closed(summary["cost_per_day"], self.test_refs["naive"], self.test_refs["optimal"])),
            **{f"test_{key}": summary[key] for key in ("cost_per_day", "unmet_ev_kwh_per_day", "safety_violations")},
        }


def _job(job: tuple) -> dict[str, Any]:
    kind, *rest = job
    return pretrain(*rest) if kind == "pretrain" else adapt_run(*rest)


# ---- summary ---------------------------------------------------------------------------------------------------------
def curves(runs: list[dict[str, Any]], arm: str, site: str) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Budgets, test gap (seeds x budgets) and training minutes (seeds x budgets) of an arm on a site."""
    mine = sorted((r for r in runs if r["kind"] == "adapt" and r["arm"] == arm and r["site"] == site), key=lambda r: r["seed"])
    if not mine:
        return [], np.empty((0, 0)), np.empty((0, 0))
    budgets = [t["budget"] for t in mine[0]["budgets"]]
    gaps = np.array([[t["test_gap"] for t in r["budgets"]] for r in mine])
    minutes = np.array([[t["minutes"] for t in r["budgets"]] for r in mine])
    return budgets, gaps, minutes


def summarize(runs: list[dict[str, Any]], sites: list[str]) -> list[dict[str, Any]]:
    """Per site and arm: gap at each budget (mean, 95 % half-width), and steps and minutes to 90 % of scratch's final gap."""
    rows = []
    for site in sites:
        budgets, scratch, _ = curves(runs, "scratch", site)
        target = TARGET_FRACTION * scratch[:, -1].mean() if scratch.size and scratch[:, -1].mean() > 0 else None
        for arm in ARMS:
            budgets, gaps, minutes = curves(runs, arm, site)
            if not budgets:
                continue
            mean = gaps.mean(axis=0)
            reached = np.flatnonzero(mean >= target) if target is not None else np.array([], dtype=int)
            first = int(reached[0]) if reached.size else None
            rows.append({
                "site": site, "arm": arm, "seeds": len(gaps), "budgets": budgets,
                "test_gap": [ci95(gaps[:, j].tolist()) for j in range(len(budgets))],
                "target_gap": target,
                "steps_to_target": None if first is None else budgets[first],
                "minutes_to_target": None if first is None else float(minutes[:, first].mean()),
            })  # fmt: skip
    return rows


def pretraining_cost(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per pretrained arm: mean env steps and minutes over seeds."""
    cost = {}
    for arm in PRETRAINED:
        mine = [r for r in runs if r["kind"] == "pretrain" and r["arm"] == arm]
        if mine:
            cost[arm] = {"seeds": len(mine), "steps": float(np.mean([r["steps"] for r in mine])), "minutes": float(np.mean([r["seconds"] for r in mine]) / 60)}
    return cost


def estimate(runs: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    """Hours the configuration ``config`` takes on ``config["workers"]`` cores, from this run's measured rates: each
    pretraining arm's steps/s, and per adaptation run its set-up, fine-tuning steps/s, seconds per validation day
    scored and per test-year score."""
    pretrain_rate = {arm: sum(r["steps"] for r in runs if r["kind"] == "pretrain" and r["arm"] == arm)
                     / sum(r["seconds"] for r in runs if r["kind"] == "pretrain" and r["arm"] == arm) for arm in PRETRAINED}  # fmt: skip
    adapt = [r for r in runs if r["kind"] == "adapt"]
    adapt_rate = sum(r["budgets"][-1]["steps"] for r in adapt) / sum(60 * r["training_minutes"] for r in adapt)
    test_s = sum(r["test_seconds"] for r in adapt) / sum(len(r["budgets"]) for r in adapt)
    day_s = sum(r["validation_seconds"] for r in adapt) / sum(len(r["validation"]) * r["days"] for r in adapt)
    setup_s = float(np.mean([r["seconds"] - 60 * r["training_minutes"] - r["validation_seconds"] - r["test_seconds"] for r in adapt]))
    top, budgets = max(config["budgets"]), len(config["budgets"])
    adapt_run = setup_s + top / adapt_rate + (1 + top / config["eval_every"] + budgets) * config["days"] * day_s + budgets * test_s
    adapt_runs = len(config["sites"]) * config["seeds"] * len(ARMS)
    pretrain = sum(config["seeds"] * config["pretrain_steps"] / rate for rate in pretrain_rate.values())
    return {
        "pretrain_steps_per_s": pretrain_rate, "adapt_steps_per_s": adapt_rate, "seconds_per_test_score": test_s,
        "seconds_per_validation_day": day_s, "setup_seconds": setup_s, "adapt_run_minutes": adapt_run / 60, "adapt_runs": adapt_runs,
        "pretrain_hours": pretrain / 3600 / config["workers"], "hours": (pretrain + adapt_runs * adapt_run) / 3600 / config["workers"],
    }  # fmt: skip


def _ci(value: tuple[float, float]) -> str:
    mean, half = value
    return f"{mean:.3f} ± {half:.3f}" if np.isfinite(half) else f"{mean:.3f}"


def table(rows: list[dict[str, Any]], shown: list[int]) -> list[str]:
    """Markdown: one row per site and arm (zero-shot rows are the pretrained arms at step 0)."""
    lines = [
        "| site | arm | seeds | " + " | ".join(f"gap after {b:,}" for b in shown) + " | steps to 90 % of scratch | training min to it |",
        "|---|---|---:|" + "---:|" * len(shown) + "---:|---:|",
    ]
    for r in rows:
        cells = [_ci(r["test_gap"][r["budgets"].index(b)]) if b in r["budgets"] else "" for b in shown]
        steps = "" if r["target_gap"] is None else "not reached" if r["steps_to_target"] is None else f"{r['steps_to_target']:,}"
        minutes = "" if r["minutes_to_target"] is None else f"{r['minutes_to_target']:.1f}"
        name = {"scratch": "from scratch", "pooled": "pooled (0 = zero-shot)", "reptile": "Reptile (0 = zero-shot)"}[r["arm"]]
        lines.append(f"| {r['site']} | {name} | {r['seeds']} | " + " | ".join(cells) + f" | {steps} | {minutes} |")
    return lines


def figure(runs: list[dict[str, Any]], sites: list[str], path: Path) -> None:
    """Test gap closed against fine-tuning steps, mean and 95 % band over seeds, one panel per site."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sites), figsize=(4.2 * len(sites), 3.8), squeeze=False)
    for ax, site in zip(axes[0], sites):
        for arm, color in zip(ARMS, ("tab:grey", "tab:blue", "tab:red")):
            budgets, gaps, _ = curves(runs, arm, site)
            if not budgets:
                continue
            intervals = np.array([ci95(gaps[:, j].tolist()) for j in range(len(budgets))])
            x = np.maximum(budgets, 1)  # step 0 (zero-shot) drawn at 1 on the log axis
            ax.plot(x, intervals[:, 0], marker="o", color=color, label=f"{arm} ({len(gaps)} seeds)")
            half = np.nan_to_num(intervals[:, 1])
            ax.fill_between(x, intervals[:, 0] - half, intervals[:, 0] + half, color=color, alpha=0.2)
        ax.set(xscale="log", xlabel="fine-tuning env steps (0 at 1)", title=site)
        ax.axhline(0.0, color="black", lw=0.6)
    axes[0][0].set_ylabel("test-year gap closed")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", default="clinic_200kw,campus_2mw,factory,hospital_no_battery", help=f"held-out sites, of {', '.join(OFFERED)}")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--train-sites", type=int, default=16, help="training sites (sb3_microgrid.sites.training_sites(n, 0))")
    parser.add_argument("--pretrain-steps", type=int, default=4_000_000)
    parser.add_argument("--inner-updates", type=int, default=4, help="Reptile: PPO updates per site visit")
    parser.add_argument("--meta-batch", type=int, default=2, help="Reptile: sites per outer update")
    parser.add_argument("--meta-step", type=float, default=1.0, help="Reptile: initial meta step size, annealed linearly to 0")
    parser.add_argument("--budgets", type=_ints, default=[0, 25_000, 50_000, 100_000, 200_000, 400_000], help="fine-tuning steps scored on the test year")
    parser.add_argument("--eval-every", type=int, default=12_288, help="validation scoring interval (env steps)")
    parser.add_argument("--days", type=int, default=30, help="validation days scored")
    parser.add_argument("--workers", type=int, default=2, help="runs at a time, one per core")
    parser.add_argument("--models", type=Path, default=ROOT / "runs" / "meta_adaptation", help="folder of the pretrained models")
    parser.add_argument("--name", default="meta_adaptation", help="results file stem")
    parser.add_argument("--figure", type=Path, default=None, help="figure path (default: docs/<name>.png)")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in <name>_runs.jsonl and run only the others")
    args = parser.parse_args()
    sites = args.sites.split(",")
    unknown = sorted(set(sites) - set(OFFERED))
    if unknown:
        raise SystemExit(f"unknown or excluded held-out site(s) {unknown}; allowed: {list(OFFERED)}")
    if 0 not in args.budgets or min(args.budgets) < 0:
        raise SystemExit("--budgets must include 0 (zero-shot) and be >= 0")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the workers
    config = {key: getattr(args, key) for key in ("train_sites", "pretrain_steps", "inner_updates", "meta_batch", "meta_step", "budgets", "eval_every", "days")}
    config["models"] = str(args.models)
    log = RESULTS / f"{args.name}_runs.jsonl"
    runs = [json.loads(line) for line in log.read_text().splitlines()] if args.resume and log.exists() else []
    if not args.resume:
        log.unlink(missing_ok=True)
    load = os.getloadavg()[0]  # other jobs on the cores slow every rate measured here
    began = time.perf_counter()
    test_refs = {site: {ref: evaluate(ref, scenario=resolve_site(site), split="test", reference=False).summary["cost_per_day"] for ref in ("naive", "optimal")} for site in sites}
    done = {(r["kind"], r["arm"], r.get("site"), r["seed"]) for r in runs}
    # Pretraining and the scratch arm first (seed-major), then the fine-tuning that needs the pretrained models.
    first = [("pretrain", arm, s, config) for s in range(args.seeds) for arm in PRETRAINED if ("pretrain", arm, None, s) not in done]
    first += [("adapt", "scratch", site, s, config, test_refs[site]) for s in range(args.seeds) for site in sites if ("adapt", "scratch", site, s) not in done]
    then = [("adapt", arm, site, s, config, test_refs[site]) for s in range(args.seeds) for site in sites for arm in PRETRAINED if ("adapt", arm, site, s) not in done]
    RESULTS.mkdir(exist_ok=True)
    with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
        for jobs in (first, then):
            for record in pool.imap_unordered(_job, jobs):
                runs.append(record)
                with log.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                what = f"{record['arm']} seed {record['seed']}"
                if record["kind"] == "pretrain":
                    print(f"pretrained {what}: {record['steps']:,} steps in {record['seconds'] / 60:.1f} min", flush=True)
                else:
                    gaps = ", ".join(f"{t['budget']:,}: {t['test_gap']:.3f}" for t in record["budgets"])
                    print(f"{record['site']} {what}: test gap {gaps}", flush=True)
    hours = (time.perf_counter() - began) / 3600

    rows = summarize(runs, sites)
    cost = pretraining_cost(runs)
    defaults = vars(parser.parse_args([]))
    defaults["sites"] = defaults["sites"].split(",")
    cost_estimate = estimate(runs, defaults)
    meta = run_metadata(config=config, test_references=test_refs, wall_hours=hours, load_average_at_start=load, default_config_estimate=cost_estimate)
    shown = [b for b in (0, 25_000, 100_000, 400_000) if b in args.budgets] or sorted(args.budgets)
    lines = [
        "# Adaptation to held-out sites: from scratch, pooled and Reptile, zero-shot and fine-tuned",
        "",
        f"Command: `{meta['command']}` ({meta['time']}), {hours:.2f} h on {args.workers} workers. Test-year gap closed of the"
        f" weights selected on the first {args.days} validation days (mean ± 95 % interval over seeds); 90 % target ="
        f" {TARGET_FRACTION} × the scratch arm's mean final gap on that site (none where that gap is not positive).",
        "",
        *table(rows, shown),
        "",
        "Pretraining cost (per seed, on " + f"{args.train_sites} training sites): "
        + "; ".join(f"{arm} {c['steps']:,.0f} steps, {c['minutes']:.2f} min" for arm, c in cost.items()),
        "",
        f"Estimated cost of the default configuration from this run's rates (load average {load:.1f} at the start):"
        f" {cost_estimate['hours']:.2f} h on {defaults['workers']} workers, of which pretraining {cost_estimate['pretrain_hours']:.2f} h ("
        + ", ".join(f"{arm} {rate:,.0f} steps/s" for arm, rate in cost_estimate["pretrain_steps_per_s"].items())
        + f"); {cost_estimate['adapt_runs']} adaptation runs of {cost_estimate['adapt_run_minutes']:.1f} min"
        f" (fine-tuning {cost_estimate['adapt_steps_per_s']:,.0f} steps/s, {cost_estimate['seconds_per_test_score']:.1f} s per test-year score,"
        f" {cost_estimate['seconds_per_validation_day']:.3f} s per validation day scored, {cost_estimate['setup_seconds']:.0f} s set-up).",
    ]
    write_results(args.name, meta, {"summary": rows, "pretraining": cost, "runs": runs}, lines)
    figure(runs, sites, args.figure or ROOT / "docs" / f"{args.name}.png")


if __name__ == "__main__":
    main()
