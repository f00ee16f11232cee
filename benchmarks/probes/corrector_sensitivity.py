"""Probe: is there decision cost left in the least-squares forecast corrector's calibration?

The planner on the corrected forecasts (:class:`~sb3_microgrid.wrappers.CalibratedController` with a fixed
action, so exactly what ``CalibrationWrapper`` lets a policy set) is scored on the same validation days with the
same noise while one per-series knob moves: a gain on the corrector's predicted relative error, a bias, or a bias
growing with the lead. Then a few combinations on the first 30 validation days and on the next 90. If no setting
helps on validation days, a decision-focused search over them (ARS and the like) has nothing to find.

python benchmarks/probes/corrector_sensitivity.py --scenario campus --out benchmarks/probes/results/corrector_sensitivity_campus.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from sb3_microgrid.evaluation import evaluate, gap_closed
from sb3_microgrid.wrappers import CalibratedController
from sb3_microgrid.wrappers.calibration import KNOBS

#: The wrapper's ranges: an action of 1 is a gain of 1 +- 0.5, a bias of 0.05, a slope of 0.1.
RANGES = {"gain": 0.5, "bias": 0.05, "slope": 0.1}
#: Each knob's two values tried alone (in the knob's own units: gain, relative error, relative error at lead F).
VALUES = {"gain": (0.5, 1.5), "bias": (-0.03, 0.03), "slope": (-0.05, 0.05)}
SERIES = ("pv", "wind", "load", "price", "emission")
#: The combinations of the knobs that helped alone on the first 30 days (knob, series, value).
COMBOS = {
    "the corrector (no calibration)": [],
    "pv bias +0.03, pv slope -0.05, load slope +0.05, price bias -0.03": [("bias", "pv", 0.03), ("slope", "pv", -0.05), ("slope", "load", 0.05), ("bias", "price", -0.03)],
    "pv bias +0.03, pv slope -0.05": [("bias", "pv", 0.03), ("slope", "pv", -0.05)],
    "load slope +0.05": [("slope", "load", 0.05)],
}


class _Fixed:
    name = "fixed"

    def __init__(self, action: np.ndarray) -> None:
        self.action = action

    def reset(self, env, obs) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.action


def action(settings: list[tuple[str, str, float]]) -> np.ndarray:
    """The wrapper's action for knob values in their own units (everything else at the fit)."""
    a = np.zeros((len(KNOBS), len(SERIES)))
    for knob, series, value in settings:
        a[KNOBS.index(knob), SERIES.index(series)] = (value - 1.0 if knob == "gain" else value) / RANGES[knob]
    return a.ravel()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", default="campus")
    p.add_argument("--base", default="planner")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    ref = evaluate(a.base, a.scenario, "validation", 120).days
    parts = {"first 30": slice(0, 30), "next 90": slice(30, 120)}

    def score(settings: list[tuple[str, str, float]], days: int) -> dict[str, float]:
        ctl = CalibratedController(_Fixed(action(settings)), a.base, fit_days=4096, fit_seed=0, **RANGES)
        cost = evaluate(ctl, a.scenario, "validation", days, reference=False).days["cost"]
        return {part: float(gap_closed(cost[s].mean(), ref.cost_naive[s].mean(), ref.cost_optimal[s].mean())) for part, s in parts.items() if s.stop <= days}

    raw = {part: float(gap_closed(ref.cost[s].mean(), ref.cost_naive[s].mean(), ref.cost_optimal[s].mean())) for part, s in parts.items()}
    single = [{"knob": "none", "series": None, "value": None, **score([], 30)}]
    for series in SERIES:
        for knob, values in VALUES.items():
            for value in values:
                single.append({"knob": knob, "series": series, "value": value, **score([(knob, series, value)], 30)})
                print(single[-1], flush=True)
    combos = {name: score(settings, 120) for name, settings in COMBOS.items()}
    print(json.dumps(combos, indent=1))
    command = f"python benchmarks/probes/corrector_sensitivity.py --scenario {a.scenario} --base {a.base} --out {a.out}"
    with open(a.out, "w") as fh:
        json.dump({"command": command, f"{a.base} on the raw forecasts": raw, "single knobs, first 30 validation days": single, "combinations": combos}, fh, indent=1)


if __name__ == "__main__":
    main()
