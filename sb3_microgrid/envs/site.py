"""The site's series at the step resolution, as flat arrays the vectorized core gathers from.

Everything derived from the scenario that does not change during an episode is computed here once:
PV and wind power, the import tariff (before difficulty scaling), time features and the EV sessions of
each day as dense ``(days, sessions)`` arrays. The front and back are padded with copies of the first
and last day so that every day's history and forecast window exists.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import DataValidationError, MicrogridData, generate, load_data, site_profile, split_days, validate_series, validate_sessions
from ..scenario import Scenario, ScenarioError, WindConfig
from .time_features import step_hours, time_features

#: Demand charge (Rs/kVA/month) that ``site_demand_charge`` is a multiple of: the campus preset's.
REFERENCE_DEMAND_CHARGE = 350.0


def wind_power_fraction(speed: np.ndarray, cfg: WindConfig) -> np.ndarray:
    """Power curve as a fraction of rated power: cubic from cut-in to rated, flat to cut-out."""
    ramp = (speed**3 - cfg.cut_in_ms**3) / (cfg.rated_ms**3 - cfg.cut_in_ms**3)
    return np.where(speed < cfg.cut_in_ms, 0.0, np.where(speed < cfg.rated_ms, ramp, np.where(speed < cfg.cut_out_ms, 1.0, 0.0)))


@dataclass(frozen=True)
class SiteArrays:
    """Flat per-step arrays of a site (padded) and per-day EV session arrays.

    Per-step arrays are indexed by an absolute step; day ``d`` of the data starts at
    ``day_start[d]``. Prices are Rs/kWh, powers kW, emission factors kg CO2/kWh.
    """

    dates: pd.DatetimeIndex  # one per (unpadded) day
    day_start: np.ndarray  # (D,) absolute step of each day's midnight
    split_end: np.ndarray  # (D,) absolute step where the split of each day (train, validation, test) ends
    pv_kw: np.ndarray
    wind_kw: np.ndarray
    load_kw: np.ndarray
    energy_price: np.ndarray  # exchange price (capped) or ToD rate, before network charges
    emission: np.ndarray
    demand_rate: np.ndarray  # Rs per kVA of the day's peak: monthly charge / days in that month
    time_features: np.ndarray  # (steps, len(TIME_FEATURES))
    window_truth: np.ndarray  # (steps, len(WINDOW_SERIES)) normalised true values (price filled per episode)
    window_scale: np.ndarray  # (len(WINDOW_SERIES),) divisor of each window series
    mean_load_kw: float  # means over the training years (the observation's normalisers)
    mean_pv_kw: float
    mean_wind_kw: float
    session_port: np.ndarray  # (D, K) int, -1 where no session
    session_arrival: np.ndarray  # (D, K) step within the day
    session_departure: np.ndarray  # (D, K) step within the day (exclusive: gone at this step)
    session_energy: np.ndarray  # (D, K) kWh requested
    session_next_arrival: np.ndarray  # (D, K) step within the day when the port's next EV arrives (or steps/day)


@functools.lru_cache(maxsize=4)
def _load(data_key: tuple) -> MicrogridData:
    seed, years, start_year, load_mean_kw, load_profile, climate, series_path, sessions_path, n_ports, port_kw, _digests = data_key
    site = site_profile(load_profile, climate, load_mean_kw=load_mean_kw, ev_port_power_kw=port_kw)
    if series_path:
        return load_data(series_path, sessions_path, n_ports=n_ports, seed=seed, site=site)
    return generate(years=years, start_year=start_year, seed=seed, site=site, n_ports=n_ports)


def _digest(field: str, path: str | None) -> str | None:
    """Hash of a file's content: the cache key, so a file rewritten in this process is read again.

    :param field: the scenario field that names the file, for messages
    :param path: the file, or None
    """
    if path is None:
        return None
    try:
        return hashlib.blake2b(Path(path).read_bytes()).hexdigest()
    except OSError as err:  # missing, a folder, no permission
        raise ScenarioError(f"data.{field} = {path!r}: cannot read the file ({err.strerror or err})") from err


def scenario_data(scenario: Scenario) -> MicrogridData:
    """The scenario's data (generated or read), cached per process and, for files, per content."""
    d = scenario.data
    digests = (_digest("series_path", d.series_path), _digest("sessions_path", d.sessions_path))
    try:
        return _load(
            (d.seed, d.years, d.start_year, d.load_mean_kw, d.load_profile, d.climate, d.series_path, d.sessions_path,
             scenario.ev.n_ports, scenario.ev.port_power_kw, digests)
        )
    except DataValidationError as err:  # the message names the column (series and session columns differ) or file
        files = f"data.series_path = {d.series_path!r}" + (f", data.sessions_path = {d.sessions_path!r}" if d.sessions_path else "")
        raise DataValidationError(f"{files}: {err}") from err


