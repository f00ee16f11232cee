"""Forecast correction learnt from the training years, and the controllers that plan on it."""

from .controller import CorrectedForecastController
from .correction import BASES, CORRECTOR_FILE, FIT_SEED_STRIDE, MAX_SCENARIOS, ForecastCorrector, collect_windows, divide_out, episode_batches, fit_corrector, fitted_scenario, noise_signature, revealed_errors

__all__ = [
    "BASES",
    "CORRECTOR_FILE",
    "FIT_SEED_STRIDE",
    "MAX_SCENARIOS",
    "CorrectedForecastController",
    "ForecastCorrector",
    "collect_windows",
    "divide_out",
    "episode_batches",
    "fit_corrector",
    "fitted_scenario",
    "noise_signature",
    "revealed_errors",
]
