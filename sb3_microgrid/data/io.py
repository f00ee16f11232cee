"""Loading and validating the user's own hourly series and EV sessions.

Nothing is filled or repaired silently: any departure from the format in ``docs/data_card.md`` raises
:class:`DataValidationError` naming the column, the problem and, where there is one, the allowed range.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from sb3_microgrid.data.synthetic import (
    HOURS_PER_DAY,
    SERIES_COLUMNS,
    SESSION_COLUMNS,
    TIME_UNIT,
    MicrogridData,
    SiteProfile,
    generate_sessions,
    split_days,
)

TIME_COLUMN = "time"
#: The columns the loaders read (of series or sessions); any other column is dropped.
READ_COLUMNS = frozenset((TIME_COLUMN, *SERIES_COLUMNS, *SESSION_COLUMNS))
OPTIONAL_SERIES_COLUMNS = ("is_holiday",)  # absent -> 0 on every hour
REQUIRED_SERIES_COLUMNS = tuple(c for c in SERIES_COLUMNS if c not in OPTIONAL_SERIES_COLUMNS)
# Allowed closed ranges of the numeric series (docs/data_card.md): physically possible values, wide enough for any
# site, narrow enough to catch a wrong unit (Rs/MWh, g/kWh, W) and to keep observations and costs finite.
# is_holiday is checked separately (0 or 1 only).
SERIES_RANGES: dict[str, tuple[float, float]] = {
    "pv_cf": (0.0, 1.0),  # kW per kWp: AC output cannot exceed the installed peak power
    "wind_speed": (0.0, 80.0),  # m/s: above the strongest sustained winds measured; the scenario's cut-out bound
    "load_kw": (0.0, 1e7),  # kW: the scenario's bound on every power (10 GW)
    "exchange_price": (0.0, 100.0),  # Rs/kWh: the scenario's bound on the price cap; IEX prices are at most 10-20
    "emission_factor": (0.0, 2.0),  # kg CO2/kWh: above the dirtiest lignite plants (about 1.4)
}
SESSION_ENERGY_MAX_KWH = 1000.0  # above any EV battery (large trucks carry about 1 MWh)
# Bound on ``port`` even without n_ports: ports are checked as floats, which hold whole numbers exactly only below
# 2**53, and int64 overflows at 2**63 (1e19 became -9223372036854775808).
PORT_LIMIT = 2**53
ONE_HOUR = np.timedelta64(1, "h")
# Allowed closed range of the PV-weighted mean hour of day (mid-hour, as a row covers [t, t + 1 h)). Solar noon lies
# between about 11:10 and 13:00 IST anywhere in India, so data in local time are centred there (every shipped climate,
# even on single days: 11.1-13.0 h), while naive UTC stamps put PV 5.5 h early. Generous, to pass odd panel azimuths.
PV_MEAN_HOUR_RANGE = (9.5, 15.0)
#: Days with PV output a series needs before its PV hours are judged (fewer: not checked).
PV_HOURS_MIN_DAYS = 7


class DataValidationError(ValueError):
    """User data breaks a documented rule; the message names the column and the problem."""


def _refuse_repeated(names: list[object], where: str) -> None:
    """Raise naming every column name that occurs more than once.

    :param names: column names in file order
    :param where: prefix of the message (the file), or ""
    """
    repeated = {name: names.count(name) for name in names if names.count(name) > 1}
    if repeated:
        counted = ", ".join(f"{name!r} ({count} columns)" for name, count in repeated.items())
        raise DataValidationError(
            f"{where}repeated column names {counted}: every column the loader reads needs its own name; keep one of them "
            "(nothing is chosen silently)"
        )


def _rename(df: pd.DataFrame, column_map: Mapping[str, str] | None, where: str = "") -> pd.DataFrame:
    """Copy of ``df`` with the user's column names replaced by ours; two columns the loader reads may not end up
    with one name, and repeated names of other columns are dropped with them.

    :param df: user frame
    :param column_map: user name -> our name; keys absent from ``df`` are ignored
    :param where: prefix of a repeated name's message (the file), or ""
    """
    if df.columns.nlevels > 1:  # "load_kw" in df.columns held, yet df["load_kw"] was a frame: a raw TypeError later
        raise DataValidationError(
            f"the columns have {df.columns.nlevels} header levels (first {df.columns[0]!r}); give a single flat "
            "row of column names, e.g. df.columns = df.columns.get_level_values(0)"
        )
    # Only names the loader reads must be unique (others are dropped): df[name] would give a frame, which fails deep
    # inside with a TypeError, and read_csv's 'load_kw.1' would be dropped, the first column winning silently.
    _refuse_repeated([name for name in df.columns if (column_map or {}).get(name, name) in READ_COLUMNS], where)
    renamed = df.rename(columns=dict(column_map or {}))
    clashing = [name for name in renamed.columns[renamed.columns.duplicated()] if name in READ_COLUMNS]
    if clashing:
        theirs = df.columns[renamed.columns == clashing[0]]
        raise DataValidationError(
            f"columns {', '.join(map(repr, theirs))} are all named {clashing[0]!r} after column_map; "
            "keep one of them (drop the others or map them to other names)"
        )
    return renamed.loc[:, ~renamed.columns.duplicated(keep=False)]  # repeated names the loader does not read


def _name(column: str, column_map: Mapping[str, str] | None) -> str:
    """Column name for messages, with the user's own name when it was mapped.

    :param column: our column name
    :param column_map: user name -> our name
    """
    theirs = [user for user, ours in (column_map or {}).items() if ours == column]
    return f"column {column!r}" + (f" (mapped from {theirs[0]!r})" if theirs else "")


def _read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a .csv or .parquet file.

    :param path: file path
    """
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise DataValidationError(f"{os.fspath(path)}: unsupported file type {suffix!r}; use .csv or .parquet")
    try:
        if suffix == ".parquet":  # pyarrow refuses a schema with a repeated name itself (a ValueError below)
            return pd.read_parquet(path)
        table = pd.read_csv(path)
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as err:  # missing, a folder, not text, not a table (pandas and pyarrow errors are these)
        raise DataValidationError(f"{os.fspath(path)}: cannot read it as a {suffix} table ({type(err).__name__}: {str(err).strip()})") from err
    # read_csv renames a repeated 'load_kw' to 'load_kw.1', which would then be dropped as another column: the file's
    # own names go back for _rename to judge. Blank ones stay 'Unnamed: i' (a written index).
    table.columns = [name if name.strip() else read for name, read in zip(header.iloc[0].tolist(), table.columns)]
    return table


