"""The family of sites (sb3_microgrid.sites) and the load kinds and climates of the generator."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from sb3_microgrid import sites
from sb3_microgrid.data import CLIMATE_PARAMS, LOAD_PROFILE_PARAMS, MicrogridData, SiteProfile, generate_series, load_series, site_profile
from sb3_microgrid.data.io import PV_MEAN_HOUR_RANGE, _check_pv_hours
from sb3_microgrid.envs.microgrid_env import MicrogridEnv
from sb3_microgrid.envs.site import _load, scenario_data
from sb3_microgrid.evaluation import evaluate
from sb3_microgrid.scenario import CLIMATES, LOAD_PROFILES, Scenario, ScenarioError, load_scenario
from sb3_microgrid.sites import (
    HELD_OUT_DATA_SEEDS,
    SITE_PRESETS,
    TRAINING_DATA_SEEDS,
    HeldOutSiteError,
    check_not_held_out,
    held_out_sites,
    is_held_out,
    preset_site,
    sample_sites,
    training_sites,
)

# sha256 of the default campus data (ten years of series and sessions), computed before load kinds and climates
# were added to the generator: the default data must stay bit for bit what every result was measured on.
CAMPUS_DATA_SHA256 = "ab1039ae44a196c712e115492d0ddcbec86a30a9c72b49dd530f898e0bed3d2d"
SAMPLED = sample_sites(4, 0)


def _digest(data: MicrogridData) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(data.series.to_numpy(dtype=np.float64)).tobytes())
    h.update(data.series.index.asi8.tobytes())
    for column in data.sessions.columns:
        h.update(np.ascontiguousarray(data.sessions[column].to_numpy()).view(np.uint8).tobytes())
    return h.hexdigest()


def _fresh_data(scenario: Scenario) -> MicrogridData:
    """The scenario's data generated anew, not the process cache's copy."""
    _load.cache_clear()
    return scenario_data(scenario)


def test_default_campus_data_unchanged() -> None:
    assert site_profile() == SiteProfile()
    assert _digest(_fresh_data(load_scenario("campus"))) == CAMPUS_DATA_SHA256


def test_preset_tables_match_the_scenario_names() -> None:
    assert tuple(LOAD_PROFILE_PARAMS) == LOAD_PROFILES and tuple(CLIMATE_PARAMS) == CLIMATES
    # campus and pune are SiteProfile's defaults; the two kinds of preset set disjoint fields
    assert LOAD_PROFILE_PARAMS["campus"] == {} and CLIMATE_PARAMS["pune"] == {}
    load_fields = set().union(*LOAD_PROFILE_PARAMS.values())
    assert not load_fields & set().union(*CLIMATE_PARAMS.values())
    with pytest.raises(ValueError, match="load_profile 'mall'"):
        site_profile("mall")
    with pytest.raises(ScenarioError, match="data.climate = 'mumbai'"):
        load_scenario({"base": "campus", "data": {"climate": "mumbai"}})


def _day_ratios(series: pd.DataFrame) -> dict[str, float]:
    load, hour = series["load_kw"], series.index.hour
    dow, holiday = series.index.day_of_week, series["is_holiday"] == 1
    workday = (dow < 5) & ~holiday
    return {
        "night_day": load[hour < 5].mean() / load[(hour >= 10) & (hour < 17)].mean(),
        "sunday_workday": load[dow == 6].mean() / load[workday].mean(),
        "saturday_workday": load[(dow == 5) & ~holiday].mean() / load[workday].mean(),
    }


def test_load_kinds_differ_in_shape_as_documented() -> None:
    ratios = {kind: _day_ratios(generate_series(years=2, seed=0, site=site_profile(kind))) for kind in LOAD_PROFILES}
    # hospital: flat, 24/7
    assert ratios["hospital"]["night_day"] > 0.7 and ratios["hospital"]["sunday_workday"] > 0.9
    # office: weekday daytime, low nights and weekends
    assert ratios["office"]["night_day"] < 0.3 and ratios["office"]["sunday_workday"] < 0.45
    assert ratios["office"]["sunday_workday"] < ratios["campus"]["sunday_workday"] - 0.2
    # light industry: two shifts six days a week, Sunday off
    assert ratios["industry"]["night_day"] < 0.35
    assert ratios["industry"]["saturday_workday"] > 0.95 and ratios["industry"]["sunday_workday"] < 0.45
    # the campus sits between office and hospital at night
    assert ratios["office"]["night_day"] < ratios["campus"]["night_day"] < ratios["hospital"]["night_day"]


def test_climates_set_capacity_factor_and_solar_noon() -> None:
    noon = {}
    for climate in CLIMATES:
        series = generate_series(years=1, seed=0, site=site_profile(climate=climate))
        assert series["pv_cf"].mean() == pytest.approx(site_profile(climate=climate).pv_capacity_factor, rel=0.005)
        noon[climate] = series["pv_cf"].groupby(series.index.hour).mean().idxmax()
    assert noon["kolkata"] < noon["pune"]  # 88.4 deg E against 73.9 deg E


def test_site_profile_fields_override_the_presets() -> None:
    """An explicit field that a preset also sets raised TypeError: replace() got multiple values for it."""
    assert site_profile("hospital", "pune", ev_arrival_mean_h=7.0).ev_arrival_mean_h == 7.0
    delhi = site_profile("industry", "delhi", pv_capacity_factor=0.2, ev_stay_median_h=6.0)
    assert (delhi.pv_capacity_factor, delhi.ev_stay_median_h, delhi.latitude_deg) == (0.2, 6.0, 28.6)


def test_emission_factor_is_national_whatever_the_climate() -> None:
    """The 'national' factor followed the site's own sun and clearness: Kolkata's differed from Pune's by 0.067."""
    pune = generate_series(years=1, start_year=2024, seed=0, site=site_profile("campus", "pune"))
    for climate in CLIMATES[1:]:
        other = generate_series(years=1, start_year=2024, seed=0, site=site_profile("office", climate))
        np.testing.assert_array_equal(other["emission_factor"], pune["emission_factor"])
        assert not np.array_equal(other["pv_cf"], pune["pv_cf"])  # the local PV still follows the climate


