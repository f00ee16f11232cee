"""The baselines on held-out sites' test years: the reference lines of ``meta_adaptation.py``.

Scores naive, rule, MPC and the perfect-foresight optimum on each site's whole test year, on the shared site
interface (``sb3_microgrid.adaptation.SITE_INTERFACE``; baselines act on the per-port twin of an aggregate scenario,
same days, noise and physics), and reports each site's headroom (what the optimum saves over naive) beside the gap
closed: on a site with little headroom, a small cost difference is a large fraction of the gap. One process per site.
Results: ``results/site_baselines.{json,md}``.

Usage: python benchmarks/site_baselines.py [--sites clinic_200kw,campus_2mw,factory,hospital_no_battery] [--workers 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
from typing import Any

from reporting import run_metadata, write_results

CONTROLLERS = ("naive", "rule", "mpc", "optimal")


def score(site: str) -> dict[str, Any]:
    """Test-year KPIs of every baseline on one held-out site."""
    from sb3_microgrid.adaptation import resolve_site
    from sb3_microgrid.evaluation import evaluate, gap_closed

    scenario = resolve_site(site)
    rows = {name: evaluate(name, scenario=scenario, split="test", reference=False).summary for name in CONTROLLERS}
    naive, optimal = rows["naive"]["cost_per_day"], rows["optimal"]["cost_per_day"]
    return {
        "site": site,
        "headroom_inr_per_day": naive - optimal,
        "headroom_fraction": (naive - optimal) / naive,
        "controllers": {
            name: {
                "cost_per_day": s["cost_per_day"],
                "gap_closed": float(gap_closed(s["cost_per_day"], naive, optimal)),
                "unmet_ev_kwh_per_day": s["unmet_ev_kwh_per_day"],
                "safety_violations": s["safety_violations"],
            }
            for name, s in rows.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", default="clinic_200kw,campus_2mw,factory,hospital_no_battery")
    parser.add_argument("--workers", type=int, default=2, help="sites at a time, one per core")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the workers
    with mp.get_context("spawn").Pool(args.workers) as pool:
        sites = pool.map(score, args.sites.split(","))
    meta = run_metadata()
    lines = [
        "# Baselines on held-out sites (test year)",
        "",
        f"Command: `{meta['command']}` ({meta['time']}). Gap closed: naive 0, optimum 1; headroom: what the optimum saves over naive.",
        "",
        "| site | headroom Rs/day (% of bill) | rule gap | MPC gap | rule unmet EV kWh/day | MPC unmet EV kWh/day | violations (rule, MPC) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sites:
        c = s["controllers"]
        lines.append(
            f"| {s['site']} | {s['headroom_inr_per_day']:,.0f} ({100 * s['headroom_fraction']:.2f} %) | {c['rule']['gap_closed']:.3f} |"
            f" {c['mpc']['gap_closed']:.3f} | {c['rule']['unmet_ev_kwh_per_day']:.2f} | {c['mpc']['unmet_ev_kwh_per_day']:.2f} |"
            f" {c['rule']['safety_violations']:.0f}, {c['mpc']['safety_violations']:.0f} |"
        )
    write_results("site_baselines", meta, {"sites": sites}, lines)


if __name__ == "__main__":
    main()
