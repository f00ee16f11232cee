"""Dispatch plots of episodes traced by :func:`sb3_microgrid.evaluation.run_day`."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .scenario import Scenario

#: Colour of each series, the same in every column so controllers compare at a glance.
COLORS = {
    "load": "black",
    "renewable": "#f2b701",
    "curtailed": "#d62728",
    "battery": "#2ca02c",
    "ev": "#9467bd",
    "grid": "#1f77b4",
    "price": "#8c564b",
}


def plot_dispatch(traces: Mapping[str, pd.DataFrame], scenario: Scenario, out: str | Path, title: str = "") -> Path:
    """Draw power flows, battery SoC and import price of one episode per controller, side by side.

    Each controller gets a column of three panels sharing the time axis; each row shares its y-limits
    across the columns. Flows are step averages (kWh per step / ``step_hours``) drawn as steps.

    :param traces: per-step trace of each controller (the second value of ``run_day``), by column title
    :param scenario: the scenario the traces were run on (step length, SoC window, export price)
    :param out: image file to write (format from its suffix, e.g. ``.png``)
    :param title: figure title
    :return: the path written
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MultipleLocator, PercentFormatter

    if not traces:
        raise ValueError("plot_dispatch needs at least one trace")
    dt = scenario.step_hours
    bat = scenario.battery
    soc_lo = bat.soc_min if scenario.difficulty.soc_min is None else scenario.difficulty.soc_min
    soc_hi = bat.soc_max if scenario.difficulty.soc_max is None else scenario.difficulty.soc_max
    # the env starts every episode at this SoC (docs/environment.md, section 5)
    soc0 = float(np.clip(bat.initial_soc, soc_lo, soc_hi))

    n = len(traces)
    fig, axes = plt.subplots(
        3, n, figsize=(max(16.0, 7.0 * n), 9.0), dpi=100, sharex=True, sharey="row", squeeze=False,
        gridspec_kw={"height_ratios": [3, 1.2, 1.2]}, layout="constrained",
    )
    hours = 0.0
    for col, (label, trace) in enumerate(traces.items()):
        trace = trace.sort_values("step")
        steps = trace["step"].to_numpy()
        edges = np.r_[steps, steps[-1] + 1] * dt  # step starts plus the end of the last step
        hours = max(hours, edges[-1])

        def stair(column: str) -> np.ndarray:
            """kWh per step as kW, repeated at the end edge for step drawing."""
            kw = trace[column].to_numpy() / dt
            return np.r_[kw, kw[-1]]

        flow, soc_ax, price_ax = axes[:, col]
        used, curtailed = stair("renewable_kwh"), stair("curtailed_kwh")
        flow.fill_between(edges, 0, used, step="post", color=COLORS["renewable"], alpha=0.45, lw=0, label="PV + wind used")
        flow.fill_between(edges, used, used + curtailed, step="post", color=COLORS["curtailed"], alpha=0.35, lw=0, label="curtailed")
        flow.step(edges, stair("load_kwh"), where="post", color=COLORS["load"], lw=2.2, label="load")
        flow.step(edges, stair("battery_kwh"), where="post", color=COLORS["battery"], lw=1.8, label="battery (+charge / −discharge)")
        flow.step(edges, stair("ev_kwh"), where="post", color=COLORS["ev"], lw=1.8, label="EV charging")
        grid = stair("grid_import_kwh") - stair("grid_export_kwh")
        flow.step(edges, grid, where="post", color=COLORS["grid"], lw=1.8, label="grid (+import / −export)")
        flow.axhline(0, color="grey", lw=0.8)
        flow.set_title(label, fontsize=14, fontweight="bold")

        # SoC is the state after each step: drawn at step ends, from the initial SoC at the start
        soc_ax.plot(np.r_[0.0, (steps + 1) * dt], np.r_[soc0, trace["soc"].to_numpy()], color=COLORS["battery"], lw=2, label="SoC")
        for bound in (soc_lo, soc_hi):
            soc_ax.axhline(bound, color="grey", ls="--", lw=1)
        soc_ax.axhline(np.nan, color="grey", ls="--", lw=1, label="SoC window")  # legend entry only

        price = trace["import_price"].to_numpy()
        price_ax.step(edges, np.r_[price, price[-1]], where="post", color=COLORS["price"], lw=2, label="import price")
        price_ax.axhline(scenario.grid.export_price_inr_per_kwh, color="grey", ls="--", lw=1, label="export price")
        price_ax.set_xlabel("hour of day" if hours <= 24 else "hours from the first midnight", fontsize=12)

    axes[0, 0].set_ylabel("power (kW)", fontsize=12)
    axes[1, 0].set_ylabel("battery SoC", fontsize=12)
    axes[2, 0].set_ylabel("price (Rs/kWh)", fontsize=12)
    axes[1, 0].set_ylim(0, 1)
    axes[1, 0].yaxis.set_major_formatter(PercentFormatter(1.0))
    axes[2, 0].set_ylim(bottom=0)
    axes[0, 0].set_xlim(0, hours)
    axes[0, 0].xaxis.set_major_locator(MultipleLocator(3 * max(1, round(hours / 24))))
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=11)
    for row in axes:
        row[-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=11, frameon=False)
    if title:
        fig.suptitle(title, fontsize=15)
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out