@pytest.mark.parametrize("climate", CLIMATES)
def test_every_shipped_site_written_out_loads_back(climate: str, tmp_path: Path) -> None:
    """The check for naive UTC stamps (PV centred outside [9.5, 15] h) passes every load kind in every climate, and
    every single day of ten years there."""
    for kind in LOAD_PROFILES:
        series = generate_series(years=1, start_year=2023, seed=0, site=site_profile(kind, climate))
        series.to_csv(tmp_path / f"{kind}.csv")
        pd.testing.assert_frame_equal(load_series(tmp_path / f"{kind}.csv"), series, check_freq=False)
    series = generate_series(years=10, seed=1, site=site_profile("campus", climate))
    pv = series["pv_cf"].to_numpy().reshape(-1, 24)
    hours = series.index[:24]
    for day in pv:
        _check_pv_hours(hours, day, None)
    centre = pv @ (np.arange(24) + 0.5) / pv.sum(axis=1)
    low, high = PV_MEAN_HOUR_RANGE
    assert low + 1.5 < centre.min() and centre.max() < high - 1.5  # well inside the range: 11.1-13.0 h


def test_scenario_data_follow_the_site() -> None:
    scenario = preset_site("clinic_200kw")
    series = _fresh_data(scenario).series
    assert series["load_kw"].mean() == pytest.approx(200.0)
    assert series["pv_cf"].mean() == pytest.approx(CLIMATE_PARAMS["chennai"]["pv_capacity_factor"], rel=0.005)
    assert _day_ratios(series)["night_day"] > 0.7  # a hospital


