"""Scenario configuration: presets, YAML, validation errors that name the field and the range."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from sb3_microgrid import MicrogridEnv, Scenario, ScenarioError, load_scenario
from sb3_microgrid.data import generate
from sb3_microgrid.envs.site import scenario_data

DEGRADATION = "battery.degradation"


def test_presets_load_and_differ_in_tariff():
    campus, tod = load_scenario("campus"), load_scenario("campus_tod")
    assert campus == load_scenario() == load_scenario(None)
    assert campus.grid.tariff == "exchange" and tod.grid.tariff == "tod"
    assert tod.battery == campus.battery  # `base: campus` carries everything else over


@pytest.mark.parametrize(
    "raw, field, allowed",
    [
        ({"battery": {"capacity_kwh": -5.0}}, "battery.capacity_kwh", "(0"),
        ({"battery": {"soc_min": 0.9, "soc_max": 0.2}}, "battery.soc_min", "soc_max"),
        ({"battery": {"charge_efficiency": 1.5}}, "battery.charge_efficiency", "1]"),
        ({"grid": {"peak_multiplier": 1.1}}, "grid.peak_multiplier", "[1.2"),
        ({"grid": {"solar_multiplier": 0.9}}, "grid.solar_multiplier", "0.8]"),
        ({"grid": {"tariff": "flat"}}, "grid.tariff", "'exchange', 'tod'"),
        ({"grid": {"peak_hours": [20, 18]}}, "grid.peak_hours", "start < end"),
        ({"difficulty": {"renewable_noise": -0.1}}, "difficulty.renewable_noise", "[0"),
        ({"step_hours": 0.3}, "step_hours", "integer in [1, 12]"),
        ({"ev": {"n_ports": 2.5}}, "ev.n_ports", "integer in [0, 1000]"),
        ({"battery": {"capacity_kwh": float("nan")}}, "battery.capacity_kwh", "allowed range"),
        ({"battery": {"capacity_kwh": float("inf")}}, "battery.capacity_kwh", "allowed range"),
        ({"battery": {"capacity_kwh": "big"}}, "battery.capacity_kwh", "number"),
        ({"battery": {"self_discharge_per_hour": 0.01, "charge_power_kw": 1.0}}, "charge_power_kw", ">="),
        # 0.001 h took 17.7 GB and 75 s to build
        ({"step_hours": 0.001}, "step_hours", "integer in [1, 12]"),
        ({"step_hours": 2.0}, "step_hours", "(0, 1]"),
        # whole numbers only: these passed validation and crashed later
        ({"data": {"years": 2.5}}, "data.years", "integer in [1, 100]"),
        ({"data": {"start_year": 2015.5}}, "data.start_year", "integer in [1900, 2200]"),
        ({"data": {"seed": 1.5}}, "data.seed", "integer in [0,"),
        ({"horizon_days": 1.0}, "horizon_days", "integer in [1, 3650]"),
        ({"forecast": {"history_steps": 4.0}}, "forecast.history_steps", "integer in [0, 1000]"),
        ({"difficulty": {"ev_count": 2.5}}, "difficulty.ev_count", "integer in [0, 10000]"),
        # malformed hour windows gave a plain ValueError or TypeError
        ({"grid": {"peak_hours": [17]}}, "grid.peak_hours", "0 <= start < end <= 24"),
        ({"grid": {"peak_hours": "17-23"}}, "grid.peak_hours", "0 <= start < end <= 24"),
        ({"grid": {"solar_hours": [9, "noon"]}}, "grid.solar_hours", "whole hours"),
        ({"grid": {"solar_hours": [9.5, 17]}}, "grid.solar_hours", "whole hours"),
        # degradation: 1e3 divided by zero at the first midnight, 1e300 made health rise
        ({"battery": {"degradation": {"k_sigma": 1e3}}}, f"{DEGRADATION}.k_sigma", "[0, 5]"),
        ({"battery": {"degradation": {"k_sigma": -1.0}}}, f"{DEGRADATION}.k_sigma", "[0, 5]"),
        ({"battery": {"degradation": {"k_delta2": 1e300}}}, f"{DEGRADATION}.k_delta2", "[-5, 0]"),
        ({"battery": {"degradation": {"k_delta1": 0.0}}}, f"{DEGRADATION}.k_delta1", "(0, inf]"),
        ({"battery": {"degradation": {"k_delta3": -1.5e5}}}, f"{DEGRADATION}.k_delta1 + k_delta3", "> 0"),
        ({"battery": {"degradation": {"k_time": 1e-3}}}, f"{DEGRADATION}.k_time", "[0, 1e-08]"),
        ({"battery": {"degradation": {"alpha_sei": 0.9}}}, f"{DEGRADATION}.alpha_sei", "[0, 0.5]"),
        ({"battery": {"degradation": {"beta_sei": 0.5}}}, f"{DEGRADATION}.beta_sei", "[1, 10000.0]"),
        # each value in range, together enough stress in a long episode to round the state of health to 0
        (
            {"horizon_days": 3650, "battery": {"degradation": {"k_sigma": 5.0, "sigma_ref": 0.0, "k_time": 1e-8}}},
            DEGRADATION,
            "allowed range [0, 700]",
        ),
        ({"base": 5}, "base", "preset name"),
        ({"base": "no_such_file.yaml"}, "base", "no such preset"),
        ({"data": {"series_path": 3}}, "data.series_path", "file path"),
        ({"data": {"sessions_path": "s.csv"}}, "data.sessions_path", "needs data.series_path"),
    ],
)
def test_invalid_values_name_field_and_range(raw, field, allowed):
    with pytest.raises(ScenarioError) as err:
        load_scenario(raw)
    assert field in str(err.value) and allowed in str(err.value)


def test_unknown_keys_are_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"base": "campus", "battery": {"capacity": 100}}))
    with pytest.raises(ScenarioError, match=r"unknown key\(s\) \['capacity'\] in scenario.battery"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match="unknown scenario"):
        load_scenario("no_such_preset")


def test_yaml_round_trip_and_replace(tmp_path):
    scenario = load_scenario("campus_tod").replace(battery__capacity_kwh=2000.0, horizon_days=2)
    assert scenario.battery.capacity_kwh == 2000.0 and scenario.horizon_days == 2
    path = tmp_path / "mine.yaml"
    scenario.to_yaml(path)
    assert Scenario.from_yaml(path) == scenario
    with pytest.raises(ScenarioError, match="battery.capacity_kwh"):
        scenario.replace(battery__capacity_kwh=0.0)


def test_wear_cost_formula():
    battery = load_scenario().battery
    expected = battery.price_inr_per_kwh / (2 * battery.cycle_life * battery.cycle_life_dod)
    assert battery.wear_cost_inr_per_kwh == pytest.approx(expected)
    assert battery.wear_cost_inr_per_kwh == pytest.approx(1.5625)


def test_env_accepts_yaml_path(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text("base: campus\nname: small\nbattery:\n  capacity_kwh: 300\n")
    env = MicrogridEnv(scenario=str(path))
    assert env.scenario.name == "small" and env.scenario.battery.capacity_kwh == 300.0


def test_mapping_with_base_changes_only_what_it_names():
    changed = load_scenario({"base": "campus_tod", "reward": {"exogenous_baseline": True}})
    tod = load_scenario("campus_tod")
    assert changed.reward.exogenous_baseline and not tod.reward.exogenous_baseline
    assert changed.grid == tod.grid


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_switches_must_be_booleans(value):
    with pytest.raises(ScenarioError, match=r"reward.exogenous_baseline must be true or false"):
        load_scenario({"reward": {"exogenous_baseline": value}})


def test_edges_of_the_ranges_are_valid():
    assert load_scenario({"ev": {"n_ports": 0}}).ev.n_ports == 0  # no EV charging
    assert load_scenario({"step_hours": 1 / 12, "horizon_days": 3650}).steps_per_day == 288
    extreme = {"k_sigma": 5.0, "sigma_ref": 0.0, "k_time": 1e-8, "k_delta2": -5.0, "alpha_sei": 0.5, "beta_sei": 1.0}
    assert load_scenario({"battery": {"degradation": extreme}}).battery.degradation.k_sigma == 5.0


def test_base_cycle_is_named(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    (tmp_path / "self.yaml").write_text("base: self.yaml\n")
    with pytest.raises(ScenarioError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_scenario(tmp_path / "a.yaml")
    with pytest.raises(ScenarioError, match=r"cycle: .*self\.yaml -> .*self\.yaml"):
        load_scenario(tmp_path / "self.yaml")


def test_unreadable_yaml_is_a_scenario_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("battery: [capacity_kwh: 1\n")
    with pytest.raises(ScenarioError, match="broken.yaml: cannot read"):
        load_scenario(path)


def test_data_paths_resolve_against_the_scenario_file_like_base(tmp_path, monkeypatch):
    """Relative data paths in a file resolved against the working folder and silently loaded another s.csv."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "base.yaml").write_text("data:\n  series_path: s.csv\n  sessions_path: sub/e.csv\n")
    (tmp_path / "derived.yaml").write_text("base: site/base.yaml\nname: derived\n")
    monkeypatch.chdir(tmp_path)
    for path in (site / "base.yaml", "derived.yaml"):
        data = load_scenario(path).data
        assert Path(data.series_path) == site / "s.csv" and Path(data.sessions_path) == site / "sub" / "e.csv"
    assert load_scenario({"data": {"series_path": "s.csv"}}).data.series_path == str(tmp_path / "s.csv")