def _parse_times(values: pd.Series | pd.Index, column: str, column_map: Mapping[str, str] | None) -> pd.DatetimeIndex:
    """Timestamps of a column, tz-naive, in the canonical resolution.

    :param values: raw timestamps
    :param column: our column name, for messages
    :param column_map: user name -> our name, for messages
    """
    try:
        times = pd.DatetimeIndex(pd.to_datetime(values))
    except (ValueError, TypeError) as err:
        raise DataValidationError(f"{_name(column, column_map)}: cannot parse timestamps ({err})") from err
    missing = np.flatnonzero(times.isna())
    if missing.size:
        raise DataValidationError(
            f"{_name(column, column_map)} has {missing.size} missing timestamps, first in row {missing[0]}"
        )
    if times.tz is not None:
        raise DataValidationError(
            f"{_name(column, column_map)} is timezone-aware ({times.tz}); give tz-naive local time (IST), "
            "e.g. times.tz_convert('Asia/Kolkata').tz_localize(None)"
        )
    return times.as_unit(TIME_UNIT)


def _numeric(
    values: pd.Series, column: str, column_map: Mapping[str, str] | None, labels: pd.Index, flag: bool = False
) -> np.ndarray:
    """Finite float values of a column.

    :param values: raw column
    :param column: our column name, for messages
    :param column_map: user name -> our name, for messages
    :param labels: row labels (timestamps or row numbers) for messages
    :param flag: a 0/1 column, which may be boolean
    """
    if not flag and pd.api.types.is_bool_dtype(values):  # to_numeric keeps True/False, which would read as 1 and 0 kW
        raise DataValidationError(f"{_name(column, column_map)} is not numeric: a boolean column, first value {values.iloc[0]!r}")
    if values.dtype.kind in "mM":  # to_numeric gives nanoseconds: a duration of 300 ns would read as 300 kW
        raise DataValidationError(f"{_name(column, column_map)} is not numeric: a {values.dtype} column, first value {values.iloc[0]!r}")
    coerced = pd.to_numeric(values, errors="coerce")
    not_numbers = coerced.isna().to_numpy() & values.notna().to_numpy()
    # to_numeric reads a True cell as 1 and keeps complex values, whose imaginary part the float cast below drops
    if values.dtype.kind in "cO":
        kinds = (complex, np.complexfloating) + (() if flag else (bool, np.bool_))
        not_numbers |= values.map(lambda v: isinstance(v, kinds)).to_numpy(dtype=bool)
    bad = np.flatnonzero(not_numbers)
    if bad.size:
        raise DataValidationError(
            f"{_name(column, column_map)} is not numeric: {bad.size} values are not real numbers, "
            f"first {values.iloc[bad[0]]!r} at {labels[bad[0]]}"
        )
    array = coerced.to_numpy(dtype=float, na_value=np.nan)
    not_finite = np.flatnonzero(~np.isfinite(array))
    if not_finite.size:
        raise DataValidationError(
            f"{_name(column, column_map)} has {not_finite.size} NaN or infinite values, first at "
            f"{labels[not_finite[0]]}; fill or drop them before loading (nothing is filled silently)"
        )
    return array