def test_sites_are_deterministic_from_their_seed() -> None:
    assert sample_sites(3, 7) == sample_sites(3, 7)
    assert sample_sites(5, 7)[:3] == sample_sites(3, 7)
    assert all(a != b for a, b in zip(sample_sites(3, 7), sample_sites(3, 8)))
    assert len({s.data.seed for s in sample_sites(50, 7)}) == 50  # each site its own data seed
    site = sample_sites(1, 7)[0]
    first, again = _digest(_fresh_data(site)), _digest(_fresh_data(sample_sites(1, 7)[0]))
    assert first == again
    assert _digest(_fresh_data(site.replace(data__seed=site.data.seed + 1))) != first
    assert _digest(_fresh_data(sample_sites(1, 8)[0])) != first


def test_sample_seeds_beyond_32_bits_are_refused() -> None:
    # SeedSequence([seed, i]) reads a seed >= 2**32 as two words: seed 7 + 2**32 * 3 drew site 3 of seed 7 again
    assert sample_sites(1, 2**32 - 1)[0] != sample_sites(1, 0)[0]
    for seed in (2**32, 7 + 2**32 * 3):
        with pytest.raises(ScenarioError, match=re.escape(f"sample_sites seed = {seed} is outside the allowed range [0, 4294967295]")):
            sample_sites(1, seed)
        with pytest.raises(ScenarioError, match="sample_sites seed"):
            training_sites(1, seed)


def test_every_site_has_the_same_splits() -> None:
    for scenario in (SAMPLED[0], preset_site("factory")):
        days = scenario_data(scenario).days
        assert set(days("train").year) == set(range(2015, 2023)), scenario.name
        assert set(days("validation").year) == {2023} and set(days("test").year) == {2024}, scenario.name


@pytest.mark.parametrize("scenario", [*held_out_sites(), *SAMPLED], ids=lambda s: s.name)
def test_gymnasium_and_sb3_check_env(scenario: Scenario) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded observation boxes and render modes: warnings, not failures
        gym_check_env(MicrogridEnv(scenario=scenario))
        sb3_check_env(MicrogridEnv(scenario=scenario))


@pytest.mark.parametrize("name", ["hospital_no_battery", "office_no_chargers", "workshop_bare"])
def test_site_without_battery_or_chargers_runs_without_violations(name: str) -> None:
    scenario = preset_site(name)
    assert scenario.battery.charge_power_kw == 0 or scenario.ev.n_ports == 0
    result = evaluate("rule", scenario=scenario, split="test", days=3)
    assert result.summary["days"] == 3
    assert result.summary["safety_violations"] == 0
    assert result.days["unserved_kwh"].sum() == 0  # the contracted import covers the peak
    if scenario.battery.charge_power_kw == 0:
        assert result.summary["battery_fade_per_day"] == 0  # the placeholder does not age


def test_import_limit_covers_the_peak_load() -> None:
    for scenario in [*held_out_sites(), *SAMPLED]:
        peak = _fresh_data(scenario).series["load_kw"].max()
        ev_kw = scenario.ev.n_ports * scenario.ev.port_power_kw
        assert peak + ev_kw < scenario.grid.import_limit_kw, scenario.name
        assert peak <= sites.PEAK_TO_MEAN[scenario.data.load_profile] * scenario.data.load_mean_kw, scenario.name


@pytest.mark.parametrize("scenario", [held_out_sites()[0], held_out_sites()[4], *SAMPLED[:2]], ids=lambda s: s.name)
def test_site_yaml_round_trip(scenario: Scenario, tmp_path: Path) -> None:
    path = tmp_path / f"{scenario.name}.yaml"
    scenario.to_yaml(path)
    assert Scenario.from_yaml(path) == scenario
    assert load_scenario(str(path)) == scenario


def test_held_out_sites_never_appear_in_training() -> None:
    held_out = held_out_sites()
    assert len(held_out) >= 8
    held_out_names = {s.name for s in held_out}
    assert all(s.data.seed in HELD_OUT_DATA_SEEDS for s in held_out)
    assert len({s.data.seed for s in held_out}) == len(held_out)
    assert TRAINING_DATA_SEEDS.stop <= HELD_OUT_DATA_SEEDS.start  # disjoint seed ranges
    for seed in range(100):
        for scenario in training_sites(10, seed):
            assert scenario.data.seed in TRAINING_DATA_SEEDS and scenario.name not in held_out_names
            assert not is_held_out(scenario)


