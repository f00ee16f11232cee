"""The allowed range of every measured value, and the collector of what breaks them.

The ranges are what is physically possible at the site (not what is plausible), wide enough for any
sensor, narrow enough to catch a wrong unit: W for kW, Rs/MWh for Rs/kWh, g for kg.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..scenario import Scenario, ScenarioError, check_range
from .schema import Issue

#: The scenario's bound on every power (kW).
MAX_POWER_KW = 1e7
#: Above any EV battery (large trucks carry about 1 MWh), as the data loader's sessions.
MAX_EV_KWH = 1000.0
#: Import price (Rs/kWh): above any tariff a scenario allows (exchange cap and network charge at most 100 each, a ToD
#: rate at most 100 x 5); a price in Rs/MWh is thousands.
MAX_PRICE_INR_PER_KWH = 1000.0
#: Grid emission factor (kg CO2/kWh): above the dirtiest lignite plants (about 1.4), as the data card.
MAX_EMISSION_KG_PER_KWH = 2.0
#: Forecasts may overshoot what is installed; twice the installation is still far below a reading in W.
FORECAST_HEADROOM = 2.0


@dataclass(frozen=True)
class Range:
    """An allowed interval ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``) of a quantity in ``unit``."""

    lo: float
    hi: float
    unit: str
    lo_open: bool = False

    def problem(self, path: str, value: Any) -> str | None:
        """What is wrong with ``value`` at ``path`` (named, with the range and unit), or ``None``."""
        try:
            check_range(path, value, self.lo, self.hi, self.lo_open)
        except ScenarioError as err:
            return f"{err} ({self.unit})"
        return None


def site_ranges(scenario: Scenario) -> dict[str, Range]:
    """The allowed range of each measured quantity, by its field name in :mod:`.schema`.

    :param scenario: the site (installed PV and wind bound their outputs)
    """
    return {
        "soc": Range(0.0, 1.0, "fraction of the current capacity"),
        "soh": Range(0.0, 1.0, "current / nominal capacity", lo_open=True),
        "day_peak_import_kw": Range(0.0, MAX_POWER_KW, "kW"),
        "load_kw": Range(0.0, MAX_POWER_KW, "kW"),
        "pv_kw": Range(0.0, FORECAST_HEADROOM * scenario.pv.capacity_kwp, "kW, up to twice pv.capacity_kwp"),
        "wind_kw": Range(0.0, FORECAST_HEADROOM * scenario.wind.rated_kw, "kW, up to twice wind.rated_kw"),
        "price_inr_per_kwh": Range(0.0, MAX_PRICE_INR_PER_KWH, "Rs/kWh"),
        "emission_kg_per_kwh": Range(0.0, MAX_EMISSION_KG_PER_KWH, "kg CO2/kWh"),
        "energy_wanted_kwh": Range(0.0, MAX_EV_KWH, "kWh"),
        "energy_delivered_kwh": Range(0.0, MAX_EV_KWH, "kWh"),
    }


class Checker:
    """Collects the problems of one request's values.

    :param ranges: :func:`site_ranges` of the site
    """

    def __init__(self, ranges: dict[str, Range]) -> None:
        self.ranges = ranges
        self.issues: list[Issue] = []

    def add(self, field: str, message: str) -> None:
        self.issues.append(Issue(field=field, message=message))

    def value(self, path: str, value: Any) -> float | None:
        """``value`` if it lies in the range of its quantity (the last name of ``path``), else ``None`` with the
        problem recorded."""
        problem = self.ranges[path.rpartition(".")[2]].problem(path, value)
        if problem is not None:
            self.add(path, problem)
            return None
        return float(value)
