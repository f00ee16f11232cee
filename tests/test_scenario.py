"""Scenario configuration: presets, YAML, validation errors that name the field and the range."""

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from sb3_microgrid import MicrogridEnv, Scenario, ScenarioError, load_scenario, sites
from sb3_microgrid.data import DataValidationError, generate
from sb3_microgrid.envs.episode import noise_shape
from sb3_microgrid.envs.site import scenario_data
from sb3_microgrid.scenario import MAX_EPISODE_BYTES, PRESETS

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
        ({"battery": {"degradation": {"k_delta1": 0.0}}}, f"{DEGRADATION}.k_delta1", "(0, inf)"),
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
        # a zero ToD rate made the price observation 0 / 0 = NaN
        ({"base": "campus_tod", "grid": {"normal_rate_inr_per_kwh": 0.0, "export_price_inr_per_kwh": 0.0}}, "grid.normal_rate_inr_per_kwh (tariff 'tod')", "(0, 100]"),
        # in range before, yet infinite wear cost, reward or demand cost
        ({"battery": {"cycle_life": 1.0, "cycle_life_dod": 1e-306}}, "battery.cycle_life_dod", "[0.05, 1]"),
        ({"battery": {"price_inr_per_kwh": 1e308}}, "battery.price_inr_per_kwh", "[0, 1000000.0]"),
        ({"battery": {"cycle_life": 1e300}}, "battery.cycle_life", "[1, 100000.0]"),
        ({"battery": {"charge_efficiency": 1e-306, "self_discharge_per_hour": 0.0}}, "battery.charge_efficiency", "[0.5, 1]"),
        ({"grid": {"power_factor": 1e-306}}, "grid.power_factor", "[0.5, 1]"),
        # in range before, yet the day-peak, load and site-context observations divided by them became infinite
        ({"grid": {"import_limit_kw": 1e-300}}, "grid.import_limit_kw", "allowed range [1, 10000000.0]"),
        ({"grid": {"import_limit_kw": 0.5}}, "grid.import_limit_kw", "allowed range [1, 10000000.0]"),
        ({"data": {"load_mean_kw": 1e-200}}, "data.load_mean_kw", "allowed range [1, 10000000.0]"),
        ({"reward": {"scale_inr": 1e-305}}, "reward.scale_inr", "[1, 1000000000.0]"),
        # integers beyond the largest float raised OverflowError
        ({"battery": {"capacity_kwh": 10**400}}, "battery.capacity_kwh", "allowed range (0, 10000000.0]"),
        ({"battery": {"degradation": {"k_delta3": -(10**400)}}}, f"{DEGRADATION}.k_delta3", "allowed range [-1.79"),
        # a valid volatility stretched the ToD rates below the export price, and hoarding for export paid
        (
            {"base": "campus_tod", "grid": {"export_price_inr_per_kwh": 6.8}, "difficulty": {"price_volatility": 2.0}},
            "grid.export_price_inr_per_kwh (6.8) must not exceed the lowest possible import price (5.24167) under tariff 'tod' "
            "at difficulty.price_volatility = 2.0",
            "allowed range [0, 5.24167], or difficulty.price_volatility in [0, 1]",
        ),
        # about 79 GiB of forecast noise and errors at every reset
        (
            {"step_hours": 1 / 12, "horizon_days": 3650, "forecast": {"forecast_steps": 1000, "history_steps": 1000}},
            "horizon_days = 3650 at step_hours = 0.0833",
            "forecast.history_steps = 1000, forecast.forecast_steps = 1000 and ev.n_ports = 12 needs 78.6 GiB of episode "
            "arrays per microgrid at reset; allowed at most 4 GiB",
        ),
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


def test_observations_stay_finite_at_the_one_kw_floors():
    """1 kW is the smallest import limit and synthetic mean load allowed: every observation stays finite there."""
    scenario = {"grid": {"import_limit_kw": 1.0}, "data": {"load_mean_kw": 1.0, "years": 3}, "observation": {"site_context": True}}
    env = MicrogridEnv(scenario, seed=0)
    obs, _ = env.reset(seed=0)
    assert np.isfinite(obs).all()
    for _ in range(24):
        obs, reward, *_ = env.step(np.ones(env.action_space.shape))
        assert np.isfinite(obs).all() and np.isfinite(reward)


def test_difficulty_soc_bounds_are_checked_when_the_scenario_loads():
    """docs/environment.md said 'only at reset'; the scenario refuses them at load (as the docs now say)."""
    with pytest.raises(ScenarioError, match=r"difficulty/battery soc_min \(0.95\) must be < soc_max \(0.9\)"):
        load_scenario({"difficulty": {"soc_min": 0.95}})
    docs = (Path(__file__).parents[1] / "docs" / "environment.md").read_text(encoding="utf-8")
    assert "checked against the battery's when the scenario is loaded" in docs and "only at reset" not in docs