def test_guard_refuses_held_out_sites() -> None:
    check_not_held_out(training_sites(3, 0))  # no error
    clinic = preset_site("clinic_200kw")
    with pytest.raises(HeldOutSiteError, match="'clinic_200kw'"):
        check_not_held_out([*training_sites(3, 0), clinic])
    with pytest.raises(HeldOutSiteError, match="renamed"):  # its data are held out, whatever its name
        check_not_held_out([clinic.replace(name="renamed")])
    with pytest.raises(HeldOutSiteError, match="'factory'"):  # a preset's name stays held out with other data
        check_not_held_out([preset_site("factory").replace(data__seed=5)])
    with pytest.raises(HeldOutSiteError):
        check_not_held_out(iter(held_out_sites()))


def test_presets_lie_in_the_sampling_ranges_and_specs_are_checked() -> None:
    # SiteSpec checks every field against the family's ranges, so constructing the presets is the check
    assert {spec.name for spec in SITE_PRESETS.values()} == set(SITE_PRESETS)
    factory = SITE_PRESETS["factory"]
    with pytest.raises(ScenarioError, match="battery_hours = 0.5; allowed: 0 \\(none\\) or \\[1.0, 6.0\\]"):
        dataclasses.replace(factory, battery_hours=0.5)
    with pytest.raises(ScenarioError, match="load_mean_kw = 5000.0 is outside"):
        dataclasses.replace(factory, load_mean_kw=5000.0)
    with pytest.raises(ScenarioError, match="tariff = 'flat'"):
        dataclasses.replace(factory, tariff="flat")
    with pytest.raises(ScenarioError, match="unknown site 'mall'"):
        preset_site("mall")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("data_seed", -1, "site 'factory': data_seed = -1 is outside the allowed range [0, 4294967295]"),
        ("data_seed", 2**32, "site 'factory': data_seed = 4294967296 is outside the allowed range [0, 4294967295]"),
        ("data_seed", 7.5, "site 'factory': data_seed must be an integer in [0, 4294967295], got 7.5"),
        ("data_seed", True, "site 'factory': data_seed must be an integer in [0, 4294967295], got True"),
        ("data_seed", "7", "site 'factory': data_seed must be an integer in [0, 4294967295], got '7'"),
        ("name", "", "site name must be a non-empty string, got ''"),
        ("name", None, "site name must be a non-empty string, got None"),
    ],
)
def test_spec_refuses_a_bad_name_or_data_seed_naming_the_field(field: str, value: object, message: str) -> None:
    # refused when the spec is made, as every other field is, not later by the scenario under another name (data.seed)
    with pytest.raises(ScenarioError, match=re.escape(message)):
        dataclasses.replace(SITE_PRESETS["factory"], **{field: value})


def test_sample_covers_the_family() -> None:
    sample = sample_sites(300, 1)
    assert {s.data.load_profile for s in sample} == set(LOAD_PROFILES)
    assert {s.data.climate for s in sample} == set(CLIMATES)
    assert {s.grid.tariff for s in sample} == {"exchange", "tod"}
    assert {s.ev.port_power_kw for s in sample} == set(sites.PORT_POWERS_KW)
    assert any(s.battery.charge_power_kw == 0 for s in sample) and any(s.ev.n_ports == 0 for s in sample)
    assert any(s.wind.rated_kw == 0 for s in sample) and any(s.grid.export_limit_kw == 0 for s in sample)
    loads = [s.data.load_mean_kw for s in sample]
    assert min(loads) < 200 and max(loads) > 1500
    # the reward scale follows the load, so a clinic's and a campus's rewards have the same size
    assert all(s.reward.scale_inr == pytest.approx(sites.REWARD_SCALE_INR_PER_KW * s.data.load_mean_kw, abs=0.05) for s in sample)
