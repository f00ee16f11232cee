"""One request's measurements, checked against the site and placed in the policy's horizon.

Every value is checked; a bad one is recorded (field and allowed range) and read as ``None`` (NaN in the
series), so the observation is built only from a clean request while the supervisor still gets every value
that is good.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from ..envs.layout import ObservationLayout
from ..scenario import Scenario
from .checks import Checker
from .schema import Measurements, SeriesRow

#: Fields of a series row, the columns of :attr:`SiteState.history` and :attr:`SiteState.forecast`.
ROW_FIELDS = ("load_kw", "pv_kw", "wind_kw", "price_inr_per_kwh", "emission_kg_per_kwh")
#: Slack when placing a timestamp in its step: a step start written to the microsecond is in that step.
_PLACEMENT_SLACK = dt.timedelta(milliseconds=1)
_DAY = dt.timedelta(days=1)
#: Years a timestamp, horizon_start or departure may lie in: the horizon's end (up to ten years, horizon_days 3650,
#: after its start) and a departure at the timestamp's offset stay within datetime's years 1 to 9999.
YEARS = (1900, 9988)


@dataclass(frozen=True)
class EVState:
    """A car at a known charger; ``None`` for a value that failed its check."""

    port: int
    wanted_kwh: float | None
    delivered_kwh: float | None
    #: hours from the step's start to the departure, within the horizon and at least one step
    hours_left: float | None


@dataclass(frozen=True)
class SiteState:
    """The checked measurements of one request (``None`` or NaN where a value failed its check)."""

    #: at the timestamp's UTC offset (naive if it has none); ``None`` when the timestamp or ``horizon_start`` is outside
    #: :data:`YEARS`
    step_start: dt.datetime | None
    #: the step's index in the policy's horizon (0 at ``horizon_start`` midnight; ``step % steps_per_day`` is its index
    #: in the day)
    step: int | None
    holiday: bool
    soc: float | None
    soh: float | None
    day_peak_kw: float | None
    load_kw: float | None
    pv_kw: float | None
    wind_kw: float | None
    evs: tuple[EVState, ...]
    #: (history_steps, len(ROW_FIELDS)) measured rows, oldest first
    history: np.ndarray
    #: (forecast_steps, len(ROW_FIELDS)) forecast rows, this step first
    forecast: np.ndarray


def step_time(midnight: dt.datetime, index: int, steps_per_day: int) -> dt.datetime:
    """The start of step ``index`` counted from ``midnight`` (an index past the day is in a later day), on the exact
    grid of ``steps_per_day`` steps a day, rounded to the microsecond once: ``index`` rounded step lengths added up
    drift (at 1/7 h, the 7th step started at 00:59:59.999998).

    :param midnight: the first step's start
    :param index: the step's index from ``midnight``
    :param steps_per_day: the scenario's ``steps_per_day``
    """
    days, index = divmod(index, steps_per_day)
    return midnight + dt.timedelta(days=days) + _DAY * index / steps_per_day


def _wall_clock(value: dt.datetime, reference: dt.datetime, path: str, checker: Checker) -> dt.datetime | None:
    """``value`` as a naive site time comparable with ``reference`` (converted to its offset if both have one)."""
    if (value.tzinfo is None) != (reference.tzinfo is None):
        checker.add(path, f"{path} = {value.isoformat()} and timestamp = {reference.isoformat()}: give both an offset or neither")
        return None
    if value.tzinfo is not None:
        value = value.astimezone(reference.tzinfo)
    return value.replace(tzinfo=None)


def _in_years(path: str, value: dt.date, checker: Checker) -> bool:
    """Whether the year of ``value`` (a date or a time) is in :data:`YEARS`; the problem recorded if not."""
    if YEARS[0] <= value.year <= YEARS[1]:
        return True
    checker.add(path, f"{path} = {value.isoformat()} is outside the allowed years [{YEARS[0]}, {YEARS[1]}]")
    return False


def check_timestamp(stamp: dt.datetime, now: dt.datetime, max_age_s: float, checker: Checker) -> None:
    """Record a timestamp further than ``max_age_s`` from the clock, either way: stale data, or a clock that is off.

    :param stamp: the request's timestamp: with an offset, an absolute instant; without, the server's local time
    :param now: the server's clock (aware)
    :param max_age_s: how far the timestamp may lie from ``now`` (s)
    :param checker: collects the problem
    """
    age = (now - stamp if stamp.tzinfo is not None else now.astimezone().replace(tzinfo=None) - stamp).total_seconds()
    if abs(age) > max_age_s:
        when = f"{age:.0f} s old" if age > 0 else f"{-age:.0f} s in the future"
        checker.add("timestamp", f"timestamp = {stamp.isoformat()} is {when}; allowed: within {max_age_s:g} s of the server's clock")


def read_state(m: Measurements, scenario: Scenario, layout: ObservationLayout, checker: Checker) -> SiteState:
    """Check ``m`` against the site; problems go to ``checker``.

    :param m: the request
    :param scenario: the site
    :param layout: the policy's observation (the number of history and forecast rows, whether it has emissions)
    :param checker: collects the problems
    """
    stamp = m.timestamp
    step_start = start = step = horizon_end = None
    # Both checked (a list: no short circuit), so that both are named. Unplaced, the step and the cars' hours left are
    # unknown.
    if all([_in_years("timestamp", stamp, checker), m.horizon_start is None or _in_years("horizon_start", m.horizon_start, checker)]):
        site_time, spd = stamp.replace(tzinfo=None), scenario.steps_per_day
        midnight = dt.datetime.combine(site_time.date(), dt.time())
        # In integers (microseconds x steps per day): a step of 1/7 h is no whole number of microseconds. The slack may
        # carry a timestamp into the next day's first step (index spd).
        index = (site_time - midnight + _PLACEMENT_SLACK) * spd // _DAY
        start = step_time(midnight, index, spd)
        first_day = m.horizon_start if m.horizon_start is not None else start.date()
        first_midnight = dt.datetime.combine(first_day, dt.time())
        step = (midnight - first_midnight).days * spd + index
        # at the request's offset: a naive step start is another instant to a client or server in another zone
        step_start = start.replace(tzinfo=stamp.tzinfo)
        if not 0 <= step < scenario.episode_steps:
            checker.add(
                "horizon_start",
                f"horizon_start = {first_day} does not contain timestamp = {stamp.isoformat()}; allowed: one of the "
                f"{scenario.horizon_days} day(s) up to the timestamp's (scenario horizon_days)",
            )
            step = None
        horizon_end = first_midnight + dt.timedelta(days=scenario.horizon_days)

    n_ports = scenario.ev.n_ports
    evs, seen = [], set()
    for i, ev in enumerate(m.evs):
        path = f"evs[{i}]"
        if not 0 <= ev.charger < n_ports:
            checker.add(f"{path}.charger", f"{path}.charger = {ev.charger} is not a charger of this site; allowed: 0 .. {n_ports - 1} (scenario ev.n_ports)")
            continue
        if ev.charger in seen:
            checker.add(f"{path}.charger", f"{path}.charger = {ev.charger}: a second car at the same charger; allowed: one car per charger")
            continue
        seen.add(ev.charger)
        hours_left = None
        if ev.departure is None:
            checker.add(f"{path}.departure", f"{path}.departure is missing (null); allowed: a time (ISO 8601)")
        elif _in_years(f"{path}.departure", ev.departure, checker):
            departure = _wall_clock(ev.departure, stamp, f"{path}.departure", checker)
            if departure is not None and start is not None:
                # The env's cars leave within the horizon and after the current step at the earliest; a site's car
                # staying past its announced time is read as leaving at the end of this step.
                left = min(departure, horizon_end) - start
                hours_left = max(left / dt.timedelta(hours=1), scenario.step_hours)
        evs.append(
            EVState(
                port=ev.charger,
                wanted_kwh=checker.value(f"{path}.energy_wanted_kwh", ev.energy_wanted_kwh),
                delivered_kwh=checker.value(f"{path}.energy_delivered_kwh", ev.energy_delivered_kwh),
                hours_left=hours_left,
            )
        )

    return SiteState(
        step_start=step_start,
        step=step,
        holiday=m.holiday,
        soc=checker.value("battery.soc", m.battery.soc),
        soh=checker.value("battery.soh", m.battery.soh),
        day_peak_kw=checker.value("day_peak_import_kw", m.day_peak_import_kw),
        load_kw=checker.value("site.load_kw", m.site.load_kw),
        pv_kw=checker.value("site.pv_kw", m.site.pv_kw),
        wind_kw=checker.value("site.wind_kw", m.site.wind_kw),
        evs=tuple(evs),
        history=_rows(m.history, "history", layout.history_steps, "forecast.history_steps", "oldest first", layout, checker),
        forecast=_rows(m.forecast, "forecast", layout.forecast_steps, "forecast.forecast_steps", "this step first", layout, checker),
    )


def _rows(rows: list[SeriesRow], name: str, expected: int, setting: str, order: str, layout: ObservationLayout, checker: Checker) -> np.ndarray:
    """The rows as an array (NaN for a value that failed its check); a wrong number of rows is a problem too."""
    if len(rows) != expected:
        checker.add(name, f"{name} has {len(rows)} rows; this policy needs {expected} ({setting}), {order}")
    # Emission factors are checked only when the policy observes them.
    fields = ROW_FIELDS if "emission" in layout.window_names else ROW_FIELDS[:-1]
    out = np.full((len(rows), len(ROW_FIELDS)), np.nan)
    for i, row in enumerate(rows):
        for j, field in enumerate(fields):
            value = checker.value(f"{name}[{i}].{field}", getattr(row, field))
            out[i, j] = np.nan if value is None else value
    return out