def _check_range(
    array: np.ndarray,
    low: float,
    high: float,
    column: str,
    column_map: Mapping[str, str] | None,
    labels: pd.Index,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise if any value lies outside the interval from ``low`` to ``high``.

    :param array: finite values
    :param low: lower bound
    :param high: upper bound (may be inf)
    :param column: our column name, for messages
    :param column_map: user name -> our name, for messages
    :param labels: row labels for messages
    :param low_open: whether ``low`` itself is excluded
    :param high_open: whether ``high`` itself is excluded
    """
    below = array <= low if low_open else array < low
    above = array >= high if high_open else array > high
    bad = np.flatnonzero(below | above)
    if bad.size:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or np.isinf(high) else ']'}"
        raise DataValidationError(
            f"{_name(column, column_map)} has {bad.size} values outside the allowed range {interval}, "
            f"first {array[bad[0]]:g} at {labels[bad[0]]}"
        )


def _require(df: pd.DataFrame, required: tuple[str, ...], column_map: Mapping[str, str] | None) -> None:
    """Raise naming the missing columns and listing the required ones.

    :param df: frame with our column names
    :param required: columns that must be present
    :param column_map: user name -> our name, for messages
    """
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataValidationError(
            f"missing {', '.join(_name(c, column_map) for c in missing)}; required columns: {', '.join(required)}; "
            f"found: {', '.join(map(str, df.columns)) or 'none'} (map your names with column_map)"
        )


def _check_hourly_days(times: pd.DatetimeIndex, column_map: Mapping[str, str] | None) -> None:
    """Raise unless ``times`` are unique, sorted, exactly hourly and cover whole days from midnight.

    :param times: timestamps of the series
    :param column_map: user name -> our name, for messages
    """
    name = _name(TIME_COLUMN, column_map)
    if times.has_duplicates:
        duplicated = times[times.duplicated()]
        raise DataValidationError(f"{name} has {len(duplicated)} duplicated timestamps, first {duplicated[0]}")
    step = np.diff(times.to_numpy())
    backwards = np.flatnonzero(step < np.timedelta64(0))
    if backwards.size:
        i = backwards[0]
        raise DataValidationError(f"{name} is not sorted: {times[i + 1]} follows {times[i]}")
    irregular = np.flatnonzero(step != ONE_HOUR)
    if irregular.size:
        i = irregular[0]
        raise DataValidationError(
            f"{name}: time step of {pd.Timedelta(step[i])} between {times[i]} and {times[i + 1]}; "
            "the step must be exactly 1 hour"
        )
    if times[0] != times[0].normalize():
        raise DataValidationError(f"{name} starts at {times[0]}, not at midnight; whole days are required")
    if len(times) % HOURS_PER_DAY:
        raise DataValidationError(
            f"{name} holds {len(times)} hours, not a multiple of {HOURS_PER_DAY}: the last day (ending "
            f"{times[-1]}) is incomplete; whole days are required"
        )


def _check_pv_hours(times: pd.DatetimeIndex, pv: np.ndarray, column_map: Mapping[str, str] | None) -> None:
    """Raise unless the PV output is centred near Indian solar noon, as it is in local time (IST); catches UTC stamps.

    :param times: hourly timestamps of the series
    :param pv: checked ``pv_cf`` values
    :param column_map: user name -> our name, for messages
    """
    total = pv.sum()
    # No PV, nothing to tell the clock by; on a few days a morning-only day (a storm, a tripped inverter) could pass
    # for UTC stamps: a week of sunshine is needed to judge.
    if total <= 0 or np.unique(times[pv > 0].normalize()).size < PV_HOURS_MIN_DAYS:
        return
    mean_hour = float(np.dot(pv, times.hour.to_numpy() + 0.5) / total)
    low, high = PV_MEAN_HOUR_RANGE
    if not low <= mean_hour <= high:
        raise DataValidationError(
            f"{_name(TIME_COLUMN, column_map)} / {_name('pv_cf', column_map)}: PV output is centred at "
            f"{mean_hour:.2f} h (PV-weighted mean hour of day), outside the allowed range [{low:g}, {high:g}] "
            "around Indian solar noon (about 11:10-13:00 IST); times must be tz-naive local time (IST, UTC+5:30), "
            "as docs/data_card.md says (naive UTC stamps put PV 5.5 h early: add 5 h 30 min to them)"
        )


def _validate_series(df: pd.DataFrame, column_map: Mapping[str, str] | None) -> pd.DataFrame:
    """Canonical copy of a series frame already in our column names.

    :param df: frame with our column names, a DatetimeIndex or a ``time`` column
    :param column_map: user name -> our name, for messages
    """
    if isinstance(df.index, pd.DatetimeIndex):
        times = _parse_times(df.index, TIME_COLUMN, column_map)
    elif TIME_COLUMN in df.columns:
        times = _parse_times(df[TIME_COLUMN], TIME_COLUMN, column_map)
    else:
        raise DataValidationError(
            f"column {TIME_COLUMN!r} not found and the index is not a DatetimeIndex; "
            f"give hourly timestamps in a {TIME_COLUMN!r} column or as the index"
        )
    if len(df) == 0:  # not df.empty, which also holds for rows without columns: _require names those
        raise DataValidationError("the series has no rows")
    _require(df, REQUIRED_SERIES_COLUMNS, column_map)
    columns = {}
    for column in REQUIRED_SERIES_COLUMNS:
        columns[column] = _numeric(df[column], column, column_map, times)
        _check_range(columns[column], *SERIES_RANGES[column], column, column_map, times)
    if "is_holiday" in df.columns:
        holiday = _numeric(df["is_holiday"], "is_holiday", column_map, times, flag=True)
        bad = np.flatnonzero((holiday != 0) & (holiday != 1))
        if bad.size:
            raise DataValidationError(
                f"{_name('is_holiday', column_map)} has {bad.size} values other than 0 or 1, "
                f"first {holiday[bad[0]]:g} at {times[bad[0]]}"
            )
        columns["is_holiday"] = holiday.astype(np.int8)
    else:
        columns["is_holiday"] = np.zeros(len(times), dtype=np.int8)
    _check_hourly_days(times, column_map)
    _check_pv_hours(times, columns["pv_cf"], column_map)
    return pd.DataFrame(columns, index=times.rename(TIME_COLUMN))[list(SERIES_COLUMNS)]


def validate_series(df: pd.DataFrame, column_map: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Check an hourly series and return a copy with only our columns, in canonical names and dtypes.

    :param df: hourly frame with a DatetimeIndex (or a ``time`` column) and the ``SERIES_COLUMNS``;
        ``is_holiday`` is optional and taken as 0 when absent
    :param column_map: user column name -> our name, e.g. ``{"PV (kW/kWp)": "pv_cf"}``
    """
    return _validate_series(_rename(df, column_map), column_map)


def load_series(
    path: str | os.PathLike, column_map: Mapping[str, str] | None = None, time_column: str = TIME_COLUMN
) -> pd.DataFrame:
    """Read and validate an hourly series from a .csv or .parquet file.

    :param path: file path
    :param column_map: user column name -> our name
    :param time_column: timestamp column (after ``column_map``); a parquet DatetimeIndex is used when it is absent
    """
    df = _rename(_read_table(path), column_map, f"{os.fspath(path)}: ")
    if time_column in df.columns:
        times = _parse_times(df[time_column], TIME_COLUMN, column_map)
        df = df.drop(columns=time_column).set_axis(times, axis=0)
    elif not isinstance(df.index, pd.DatetimeIndex):
        raise DataValidationError(
            f"{os.fspath(path)}: column {time_column!r} not found and the index is not a DatetimeIndex; "
            f"found columns: {', '.join(map(str, df.columns))} (pass time_column= or map it with column_map)"
        )
    return _validate_series(df, column_map)


def _validate_sessions(
    df: pd.DataFrame, n_ports: int | None, column_map: Mapping[str, str] | None
) -> pd.DataFrame:
    """Canonical copy of a sessions frame already in our column names.

    :param df: one row per session
    :param n_ports: number of ports; None bounds ``port`` by ``PORT_LIMIT`` only
    :param column_map: user name -> our name, for messages
    """
    _require(df, SESSION_COLUMNS, column_map)
    rows = pd.Index("row " + pd.RangeIndex(len(df)).astype(str))  # messages cite 0-based data rows
    port = _numeric(df["port"], "port", column_map, rows)
    not_whole = np.flatnonzero(port != np.round(port))
    if not_whole.size:
        raise DataValidationError(
            f"{_name('port', column_map)} must hold whole numbers; {not_whole.size} do not, "
            f"first {port[not_whole[0]]:g} at {rows[not_whole[0]]}"
        )
    _check_range(port, 0, PORT_LIMIT if n_ports is None else n_ports, "port", column_map, rows, high_open=True)
    energy = _numeric(df["energy_kwh"], "energy_kwh", column_map, rows)
    _check_range(energy, 0.0, SESSION_ENERGY_MAX_KWH, "energy_kwh", column_map, rows, low_open=True)
    arrival = _parse_times(df["arrival"], "arrival", column_map)
    departure = _parse_times(df["departure"], "departure", column_map)
    backwards = np.flatnonzero(departure <= arrival)
    if backwards.size:
        i = backwards[0]
        raise DataValidationError(
            f"{_name('departure', column_map)}: {backwards.size} sessions depart at or before they arrive, "
            f"first in row {i} (arrival {arrival[i]}, departure {departure[i]})"
        )
    order = np.lexsort((arrival.to_numpy(), port))
    same_port = port[order][1:] == port[order][:-1]
    overlap = np.flatnonzero(same_port & (arrival.to_numpy()[order][1:] < departure.to_numpy()[order][:-1]))
    if overlap.size:
        first, second = order[overlap[0]], order[overlap[0] + 1]
        raise DataValidationError(
            f"{_name('arrival', column_map)}: {overlap.size} sessions start before the previous session on the "
            f"same port departs, first on port {port[first]:g}: row {second} arrives {arrival[second]}, "
            f"row {first} departs {departure[first]}"
        )
    frame = pd.DataFrame(
        {"port": port.astype(np.int64), "arrival": arrival, "departure": departure, "energy_kwh": energy}
    )
    return frame.iloc[np.lexsort((port, arrival.to_numpy()))].reset_index(drop=True)


def validate_sessions(
    df: pd.DataFrame, n_ports: int | None, column_map: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Check EV sessions and return a canonical copy sorted by arrival then port, with a RangeIndex.

    :param df: one row per session with the ``SESSION_COLUMNS``
    :param n_ports: number of ports; ``port`` must lie in [0, n_ports); None bounds it by ``PORT_LIMIT`` only
    :param column_map: user column name -> our name
    """
    return _validate_sessions(_rename(df, column_map), n_ports, column_map)


def load_sessions(
    path: str | os.PathLike, column_map: Mapping[str, str] | None = None, n_ports: int | None = None
) -> pd.DataFrame:
    """Read and validate EV sessions from a .csv or .parquet file.

    :param path: file path
    :param column_map: user column name -> our name
    :param n_ports: number of ports; None bounds ``port`` by ``PORT_LIMIT`` only
    """
    return _validate_sessions(_rename(_read_table(path), column_map, f"{os.fspath(path)}: "), n_ports, column_map)


def load_data(
    series_path: str | os.PathLike,
    sessions_path: str | os.PathLike | None = None,
    column_map: Mapping[str, str] | None = None,
    n_ports: int = 12,
    seed: int = 0,
    site: SiteProfile = SiteProfile(),
) -> MicrogridData:
    """The user's series with their sessions, or with sessions generated for the series' days.

    :param series_path: hourly series file (.csv or .parquet), timestamps in a ``time`` column or the index
    :param sessions_path: sessions file; None generates sessions with :func:`generate_sessions`
    :param column_map: user column name -> our name, shared by both files
    :param n_ports: number of EV ports
    :param seed: seed of the generated sessions
    :param site: parameters of the generated sessions
    """
    series = load_series(series_path, column_map)
    days = split_days(series.index, "all")
    if sessions_path is None:
        sessions = generate_sessions(days, n_ports, seed, site, series["is_holiday"])
    else:
        sessions = load_sessions(sessions_path, column_map, n_ports)
        outside = np.flatnonzero(~sessions["arrival"].dt.normalize().isin(days).to_numpy())
        if outside.size:
            raise DataValidationError(
                f"{_name('arrival', column_map)}: {outside.size} sessions arrive outside the series' days "
                f"({days[0].date()} to {days[-1].date()}), first {sessions['arrival'].iloc[outside[0]]}"
            )
    return MicrogridData(series=series, sessions=sessions)
