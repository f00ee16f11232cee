"""Deterministic synthetic hourly data for a campus microgrid near Pune, India.

Conventions shared by every series: the row stamped ``t`` covers the hour ``[t, t + 1 h)``; time is tz-naive local
clock time (IST, UTC+5:30); a series always holds whole calendar days. Every random draw comes from one child of
``np.random.SeedSequence(seed)`` per series (see ``_STREAMS``), so adding a series never changes the others.
Calibration targets and their sources are listed in ``docs/data_card.md``; values marked ``[est]`` below are
engineering estimates, not published figures.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.special import ndtr

SERIES_COLUMNS = ("pv_cf", "wind_speed", "load_kw", "exchange_price", "emission_factor", "is_holiday")
SESSION_COLUMNS = ("port", "arrival", "departure", "energy_kwh")
SPLITS = ("train", "validation", "test", "all")

TIME_UNIT = "us"  # pandas 3 default datetime resolution; user data is converted to it as well
HOURS_PER_DAY = 24
MINUTES_PER_HOUR = 60
MONTHS_PER_YEAR = 12
DAYS_PER_YEAR = 365.25  # mean calendar year, the period of the seasonal interpolation
MMDD_MONTH_WEIGHT = 100  # month * 100 + day encodes a calendar date as MMDD
SATURDAY, SUNDAY = 5, 6  # pandas dayofweek numbering (Monday = 0)

# Solar geometry (Duffie & Beckman, "Solar Engineering of Thermal Processes", ch. 1).
IST_MERIDIAN_DEG = 82.5  # IST is the mean solar time of 82.5 deg E
MINUTES_PER_DEGREE = 4.0  # the Earth turns one degree of longitude in four minutes
DEGREES_PER_HOUR = 15.0  # hour angle rate
SOLAR_NOON_H = 12.0
DECLINATION_MAX_DEG = 23.45  # Cooper (1969) declination, D&B eq. 1.6.1a
COOPER_DAY_OFFSET = 284  # Cooper (1969): delta = 23.45 sin(360 (284 + n) / 365)
COOPER_YEAR_DAYS = 365

PV_MEAN_TOLERANCE = 0.005  # relative error allowed on the PV capacity factor after clipping to [0, 1]
AR1_TRUNCATION = 1e-9  # AR(1) innovations weighted below this are dropped (variance error ~1e-18)
MIN_FULL_YEARS_FOR_YEAR_SPLIT = 3  # train + validation + test need one full year each
TRAIN_FRACTION = 0.8  # chronological split for short data
VALIDATION_FRACTION = 0.1
MIN_DAYS_FOR_SHORT_SPLIT = 10  # int(10 * VALIDATION_FRACTION) = 1: fewer days leave validation empty

# Order fixes the SeedSequence child of each stream: append new streams, never reorder.
_STREAMS = ("pv", "wind", "load", "price", "emission", "sessions")


@dataclass(frozen=True)
class SiteProfile:
    """Knobs of the generator, with units and sources; ``[est]`` marks an engineering estimate."""

    # Location.
    latitude_deg: float = 18.5  # deg N, a campus near Pune
    longitude_deg: float = 73.9  # deg E, Pune; puts solar noon near 12:35 IST

    # PV (pv_cf, kW AC per kWp installed).
    pv_capacity_factor: float = 0.19  # annual mean of pv_cf; CERC benchmark CUF for solar PV in India (~19 %)
    pv_monthly_clearness: tuple[float, ...] = (
        0.66, 0.67, 0.65, 0.63, 0.60, 0.45, 0.36, 0.38, 0.46, 0.58, 0.63, 0.65,
    )  # mean clearness index Jan..Dec [est]: clear dry winter, south-west monsoon Jun-Sep much cloudier
    pv_weather_ar: float = 0.7  # day-to-day lag-1 correlation of the clearness anomaly [est]
    pv_weather_sd: float = 0.10  # std of the daily clearness anomaly [est]
    pv_hour_sd: float = 0.05  # std of the hourly clearness noise (passing clouds) [est]
    pv_clearness_bounds: tuple[float, float] = (0.05, 0.80)  # physical range kept for the clearness index [est]

    # Wind (wind_speed, m/s at hub height).
    wind_weibull_scale_ms: float = 5.5  # m/s, Weibull scale averaged over the year [est, inland Deccan site]
    wind_weibull_shape: float = 2.0  # Weibull shape k (Rayleigh), the usual default for site screening
    wind_monthly_factor: tuple[float, ...] = (
        0.80, 0.80, 0.85, 0.90, 1.10, 1.35, 1.45, 1.35, 1.05, 0.75, 0.75, 0.80,
    )  # relative Weibull scale Jan..Dec [est]: south-west monsoon Jun-Aug is India's windy season
    wind_hour_ar: float = 0.9  # lag-1 correlation of the hourly Gaussian driver [est]
    wind_diurnal_amplitude: float = 0.1  # relative afternoon bump of the scale [est]
    wind_diurnal_peak_hour: float = 15.0  # local hour of the bump's maximum [est]

    # Campus load (load_kw, kW).
    load_mean_kw: float = 316.0  # kW, mean campus load of the default scenario
    load_weekday_shape: tuple[float, ...] = (
        0.45, 0.44, 0.43, 0.43, 0.43, 0.45, 0.50, 0.58, 0.72, 0.88, 0.98, 1.00,
        1.00, 0.97, 1.00, 1.00, 0.98, 0.92, 0.82, 0.76, 0.72, 0.66, 0.58, 0.50,
    )  # relative weekday load by hour 0..23 [est]; its minimum is the always-on base (hostels, servers, labs)
    load_saturday_activity: float = 0.6  # share of the weekday above-base load on Saturdays [est]
    load_offday_activity: float = 0.25  # same on Sundays and holidays [est]
    load_summer_vacation: tuple[tuple[int, int], tuple[int, int]] = ((5, 15), (6, 30))  # (month, day) inclusive
    load_vacation_activity: float = 0.6  # factor on the activity during the summer vacation [est]
    load_monthly_cooling: tuple[float, ...] = (
        0.05, 0.15, 0.50, 0.85, 1.00, 0.75, 0.40, 0.35, 0.40, 0.50, 0.20, 0.05,
    )  # cooling need Jan..Dec, 1 = hottest [est]: Pune is hottest in April-May, the monsoon cools June onwards
    load_cooling_amplitude: float = 0.6  # relative load added at the cooling peak of the hottest month [est]
    load_cooling_peak_hour: float = 15.0  # local hour of the cooling peak [est]
    load_noise_ar: float = 0.8  # lag-1 correlation of the hourly log-noise [est]
    load_noise_sd: float = 0.05  # std of the hourly log-noise [est]

    # Day-ahead exchange price (exchange_price, Rs/kWh).
    exchange_price_mean: float = 5.2  # Rs/kWh before the cap; IEX DAM yearly averages ~5.9 (FY23), ~4.5 (FY25)
    exchange_price_cap: float = 10.0  # Rs/kWh, IEX day-ahead price cap
    price_block_start_hours: tuple[int, ...] = (6, 10, 17, 23)  # block starts; hours before 6 h join the 23 h block
    price_block_rs: tuple[float, ...] = (3.90, 2.98, 7.24, 8.73)  # Rs/kWh, IEX DAM 28 Apr 2024 by block
    price_monthly_factor: tuple[float, ...] = (
        0.90, 0.95, 1.05, 1.20, 1.15, 1.05, 0.85, 0.85, 1.05, 1.15, 0.90, 0.90,
    )  # relative level Jan..Dec [est]: dear in the hot months and Sep-Oct, cheap in the hydro/wind monsoon
    price_day_ar: float = 0.6  # day-to-day lag-1 correlation of the log day factor [est]
    price_day_sd: float = 0.2  # std of the log day factor [est]
    price_hour_sd: float = 0.1  # std of the hourly log-noise [est]

    # Grid emission factor (emission_factor, kg CO2/kWh).
    emission_factor_mean: float = 0.7117  # each calendar year's mean; CEA CO2 Baseline Database v21 weighted avg
    grid_solar_share: float = 0.07  # annual solar share of Indian generation [est, order of FY2023-24]
    grid_other_clean_share: float = 0.18  # hydro + wind + nuclear + other RE share, flat over the day [est]
    emission_evening_uplift: float = 0.03  # relative rise in the evening peak (part-loaded thermal units) [est]
    emission_evening_hours: tuple[int, int] = (18, 23)  # [start, end) local hours of the evening peak [est]
    emission_hour_sd: float = 0.01  # std of the hourly log-noise [est]

    # Holidays (is_holiday) and the campus calendar, as (month, day).
    fixed_holidays: tuple[tuple[int, int], ...] = (
        (1, 26),  # Republic Day (national)
        (2, 19),  # Chhatrapati Shivaji Maharaj Jayanti (Maharashtra)
        (4, 14),  # Ambedkar Jayanti (Maharashtra)
        (5, 1),  # Maharashtra Day (Maharashtra)
        (8, 15),  # Independence Day (national)
        (10, 2),  # Gandhi Jayanti (national)
        (12, 25),  # Christmas (national)
    )  # moving festivals (Diwali, Holi, Eid, ...) are left out: their dates follow lunar calendars
    winter_break: tuple[tuple[int, int], tuple[int, int]] = ((12, 24), (12, 31))  # campus break, inclusive

    # EV sessions at workplace ports (ACN-Data-like, Lee, Li & Low, e-Energy 2019).
    ev_port_power_kw: float = 11.0  # kW, AC port power (three-phase 16 A)
    ev_deliverable_fraction: float = 0.9  # a request never exceeds this share of port power x stay
    ev_first_prob_workday: float = 0.85  # chance a port gets a morning session on a working day [est]
    ev_first_prob_offday: float = 0.15  # same on weekends and holidays [est]
    ev_second_prob_workday: float = 0.3  # chance of a second, afternoon session after the first [est]
    ev_second_prob_offday: float = 0.05  # same on weekends and holidays [est]
    ev_arrival_mean_h: float = 9.0  # h, mean morning arrival (workplace charging peaks at office start)
    ev_arrival_sd_h: float = 1.0  # h, std of the morning arrival [est]
    ev_stay_median_h: float = 7.0  # h, median first stay (a working day) [est]
    ev_stay_sigma: float = 0.3  # log-normal sigma of the first stay [est]
    ev_gap_mean_h: float = 0.5  # h, mean exponential gap before the second car plugs in [est]
    ev_second_stay_median_h: float = 2.5  # h, median second stay [est]
    ev_second_stay_sigma: float = 0.4  # log-normal sigma of the second stay [est]
    ev_energy_median_kwh: float = 12.0  # kWh, median requested energy [est, order of ACN-Data sessions]
    ev_energy_sigma: float = 0.5  # log-normal sigma of the requested energy [est]
    ev_min_stay_h: float = 1.0  # h, shortest session
    ev_latest_departure_h: float = 23.0  # h, campus parking closes


# Location and seasonal clearness of the national solar curve behind the grid emission factor: the factor is
# all-India (CEA), so it must not follow the site's climate. Pune's (SiteProfile's defaults), so the campus data
# stay bit for bit what they were.
NATIONAL_SOLAR_REFERENCE = SiteProfile()

# A winter break of Christmas Day alone adds no day to the fixed holidays: sites other than a campus have no break.
NO_WINTER_BREAK = ((12, 25), (12, 25))

# Load kinds (``DataConfig.load_profile``): SiteProfile fields of the load shape, the calendar and the EV arrivals;
# "campus" is SiteProfile's own defaults. All shapes and activities are [est], documented in docs/data_card.md.
LOAD_PROFILE_PARAMS: dict[str, dict[str, object]] = {
    "campus": {},
    # Office park: weekday daytime; nights keep servers, security and lighting; Saturdays half-staffed at most.
    "office": {
        "load_weekday_shape": (
            0.20, 0.20, 0.20, 0.20, 0.20, 0.22, 0.30, 0.45, 0.75, 0.95, 1.00, 1.00,
            1.00, 0.97, 1.00, 1.00, 0.98, 0.90, 0.70, 0.50, 0.35, 0.28, 0.22, 0.20,
        ),
        "load_saturday_activity": 0.3,
        "load_offday_activity": 0.05,
        "load_vacation_activity": 1.0,
        "load_cooling_amplitude": 0.5,
        "winter_break": NO_WINTER_BREAK,
    },
    # Hospital: wards, ICUs and cooling run around the clock; outpatient hours add a mild daytime rise.
    "hospital": {
        "load_weekday_shape": (
            0.85, 0.85, 0.85, 0.85, 0.85, 0.86, 0.88, 0.92, 0.96, 1.00, 1.00, 1.00,
            1.00, 0.99, 1.00, 1.00, 0.98, 0.96, 0.95, 0.94, 0.92, 0.90, 0.88, 0.86,
        ),
        "load_saturday_activity": 0.9,
        "load_offday_activity": 0.8,
        "load_vacation_activity": 1.0,
        "load_cooling_amplitude": 0.25,
        "winter_break": NO_WINTER_BREAK,
        "ev_arrival_mean_h": 8.0,  # day shift of the staff
    },
    # Light industry: two eight-hour shifts (06-14 h, 14-22 h) six days a week, Sunday the weekly holiday;
    # process load dominates, so cooling matters less.
    "industry": {
        "load_weekday_shape": (
            0.25, 0.25, 0.25, 0.25, 0.25, 0.50, 1.00, 1.00, 1.00, 1.00, 1.00, 1.00,
            0.90, 1.00, 0.92, 1.00, 1.00, 1.00, 1.00, 1.00, 1.00, 1.00, 0.50, 0.30,
        ),
        "load_saturday_activity": 1.0,
        "load_offday_activity": 0.1,
        "load_vacation_activity": 1.0,
        "load_cooling_amplitude": 0.15,
        "winter_break": NO_WINTER_BREAK,
        "ev_arrival_mean_h": 6.0,  # first shift
        "ev_stay_median_h": 8.0,  # one shift
    },
}

# PV climates (``DataConfig.climate``): location, PV, wind and cooling season of a few Indian cities; "pune" is
# SiteProfile's own defaults. Capacity factors lie in the Indian range of about 15-25 % around the CERC benchmark
# of 19 %; the city values, the monthly clearness and cooling and the wind scales are [est] (docs/data_card.md).
CLIMATE_PARAMS: dict[str, dict[str, object]] = {
    "pune": {},
    # Jodhpur: Thar desert edge, the clearest skies of India; short July-August monsoon; hottest May-June.
    "jodhpur": {
        "latitude_deg": 26.3,
        "longitude_deg": 73.0,
        "pv_capacity_factor": 0.21,
        "pv_monthly_clearness": (0.68, 0.70, 0.70, 0.70, 0.68, 0.62, 0.50, 0.50, 0.62, 0.70, 0.69, 0.67),
        "wind_weibull_scale_ms": 5.0,
        "load_monthly_cooling": (0.00, 0.05, 0.35, 0.75, 1.00, 1.00, 0.75, 0.60, 0.60, 0.45, 0.10, 0.00),
    },
    # Delhi: winter haze and fog, July-September monsoon, little wind on the northern plains; hottest May-June.
    "delhi": {
        "latitude_deg": 28.6,
        "longitude_deg": 77.2,
        "pv_capacity_factor": 0.17,
        "pv_monthly_clearness": (0.52, 0.58, 0.62, 0.64, 0.62, 0.55, 0.42, 0.44, 0.55, 0.62, 0.58, 0.52),
        "wind_weibull_scale_ms": 4.0,
        "load_monthly_cooling": (0.00, 0.00, 0.15, 0.60, 1.00, 1.00, 0.80, 0.70, 0.60, 0.30, 0.00, 0.00),
    },
    # Chennai: cloudy north-east monsoon October-December, windy Tamil Nadu coast in the south-west monsoon, hot
    # all year.
    "chennai": {
        "latitude_deg": 13.1,
        "longitude_deg": 80.3,
        "pv_capacity_factor": 0.18,
        "pv_monthly_clearness": (0.62, 0.66, 0.67, 0.65, 0.60, 0.55, 0.52, 0.53, 0.54, 0.48, 0.42, 0.50),
        "wind_weibull_scale_ms": 6.5,
        "load_monthly_cooling": (0.45, 0.55, 0.75, 0.90, 1.00, 1.00, 0.90, 0.85, 0.80, 0.70, 0.55, 0.45),
    },
    # Kolkata: humid east, long June-September monsoon and winter haze, little wind; solar noon near 11:40 IST.
    "kolkata": {
        "latitude_deg": 22.6,
        "longitude_deg": 88.4,
        "pv_capacity_factor": 0.16,
        "pv_monthly_clearness": (0.58, 0.60, 0.60, 0.58, 0.54, 0.40, 0.34, 0.36, 0.40, 0.52, 0.58, 0.57),
        "wind_weibull_scale_ms": 4.0,
        "load_monthly_cooling": (0.05, 0.15, 0.55, 0.85, 1.00, 0.90, 0.75, 0.75, 0.75, 0.60, 0.25, 0.05),
    },
}


def site_profile(load_profile: str = "campus", climate: str = "pune", **fields: object) -> SiteProfile:
    """Generator parameters of a load kind in a climate, with any other SiteProfile fields given.

    The two presets set disjoint fields, and ``("campus", "pune")`` is ``SiteProfile()`` itself, so the default
    data stay bit for bit what they were.

    :param load_profile: a key of ``LOAD_PROFILE_PARAMS``
    :param climate: a key of ``CLIMATE_PARAMS``
    :param fields: further SiteProfile fields (for example ``load_mean_kw``); they override the presets
    """
    for kind, value, presets in (("load_profile", load_profile, LOAD_PROFILE_PARAMS), ("climate", climate, CLIMATE_PARAMS)):
        if value not in presets:
            raise ValueError(f"unknown {kind} {value!r}; allowed: {', '.join(presets)}")
    # merged first, so an explicit field overrides a preset's (hospital's ev_arrival_mean_h) instead of a TypeError
    return replace(SiteProfile(), **{**LOAD_PROFILE_PARAMS[load_profile], **CLIMATE_PARAMS[climate], **fields})


@dataclass(frozen=True, eq=False)  # eq=False: comparing DataFrames with == has no single truth value
class MicrogridData:
    """Hourly series and EV sessions of one site.

    :param series: hourly frame indexed by ``time`` with columns ``SERIES_COLUMNS``
    :param sessions: one row per EV session with columns ``SESSION_COLUMNS``
    """

    series: pd.DataFrame
    sessions: pd.DataFrame

    def days(self, split: str = "all") -> pd.DatetimeIndex:
        """Midnight timestamps of the days in ``split`` (see :func:`split_days`).

        :param split: one of ``SPLITS``
        """
        return split_days(self.series.index, split)


def split_days(index: pd.DatetimeIndex, split: str) -> pd.DatetimeIndex:
    """Midnights of the days of a split.

    With at least three full calendar years the last full year is ``test``, the full year before it
    ``validation`` and everything earlier ``train``; days after the last full year (a partial trailing year) join
    ``test`` so the three splits always cover ``all``. With fewer full years the days are split chronologically
    80/10/10. An empty split raises: a statistic of no days (such as the training load scale) would be NaN.

    :param index: timestamps (hourly or daily) of the data
    :param split: one of ``SPLITS``
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed splits: {', '.join(SPLITS)}")
    days = pd.DatetimeIndex(index).normalize().unique().sort_values().rename("day")
    if days.empty:
        raise ValueError(f"split {split!r} has no days: the data are empty")
    if split == "all":
        return days
    year = days.year.to_numpy()
    years, counts = np.unique(year, return_counts=True)
    year_length = np.array([366 if calendar.isleap(y) else 365 for y in years])
    full_years = years[counts == year_length]
    if full_years.size >= MIN_FULL_YEARS_FOR_YEAR_SPLIT:
        validation_year, test_year = full_years[-2], full_years[-1]
        masks = {
            "train": year < validation_year,
            "validation": (year >= validation_year) & (year < test_year),
            "test": year >= test_year,
        }
    else:
        position = np.arange(days.size)
        n_train = int(days.size * TRAIN_FRACTION)
        n_validation = int(days.size * VALIDATION_FRACTION)
        masks = {
            "train": position < n_train,
            "validation": (position >= n_train) & (position < n_train + n_validation),
            "test": position >= n_train + n_validation,
        }
    chosen = days[masks[split]]
    if chosen.empty:
        sizes = ", ".join(f"{name} {int(mask.sum())}" for name, mask in masks.items())
        raise ValueError(
            f"split {split!r} has no days: the data hold {days.size} days, split chronologically 80/10/10 ({sizes}); "
            f"give at least {MIN_DAYS_FOR_SHORT_SPLIT} days so that every split has one"
        )
    return chosen


