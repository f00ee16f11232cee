"""The site controller (``sb3_microgrid.deploy``): the observation it builds from measurements is the env's, its
supervisor is the env's, its decisions score as the exported policy scores in-process, bad measurements and a
failing policy give the documented fallback with the problem named, and its runtime imports neither torch,
Stable-Baselines3 nor the simulator."""

import copy
import datetime as dt
from fractions import Fraction
import json
import logging
import math
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from sb3_microgrid import load_scenario
from sb3_microgrid.baselines import OnnxController
from sb3_microgrid.deploy import Measurements, ObservationBuilder, SiteController, fallback_action, read_state, supervise
from sb3_microgrid.deploy import controller as controller_module
from sb3_microgrid.deploy import supervision
from sb3_microgrid.deploy.checks import Checker, site_ranges
from sb3_microgrid.deploy.env_site import EnvSite
from sb3_microgrid.deploy.observation import WINDOW_FIELDS
from sb3_microgrid.envs import EPISODE_KEYS, MicrogridEnv, kernel
from sb3_microgrid.evaluation import run_day
from sb3_microgrid.export import ManifestError, OnnxPolicy, scenario_fingerprint
from sb3_microgrid.scenario import MAX_STEPS_PER_HOUR

#: A second site that moves every setting the observation depends on: ToD tariff, 30-minute steps, a two-day
#: horizon, four V2G chargers and another window.
VARIANT = {
    "base": "campus_tod", "step_hours": 0.5, "horizon_days": 2, "ev": {"n_ports": 4, "v2g": True},
    "forecast": {"history_steps": 5, "forecast_steps": 7}, "difficulty": {"soc_min": 0.2},
}  # fmt: skip


def state_of(measurements: Measurements, env: MicrogridEnv):
    """The checked state of a request to the env's site, and the problems found."""
    checker = Checker(site_ranges(env.scenario))
    return read_state(measurements, env.scenario, env.obs_layout, checker), checker.issues


def window_scale(env: MicrogridEnv) -> dict[str, float]:
    return dict(zip(env.obs_layout.window_names, env.core.site.window_scale.tolist()))


@pytest.mark.parametrize("scenario, days", [("campus", ("2024-01-01", "2024-03-16", "2024-07-06")), (VARIANT, ("2024-02-03", "2024-11-30"))])
def test_observation_from_measurements_is_the_envs(scenario, days):
    """Every step of several test days, under random actions: the env's own state, true history and forecasts as a
    site reports them give the env's observation."""
    env = MicrogridEnv(scenario=scenario, split="test")
    builder = ObservationBuilder(env.obs_layout, env.scenario, window_scale(env))
    site, rng = EnvSite(env), np.random.default_rng(0)
    for seed, day in enumerate(days):
        obs, _ = env.reset(seed=seed, options={"day": day})
        done, cars = False, 0
        while not done:
            state, issues = state_of(site.measurements(obs), env)
            assert issues == []
            np.testing.assert_allclose(builder.build(state), obs, rtol=1e-6, atol=1e-6, err_msg=f"{day} step {env.core.t}")
            cars += len(state.evs)
            obs, _, done, _, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        assert cars > 0  # the EV features were compared too


@pytest.mark.parametrize("per_hour", [n for n in range(1, MAX_STEPS_PER_HOUR + 1) if 60 % n], ids=lambda n: f"1/{n}h")
def test_steps_that_start_between_whole_minutes_observe_as_the_env(per_hour):
    """Every allowed step length whose steps do not all start on whole minutes (1/7, 1/8, 1/9, 1/11 h), on every step
    of a day: the hour was read off the step start's clock without its seconds, and the step start placed by adding
    rounded step lengths (at 1/7 h the 7th step began at 00:59:59.999998, hour 0.98): time features off by 4e-3."""
    env = MicrogridEnv(scenario={"base": "campus", "step_hours": 1 / per_hour, "forecast": {"history_steps": 2, "forecast_steps": 3}}, split="test")
    builder = ObservationBuilder(env.obs_layout, env.scenario, window_scale(env))
    site, rng = EnvSite(env), np.random.default_rng(0)
    obs, _ = env.reset(seed=0, options={"day": "2024-03-16"})
    midnight, done = dt.datetime(2024, 3, 16), False
    while not done:
        t = env.core.t
        state, issues = state_of(site.measurements(obs), env)
        assert issues == [] and state.step == t
        # the step's exact start (t / per_hour hours), to the microsecond
        assert abs((state.step_start - midnight) / dt.timedelta(microseconds=1) - Fraction(t * 3_600_000_000, per_hour)) <= Fraction(1, 2)
        np.testing.assert_allclose(builder.build(state), obs, rtol=1e-6, atol=1e-6, err_msg=f"step {t}")
        obs, _, done, _, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
    assert t == env.scenario.steps_per_day - 1


