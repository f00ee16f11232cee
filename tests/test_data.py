"""Tests of the synthetic data generator, the splits and the loaders of the user's own files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sb3_microgrid.data import (
    SERIES_COLUMNS,
    SESSION_COLUMNS,
    SPLITS,
    DataValidationError,
    MicrogridData,
    SiteProfile,
    generate,
    generate_series,
    generate_sessions,
    load_data,
    load_series,
    load_sessions,
    split_days,
    validate_series,
    validate_sessions,
)
from sb3_microgrid.envs import MicrogridEnv
from sb3_microgrid.data.io import PV_HOURS_MIN_DAYS
from sb3_microgrid.envs.site import _session_arrays

SITE = SiteProfile()
YEARS, START_YEAR = 10, 2015
HOURS_10Y = (365 * 10 + 3) * 24  # 2016, 2020 and 2024 are leap years
N_PORTS = 12
FORMATS = ("csv", "parquet")


@pytest.fixture(scope="module")
def data() -> MicrogridData:
    """Ten years of seed-0 data, generated once for the module."""
    return generate(years=YEARS, start_year=START_YEAR, seed=0, n_ports=N_PORTS)


@pytest.fixture(scope="module")
def small(data: MicrogridData) -> MicrogridData:
    """The first three days, for the loader tests."""
    series = data.series.iloc[: 3 * 24]
    sessions = data.sessions[data.sessions["arrival"] < series.index[-1]].reset_index(drop=True)
    return MicrogridData(series=series, sessions=sessions)


# Generator


def test_same_seed_gives_identical_frames(data: MicrogridData) -> None:
    again = generate(years=YEARS, start_year=START_YEAR, seed=0, n_ports=N_PORTS)
    pd.testing.assert_frame_equal(again.series, data.series)
    pd.testing.assert_frame_equal(again.sessions, data.sessions)


def test_other_seed_gives_other_data() -> None:
    a, b = generate(years=1, seed=0), generate(years=1, seed=1)
    for column in SERIES_COLUMNS[:-1]:
        assert not np.array_equal(a.series[column], b.series[column])
    assert not a.sessions.equals(b.sessions)


def test_streams_are_independent() -> None:
    """Changing one series' parameters leaves the draws of the others untouched."""
    base = generate_series(years=1)
    other = generate_series(years=1, site=SiteProfile(pv_capacity_factor=0.17, pv_hour_sd=0.08))
    assert not np.array_equal(base["pv_cf"], other["pv_cf"])
    pd.testing.assert_frame_equal(base.drop(columns="pv_cf"), other.drop(columns="pv_cf"))


def test_shape_columns_and_dtypes(data: MicrogridData) -> None:
    series = data.series
    assert tuple(series.columns) == SERIES_COLUMNS
    assert len(series) == HOURS_10Y
    assert isinstance(series.index, pd.DatetimeIndex) and series.index.name == "time"
    assert series.index.tz is None
    assert series.index[0] == pd.Timestamp(f"{START_YEAR}-01-01")
    assert series.index[-1] == pd.Timestamp(f"{START_YEAR + YEARS - 1}-12-31 23:00")
    assert (np.diff(series.index.to_numpy()) == np.timedelta64(1, "h")).all()
    assert (series.drop(columns="is_holiday").dtypes == np.float64).all()
    assert series["is_holiday"].dtype == np.int8


def test_pv_capacity_factor_and_night(data: MicrogridData) -> None:
    pv = data.series["pv_cf"]
    assert abs(pv.mean() / SITE.pv_capacity_factor - 1) <= 0.005
    assert pv.between(0, 1).all()
    night = (pv.index.hour >= 20) | (pv.index.hour < 5)  # sun below the horizon all year at 18.5 deg N
    assert (pv[night] == 0).all()
    monsoon = pv.index.month.isin([7, 8])
    winter = pv.index.month.isin([1, 2])
    assert pv[monsoon].mean() < pv[winter].mean()


def test_emission_factor_yearly_means(data: MicrogridData) -> None:
    ef = data.series["emission_factor"]
    yearly = ef.groupby(ef.index.year).mean()
    np.testing.assert_allclose(yearly, SITE.emission_factor_mean, rtol=0, atol=1e-9)
    assert (ef > 0).all()
    by_hour = ef.groupby(ef.index.hour).mean()
    assert by_hour[12] < by_hour[2] < by_hour[20]  # solar dip, evening rise