def _whole_minutes(hours: np.ndarray | float) -> np.ndarray:
    """Hours rounded to whole minutes, the resolution of the session times.

    :param hours: durations or clock times in hours
    """
    return np.rint(hours * MINUTES_PER_HOUR)


def _rng(seed: int, stream: str) -> np.random.Generator:
    """Independent generator of one stream.

    :param seed: user seed
    :param stream: a name in ``_STREAMS``
    """
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(len(_STREAMS))[_STREAMS.index(stream)])


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """Stationary Gaussian AR(1) path, as a truncated moving average so it needs no Python loop.

    :param rng: random generator
    :param n: path length
    :param phi: lag-1 correlation in [0, 1)
    :param sd: marginal standard deviation
    """
    if not 0.0 <= phi < 1.0:
        raise ValueError(f"AR(1) coefficient must lie in [0, 1), got {phi}")
    taps = 1 if phi == 0.0 else int(np.ceil(np.log(AR1_TRUNCATION) / np.log(phi))) + 1
    # x_t = sqrt(1 - phi^2) * sum_k phi^k e_{t-k} has unit variance and lag-1 correlation phi.
    kernel = np.sqrt(1.0 - phi**2) * phi ** np.arange(taps)
    innovations = rng.standard_normal(n + taps - 1)
    return sd * np.convolve(innovations, kernel, mode="valid")


