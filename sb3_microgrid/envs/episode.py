"""The exogenous arrays of an episode: true series, tariff, forecasts and EV arrivals.

Built for M microgrids at once from their start days and their forecast-noise draws. The env's core
and the LP baselines both take their numbers from here, so the optimum is computed on exactly the
prices, limits and sessions the env charges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from numba import njit

from ..scenario import WINDOW_SERIES, Difficulty, Scenario
from .site import SiteArrays


#: ``ev_count`` meaning "every session of the day"
ALL_SESSIONS = 2**40


@dataclass(frozen=True)
class Episode:
    """Arrays of M episodes of T steps (leading axis M)."""

    start_day: np.ndarray  # (M,) day index into SiteArrays.dates
    dates: pd.DatetimeIndex  # (M,) first day of each episode
    load_kw: np.ndarray  # (M, T)
    pv_kw: np.ndarray  # (M, T) available PV
    wind_kw: np.ndarray  # (M, T) available wind
    import_price: np.ndarray  # (M, T) Rs/kWh, after difficulty scaling
    emission: np.ndarray  # (M, T) kg CO2/kWh
    demand_rate: np.ndarray  # (M, T) Rs per kVA of the day's peak
    time_features: np.ndarray  # (M, T, 6)
    window_mean: np.ndarray  # (M, H + T + F, S) normalised true values per target step
    window_error: np.ndarray  # (M, T + 1, F, S) error of the forecast issued at step t for step t + l
    arrival_energy: np.ndarray  # (M, T, P) kWh asked by an EV arriving at the start of step t at port p
    arrival_deadline: np.ndarray  # (M, T, P) step at which that EV leaves
    soc_min: np.ndarray  # (M,)
    soc_max: np.ndarray  # (M,)
    shortfall_price: np.ndarray  # (M,) Rs per kWh of stored energy below the start at the end
    surplus_price: np.ndarray  # (M,) Rs per kWh of stored energy above the start at the end

    @property
    def n_steps(self) -> int:
        return self.load_kw.shape[1]


@njit(cache=True)
def forecast_error(white: np.ndarray, rho: float, truth: np.ndarray, sigma: np.ndarray, history_steps: int, n_issues: int) -> np.ndarray:
    """Forecast errors per issue step and lead from the (M, H + T + F, F, S) white draws.

    The forecast of target ``tau`` (window index) at lead ``l`` errs by ``truth * sigma * sqrt(1 / F) * (u_0 + ...
    + u_l)[tau]``, each ``u_k`` a unit-variance AR(1) path along the targets. The error at lead ``l`` has the
    variance ``(l + 1) / F`` of the one at the longest lead, and a forecast revised one lead closer drops one
    increment: for that target, a revision says what the newer forecast learnt, not the error that remains (the
    same ``u`` at every lead, only rescaled, let two successive observations solve for the true series). Across
    targets the increments persist (``rho``), which error feedback can use (``sb3_microgrid.forecasting``).

    :return: (M, n_issues, F, S): ``out[m, t, l]`` is the error of the forecast issued at episode step ``t`` for
        step ``t + l``, the observation's row ``history_steps + l`` (contiguous per step for ``observe``)
    """
    m_count, steps, leads, series = white.shape
    out = np.zeros((m_count, n_issues, leads, series))
    innovation = np.sqrt(1.0 - rho * rho)
    unit = np.sqrt(1.0 / leads)
    u = np.empty((leads, series))
    for m in range(m_count):
        for tau in range(steps):
            for k in range(leads):
                for s in range(series):
                    u[k, s] = white[m, 0, k, s] if tau == 0 else rho * u[k, s] + innovation * white[m, tau, k, s]
            if tau < history_steps:  # measured rows carry no error; their paths still run for continuity
                continue
            for s in range(series):
                scale = sigma[m, s] * unit
                error = 0.0
                for lead in range(leads):
                    error += truth[m, tau, s] * scale * u[lead, s]
                    t = tau - history_steps - lead
                    if 0 <= t < n_issues:
                        out[m, t, lead, s] = error
    return out


def within_split(first: np.ndarray, length: int, split_end: np.ndarray | None, steps_per_day: int) -> np.ndarray:
    """Absolute steps ``first[m] + arange(length)``, where those at or after ``split_end[m]`` are moved to the same
    step of the split's last day: the copy of the last day that pads the data's end, at every split's end.

    :param split_end: (M,) day-aligned absolute steps; ``None``: no bound but the data's padded end
    :return: (M, length) step indices
    """
    rows = first[:, None] + np.arange(length)[None, :]
    if split_end is None:
        return rows
    end = split_end[:, None]
    return np.where(rows < end, rows, end - steps_per_day + (rows - end) % steps_per_day)


def noise_shape(scenario: Scenario) -> tuple[int, int, int]:
    """Shape of one microgrid's standard-normal forecast-noise draw: (target steps, leads, series)."""
    f = scenario.forecast
    return (f.history_steps + scenario.episode_steps + f.forecast_steps, f.forecast_steps, len(WINDOW_SERIES))


