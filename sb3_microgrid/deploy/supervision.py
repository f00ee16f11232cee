"""The env's safety supervisor (:func:`~sb3_microgrid.envs.supervisor.project`, the same compiled function) on
a site's measurements.

The feasible ranges come from the measured state through the env's own :func:`battery_range` and
:func:`port_range`. A value that failed its check is replaced by the safest reading left: an unknown SoC or
SoH keeps the battery idle; a car's unknown need allows the port's full power (the car's own charger stops
when it is full) and an unknown delivered energy allows no V2G; an unknown load, PV or wind output is taken
from this step's forecast, else the last measured step, else 0 kW.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..envs.supervisor import battery_range, port_range, project
from ..scenario import Scenario
from .site_state import ROW_FIELDS, SiteState


@dataclass(frozen=True)
class Setpoints:
    """What the supervisor lets through (kW; + charging or importing)."""

    battery_kw: float
    charger_kw: np.ndarray
    curtail_kw: float
    shed_kw: float
    intervened: bool


def _estimate(reading: float | None, state: SiteState, field: str) -> float:
    """The measured value now, else this step's forecast, else the last measured step, else 0."""
    column = ROW_FIELDS.index(field)
    candidates = (reading, *state.forecast[:1, column], *state.history[-1:, column])
    return next((float(v) for v in candidates if v is not None and math.isfinite(v)), 0.0)


def supervise(action: np.ndarray, state: SiteState, scenario: Scenario) -> Setpoints:
    """Project ``action`` (the env's action space) onto what the site can do now.

    :param action: ``(1 + ev.n_ports,)`` battery then charger entries in [-1, 1] (NaN and values outside the box
        are handled as the env handles them)
    :param state: the checked measurements
    :param scenario: the site
    """
    b, ev, g = scenario.battery, scenario.ev, scenario.grid
    dt = scenario.step_hours
    bat_lo = bat_hi = 0.0
    if state.soc is not None and state.soh is not None:
        capacity = b.capacity_kwh * state.soh
        soc_min, soc_max = scenario.soc_bounds
        bat_lo, bat_hi = battery_range(
            state.soc * capacity, capacity, soc_min, soc_max, b.self_discharge_per_hour, dt,
            b.charge_efficiency, b.discharge_efficiency, b.charge_power_kw, b.discharge_power_kw,
        )  # fmt: skip
    connected, ev_lo, ev_hi = (np.zeros(ev.n_ports) for _ in range(3))
    for car in state.evs:
        wanted = car.wanted_kwh if car.wanted_kwh is not None else ev.port_power_kw * ev.charger_efficiency * dt
        delivered = car.delivered_kwh if car.delivered_kwh is not None else 0.0
        connected[car.port] = 1.0
        ev_lo[car.port], ev_hi[car.port] = port_range(True, wanted, delivered, ev.port_power_kw, ev.charger_efficiency, dt, ev.v2g)
    renewable = _estimate(state.pv_kw, state, "pv_kw") + _estimate(state.wind_kw, state, "wind_kw")
    charger_kw = np.zeros(ev.n_ports)
    battery_kw, curtail_kw, shed_kw, intervened = project(
        np.ascontiguousarray(action, dtype=np.float64), bat_lo, bat_hi, b.charge_power_kw, b.discharge_power_kw,
        ev_lo, ev_hi, connected, ev.port_power_kw, ev.v2g, _estimate(state.load_kw, state, "load_kw"), renewable,
        g.import_limit_kw, g.export_limit_kw, charger_kw,
    )  # fmt: skip
    return Setpoints(float(battery_kw), charger_kw, float(curtail_kw), float(shed_kw), bool(intervened))