def test_price_range_and_shape(data: MicrogridData) -> None:
    price = data.series["exchange_price"]
    assert price.between(0, SITE.exchange_price_cap).all()
    by_hour = price.groupby(price.index.hour).mean()
    assert by_hour[13] < by_hour[8] < by_hour[20]
    assert abs(price.mean() / SITE.exchange_price_mean - 1) < 0.05  # mean set before the cap


def test_load_mean_and_calendar(data: MicrogridData) -> None:
    load = data.series["load_kw"]
    assert load.mean() == pytest.approx(SITE.load_mean_kw, rel=1e-9)
    assert (load > 0).all()
    weekday = load.index.day_of_week
    assert load[weekday < 5].mean() > load[weekday == 5].mean() > load[weekday == 6].mean()
    month = load.index.month
    assert load[month.isin([4, 5])].mean() > load[month.isin([1, 12])].mean()


def test_wind_speed(data: MicrogridData) -> None:
    wind = data.series["wind_speed"]
    assert (wind >= 0).all()
    month = wind.index.month
    assert wind[month.isin([6, 7, 8])].mean() > wind[month.isin([11, 12, 1])].mean()


def test_holidays(data: MicrogridData) -> None:
    flag = data.series["is_holiday"]
    assert set(flag.unique()) == {0, 1}
    for day in ("2020-01-26", "2020-08-15", "2020-10-02", "2020-12-25", "2020-12-28"):
        assert (flag.loc[day] == 1).all()
    assert (flag.loc["2020-03-10"] == 0).all()