def _month_day(month: np.ndarray | int, day: np.ndarray | int) -> np.ndarray | int:
    """Integer MMDD code, so calendar dates of any year compare as integers.

    :param month: month 1..12
    :param day: day of month
    """
    return np.multiply(month, MMDD_MONTH_WEIGHT) + day


def _in_date_range(days: pd.DatetimeIndex, bounds: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """Whether each day falls in an inclusive (month, day) range, every year; a range whose first day comes after
    its last (24 December to 2 January) crosses New Year.

    :param days: midnight timestamps
    :param bounds: ((month, day), (month, day)) first and last day
    """
    code = _month_day(days.month.to_numpy(), days.day.to_numpy())
    first, last = _month_day(*bounds[0]), _month_day(*bounds[1])
    if first > last:  # no day is both after 24 Dec and before 2 Jan: the break silently vanished
        return (code >= first) | (code <= last)
    return (code >= first) & (code <= last)


def _holiday_flags(days: pd.DatetimeIndex, site: SiteProfile) -> np.ndarray:
    """Fixed-date holidays and the winter break.

    :param days: midnight timestamps
    :param site: calendar of the site
    """
    code = _month_day(days.month.to_numpy(), days.day.to_numpy())
    fixed = np.isin(code, [_month_day(m, d) for m, d in site.fixed_holidays])
    return fixed | _in_date_range(days, site.winter_break)


def _day_of_year(index: pd.DatetimeIndex) -> np.ndarray:
    """Days since 1 January at the middle of each hour.

    :param index: hourly timestamps
    """
    return index.day_of_year.to_numpy() - 1 + (index.hour.to_numpy() + 0.5) / HOURS_PER_DAY


def _seasonal(day_of_year: np.ndarray, monthly: Sequence[float]) -> np.ndarray:
    """Periodic linear interpolation of mid-month values, so the seasons have no monthly steps.

    :param day_of_year: days since 1 January
    :param monthly: twelve values, January first
    """
    mid_month = (np.arange(MONTHS_PER_YEAR) + 0.5) * DAYS_PER_YEAR / MONTHS_PER_YEAR
    return np.interp(day_of_year, mid_month, np.asarray(monthly, dtype=float), period=DAYS_PER_YEAR)


def _cos_zenith(index: pd.DatetimeIndex, site: SiteProfile) -> np.ndarray:
    """Cosine of the solar zenith angle at mid-hour, zero when the sun is down (equation of time ignored).

    :param index: hourly local timestamps
    :param site: location
    """
    clock = index.hour.to_numpy() + 0.5
    solar_time = clock + MINUTES_PER_DEGREE * (site.longitude_deg - IST_MERIDIAN_DEG) / MINUTES_PER_HOUR
    declination = np.deg2rad(DECLINATION_MAX_DEG) * np.sin(
        2 * np.pi * (COOPER_DAY_OFFSET + index.day_of_year.to_numpy()) / COOPER_YEAR_DAYS
    )
    hour_angle = np.deg2rad(DEGREES_PER_HOUR * (solar_time - SOLAR_NOON_H))
    latitude = np.deg2rad(site.latitude_deg)
    cos_zenith = np.sin(latitude) * np.sin(declination) + np.cos(latitude) * np.cos(declination) * np.cos(
        hour_angle
    )
    return np.maximum(cos_zenith, 0.0)


def _pv_cf(cos_zenith: np.ndarray, clearness: np.ndarray, rng: np.random.Generator, site: SiteProfile) -> np.ndarray:
    """PV output per kWp: clear sky times a weather-driven clearness index, scaled to the capacity factor.

    :param cos_zenith: clear-sky shape per hour
    :param clearness: seasonal clearness index per hour
    :param rng: generator of the PV stream
    :param site: PV parameters
    """
    n_days = cos_zenith.size // HOURS_PER_DAY
    weather = np.repeat(_ar1(rng, n_days, site.pv_weather_ar, site.pv_weather_sd), HOURS_PER_DAY)
    passing = site.pv_hour_sd * rng.standard_normal(cos_zenith.size)
    raw = cos_zenith * np.clip(clearness + weather + passing, *site.pv_clearness_bounds)
    pv = np.clip(raw * site.pv_capacity_factor / raw.mean(), 0.0, 1.0)
    if abs(pv.mean() / site.pv_capacity_factor - 1.0) > PV_MEAN_TOLERANCE:
        raise ValueError(
            f"pv_cf mean {pv.mean():.4f} misses pv_capacity_factor {site.pv_capacity_factor} by more than "
            f"{PV_MEAN_TOLERANCE:.1%} after clipping to [0, 1]; lower the capacity factor or the clearness"
        )
    return pv


def _wind_speed(index: pd.DatetimeIndex, rng: np.random.Generator, site: SiteProfile) -> np.ndarray:
    """Weibull wind speed from an AR(1) Gaussian driver through the Weibull quantile function.

    :param index: hourly timestamps
    :param rng: generator of the wind stream
    :param site: wind parameters
    """
    season = _seasonal(_day_of_year(index), site.wind_monthly_factor)
    phase = 2 * np.pi * (index.hour.to_numpy() + 0.5 - site.wind_diurnal_peak_hour) / HOURS_PER_DAY
    scale = site.wind_weibull_scale_ms * season / season.mean() * (1.0 + site.wind_diurnal_amplitude * np.cos(phase))
    driver = _ar1(rng, len(index), site.wind_hour_ar, 1.0)
    # Weibull quantile at u = Phi(x); 1 - u is taken as Phi(-x) to keep precision in the upper tail.
    return scale * (-np.log(ndtr(-driver))) ** (1.0 / site.wind_weibull_shape)


def _load_kw(
    index: pd.DatetimeIndex, holiday: np.ndarray, rng: np.random.Generator, site: SiteProfile
) -> np.ndarray:
    """Campus load: academic diurnal shape scaled by day activity, times cooling and AR(1) log-noise.

    :param index: hourly timestamps
    :param holiday: holiday flag per day
    :param rng: generator of the load stream
    :param site: load parameters
    """
    days = index[::HOURS_PER_DAY]
    weekday = days.day_of_week.to_numpy()
    activity = np.where(weekday == SATURDAY, site.load_saturday_activity, 1.0)
    activity = np.where((weekday == SUNDAY) | holiday, site.load_offday_activity, activity)
    activity = activity * np.where(_in_date_range(days, site.load_summer_vacation), site.load_vacation_activity, 1.0)
    hour = index.hour.to_numpy()
    shape = np.asarray(site.load_weekday_shape)[hour]
    base = min(site.load_weekday_shape)
    academic = base + np.repeat(activity, HOURS_PER_DAY) * (shape - base)
    phase = 2 * np.pi * (hour + 0.5 - site.load_cooling_peak_hour) / HOURS_PER_DAY
    afternoon = 0.5 * (1.0 + np.cos(phase))  # raised cosine: 1 at the cooling peak hour, 0 twelve hours later
    cooling_need = _seasonal(_day_of_year(index), site.load_monthly_cooling) * afternoon
    noise = np.exp(_ar1(rng, len(index), site.load_noise_ar, site.load_noise_sd))
    load = academic * (1.0 + site.load_cooling_amplitude * cooling_need) * noise
    return load * site.load_mean_kw / load.mean()


def _exchange_price(index: pd.DatetimeIndex, rng: np.random.Generator, site: SiteProfile) -> np.ndarray:
    """Day-ahead price: IEX block shape x season x log-normal day factor x hourly noise, then capped.

    :param index: hourly timestamps
    :param rng: generator of the price stream
    :param site: price parameters
    """
    # searchsorted gives -1 before the first block start, which picks the overnight (last) block.
    block = np.searchsorted(site.price_block_start_hours, index.hour.to_numpy(), side="right") - 1
    shape = np.asarray(site.price_block_rs)[block]
    season = _seasonal(_day_of_year(index), site.price_monthly_factor)
    n_days = len(index) // HOURS_PER_DAY
    day = np.repeat(np.exp(_ar1(rng, n_days, site.price_day_ar, site.price_day_sd)), HOURS_PER_DAY)
    hour_noise = np.exp(site.price_hour_sd * rng.standard_normal(len(index)))
    price = shape * season * day * hour_noise
    return np.minimum(price * site.exchange_price_mean / price.mean(), site.exchange_price_cap)


def _emission_factor(
    index: pd.DatetimeIndex, solar_profile: np.ndarray, rng: np.random.Generator, site: SiteProfile
) -> np.ndarray:
    """Grid CO2 factor proportional to the fossil share of generation, renormalised to each year's CEA mean.

    :param index: hourly timestamps
    :param solar_profile: national solar output shape per hour (any scale)
    :param rng: generator of the emission stream
    :param site: emission parameters
    """
    solar_share = site.grid_solar_share * solar_profile / solar_profile.mean()
    fossil_share = 1.0 - site.grid_other_clean_share - solar_share
    if fossil_share.min() <= 0.0:
        raise ValueError("grid_solar_share + grid_other_clean_share leave no fossil generation at solar noon")
    hour = index.hour.to_numpy()
    start, end = site.emission_evening_hours
    evening = (hour >= start) & (hour < end)
    shape = fossil_share * (1.0 + site.emission_evening_uplift * evening)
    shape = shape * np.exp(site.emission_hour_sd * rng.standard_normal(len(index)))
    _, year = np.unique(index.year.to_numpy(), return_inverse=True)
    year_mean = np.bincount(year, weights=shape) / np.bincount(year)
    return shape * site.emission_factor_mean / year_mean[year]


def generate_series(
    years: int = 10, start_year: int = 2015, seed: int = 0, site: SiteProfile = SiteProfile()
) -> pd.DataFrame:
    """Hourly synthetic series of whole calendar years.

    :param years: number of calendar years, leap days included
    :param start_year: first year; the series starts at its 1 January 00:00
    :param seed: seed of all random draws
    :param site: generator parameters
    """
    if years < 1:
        raise ValueError(f"years must be at least 1, got {years}")
    index = pd.date_range(
        f"{start_year}-01-01", f"{start_year + years}-01-01", freq="h", inclusive="left", name="time", unit=TIME_UNIT
    )
    holiday = _holiday_flags(index[::HOURS_PER_DAY], site)
    cos_zenith = _cos_zenith(index, site)
    clearness = _seasonal(_day_of_year(index), site.pv_monthly_clearness)
    reference = NATIONAL_SOLAR_REFERENCE
    national_solar = _cos_zenith(index, reference) * _seasonal(_day_of_year(index), reference.pv_monthly_clearness)
    return pd.DataFrame(
        {
            "pv_cf": _pv_cf(cos_zenith, clearness, _rng(seed, "pv"), site),
            "wind_speed": _wind_speed(index, _rng(seed, "wind"), site),
            "load_kw": _load_kw(index, holiday, _rng(seed, "load"), site),
            "exchange_price": _exchange_price(index, _rng(seed, "price"), site),
            # National solar output is spread over the country, so it follows the seasonal clear sky of a fixed
            # reference, not the site's location or local clouds.
            "emission_factor": _emission_factor(index, national_solar, _rng(seed, "emission"), site),
            "is_holiday": np.repeat(holiday, HOURS_PER_DAY).astype(np.int8),
        },
        index=index,
    )


def _offday_flags(days: pd.DatetimeIndex, site: SiteProfile, holidays: pd.Series | None) -> np.ndarray:
    """Weekend or holiday, per day.

    :param days: midnight timestamps
    :param site: holiday calendar used when ``holidays`` is None
    :param holidays: 0/1 flags indexed by timestamps (hourly or daily) covering every day
    """
    if holidays is None:
        holiday = _holiday_flags(days, site)
    else:
        per_day = holidays.groupby(pd.DatetimeIndex(holidays.index).normalize()).max()
        missing = days.difference(per_day.index)
        if len(missing):
            raise ValueError(f"holidays has no value for {len(missing)} of the days, first {missing[0]}")
        holiday = per_day.reindex(days).to_numpy() > 0
    return (days.day_of_week.to_numpy() >= SATURDAY) | holiday


def generate_sessions(
    days: pd.DatetimeIndex,
    n_ports: int,
    seed: int = 0,
    site: SiteProfile = SiteProfile(),
    holidays: pd.Series | None = None,
) -> pd.DataFrame:
    """Synthetic workplace EV sessions: per port and day a morning session and sometimes an afternoon one.

    :param days: midnight timestamps of the days to fill
    :param n_ports: number of charging ports
    :param seed: seed of all random draws
    :param site: session parameters and holiday calendar
    :param holidays: 0/1 holiday flags indexed by timestamps; None uses the calendar of ``site``
    """
    if n_ports < 0:
        raise ValueError(f"n_ports must be at least 0 (a site without chargers), got {n_ports}")
    days = pd.DatetimeIndex(days).as_unit(TIME_UNIT)
    if not (days == days.normalize()).all():
        raise ValueError("days must be midnight timestamps")
    offday = _offday_flags(days, site, holidays)[:, None]
    rng = _rng(seed, "sessions")
    shape = (len(days), n_ports)
    # All times are whole minutes after midnight.
    latest = _whole_minutes(site.ev_latest_departure_h)
    min_stay = _whole_minutes(site.ev_min_stay_h)
    last_arrival = latest - min_stay

    first = rng.random(shape) < np.where(offday, site.ev_first_prob_offday, site.ev_first_prob_workday)
    arrival1 = np.clip(_whole_minutes(rng.normal(site.ev_arrival_mean_h, site.ev_arrival_sd_h, shape)), 0, last_arrival)
    stay1 = _whole_minutes(rng.lognormal(np.log(site.ev_stay_median_h), site.ev_stay_sigma, shape))
    departure1 = arrival1 + np.clip(stay1, min_stay, latest - arrival1)
    arrival2 = departure1 + _whole_minutes(rng.exponential(site.ev_gap_mean_h, shape))
    stay2 = _whole_minutes(rng.lognormal(np.log(site.ev_second_stay_median_h), site.ev_second_stay_sigma, shape))
    second = (
        first
        & (rng.random(shape) < np.where(offday, site.ev_second_prob_offday, site.ev_second_prob_workday))
        & (arrival2 <= last_arrival)
    )
    # Only kept second sessions are used, so the clip bounds are ordered wherever it matters.
    departure2 = arrival2 + np.clip(stay2, min_stay, np.maximum(latest - arrival2, min_stay))
    energy = rng.lognormal(np.log(site.ev_energy_median_kwh), site.ev_energy_sigma, (2, *shape))

    kept = np.stack([first, second])
    _, day, port = np.nonzero(kept)
    arrival = np.stack([arrival1, arrival2])[kept]
    departure = np.stack([departure1, departure2])[kept]
    stay_h = (departure - arrival) / MINUTES_PER_HOUR
    deliverable = site.ev_deliverable_fraction * site.ev_port_power_kw * stay_h
    midnight = days.to_numpy()[day]
    frame = pd.DataFrame(
        {
            "port": port.astype(np.int64),
            "arrival": midnight + arrival.astype("timedelta64[m]"),
            "departure": midnight + departure.astype("timedelta64[m]"),
            "energy_kwh": np.minimum(energy[kept], deliverable),
        }
    )
    order = np.lexsort((frame["port"].to_numpy(), frame["arrival"].to_numpy()))
    return frame.iloc[order].reset_index(drop=True)


def generate(
    years: int = 10, start_year: int = 2015, seed: int = 0, site: SiteProfile = SiteProfile(), n_ports: int = 12
) -> MicrogridData:
    """Synthetic series and EV sessions for the same days.

    :param years: number of calendar years
    :param start_year: first calendar year
    :param seed: seed of all random draws
    :param site: generator parameters
    :param n_ports: number of EV charging ports
    """
    series = generate_series(years, start_year, seed, site)
    sessions = generate_sessions(split_days(series.index, "all"), n_ports, seed, site, series["is_holiday"])
    return MicrogridData(series=series, sessions=sessions)
