"""Probe: is there decision cost left in the least-squares forecast corrector's calibration?

The planner on corrected forecasts is scored on the same validation days with the same noise while one
per-series calibration of the corrector moves: a gain on its predicted relative error, a bias, or a bias
growing with the lead (a hedge). If no such move helps on validation days, a decision-focused search over
them (ARS and the like) has nothing to find.

python benchmarks/probes/corrector_sensitivity.py --scenario campus --days 60 --out benchmarks/probes/results/corrector_sensitivity_campus.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

import numpy as np

from sb3_microgrid.evaluation import evaluate, gap_closed
from sb3_microgrid.forecasting import CorrectedForecastController, fit_corrector
from sb3_microgrid.forecasting.correction import _BOUND, ForecastCorrector, revealed_errors


@dataclass
class Calibrated(ForecastCorrector):
    """The fitted corrector with its prediction recalibrated per series: ``gain * p + bias + slope * lead / F``."""

    gain: np.ndarray | None = None
    bias: np.ndarray | None = None
    slope: np.ndarray | None = None

    def correct(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        h, f = self.layout.history_steps, self.layout.forecast_steps
        predicted = np.einsum("slk,nks->nls", self.weights, revealed_errors(previous, current, h))
        lead = (np.arange(f) / f)[None, :, None]
        predicted = np.clip(self.gain * predicted + self.bias + self.slope * lead, -_BOUND, _BOUND)
        out = current.copy()
        out[:, h:] = current[:, h:] / (1.0 + predicted)
        return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", default="campus")
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--base", default="planner")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    fitted = fit_corrector(a.scenario, days=4096, seed=0)
    s = len(fitted.layout.window_names)
    ref = evaluate(a.base, a.scenario, "validation", a.days)
    naive, optimal = ref.summary["cost_naive_per_day"], ref.summary["cost_optimal_per_day"]

    def score(name: str, series: int | None, value: float) -> dict:
        knobs = {"gain": np.ones(s), "bias": np.zeros(s), "slope": np.zeros(s)}
        if series is not None:
            knobs[name][series] = value
        corr = Calibrated(fitted.layout, fitted.weights, fitted.signature, **knobs)
        start = time.perf_counter()
        cost = evaluate(CorrectedForecastController(a.base, corr), a.scenario, "validation", a.days, reference=False).summary["cost_per_day"]
        row = {"knob": name, "series": None if series is None else fitted.layout.window_names[series], "value": value,
               "gap": float(gap_closed(cost, naive, optimal)), "seconds": time.perf_counter() - start}
        print(row, flush=True)
        return row

    rows = [{"knob": "raw forecasts", "series": None, "value": None, "gap": ref.summary["gap_closed"]}, score("gain", None, 1.0)]
    for j in range(s):
        for name, values in (("gain", (0.5, 1.5)), ("bias", (-0.03, 0.03)), ("slope", (-0.05, 0.05))):
            rows += [score(name, j, v) for v in values]
    with open(a.out, "w") as fh:
        json.dump({"command": "python benchmarks/probes/corrector_sensitivity.py " + " ".join(f"--{k} {v}" for k, v in vars(a).items()), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
