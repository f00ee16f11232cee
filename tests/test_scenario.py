"""Scenario configuration: presets, YAML, validation errors that name the field and the range."""

import pytest
import yaml

from sb3_microgrid import MicrogridEnv, Scenario, ScenarioError, load_scenario


def test_presets_load_and_differ_in_tariff():
    campus, tod = load_scenario("campus"), load_scenario("campus_tod")
    assert campus == load_scenario() == load_scenario(None)
    assert campus.grid.tariff == "exchange" and tod.grid.tariff == "tod"
    assert tod.battery == campus.battery  # `base: campus` carries everything else over


@pytest.mark.parametrize(
    "raw, field, allowed",
    [
        ({"battery": {"capacity_kwh": -5.0}}, "BatteryConfig.capacity_kwh", "(0"),
        ({"battery": {"soc_min": 0.9, "soc_max": 0.2}}, "soc_min", "soc_max"),
        ({"battery": {"charge_efficiency": 1.5}}, "BatteryConfig.charge_efficiency", "1]"),
        ({"grid": {"peak_multiplier": 1.1}}, "GridConfig.peak_multiplier", "[1.2"),
        ({"grid": {"solar_multiplier": 0.9}}, "GridConfig.solar_multiplier", "0.8]"),
        ({"grid": {"tariff": "flat"}}, "GridConfig.tariff", "'exchange', 'tod'"),
        ({"grid": {"peak_hours": [20, 18]}}, "GridConfig.peak_hours", "start < end"),
        ({"difficulty": {"renewable_noise": -0.1}}, "Difficulty.renewable_noise", "[0"),
        ({"step_hours": 0.3}, "Scenario.step_hours", "integer"),
        ({"ev": {"n_ports": 2.5}}, "EVConfig.n_ports", "integer"),
        ({"battery": {"capacity_kwh": float("nan")}}, "BatteryConfig.capacity_kwh", "allowed range"),
        ({"battery": {"capacity_kwh": "big"}}, "BatteryConfig.capacity_kwh", "number"),
        ({"battery": {"self_discharge_per_hour": 0.01, "charge_power_kw": 1.0}}, "charge_power_kw", ">="),
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
    with pytest.raises(ScenarioError, match="BatteryConfig.capacity_kwh"):
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
    with pytest.raises(ScenarioError, match=r"RewardConfig.exogenous_baseline must be true or false"):
        load_scenario({"reward": {"exogenous_baseline": value}})