def build_episode(
    site: SiteArrays,
    scenario: Scenario,
    start_day: np.ndarray,
    difficulty: Sequence[Difficulty],
    noise: np.ndarray | None = None,
    split_end: np.ndarray | None = None,
) -> Episode:
    """Exogenous arrays of M episodes.

    :param site: the site's prepared series
    :param scenario: the scenario (its ``difficulty`` field is ignored: pass ``difficulty``)
    :param start_day: (M,) day index of each episode's first day
    :param difficulty: one :class:`Difficulty` per episode
    :param noise: (M, H + T + F, F, S) standard-normal draws for the forecast errors; ``None`` for
        perfect forecasts
    :param split_end: (M,) absolute step where each episode's split ends (``SiteArrays.split_end`` of its first day):
        forecasts of later steps read the split's last day again, as at the data's end, so that no episode sees
        another split's data; ``None`` for none (split ``all``)
    """
    start_day = np.asarray(start_day, dtype=np.int64)
    m = start_day.size
    spd, hd, T = scenario.steps_per_day, scenario.horizon_days, scenario.episode_steps
    fc, grid, bat = scenario.forecast, scenario.grid, scenario.battery
    a0 = site.day_start[start_day]
    steps = a0[:, None] + np.arange(T)[None, :]

    renewable_noise, volatility, ev_count, buffer_steps, soc_min, soc_max = _difficulty_arrays(difficulty, scenario)
    bad = soc_min >= soc_max
    if bad.any():
        raise ValueError(f"difficulty gives soc_min >= soc_max ({soc_min[bad][0]} >= {soc_max[bad][0]}); need soc_min < soc_max")

    # Import price on whole days around the episode (the window reaches into neighbouring days).
    days_before = -(-fc.history_steps // spd)
    n_ext = days_before + hd + -(-fc.forecast_steps // spd)
    ext_start = a0 - days_before * spd
    ext = site.energy_price[within_split(ext_start, n_ext * spd, split_end, spd)].reshape(m, n_ext, spd)
    day_mean = ext.mean(axis=2, keepdims=True)
    scaled = day_mean + volatility[:, None, None] * (ext - day_mean)
    if grid.tariff == "exchange":
        price_ext = np.clip(scaled, 0.0, grid.exchange_price_cap) + grid.network_charge_inr_per_kwh
    else:
        price_ext = np.maximum(scaled, 0.0)
    price_ext = price_ext.reshape(m, -1)
    import_price = price_ext[:, days_before * spd : days_before * spd + T]

    # A regulated ToD tariff is published in advance: its forecast is exact.
    price_noise = fc.price_noise if grid.tariff == "exchange" else 0.0
    # Window: targets from H steps before the start to F - 1 steps after the last step.
    span = fc.history_steps + T + fc.forecast_steps
    offset = days_before * spd - fc.history_steps
    window_mean = site.window_truth[within_split(a0 - fc.history_steps, span, split_end, spd)]
    window_mean[:, :, WINDOW_SERIES.index("price")] = price_ext[:, offset : offset + span] / site.window_scale[3]
    sigma = np.stack(
        [renewable_noise, renewable_noise, *(np.full(m, s) for s in (fc.load_noise, price_noise, fc.emission_noise))], axis=1
    )
    if noise is None:
        window_error = np.zeros((m, T + 1, fc.forecast_steps, len(WINDOW_SERIES)))
    else:
        window_error = forecast_error(noise, fc.error_autocorrelation, window_mean, sigma, fc.history_steps, T + 1)

    arrival_energy, arrival_deadline = _ev_arrivals(site, scenario, start_day, ev_count, buffer_steps)
    wear = bat.wear_cost_inr_per_kwh
    emission = site.emission[steps]
    return Episode(
        start_day=start_day,
        dates=site.dates[start_day],
        load_kw=site.load_kw[steps],
        pv_kw=site.pv_kw[steps],
        wind_kw=site.wind_kw[steps],
        import_price=import_price,
        emission=emission,
        demand_rate=site.demand_rate[steps],
        time_features=site.time_features[steps],
        window_mean=window_mean,
        window_error=window_error,
        arrival_energy=arrival_energy,
        arrival_deadline=arrival_deadline,
        soc_min=soc_min,
        soc_max=soc_max,
        # End-of-horizon rule (docs/environment.md): a shortfall must be bought back at worst at the
        # horizon's dearest import (energy plus its priced carbon, plus wear) through the charger; a
        # surplus is worth at most its sale at the export price through the inverter, less the wear of
        # discharging it. So neither draining nor hoarding pays.
        shortfall_price=((import_price + scenario.reward.carbon_price_inr_per_kg * emission).max(axis=1) + wear) / bat.charge_efficiency,
        surplus_price=np.full(m, max(grid.export_price_inr_per_kwh - wear, 0.0) * bat.discharge_efficiency),
    )


def _difficulty_arrays(difficulty: Sequence[Difficulty], scenario: Scenario) -> tuple[np.ndarray, ...]:
    """Per-episode difficulty as arrays (each distinct setting converted once: most runs share one)."""
    bat = scenario.battery
    rows: dict[int, tuple[float, ...]] = {}
    for d in {id(d): d for d in difficulty}.values():
        rows[id(d)] = (
            d.renewable_noise,
            d.price_volatility,
            ALL_SESSIONS if d.ev_count is None else d.ev_count,
            round(d.ev_deadline_buffer / scenario.step_hours),
            bat.soc_min if d.soc_min is None else d.soc_min,
            bat.soc_max if d.soc_max is None else d.soc_max,
        )
    table = np.array([rows[id(d)] for d in difficulty], dtype=np.float64).T
    return table[0], table[1], table[2].astype(np.int64), table[3].astype(np.int64), table[4], table[5]


def _ev_arrivals(
    site: SiteArrays, scenario: Scenario, start_day: np.ndarray, ev_count: np.ndarray, buffer_steps: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    m, T = start_day.size, scenario.episode_steps
    arrival_energy = np.zeros((m, T, scenario.ev.n_ports))
    arrival_deadline = np.zeros((m, T, scenario.ev.n_ports), dtype=np.int64)
    _scatter_arrivals(
        start_day, ev_count, buffer_steps, scenario.steps_per_day, scenario.horizon_days, site.session_port,
        site.session_arrival, site.session_departure, site.session_next_arrival, site.session_energy,
        arrival_energy, arrival_deadline,
    )  # fmt: skip
    return arrival_energy, arrival_deadline


@njit(cache=True)
def _scatter_arrivals(
    start_day: np.ndarray,
    ev_count: np.ndarray,
    buffer_steps: np.ndarray,
    steps_per_day: int,
    horizon_days: int,
    port: np.ndarray,
    arrival: np.ndarray,
    departure: np.ndarray,
    next_arrival: np.ndarray,
    energy: np.ndarray,
    arrival_energy: np.ndarray,
    arrival_deadline: np.ndarray,
) -> None:
    """Place each day's first ``ev_count`` sessions at their arrival step and port. A deadline buffer
    stretches a stay up to the next arrival at the same port and at most to the end of its day."""
    n_steps, n_ports = arrival_energy.shape[1], arrival_energy.shape[2]
    for m in range(start_day.size):
        for h in range(horizon_days):
            d = start_day[m] + h
            for k in range(min(port.shape[1], ev_count[m])):
                p = port[d, k]
                if p < 0 or p >= n_ports:
                    continue
                t = h * steps_per_day + arrival[d, k]
                leave = min(departure[d, k] + buffer_steps[m], next_arrival[d, k])
                arrival_energy[m, t, p] = energy[d, k]
                arrival_deadline[m, t, p] = min(h * steps_per_day + leave, n_steps)