def test_session_invariants(data: MicrogridData) -> None:
    s = data.sessions
    assert tuple(s.columns) == SESSION_COLUMNS
    assert isinstance(s.index, pd.RangeIndex)
    assert s["port"].between(0, N_PORTS - 1).all()
    assert (s["arrival"].dt.normalize() == s["departure"].dt.normalize()).all()
    midnight = s["arrival"].dt.normalize()
    assert (s["departure"] <= midnight + pd.Timedelta(hours=SITE.ev_latest_departure_h)).all()
    stay_h = (s["departure"] - s["arrival"]) / pd.Timedelta(hours=1)
    assert (stay_h >= SITE.ev_min_stay_h).all()
    assert (s["energy_kwh"] > 0).all()
    deliverable = SITE.ev_deliverable_fraction * SITE.ev_port_power_kw * stay_h
    assert (s["energy_kwh"] <= deliverable + 1e-9).all()
    by_port = s.sort_values(["port", "arrival"])
    same_port = by_port["port"].to_numpy()[1:] == by_port["port"].to_numpy()[:-1]
    gaps = by_port["arrival"].to_numpy()[1:] >= by_port["departure"].to_numpy()[:-1]
    assert gaps[same_port].all()
    expected = s.sort_values(["arrival", "port"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(s, expected)
    workday = (s["arrival"].dt.day_of_week < 5).mean()
    assert workday > 0.9  # weekends and holidays see far fewer sessions


def test_sessions_follow_given_holidays() -> None:
    days = pd.date_range("2024-03-04", periods=5, freq="D")  # Monday to Friday
    holidays = pd.Series(1, index=days)
    assert len(generate_sessions(days, N_PORTS, holidays=holidays)) < len(generate_sessions(days, N_PORTS))
    with pytest.raises(ValueError, match="holidays"):
        generate_sessions(days, N_PORTS, holidays=holidays.iloc[:2])


def test_winter_break_across_new_year_flags_every_day() -> None:
    """A break from 24 December to 2 January matched no day (MMDD >= 1224 and <= 102): only Christmas was flagged."""
    site = SiteProfile(winter_break=((12, 24), (1, 2)))
    flags = generate_series(years=2, start_year=2015, site=site)["is_holiday"].resample("D").max()
    assert flags["2015-12-24":"2016-01-02"].eq(1).all() and flags["2015-01-01":"2015-01-02"].eq(1).all()
    assert flags[["2015-01-03", "2015-12-23", "2016-01-04"]].eq(0).all()  # the days just outside the break
    # a vacation across New Year lowers the load on those days too
    vacation = SiteProfile(load_summer_vacation=((12, 20), (1, 10)), load_vacation_activity=0.1)
    load = generate_series(years=1, site=vacation)["load_kw"]
    assert load["2015-01-05":"2015-01-09"].mean() < 0.8 * load["2015-01-12":"2015-01-16"].mean()


# Splits


def test_splits_partition_the_days(data: MicrogridData) -> None:
    parts = {split: data.days(split) for split in SPLITS}
    everything = parts["all"]
    assert len(everything) == HOURS_10Y // 24
    train, validation, test = parts["train"], parts["validation"], parts["test"]
    assert len(train.intersection(validation)) == len(train.intersection(test)) == 0
    assert len(validation.intersection(test)) == 0
    assert train.append(validation).append(test).sort_values().equals(everything)
    assert set(test.year) == {START_YEAR + YEARS - 1} and len(test) == 366
    assert set(validation.year) == {START_YEAR + YEARS - 2}
    assert train.max() < validation.min() < test.min()
    assert (everything == everything.normalize()).all()


def test_short_data_splits_80_10_10() -> None:
    index = pd.date_range("2021-01-01", periods=100 * 24, freq="h")
    sizes = [len(split_days(index, split)) for split in ("train", "validation", "test")]
    assert sizes == [80, 10, 10]


@pytest.mark.parametrize("days, empty", [(1, "train"), (1, "validation"), (9, "validation")])
def test_empty_split_is_an_error_not_an_empty_index(days: int, empty: str) -> None:
    """A one-day file made the training load scale the mean of no days: NaN in every load observation."""
    index = pd.date_range("2021-01-01", periods=days * 24, freq="h")
    with pytest.raises(ValueError, match=rf"split '{empty}' has no days: the data hold {days} days.*at least 10 days"):
        split_days(index, empty)


def test_ten_days_give_every_split_a_day() -> None:
    index = pd.date_range("2021-01-01", periods=10 * 24, freq="h")
    assert [len(split_days(index, split)) for split in ("train", "validation", "test")] == [8, 1, 1]


def test_unknown_split_names_the_allowed_ones(data: MicrogridData) -> None:
    with pytest.raises(ValueError, match="train, validation, test, all"):
        data.days("dev")


# User data: round trips


def _write(df: pd.DataFrame, path: Path, fmt: str, index: bool = True) -> Path:
    """Write ``df`` as ``path.fmt``."""
    target = path.with_suffix(f".{fmt}")
    if fmt == "csv":
        df.to_csv(target, index=index)
    else:
        df.to_parquet(target, index=index)
    return target


@pytest.mark.parametrize("fmt", FORMATS)
def test_series_round_trip(small: MicrogridData, tmp_path: Path, fmt: str) -> None:
    loaded = load_series(_write(small.series, tmp_path / "series", fmt))
    pd.testing.assert_frame_equal(loaded, small.series, check_freq=False)


def test_column_map_optional_holiday_and_copy(small: MicrogridData, tmp_path: Path) -> None:
    theirs = small.series.drop(columns="is_holiday").rename(columns={"pv_cf": "PV (kW/kWp)"})
    theirs.index.name = "Timestamp"
    path = _write(theirs, tmp_path / "series", "csv")
    loaded = load_series(path, column_map={"PV (kW/kWp)": "pv_cf"}, time_column="Timestamp")
    assert tuple(loaded.columns) == SERIES_COLUMNS and (loaded["is_holiday"] == 0).all()
    validated = validate_series(small.series)
    validated.iloc[0, 0] = 0.5
    assert small.series.iloc[0, 0] != 0.5


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_data_with_and_without_sessions(small: MicrogridData, tmp_path: Path, fmt: str) -> None:
    series_path = _write(small.series, tmp_path / "series", fmt)
    sessions_path = _write(small.sessions, tmp_path / "sessions", fmt, index=False)
    given = load_data(series_path, sessions_path)
    pd.testing.assert_frame_equal(given.sessions, small.sessions)
    generated = load_data(series_path, seed=4)
    expected = generate_sessions(small.days("all"), N_PORTS, seed=4, holidays=small.series["is_holiday"])
    pd.testing.assert_frame_equal(generated.sessions, expected)


def test_no_ports_means_no_sessions(small: MicrogridData, tmp_path: Path) -> None:
    """``ev.n_ports: 0`` is a valid scenario: generated and loaded data then hold no sessions."""
    assert generate(years=1, n_ports=0).sessions.empty
    loaded = load_data(_write(small.series, tmp_path / "series", "csv"), n_ports=0)
    assert loaded.sessions.empty and tuple(loaded.sessions.columns) == SESSION_COLUMNS


# User data: one test per documented error


def _with(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Mutation setting one cell (the column is cast to object first if the value is a string)."""

    def mutate(df: pd.DataFrame) -> pd.DataFrame:
        if isinstance(value, str):
            df[column] = df[column].astype(str)
        df.loc[df.index[row], column] = value
        return df

    return mutate


def _duplicate_time(row: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Mutation giving row ``row`` the timestamp of the row before it."""
    return lambda df: df.assign(time=df["time"].where(df.index != row, df["time"].iloc[row - 1]))


SERIES_ERRORS: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], str, str]] = {
    # name: (mutation of the frame with a 'time' column, column the message names, phrase in the message)
    "missing column": (lambda df: df.drop(columns="pv_cf"), "pv_cf", "required columns"),
    "nan": (_with("load_kw", 5, np.nan), "load_kw", "NaN"),
    "inf": (_with("load_kw", 5, np.inf), "load_kw", "infinite"),
    "-inf": (_with("exchange_price", 5, -np.inf), "exchange_price", "infinite"),
    "negative pv_cf": (_with("pv_cf", 12, -0.1), "pv_cf", "[0, 1]"),
    "negative wind_speed": (_with("wind_speed", 3, -1.0), "wind_speed", "[0, 80]"),
    "negative load_kw": (_with("load_kw", 3, -1.0), "load_kw", "[0, 1e+07]"),
    "negative exchange_price": (_with("exchange_price", 3, -1.0), "exchange_price", "[0, 100]"),
    "negative emission_factor": (_with("emission_factor", 3, -0.5), "emission_factor", "[0, 2]"),
    "pv_cf above 1": (_with("pv_cf", 12, 1.2), "pv_cf", "[0, 1]"),
    # finite but absurd: gave inf observations and a cost of 2e302
    "huge load_kw": (_with("load_kw", 3, 1e300), "load_kw", "[0, 1e+07]"),
    "huge emission_factor": (_with("emission_factor", 3, 1e300), "emission_factor", "[0, 2]"),
    "wind_speed above 80 m/s": (_with("wind_speed", 3, 120.0), "wind_speed", "[0, 80]"),
    "exchange_price in Rs/MWh": (_with("exchange_price", 3, 5200.0), "exchange_price", "[0, 100]"),
    "emission_factor in g/kWh": (_with("emission_factor", 3, 711.7), "emission_factor", "[0, 2]"),
    "non-numeric": (_with("exchange_price", 7, "abc"), "exchange_price", "not numeric"),
    "boolean": (lambda df: df.assign(load_kw=df["load_kw"] > 100.0), "load_kw", "boolean column"),  # read as 0/1 kW before
    "holiday not 0/1": (_with("is_holiday", 7, 2), "is_holiday", "0 or 1"),
    "unparsable time": (_with("time", 4, "yesterday"), "time", "cannot parse"),
    "no time column": (lambda df: df.drop(columns="time"), "time", "not found"),
    "unsorted": (lambda df: df.iloc[[1, 0, *range(2, len(df))]], "time", "not sorted"),
    "duplicated": (_duplicate_time(5), "time", "duplicated"),
    "step not one hour": (lambda df: df.drop(index=5), "time", "exactly 1 hour"),
    "not from midnight": (lambda df: df.iloc[1:], "time", "midnight"),
    "not whole days": (lambda df: df.iloc[:-1], "time", "multiple of 24"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", list(SERIES_ERRORS))
def test_series_errors(small: MicrogridData, tmp_path: Path, fmt: str, case: str) -> None:
    mutate, column, phrase = SERIES_ERRORS[case]
    frame = mutate(small.series.reset_index())
    path = _write(frame, tmp_path / "series", fmt, index=False)
    with pytest.raises(DataValidationError) as err:
        load_series(path)
    assert f"'{column}'" in str(err.value) and phrase in str(err.value)


def test_mapped_column_error_names_both_names(small: MicrogridData) -> None:
    theirs = small.series.rename(columns={"load_kw": "Load (kW)"})
    theirs.iloc[3, 2] = -5.0
    with pytest.raises(DataValidationError, match=r"'load_kw' \(mapped from 'Load \(kW\)'\)"):
        validate_series(theirs, column_map={"Load (kW)": "load_kw"})


@pytest.mark.parametrize("case", ["file", "frame", "sessions"])
def test_column_map_giving_two_columns_one_name(small: MicrogridData, tmp_path: Path, case: str) -> None:
    """Mapping 'Load' onto a file that also has 'load_kw' failed deep inside with a TypeError."""
    if case == "file":
        path = _write(small.series.assign(Load=400.0), tmp_path / "series", "csv")
        with pytest.raises(DataValidationError, match="columns 'load_kw', 'Load' are all named 'load_kw'"):
            load_series(path, column_map={"Load": "load_kw"})
    elif case == "frame":  # two of the user's columns mapped to one name
        with pytest.raises(DataValidationError, match="columns 'L1', 'L2' are all named 'load_kw'"):
            validate_series(small.series.drop(columns="load_kw").assign(L1=1.0, L2=2.0), column_map={"L1": "load_kw", "L2": "load_kw"})
    else:
        with pytest.raises(DataValidationError, match="columns 'port', 'Charger' are all named 'port'"):
            validate_sessions(small.sessions.assign(Charger=0), N_PORTS, column_map={"Charger": "port"})


@pytest.mark.parametrize("case", ["ours", "theirs", "sessions", "frame"])
def test_repeated_column_name_is_refused_naming_it(small: MicrogridData, tmp_path: Path, case: str) -> None:
    """pandas read a second 'load_kw' header as 'load_kw.1' and dropped it: the first column won silently."""
    if case == "frame":  # data given in code can carry the repeat itself
        with pytest.raises(DataValidationError, match=r"repeated column names 'load_kw' \(2 columns\)"):
            validate_series(pd.concat([small.series, small.series[["load_kw"]] * 1000], axis=1))
        return
    frame = small.sessions if case == "sessions" else small.series.reset_index()
    name = {"ours": "load_kw", "theirs": "Load", "sessions": "port"}[case]
    if case == "theirs":
        frame = frame.rename(columns={"load_kw": "Load"})
    text = frame.to_csv(index=False).splitlines()
    path = tmp_path / "repeated.csv"
    path.write_text("\n".join([f"{text[0]},{name}", *(f"{line},1" for line in text[1:])]) + "\n")
    with pytest.raises(DataValidationError, match=rf"{path}: repeated column names '{name}' \(2 columns\)"):
        if case == "sessions":
            load_sessions(path, n_ports=N_PORTS)
        else:
            load_series(path, column_map={"Load": "load_kw"})


def test_blank_header_cells_are_not_repeated_names(small: MicrogridData, tmp_path: Path) -> None:
    """Unnamed columns (a written index, a trailing comma) read as distinct 'Unnamed: i' columns and are dropped."""
    text = small.series.reset_index().to_csv(index=False).splitlines()
    path = tmp_path / "blank.csv"
    path.write_text("\n".join([f",{text[0]},", *(f"{i},{line}," for i, line in enumerate(text[1:]))]) + "\n")
    pd.testing.assert_frame_equal(load_series(path), small.series, check_freq=False)


@pytest.mark.parametrize("case", ["parquet", "frame"])
def test_multi_level_column_headers_are_refused(small: MicrogridData, tmp_path: Path, case: str) -> None:
    """Two header levels passed the column checks and crashed in pd.to_numeric with a raw TypeError."""
    frame = small.series.copy()
    frame.columns = pd.MultiIndex.from_product([frame.columns, ["value"]])
    with pytest.raises(DataValidationError, match=r"the columns have 2 header levels \(first \('pv_cf', 'value'\)\); give a single flat row"):
        if case == "parquet":
            frame.to_parquet(tmp_path / "series.parquet")
            load_series(tmp_path / "series.parquet")
        else:
            validate_series(frame)


def test_rows_without_data_columns_name_the_missing_columns(small: MicrogridData, tmp_path: Path) -> None:
    """A file holding only times has rows, yet was reported as 'the series has no rows'."""
    path = tmp_path / "times.csv"
    small.series.reset_index()[["time"]].to_csv(path, index=False)
    with pytest.raises(DataValidationError, match="missing column 'pv_cf', .*column 'emission_factor'; required columns: .* found: none"):
        load_series(path)


def _pv_only_at(hour: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Mutation giving PV output in one hour of each day only."""
    return lambda df: df.assign(pv_cf=np.where(df.index.hour == hour, 0.5, 0.0))


@pytest.mark.parametrize("fmt", FORMATS)
def test_utc_timestamps_are_refused_by_the_pv_hours(data: MicrogridData, tmp_path: Path, fmt: str) -> None:
    """Naive UTC stamps (IST - 5.5 h; a logger's default) were accepted and every daily pattern shifted by 5.5 h."""
    series = data.series.loc["2023"]
    utc = series.copy()
    utc[:] = np.roll(series.to_numpy(), -5, axis=0)  # the values under UTC hour labels
    utc = utc.astype(series.dtypes.to_dict())
    path = _write(utc.reset_index(), tmp_path / "utc", fmt, index=False)
    message = (
        r"column 'time' / column 'pv_cf': PV output is centred at 7.5\d h \(PV-weighted mean hour of day\), outside the "
        r"allowed range \[9.5, 15\] around Indian solar noon .* tz-naive local time \(IST, UTC\+5:30\)"
    )
    with pytest.raises(DataValidationError, match=message):
        load_series(path)
    pd.testing.assert_frame_equal(load_series(_write(series, tmp_path / "ist", fmt)), series, check_freq=False)


@pytest.mark.parametrize(("hour", "accepted"), [(8, False), (9, True), (14, True), (15, False)])
def test_pv_hour_range_is_closed_at_mid_hour(data: MicrogridData, hour: int, accepted: bool) -> None:
    """PV only in hour h is centred at h + 0.5: hours 9 and 14 lie in [9.5, 15], 8 and 15 do not (on a week)."""
    series = _pv_only_at(hour)(data.series.iloc[: PV_HOURS_MIN_DAYS * 24])
    if accepted:
        validate_series(series)
    else:
        with pytest.raises(DataValidationError, match=rf"'pv_cf': PV output is centred at {hour + 0.5:.2f} h"):
            validate_series(series)


def test_series_without_pv_is_not_checked_for_its_hours(small: MicrogridData) -> None:
    """No PV output (a site without panels, night-only data) tells nothing about the clock."""
    validate_series(small.series.assign(pv_cf=0.0))


def test_fewer_days_of_pv_than_a_week_are_not_judged_by_their_hours(data: MicrogridData) -> None:
    """A morning-only day of IST data (an afternoon storm) is centred before 9.5 h: on a few days it cannot tell."""
    week = data.series.iloc[: PV_HOURS_MIN_DAYS * 24]
    morning = week.assign(pv_cf=np.where(week.index.hour < 10, week["pv_cf"], 0.0))
    validate_series(morning.iloc[: (PV_HOURS_MIN_DAYS - 1) * 24])
    with pytest.raises(DataValidationError, match="PV output is centred at"):
        validate_series(morning)


def _object_cell(value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Mutation putting ``value`` in row 3 of ``load_kw`` as an object column."""

    def mutate(df: pd.DataFrame) -> pd.DataFrame:
        df["load_kw"] = df["load_kw"].astype(object)
        df.iloc[3, df.columns.get_loc("load_kw")] = value
        return df

    return mutate


@pytest.mark.parametrize(
    "mutate",
    [
        lambda df: df.assign(load_kw=df["load_kw"].astype(complex)),  # imaginary part dropped
        lambda df: df.assign(load_kw=df["load_kw"] + 1j),
        _object_cell(True),  # read as 1 kW
        _object_cell(np.True_),
        _object_cell(300 + 5j),
    ],
    ids=["complex column", "complex values", "True in object column", "numpy True in object column", "complex in object column"],
)
def test_non_real_values_in_a_frame_are_rejected(small: MicrogridData, mutate: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    """Data given in code were cast silently: the imaginary part dropped, True read as 1 kW."""
    with pytest.raises(DataValidationError, match="'load_kw' is not numeric: .* not real numbers"):
        validate_series(mutate(small.series.copy()))


def test_boolean_values_in_an_object_holiday_column_are_flags(small: MicrogridData) -> None:
    flags = small.series["is_holiday"].astype(bool).astype(object)
    validated = validate_series(small.series.assign(is_holiday=flags))
    np.testing.assert_array_equal(validated["is_holiday"].to_numpy(), small.series["is_holiday"].to_numpy())


def test_timezone_aware_index_is_rejected(small: MicrogridData) -> None:
    with pytest.raises(DataValidationError, match="'time'.*timezone-aware"):
        validate_series(small.series.tz_localize("Asia/Kolkata"))


def test_unsupported_file_type(small: MicrogridData, tmp_path: Path) -> None:
    path = tmp_path / "series.xlsx"
    path.write_text("")
    with pytest.raises(DataValidationError, match="csv or .parquet"):
        load_series(path)


def _overlap(df: pd.DataFrame) -> pd.DataFrame:
    """Duplicate the first session so it overlaps itself on the same port."""
    return pd.concat([df, df.iloc[[0]]], ignore_index=True)


SESSION_ERRORS: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], str, str]] = {
    "missing column": (lambda df: df.drop(columns="energy_kwh"), "energy_kwh", "required columns"),
    "port too large": (_with("port", 2, N_PORTS), "port", f"[0, {N_PORTS})"),
    "port negative": (_with("port", 2, -1), "port", f"[0, {N_PORTS})"),
    "departure before arrival": (
        lambda df: df.assign(departure=df["departure"].where(df.index != 1, df["arrival"] - pd.Timedelta(minutes=5))),
        "departure",
        "at or before",
    ),
    "energy zero": (_with("energy_kwh", 1, 0.0), "energy_kwh", "(0, 1000]"),
    "energy negative": (_with("energy_kwh", 1, -3.0), "energy_kwh", "(0, 1000]"),
    "energy absurd": (_with("energy_kwh", 1, 1e300), "energy_kwh", "(0, 1000]"),
    "energy inf": (_with("energy_kwh", 1, np.inf), "energy_kwh", "infinite"),
    "overlap": (_overlap, "arrival", "same port"),
    "unparsable arrival": (_with("arrival", 2, "soon"), "arrival", "cannot parse"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", list(SESSION_ERRORS))
def test_session_errors(small: MicrogridData, tmp_path: Path, fmt: str, case: str) -> None:
    mutate, column, phrase = SESSION_ERRORS[case]
    path = _write(mutate(small.sessions.copy()), tmp_path / "sessions", fmt, index=False)
    with pytest.raises(DataValidationError) as err:
        load_sessions(path, n_ports=N_PORTS)
    assert f"'{column}'" in str(err.value) and phrase in str(err.value)


def test_validate_sessions_accepts_good_data(small: MicrogridData) -> None:
    shuffled = small.sessions.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(validate_sessions(shuffled, N_PORTS), small.sessions)


@pytest.mark.parametrize(("port", "dtype"), [(1e19, np.float64), (2**62, np.int64), (2**64 - 1, np.uint64)])
def test_port_beyond_exact_integers_is_rejected_without_n_ports(small: MicrogridData, port: int | float, dtype: type) -> None:
    """With no n_ports (data given in code) port 1e19 was accepted and returned as -9223372036854775808."""
    sessions = small.sessions.astype({"port": dtype})
    sessions.loc[2, "port"] = port
    with pytest.raises(DataValidationError, match=r"'port' has 1 values outside the allowed range \[0, 9.0072e\+15\)"):
        validate_sessions(sessions, None)


def test_non_real_session_values_are_rejected(small: MicrogridData) -> None:
    energy = small.sessions["energy_kwh"].astype(object)
    energy.iloc[1] = True
    with pytest.raises(DataValidationError, match="'energy_kwh' is not numeric"):
        validate_sessions(small.sessions.assign(energy_kwh=energy), None)
    with pytest.raises(DataValidationError, match="'port' is not numeric"):
        validate_sessions(small.sessions.assign(port=small.sessions["port"].astype(complex)), None)


def test_sessions_outside_series_days(small: MicrogridData, tmp_path: Path) -> None:
    late = small.sessions.assign(
        arrival=small.sessions["arrival"] + pd.Timedelta(days=30),
        departure=small.sessions["departure"] + pd.Timedelta(days=30),
    )
    series_path = _write(small.series, tmp_path / "series", "csv")
    sessions_path = _write(late, tmp_path / "sessions", "csv", index=False)
    with pytest.raises(DataValidationError, match="'arrival'.*outside the series' days"):
        load_data(series_path, sessions_path)


@pytest.mark.parametrize("case", ["missing", "folder", "binary", "parquet"])
def test_unreadable_file_is_a_validation_error_naming_the_path(tmp_path: Path, case: str) -> None:
    """These escaped as FileNotFoundError, IsADirectoryError and a pandas ParserError, naming no file."""
    path = {"missing": tmp_path / "none.csv", "folder": tmp_path / "dir.csv", "binary": tmp_path / "bin.csv", "parquet": tmp_path / "bad.parquet"}[case]
    if case == "folder":
        path.mkdir()
    elif case != "missing":
        path.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(DataValidationError, match=f"{path}: cannot read it as a .{path.suffix[1:]} table"):
        load_series(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s, e: (s.assign(load_kw=s["load_kw"].where(s.index != s.index[30])), e), "'load_kw' has 1 NaN"),
        (lambda s, e: (s.assign(load_kw=s["load_kw"].where(s.index != s.index[31], -500.0)), e), "'load_kw' has 1 values outside the allowed range"),
        (lambda s, e: (s.iloc[:-1], e), "not a multiple of 24"),
        (lambda s, e: (s, e.assign(energy_kwh=-e["energy_kwh"])), "'energy_kwh' has .* outside the allowed range"),
    ],
)
def test_env_checks_data_given_in_code(small: MicrogridData, change: Callable, message: str) -> None:
    """MicrogridEnv(data=...) used the frames unchecked: a NaN load gave NaN rewards, a -500 kW load a positive one."""
    series, sessions = change(small.series, small.sessions)
    with pytest.raises(DataValidationError, match=message):
        MicrogridEnv(split="all", data=MicrogridData(series=series, sessions=sessions), scenario={"ev": {"n_ports": 2}})


def test_env_keeps_valid_data_given_in_code(small: MicrogridData) -> None:
    """The check changes nothing for valid data; sessions on ports the scenario lacks are still dropped."""
    env = MicrogridEnv(split="all", data=small, scenario={"ev": {"n_ports": 2}})
    site = env.core.site
    np.testing.assert_array_equal(site.load_kw[site.day_start[0] : site.day_start[0] + len(small.series)], small.series["load_kw"])
    expected = _session_arrays(small, env.scenario, len(small.series) // 24)
    for name, array in expected.items():
        np.testing.assert_array_equal(getattr(env.core.site, name), array)


def test_a_boolean_holiday_column_is_a_flag(small: MicrogridData, tmp_path: Path) -> None:
    frame = small.series.reset_index()
    flagged = frame.assign(is_holiday=frame["is_holiday"].astype(bool))
    loaded = load_series(_write(flagged, tmp_path / "series", "parquet", index=False))
    np.testing.assert_array_equal(loaded["is_holiday"].to_numpy(), small.series["is_holiday"].to_numpy())


def test_repeated_names_of_columns_the_loader_drops_are_not_refused(small: MicrogridData, tmp_path: Path) -> None:
    """"Other columns are dropped" (the data card): two notes of one name are other columns too."""
    text = small.series.reset_index().to_csv(index=False).splitlines()
    path = tmp_path / "notes.csv"
    path.write_text("\n".join([f"{text[0]},note,note", *(f"{line},a,b" for line in text[1:])]) + "\n")
    pd.testing.assert_frame_equal(load_series(path), small.series, check_freq=False)


@pytest.mark.parametrize("kind", ["timedelta", "datetime"])
def test_a_date_or_time_column_is_not_a_number(small: MicrogridData, kind: str) -> None:
    """pandas reads them as nanoseconds: a duration of 300 ns passed as 300 kW, in range."""
    values = pd.to_timedelta(small.series["load_kw"].round(), unit="ns")
    if kind == "datetime":
        values = pd.Timestamp("2020-01-01") + values
    with pytest.raises(DataValidationError, match=rf"column 'load_kw' is not numeric: a {kind}64\[ns\] column"):
        validate_series(small.series.assign(load_kw=values))