def test_env_and_site_controller_run_one_supervisor():
    """The same compiled functions, and on the env's state they let through exactly what the env's step does, for
    actions inside and outside the box, NaN and inf included."""
    for name in ("port_requests", "project_requests", "battery_range", "port_range", "fleet_requests", "laxity_hours"):
        assert getattr(supervision, name) is getattr(kernel, name), name
    env = MicrogridEnv(scenario=VARIANT, split="test")
    site, rng = EnvSite(env), np.random.default_rng(1)
    dt_h = env.scenario.step_hours
    for seed, day in enumerate(("2024-01-10", "2024-06-20")):
        obs, _ = env.reset(seed=seed, options={"day": day})
        done = False
        while not done:
            action = rng.uniform(-1.5, 1.5, env.action_space.shape)
            action[rng.random(action.shape) < 0.05] = np.nan
            action[rng.random(action.shape) < 0.05] = np.inf
            state, issues = state_of(site.measurements(obs), env)
            assert issues == []
            expected = supervise(action, state, env.scenario)
            obs, _, done, _, info = env.step(action)
            assert info["battery_kwh"] / dt_h == pytest.approx(expected.battery_kw, rel=1e-9, abs=1e-9)
            assert info["ev_kwh"] / dt_h == pytest.approx(expected.charger_kw.sum(), rel=1e-9, abs=1e-9)
            assert info["curtailed_kwh"] / dt_h == pytest.approx(expected.curtail_kw, abs=1e-9)
            assert info["unserved_kwh"] / dt_h == pytest.approx(expected.shed_kw, abs=1e-9)
            assert info["safety_interventions"] == float(expected.intervened)


@pytest.fixture(scope="module")
def controller(exported_policy) -> SiteController:
    return SiteController.from_export(exported_policy, clock=None)


def test_decisions_score_as_the_exported_policy_in_process(controller, exported_policy):
    """A test day decided from measurements, the setpoints applied to the env, scores as ``run_day`` with the
    export's ``OnnxController``: the same actions and KPIs, and the supervisor's interventions counted in the
    decisions."""
    day, seed = "2024-05-14", 3
    metrics, decisions = EnvSite(MicrogridEnv(split="test")).play(day, seed, controller.decide)
    env = MicrogridEnv(split="test")
    reference = OnnxController(exported_policy)
    expected, trace = run_day(reference, env, day, seed)
    assert not any(d.fallback for d in decisions)
    assert [d.action[0] for d in decisions] == pytest.approx(trace["action_battery"].tolist(), abs=1e-6)
    for key in set(EPISODE_KEYS) - {"safety_interventions"}:
        assert metrics[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-9), key
    assert metrics["safety_violations"] == 0
    assert sum(d.intervened for d in decisions) == expected["safety_interventions"]


# ---- bad measurements ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def request_with_cars(controller):
    """A clean request of a step with cars connected and no grid limit binding, and its env."""
    env = MicrogridEnv(split="test")
    obs, _ = env.reset(seed=0, options={"day": "2024-03-12"})
    for _ in range(11):
        obs = env.step(np.zeros(env.action_space.shape))[0]
    measurements = EnvSite(env).measurements(obs)
    assert len(measurements.evs) >= 2
    return measurements.model_dump(mode="python"), env


def _set(path: str, value):
    def mutate(raw):
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return mutate


def _delay_departure(raw):
    raw["evs"][0]["departure"] = raw["evs"][0]["departure"].replace(tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))


def _departure_in_year_1(raw):
    """Every time with an offset; the first car's departure at 0001-01-01 in India, before datetime's range in UTC."""
    raw["timestamp"] = raw["timestamp"].replace(tzinfo=dt.timezone.utc)
    for ev in raw["evs"]:
        ev["departure"] = ev["departure"].replace(tzinfo=dt.timezone.utc)
    raw["evs"][0]["departure"] = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))


