"""Forecast correction learnt from the training years, and the controllers that plan on it."""

from .controller import CorrectedForecastController
from .correction import CORRECTOR_FILE, ForecastCorrector, collect_windows, fit_corrector, revealed_errors

__all__ = ["CORRECTOR_FILE", "CorrectedForecastController", "ForecastCorrector", "collect_windows", "fit_corrector", "revealed_errors"]