def test_documented_kw_floors_match_the_scenario():
    """The parameter table of docs/environment.md gives the 1 kW floors of import_limit_kw and load_mean_kw."""
    table = (Path(__file__).parents[1] / "docs" / "environment.md").read_text(encoding="utf-8")
    assert "| `grid.import_limit_kw`, `export_limit_kw` | 1200, 300 | [1, 1e7], [0, 1e7] |" in table
    assert "[1900, 2200], [1, 1e7] | synthetic data; mean load (kW) |" in table


def test_campus_tod_keeps_its_published_rate_and_says_it_is_applied_per_kwh():
    """8.5 is Delhi's Rs/kVAh figure billed per kWh (about 5 % below the kVAh bill at pf 0.95); every published
    campus_tod result depends on it, so the number stays and the comment says what it is."""
    tod = load_scenario("campus_tod").grid
    assert tod.normal_rate_inr_per_kwh == 8.5 and tod.power_factor == 0.95
    text = (Path(__file__).parents[1] / "sb3_microgrid" / "scenarios" / "campus_tod.yaml").read_text(encoding="utf-8")
    assert "applied per\n  # kWh" in text and "8.5 / 0.95 = 8.95" in text


def test_relative_data_path_set_in_code_is_absolute_and_round_trips(tmp_path, monkeypatch):
    """replace(data__series_path='s.csv') kept the path relative: to_yaml wrote it so, and the reloaded scenario
    read sub/s.csv, next to the YAML file, instead of the working folder's s.csv."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    scenario = load_scenario("campus").replace(data__series_path="s.csv", data__sessions_path="e.csv")
    assert (scenario.data.series_path, scenario.data.sessions_path) == (str(tmp_path / "s.csv"), str(tmp_path / "e.csv"))
    scenario.to_yaml(tmp_path / "sub" / "s.yaml")
    monkeypatch.chdir(tmp_path / "sub")  # the folder the reload happens in does not matter
    assert load_scenario(tmp_path / "sub" / "s.yaml") == scenario
    assert load_scenario("s.yaml").data.series_path == str(tmp_path / "s.csv")


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
    path.write_text("[" * 20_000 + "]" * 20_000)  # nested beyond Python's recursion limit
    with pytest.raises(ScenarioError, match="broken.yaml: cannot read the scenario file .*recursion"):
        load_scenario(path)


@pytest.mark.parametrize(("text", "named"), [
    ("grid: {import_limit_kw: }", "grid.import_limit_kw must be a number in [1, 10000000.0], got None"),
    ("difficulty: {price_volatility: }", "difficulty.price_volatility must be a number in [0, 3], got None"),
    ("data: {seed: }", "data.seed must be an integer in [0, 4294967295], got None"),
    ("battery: {capacity_kwh: }", "battery.capacity_kwh must be a number"),
])  # fmt: skip
def test_a_blank_value_is_refused_where_the_field_has_no_none(tmp_path, text, named):
    """A key left blank reads as None: it passed every range check, so an import limit of None switched the limit
    off, a None volatility gave NaN rewards and a None data seed other data in every process."""
    path = tmp_path / "s.yaml"
    path.write_text(f"base: campus\n{text}\n")
    with pytest.raises(ScenarioError, match=re.escape(named)):
        load_scenario(path)
    env = MicrogridEnv(scenario="campus")
    with pytest.raises(ScenarioError, match=re.escape("difficulty.renewable_noise must be a number")):
        env.set_difficulty(renewable_noise=None)
    path.write_text("base: campus\ndifficulty: {ev_count: }\n")  # None where None means all sessions
    assert load_scenario(path).difficulty.ev_count is None


def test_a_key_repeated_in_a_scenario_file_is_refused_naming_it(tmp_path):
    """PyYAML keeps the last of a repeated key without a word: 3000 kWh here."""
    path = tmp_path / "s.yaml"
    path.write_text("base: campus\nbattery: {capacity_kwh: 1500, capacity_kwh: 3000}\n")
    with pytest.raises(ScenarioError, match=r"(?s)s.yaml: cannot read the scenario file .*found the key 'capacity_kwh' twice.*line 2, column 31"):
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


@pytest.mark.parametrize("name", [{"a": 1}, 42, None, "", " clinic_200kw", "clinic_200kw "])
def test_name_must_be_a_plain_string(name):
    """Any YAML value was taken as the name; a mapping failed later in sites.py, a padded one passed the held-out guard."""
    with pytest.raises(ScenarioError, match="name must be a non-empty string without surrounding spaces"):
        load_scenario({"name": name})


def test_huge_yaml_integer_names_the_field(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("battery:\n  capacity_kwh: 1" + "0" * 400 + "\n")
    with pytest.raises(ScenarioError, match=r"battery.capacity_kwh = 10+ is outside the allowed range \(0, 10000000.0\]"):
        load_scenario(path)
    path.write_text("battery:\n  capacity_kwh: 1" + "0" * 5000 + "\n")  # beyond Python's int parsing limit
    with pytest.raises(ScenarioError, match="big.yaml: cannot read the scenario file"):
        load_scenario(path)


def test_costs_stay_finite_at_the_extremes_of_the_ranges():
    """The dearest wear, weakest power factor, lowest efficiencies and smallest reward scale allowed."""
    extreme = {
        "battery": {"price_inr_per_kwh": 1e6, "cycle_life": 1.0, "cycle_life_dod": 0.05, "charge_efficiency": 0.5, "discharge_efficiency": 0.5},
        "grid": {"power_factor": 0.5},
        "reward": {"scale_inr": 1.0},
    }
    env = MicrogridEnv(load_scenario(extreme), seed=0)
    assert env.scenario.battery.wear_cost_inr_per_kwh == 1e7
    obs, _ = env.reset(seed=0)
    for t in range(24):
        obs, reward, _, _, info = env.step(np.r_[1.0 if t < 3 else -1.0, np.ones(12)])
        assert np.isfinite(obs).all() and np.isfinite(reward) and np.isfinite(info["cost"])


def test_every_preset_and_site_loads_far_inside_the_new_bounds():
    """Published figures depend on these: the bounds must admit each of them with margin."""
    scenarios = [load_scenario(p) for p in PRESETS] + sites.held_out_sites() + sites.sample_sites(200, 0)
    for s in scenarios:
        assert s.grid.power_factor >= 0.9 and s.battery.cycle_life_dod >= 0.5 and s.reward.scale_inr >= 300
        assert s.episode_bytes < MAX_EPISODE_BYTES / 1000
        s.grid.check_export_price(1.0)


def test_tod_volatility_is_checked_when_set():
    """A volatility that takes a ToD rate below the export price is refused at once and never applied."""
    scenario = {"base": "campus_tod", "grid": {"export_price_inr_per_kwh": 6.8}}
    env = MicrogridEnv(scenario, seed=0)
    env.reset(seed=0)  # at volatility 1 the solar-hours rate equals the export price exactly
    assert env.core.episode.import_price.min() == pytest.approx(6.8)
    with pytest.raises(ScenarioError, match=r"lowest possible import price \(5.24167\) under tariff 'tod' at difficulty.price_volatility = 2.0"):
        env.set_difficulty(price_volatility=2.0)
    env.reset(seed=0)  # the refused volatility did not stick
    assert env.core.episode.import_price.min() == pytest.approx(6.8)
    with pytest.raises(ScenarioError, match="price_volatility"):
        MicrogridEnv({**scenario, "difficulty": {"price_volatility": 2.0}})
    tod = MicrogridEnv("campus_tod", seed=0)  # the preset's export price (3.0) allows every volatility
    tod.set_difficulty(price_volatility=3.0)
    tod.reset(seed=0)
    assert tod.core.episode.import_price.min() >= 3.0


def test_episode_bytes_bound_the_arrays_of_a_reset():
    env = MicrogridEnv({"horizon_days": 2, "step_hours": 0.5}, seed=0)
    env.reset(seed=0)
    ep = env.core.episode
    built = np.prod(noise_shape(env.scenario)) * 8 + sum(a.nbytes for a in (ep.window_error, ep.window_mean, ep.arrival_energy, ep.arrival_deadline))
    assert env.scenario.episode_bytes == built


@pytest.mark.parametrize("case", ["missing", "folder"])
def test_unreadable_data_path_names_the_field(tmp_path, case):
    """A missing file or a folder escaped as FileNotFoundError or IsADirectoryError, naming no field."""
    path = tmp_path / "series.csv"
    if case == "folder":
        path.mkdir()
    with pytest.raises(ScenarioError, match=f"data.series_path = '{path}': cannot read the file"):
        MicrogridEnv({"data": {"series_path": str(path)}, "ev": {"n_ports": 2}}, split="all")


def test_unparsable_data_file_names_the_field(tmp_path):
    """A binary .csv escaped as a pandas ParserError."""
    path = tmp_path / "series.csv"
    path.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(DataValidationError, match=f"data.series_path = '{path}': {path}: cannot read it as a .csv table"):
        MicrogridEnv({"data": {"series_path": str(path)}, "ev": {"n_ports": 2}}, split="all")


def test_tod_rates_at_fine_steps():
    """The hourly windows cut at whole hours at every step length (the rates are built from tod_factors)."""
    site = MicrogridEnv({"base": "campus_tod", "step_hours": 1 / 12}, split="all").core.site
    day = site.energy_price[site.day_start[0] : site.day_start[0] + 288].reshape(24, 12)
    assert (day == np.array([8.5] * 9 + [8.5 * 0.8] * 8 + [8.5 * 1.2] * 6 + [8.5])[:, None]).all()