BAD_VALUES = {
    "NaN SoC": (_set("battery.soc", math.nan), "battery.soc"),
    "missing SoC": (_set("battery.soc", None), "battery.soc"),
    "SoC above 1": (_set("battery.soc", 1.5), "battery.soc"),
    "SoH 0": (_set("battery.soh", 0.0), "battery.soh"),
    "NaN day peak": (_set("day_peak_import_kw", math.nan), "day_peak_import_kw"),
    "negative load": (_set("site.load_kw", -5.0), "site.load_kw"),
    "inf wind": (_set("site.wind_kw", math.inf), "site.wind_kw"),
    "PV in W": (_set("history.3.pv_kw", 300_000.0), "history[3].pv_kw"),
    "price in Rs/MWh": (_set("forecast.5.price_inr_per_kwh", 5200.0), "forecast[5].price_inr_per_kwh"),
    "emission in g": (_set("forecast.0.emission_kg_per_kwh", 710.0), "forecast[0].emission_kg_per_kwh"),
    "missing emission": (_set("history.0.emission_kg_per_kwh", None), "history[0].emission_kg_per_kwh"),
    "short forecast": (lambda raw: raw["forecast"].pop(), "forecast"),
    "long history": (lambda raw: raw["history"].append(raw["history"][-1]), "history"),
    "unknown charger": (lambda raw: raw["evs"].append({**raw["evs"][0], "charger": 12}), "evs[{n}].charger"),
    "negative charger": (lambda raw: raw["evs"].append({**raw["evs"][0], "charger": -1}), "evs[{n}].charger"),
    "two cars at a charger": (lambda raw: raw["evs"].append(dict(raw["evs"][0])), "evs[{n}].charger"),
    "NaN need": (_set("evs.0.energy_wanted_kwh", math.nan), "evs[0].energy_wanted_kwh"),
    "missing departure": (_set("evs.0.departure", None), "evs[0].departure"),
    "departure with an offset, timestamp without": (_delay_departure, "evs[0].departure"),
    "horizon not containing the timestamp": (lambda raw: raw.update(horizon_start=raw["timestamp"].date() - dt.timedelta(days=3)), "horizon_start"),
    # the horizon's end, a day on, would be beyond datetime's year 9999
    "timestamp in year 9999": (lambda raw: raw.update(timestamp=raw["timestamp"].replace(year=9999, month=12, day=31), horizon_start=None), "timestamp"),
    "horizon_start in year 9999": (_set("horizon_start", dt.date(9999, 12, 31)), "horizon_start"),
    "departure in year 1": (_departure_in_year_1, "evs[0].departure"),
}


def assert_fallback(decision, request: dict, env: MicrogridEnv, field: str) -> None:
    """The fallback of a step where no grid limit binds: battery idle, each car at a known charger at the power
    that meets its need fastest (what it still wants, or the port limit where that is unknown), other chargers 0."""
    assert decision.fallback and field in [e.field for e in decision.errors], decision.errors
    assert all(e.message for e in decision.errors)
    assert decision.action == fallback_action(env.scenario.ev.n_ports).tolist()
    state, _ = state_of(Measurements.model_validate(request), env)
    ev = env.scenario.ev
    expected = np.zeros(ev.n_ports)
    for car in state.evs:
        wanted = math.inf if car.wanted_kwh is None else car.wanted_kwh
        expected[car.port] = min(ev.port_power_kw, wanted / (ev.charger_efficiency * env.scenario.step_hours))
    np.testing.assert_allclose(decision.charger_kw, expected, rtol=1e-12)
    assert decision.battery_kw == 0.0 and decision.shed_kw == 0.0 and decision.curtail_kw == 0.0


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_give_the_fallback_with_the_field_named(case, controller, request_with_cars, caplog):
    raw, env = request_with_cars
    mutate, field = BAD_VALUES[case]
    bad = copy.deepcopy(raw)
    mutate(bad)
    field = field.format(n=len(bad["evs"]) - 1)
    with caplog.at_level(logging.WARNING, logger="sb3_microgrid.deploy"):
        decision = controller.decide(Measurements.model_validate(bad))
    assert_fallback(decision, bad, env, field)
    assert "fallback" in caplog.text and field in caplog.text