def _to_steps(hourly: np.ndarray, per_hour: int, interpolate: bool) -> np.ndarray:
    """Hourly values to step values: held for prices; for physical flows, linear between the hours'
    midpoints (an hourly value is that hour's average), evaluated at each step's midpoint."""
    if per_hour == 1:
        return hourly
    if not interpolate:
        return np.repeat(hourly, per_hour)
    step_mid = (np.arange(hourly.size * per_hour) + 0.5) / per_hour
    return np.interp(step_mid, np.arange(hourly.size) + 0.5, hourly)


def tod_rate(hours: np.ndarray, scenario: Scenario) -> np.ndarray:
    """Regulated time-of-day energy rate (Rs/kWh) at the given hours of day."""
    g = scenario.grid
    # the windows are whole hours: a step belongs to the hour it starts in
    return g.normal_rate_inr_per_kwh * np.asarray(g.tod_factors())[np.floor(hours).astype(np.int64)]


def build_site(scenario: Scenario, data: MicrogridData | None = None) -> SiteArrays:
    """Prepare a scenario's data for the core.

    :param scenario: the scenario (assets, tariff, step length)
    :param data: data to use instead of the scenario's own source; checked like a file (``DataValidationError``
        naming the column), since a NaN or negative load would reach the rewards; sessions on ports the scenario
        lacks are dropped (docs/environment.md, section 10)
    """
    if data is None:
        data = scenario_data(scenario)
    else:
        data = MicrogridData(series=validate_series(data.series), sessions=validate_sessions(data.sessions, None))
    series = data.series
    per_hour = int(round(1.0 / scenario.step_hours))
    spd = scenario.steps_per_day
    n_days = len(series) // 24
    pad_front = -(-scenario.forecast.history_steps // spd)
    pad_back = -(-scenario.forecast.forecast_steps // spd)

    def pad(steps: np.ndarray) -> np.ndarray:
        steps = np.asarray(steps, dtype=np.float64)
        return np.concatenate([np.tile(steps[:spd], pad_front), steps, np.tile(steps[-spd:], pad_back)])

    def padded(hourly: np.ndarray, interpolate: bool) -> np.ndarray:
        return pad(_to_steps(np.asarray(hourly, dtype=np.float64), per_hour, interpolate))

    grid = scenario.grid
    pv_cf = padded(series["pv_cf"].to_numpy(), True)
    wind_cf = wind_power_fraction(padded(series["wind_speed"].to_numpy(), True), scenario.wind)
    load = padded(series["load_kw"].to_numpy(), True)
    emission = padded(series["emission_factor"].to_numpy(), False)
    # From the step's index, not from timestamps: a step of 1/7 h is no whole number of nanoseconds, and the
    # rounding put the first step of an hour (or of a day) into the one before
    dates = pd.DatetimeIndex(series.index[::24]).normalize()
    hours = pad(np.tile(step_hours(np.arange(spd), spd), n_days))

    def daily(values: np.ndarray) -> np.ndarray:
        return pad(np.repeat(np.asarray(values, dtype=np.float64), spd))

    if grid.tariff == "exchange":
        energy_price = padded(np.minimum(series["exchange_price"].to_numpy(), grid.exchange_price_cap), False)
    else:
        energy_price = tod_rate(hours, scenario)
    days_in_month = daily(dates.days_in_month)
    weekend = daily(dates.day_of_week >= 5)
    holiday = padded(series["is_holiday"].to_numpy(), False)
    # Normalise by the training years' mean so no statistic of the test year reaches the observation.
    train_days = split_days(dates, "train")
    train_hours = series.index.normalize().isin(train_days)
    load_scale = float(series["load_kw"][train_hours].mean())
    if not load_scale > 0.0:  # every load of the observation and every size of the site context is divided by it
        raise DataValidationError(f"load_kw: the mean load of the training days is {load_scale} kW; it must be > 0 kW (it normalises the observation)")
    price_scale = grid.exchange_price_cap + grid.network_charge_inr_per_kwh if grid.tariff == "exchange" else grid.normal_rate_inr_per_kwh * grid.peak_multiplier
    window_scale = np.array([1.0, 1.0, load_scale, price_scale, 1.0])
    window_truth = np.stack([pv_cf, wind_cf, load / load_scale, np.zeros_like(load), emission], axis=1)

    sessions = _session_arrays(data, scenario, n_days)
    return SiteArrays(
        dates=dates,
        day_start=(pad_front + np.arange(n_days)) * spd,
        split_end=(pad_front + _split_run_end(dates)) * spd,
        pv_kw=pv_cf * scenario.pv.capacity_kwp,
        wind_kw=wind_cf * scenario.wind.rated_kw,
        load_kw=load,
        energy_price=energy_price,
        emission=emission,
        demand_rate=grid.demand_charge_inr_per_kva_month / days_in_month,
        time_features=time_features(hours, daily(dates.day_of_year), weekend, holiday),
        window_truth=window_truth,
        window_scale=window_scale,
        mean_load_kw=load_scale,
        mean_pv_kw=float(series["pv_cf"][train_hours].mean()) * scenario.pv.capacity_kwp,
        mean_wind_kw=float(wind_power_fraction(series["wind_speed"][train_hours].to_numpy(), scenario.wind).mean()) * scenario.wind.rated_kw,
        **sessions,
    )


def _split_run_end(dates: pd.DatetimeIndex) -> np.ndarray:
    """Per day, the index of the first day after its split's run of days (the day the next split begins, or the
    number of days): a day's forecasts read no further, so no episode sees another split's data."""
    label = np.zeros(len(dates), dtype=np.int64)
    for code, split in enumerate(("validation", "test"), start=1):
        try:
            label[dates.isin(split_days(dates, split))] = code
        except ValueError:  # a split of no days (short data): an env of that split refuses to start
            continue
    starts = np.flatnonzero(np.diff(label)) + 1  # first day of each later run
    return np.append(starts, len(dates))[np.searchsorted(starts, np.arange(len(dates)), side="right")]


def site_context(scenario: Scenario, site: SiteArrays) -> np.ndarray:
    """The :data:`~.layout.SITE_CONTEXT` features of a site: sizes as multiples of its mean load of the training years, so
    a 200 kW clinic and a 2 MW campus of the same design read alike (docs/environment.md, section 4)."""
    b, g, ev = scenario.battery, scenario.grid, scenario.ev
    load = site.mean_load_kw
    return np.array([
        b.capacity_kwh * (b.soc_max - b.soc_min) / load,
        (b.charge_power_kw + b.discharge_power_kw) / (2.0 * b.capacity_kwh),
        site.mean_pv_kw / load,
        site.mean_wind_kw / load,
        float(g.tariff == "tod"),
        g.demand_charge_inr_per_kva_month / REFERENCE_DEMAND_CHARGE,
        g.import_limit_kw / load,
        g.export_limit_kw / load,
        ev.n_ports * ev.port_power_kw / load,
        float(ev.v2g),
    ])  # fmt: skip


def _session_arrays(data: MicrogridData, scenario: Scenario, n_days: int) -> dict[str, np.ndarray]:
    """Dense ``(days, K)`` session arrays, sessions of a day sorted by arrival."""
    s = data.sessions
    spd = scenario.steps_per_day
    start = data.series.index[0].normalize()
    day = ((s["arrival"].dt.normalize() - start) // pd.Timedelta(days=1)).to_numpy()
    step = pd.Timedelta(hours=scenario.step_hours)
    arrival = ((s["arrival"] - s["arrival"].dt.normalize()) // step).to_numpy()
    departure = ((s["departure"] - s["arrival"].dt.normalize()) // step).to_numpy()
    departure = np.clip(np.maximum(departure, arrival + 1), 0, spd)
    order = np.lexsort((s["port"].to_numpy(), arrival, day))
    day, arrival, departure = day[order], arrival[order], departure[order]
    port = s["port"].to_numpy()[order]
    energy = s["energy_kwh"].to_numpy(dtype=np.float64)[order]
    keep = (day >= 0) & (day < n_days) & (port < scenario.ev.n_ports)
    day, arrival, departure, port, energy = day[keep], arrival[keep], departure[keep], port[keep], energy[keep]
    # Whole steps shorten some stays: a request is cut to what full power delivers in the stay the
    # env can represent, so unmet energy measures control, not rounding.
    ev = scenario.ev
    energy = np.minimum(energy, ev.port_power_kw * ev.charger_efficiency * scenario.step_hours * (departure - arrival))
    clash = (day[1:] == day[:-1]) & (arrival[1:] == arrival[:-1]) & (port[1:] == port[:-1])
    if clash.any():
        first = np.flatnonzero(clash)[0]
        raise ValueError(
            f"two EV sessions arrive at port {port[first]} in the same {scenario.step_hours} h step on day {day[first]} of the data; "
            "use a shorter step_hours or merge the sessions"
        )
    counts = np.bincount(day, minlength=n_days)
    k_max = max(int(counts.max()) if counts.size else 0, 1)
    first_of_day = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(day.size) - first_of_day[day]

    out = {
        "session_port": np.full((n_days, k_max), -1, dtype=np.int64),
        "session_arrival": np.zeros((n_days, k_max), dtype=np.int64),
        "session_departure": np.zeros((n_days, k_max), dtype=np.int64),
        "session_energy": np.zeros((n_days, k_max)),
        "session_next_arrival": np.full((n_days, k_max), spd, dtype=np.int64),
    }
    out["session_port"][day, slot] = port
    out["session_arrival"][day, slot] = arrival
    out["session_departure"][day, slot] = departure
    out["session_energy"][day, slot] = energy
    # Next arrival at the same port on the same day bounds how far a deadline buffer can stretch a stay.
    by_port = np.lexsort((arrival, port, day))
    same = (day[by_port][1:] == day[by_port][:-1]) & (port[by_port][1:] == port[by_port][:-1])
    nxt = np.full(day.size, spd, dtype=np.int64)
    nxt[by_port[:-1][same]] = arrival[by_port][1:][same]
    out["session_next_arrival"][day, slot] = nxt
    return out


def episode_starts(site: SiteArrays, split: str, horizon_days: int) -> np.ndarray:
    """Day indices where an episode of ``horizon_days`` days can start inside ``split``."""
    days = split_days(site.dates, split)
    index = np.flatnonzero(site.dates.isin(days))
    if index.size < horizon_days:
        raise ValueError(f"split {split!r} has {index.size} days, fewer than horizon_days = {horizon_days}")
    # consecutive runs only: the horizon's last day must be in the split too
    ok = np.isin(index + horizon_days - 1, index)
    return index[ok]