def _write_series(path: Path, days: int, load_kw: float) -> None:
    generate(years=1, n_ports=2).series.iloc[: days * 24].assign(load_kw=load_kw).to_csv(path)


def test_data_cache_rereads_a_changed_file(tmp_path):
    """The cache was keyed by path: a file rewritten in the same process was not read again."""
    path = tmp_path / "s.csv"
    scenario = load_scenario({"data": {"series_path": str(path)}, "ev": {"n_ports": 2}})
    _write_series(path, 10, 100.0)
    assert (scenario_data(scenario).series["load_kw"] == 100.0).all()
    _write_series(path, 10, 200.0)  # same size, same path
    assert (scenario_data(scenario).series["load_kw"] == 200.0).all()


def test_one_day_series_is_a_named_error_not_nan_loads(tmp_path):
    """The load scale was the mean of an empty training split: NaN in every load observation."""
    path = tmp_path / "one_day.csv"
    _write_series(path, 1, 300.0)
    scenario = {"data": {"series_path": str(path)}, "ev": {"n_ports": 2}}
    with pytest.raises(ValueError, match="split 'train' has no days: the data hold 1 days"):
        MicrogridEnv(scenario=scenario, split="all")
    _write_series(path, 10, 300.0)
    obs, _ = MicrogridEnv(scenario=scenario, split="all").reset(seed=0)
    assert np.isfinite(obs).all()