def test_clean_request_of_that_step_is_the_policys(controller, request_with_cars):
    raw, env = request_with_cars
    decision = controller.decide(Measurements.model_validate(raw))
    assert not decision.fallback and decision.errors == []


def test_the_step_start_keeps_the_timestamps_offset(controller, request_with_cars):
    """A timestamp with an offset gets a step start at that offset (it was naive: another instant to a client or a
    server in another zone); one without stays without."""
    raw, _ = request_with_cars
    india = dt.timezone(dt.timedelta(hours=5, minutes=30))
    aware = {**raw, "timestamp": raw["timestamp"].replace(minute=30, tzinfo=india), "evs": []}
    decision = controller.decide(Measurements.model_validate(aware))
    assert not decision.fallback and decision.step_start.utcoffset() == india.utcoffset(None)
    assert decision.model_dump(mode="json")["step_start"] == raw["timestamp"].replace(tzinfo=india).isoformat() == "2024-03-12T11:00:00+05:30"
    assert controller.decide(Measurements.model_validate(raw)).step_start == raw["timestamp"] == dt.datetime(2024, 3, 12, 11)


def test_fallback_at_a_known_need_charges_within_it(controller, request_with_cars):
    raw, env = request_with_cars
    bad = copy.deepcopy(raw)
    bad["battery"]["soc"] = math.nan
    decision = controller.decide(Measurements.model_validate(bad))
    ev, dt_h = env.scenario.ev, env.scenario.step_hours
    for car in raw["evs"]:
        assert decision.charger_kw[car["charger"]] == pytest.approx(min(ev.port_power_kw, car["energy_wanted_kwh"] / (ev.charger_efficiency * dt_h)))
    assert decision.battery_kw == 0.0


@pytest.mark.parametrize("step_hours", [1.0, 0.5, 1 / 7])
def test_a_timestamp_just_before_midnight_is_the_next_days_first_step(request_with_cars, step_hours):
    """Within the placement slack (1 ms) of midnight, a timestamp is the first step of the next day, which is then
    the default horizon_start: step 0, not a step past the horizon's end."""
    raw, env = request_with_cars
    scenario = env.scenario.replace(step_hours=step_hours)
    layout = env.obs_layout
    last = dt.datetime(2024, 3, 12, 23, 59, 59, 999_500)
    for stamp, step, start in (
        (last, 0, dt.datetime(2024, 3, 13)),
        (last - dt.timedelta(hours=step_hours), scenario.steps_per_day - 1, dt.datetime(2024, 3, 13) - dt.timedelta(hours=step_hours)),
    ):
        checker = Checker(site_ranges(scenario))
        state = read_state(Measurements.model_validate({**raw, "timestamp": stamp, "horizon_start": None}), scenario, layout, checker)
        assert (state.step, state.step_start, checker.issues) == (step, start, [])


@pytest.mark.parametrize("max_age_s", [math.nan, math.inf, -60.0, 0, True, "60", pytest.param(10**400, id="beyond_float")])
def test_max_age_must_be_a_finite_positive_number(exported_policy, max_age_s):
    """NaN disabled the staleness check (no age compares above it), a negative age made every request stale."""
    policy = OnnxPolicy(exported_policy)
    with pytest.raises(ValueError, match=re.escape(f"max_age_s must be a finite number of seconds > 0, or None (one step); got {max_age_s!r}")):
        SiteController(policy, load_scenario("campus"), max_age_s=max_age_s)
    for number in (np.float64(0.5), np.float32(0.5), np.int64(1), 1):  # numpy numbers too, as the site's code may hold them
        assert SiteController(policy, load_scenario("campus"), max_age_s=number).max_age_s == float(number)


