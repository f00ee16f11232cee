"""The env's safety supervisor (:func:`~sb3_microgrid.envs.supervisor.project_requests`, the same compiled
function, after the same :func:`port_requests` or fleet dispatch :func:`fleet_requests`) on a site's measurements.

The feasible ranges come from the measured state through the env's own :func:`battery_range` and
:func:`port_range`. A value that failed its check is replaced by the safest reading left: an unknown SoC or
SoH keeps the battery idle; a car's unknown need allows the port's full power (the car's own charger stops
when it is full) and an unknown delivered energy allows no V2G; a car's unknown departure reads as leaving now,
so the fleet dispatch serves it first; an unknown load, PV or wind output is taken from this step's forecast,
else the last measured step, else 0 kW.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..envs.dispatch import fleet_requests, laxity_hours
from ..envs.supervisor import battery_range, port_range, port_requests, project_requests
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


@dataclass(frozen=True)
class Cars:
    """The chargers' state as the supervisor and the fleet features read it, one entry per charger (0 where free).

    :param connected: 1.0 where a car is
    :param wanted_kwh: energy each car still wants (car side)
    :param laxity_h: hours to departure minus hours of full port power still needed
    :param lo_kw: lowest feasible charger power now (bus side)
    :param hi_kw: highest feasible charger power now
    """

    connected: np.ndarray
    wanted_kwh: np.ndarray
    laxity_h: np.ndarray
    lo_kw: np.ndarray
    hi_kw: np.ndarray


def read_cars(state: SiteState, scenario: Scenario) -> Cars:
    """The chargers' state, failed values replaced as the module docstring says."""
    ev, dt = scenario.ev, scenario.step_hours
    cars = Cars(*(np.zeros(ev.n_ports) for _ in range(5)))
    for car in state.evs:
        wanted = car.wanted_kwh if car.wanted_kwh is not None else ev.port_power_kw * ev.charger_efficiency * dt
        delivered = car.delivered_kwh if car.delivered_kwh is not None else 0.0
        p = car.port
        cars.connected[p], cars.wanted_kwh[p] = 1.0, wanted
        cars.laxity_h[p] = laxity_hours(car.hours_left if car.hours_left is not None else 0.0, wanted, ev.port_power_kw, ev.charger_efficiency)
        cars.lo_kw[p], cars.hi_kw[p] = port_range(True, wanted, delivered, ev.port_power_kw, ev.charger_efficiency, dt, ev.v2g)
    return cars


def supervise(action: np.ndarray, state: SiteState, scenario: Scenario) -> Setpoints:
    """Project ``action`` (the env's action space) onto what the site can do now.

    :param action: ``(1 + ev.n_ports,)`` battery then charger entries, or ``(2,)`` battery and fleet entries with
        ``ev.dispatch: aggregate``, in [-1, 1] (NaN and values outside the box are handled as the env handles them)
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
    cars = read_cars(state, scenario)
    action = np.ascontiguousarray(action, dtype=np.float64)
    wanted_kw = np.zeros(ev.n_ports)
    if ev.dispatch == "aggregate":
        invalid = fleet_requests(action[1], cars.lo_kw, cars.hi_kw, cars.laxity_h, ev.v2g, wanted_kw)
    else:
        invalid = port_requests(action, ev.port_power_kw, ev.v2g, wanted_kw)
    renewable = _estimate(state.pv_kw, state, "pv_kw") + _estimate(state.wind_kw, state, "wind_kw")
    charger_kw = np.zeros(ev.n_ports)
    battery_kw, curtail_kw, shed_kw, intervened = project_requests(
        action[0], wanted_kw, invalid, bat_lo, bat_hi, b.charge_power_kw, b.discharge_power_kw, cars.lo_kw, cars.hi_kw,
        cars.connected, _estimate(state.load_kw, state, "load_kw"), renewable, g.import_limit_kw, g.export_limit_kw, charger_kw,
    )  # fmt: skip
    return Setpoints(float(battery_kw), charger_kw, float(curtail_kw), float(shed_kw), bool(intervened))