def test_stale_or_future_timestamp_gives_the_fallback(exported_policy, request_with_cars):
    """A timestamp without an offset is the server's local time; one step (1 h) either way is allowed by default."""
    raw, env = request_with_cars
    stamp = raw["timestamp"]
    for offset, word in ((dt.timedelta(hours=2), "7200 s old"), (-dt.timedelta(minutes=90), "5400 s in the future")):
        controller = SiteController.from_export(exported_policy, clock=lambda offset=offset: (stamp + offset).astimezone())
        decision = controller.decide(Measurements.model_validate(raw))
        assert decision.fallback and [e.field for e in decision.errors] == ["timestamp"]
        assert word in decision.errors[0].message and "within 3600 s" in decision.errors[0].message
    fresh = SiteController.from_export(exported_policy, max_age_s=60, clock=lambda: (stamp + dt.timedelta(seconds=30)).astimezone())
    assert not fresh.decide(Measurements.model_validate(raw)).fallback
    aware = {**raw, "timestamp": stamp.replace(tzinfo=dt.timezone.utc), "evs": []}
    utc = SiteController.from_export(exported_policy, clock=lambda: stamp.replace(tzinfo=dt.timezone.utc) + dt.timedelta(hours=3))
    assert [e.field for e in utc.decide(Measurements.model_validate(aware)).errors] == ["timestamp"]


class _Policy:
    """A stand-in with an export's manifest whose ``act`` is given."""

    def __init__(self, manifest, act) -> None:
        self.manifest, self.act = manifest, act


def _boom(obs):
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    "act, message",
    [(_boom, "RuntimeError: boom"), (lambda obs: np.full(13, np.nan), "finite"), (lambda obs: np.zeros(3), "13 finite numbers")],
)
def test_failing_policy_gives_the_fallback(exported_policy, request_with_cars, act, message):
    raw, env = request_with_cars
    controller = SiteController(_Policy(OnnxPolicy(exported_policy).manifest, act), env.scenario, clock=None)
    decision = controller.decide(Measurements.model_validate(raw))
    assert_fallback(decision, raw, env, "policy")
    assert message in decision.errors[0].message
    assert controller.decisions == controller.fallbacks == 1


def test_failing_supervisor_still_answers_idle(controller, request_with_cars, monkeypatch):
    def broken(*args):
        raise FloatingPointError("broken")

    monkeypatch.setattr(controller_module, "supervise", broken)
    decision = controller.decide(Measurements.model_validate(request_with_cars[0]))
    assert decision.errors[-1].field == "supervisor" and "broken" in decision.errors[-1].message
    assert decision.battery_kw == 0.0 and set(decision.charger_kw) == {0.0} and not decision.intervened


def _changed(manifest, path: str, value):
    out = copy.deepcopy(manifest)
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[part]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return out


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("recurrent", True, "recurrent"),
        ("action.is_env_action", False, "base controller"),
        ("action.size", 5, "5 action entries"),
        ("observation.window_scale", KeyError, "window_scale"),
        ("observation.window_scale.load", 0.0, "window_scale['load']"),
        # every observation inf, every decision the fallback
        ("observation.window_scale.load", 1e-300, "observation.window_scale['load'] = 1e-300; allowed: a number in [2.939e-32, inf)"),
        ("observation.window_scale.price", 2.9e-36, "observation.window_scale['price'] = 2.9e-36; allowed: a number in [2.939e-36, inf)"),
        ("observation.window_scale", [1, 2, 3], "observation.window_scale must be an object"),
        ("observation.site_context", "site_pv", "observation.site_context must be an object"),
        ("observation.layout.window_names", ["pv", "wind", "load", "price", "humidity"], "'humidity'"),
    ],
)
def test_policy_the_site_cannot_run_is_refused(exported_policy, path, value, message):
    policy = OnnxPolicy(exported_policy)
    with pytest.raises(ManifestError, match=re.escape(message)):
        SiteController(_Policy(_changed(policy.manifest, path, value), policy.act), load_scenario("campus"))


def test_an_edited_scenario_file_is_refused(exported_policy, tmp_path):
    """The scenario.yaml must be the one the manifest's sha256 records (PV 400 -> 4000 kWp would change every
    limit and observation scale); the check is on the file as written, so an export made before a scenario field
    existed (its default then applies) still loads."""
    folder = tmp_path / "export"
    shutil.copytree(exported_policy, folder)
    text = (folder / "scenario.yaml").read_text()
    assert "capacity_kwp: 400.0" in text
    (folder / "scenario.yaml").write_text(text.replace("capacity_kwp: 400.0", "capacity_kwp: 4000.0"))
    with pytest.raises(ManifestError, match="is not the scenario the policy was exported for.*records scenario.sha256"):
        SiteController.from_export(folder, clock=None)

    written = yaml.safe_load(text)
    del written["ev"]["dispatch"]  # as an export of a version without the EV dispatch setting wrote it
    (folder / "scenario.yaml").write_text(yaml.safe_dump(written, sort_keys=False))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["scenario"]["sha256"] = scenario_fingerprint(written)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert SiteController.from_export(folder, clock=None).scenario == load_scenario("campus")


def test_window_scales_and_site_context_keep_the_observation_within_float32(exported_policy, request_with_cars):
    """At the lowest window scale allowed, an observation of the largest readings allowed is finite; a site context
    value beyond float32's range (every observation inf) is refused naming it and the range."""
    policy, (raw, env) = OnnxPolicy(exported_policy), request_with_cars
    sc, f32 = env.scenario, float(np.finfo(np.float32).max)
    largest = {"load_kw": 1e7, "pv_kw": 2 * sc.pv.capacity_kwp, "wind_kw": 2 * sc.wind.rated_kw, "price_inr_per_kwh": 1000.0, "emission_kg_per_kwh": 2.0}
    installed = {"pv": sc.pv.capacity_kwp, "wind": sc.wind.rated_kw}
    # just above the lowest allowed (float64 rounding aside)
    lowest = {name: largest[field] / (installed.get(name, 1.0) * f32) * (1 + 1e-12) for name, field in WINDOW_FIELDS.items()}
    maximal = copy.deepcopy(raw)
    for row in maximal["history"] + maximal["forecast"]:
        row.update(largest)
    state, issues = state_of(Measurements.model_validate(maximal), env)
    assert issues == [] and np.isfinite(ObservationBuilder(env.obs_layout, sc, lowest).build(state)).all()
    with pytest.raises(ValueError, match=re.escape("window_scale['load']")):
        ObservationBuilder(env.obs_layout, sc, {**lowest, "load": lowest["load"] * 0.999})
    names = policy.manifest["observation"]["layout"]["static_names"]
    context = _changed(policy.manifest, "observation.layout.static_names", [*names[:-1], "site_pv"])
    for value in (1e39, -1e39, math.inf):
        with pytest.raises(ManifestError, match=re.escape(f"observation.site_context['site_pv'] = {value!r}; allowed: a number in [-3.403e+38, 3.403e+38]")):
            SiteController(_Policy(_changed(context, "observation.site_context", {"site_pv": value}), policy.act), load_scenario("campus"))
    SiteController(_Policy(_changed(context, "observation.site_context", {"site_pv": 3e38}), policy.act), load_scenario("campus"))


def test_layout_features_are_checked_against_the_site(exported_policy):
    policy = OnnxPolicy(exported_policy)
    with pytest.raises(ManifestError, match="'ev4_connected'.*4 charger"):
        SiteController(_Policy(_changed(policy.manifest, "action.size", 5), policy.act), load_scenario("campus").replace(ev__n_ports=4))
    layout = _changed(policy.manifest, "observation.layout.static_names", [*policy.manifest["observation"]["layout"]["static_names"][:-1], "humidity"])
    with pytest.raises(ManifestError, match="'humidity'"):
        SiteController(_Policy(layout, policy.act), load_scenario("campus"))


RUNTIME_PROBE = """
import json, sys
from sb3_microgrid.deploy import Measurements, SiteController
decision = SiteController.from_export(sys.argv[1], clock=None).decide(Measurements.model_validate_json(sys.stdin.read()))
heavy = ("torch", "stable_baselines3", "sb3_contrib", "pandas", "gymnasium", "sb3_microgrid.envs.core", "sb3_microgrid.data")
loaded = sorted(m for m in heavy if m in sys.modules)
import gymnasium as gym
import sb3_microgrid
print(json.dumps({"fallback": decision.fallback, "loaded": loaded, "env": type(gym.make("Microgrid-v0").unwrapped).__name__}))
"""


def test_runtime_needs_neither_torch_nor_sb3_nor_the_simulator(exported_policy, request_with_cars):
    """In a fresh interpreter: load an export, decide a request; only gymnasium of the heavy modules is loaded (the
    package registers its envs on import), and the registration still works."""
    request = Measurements.model_validate(request_with_cars[0]).model_dump_json()
    out = subprocess.run([sys.executable, "-c", RUNTIME_PROBE, str(exported_policy)], input=request, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"fallback": False, "loaded": ["gymnasium"], "env": "MicrogridEnv"}
