"""The forecast-error corrector and the controllers that plan on its corrections."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from sb3_microgrid.baselines import PlannerController, make_controller
from sb3_microgrid.cli import main
from sb3_microgrid.envs import MicrogridEnv, observation_layout
from sb3_microgrid.evaluation import evaluate
from sb3_microgrid.forecasting import (
    CORRECTOR_FILE,
    CorrectedForecastController,
    ForecastCorrector,
    collect_windows,
    divide_out,
    fit_corrector,
    fitted_scenario,
    noise_signature,
    revealed_errors,
)
from sb3_microgrid.scenario import load_scenario


@pytest.fixture(scope="module")
def corrector() -> ForecastCorrector:
    return fit_corrector("campus", days=256, seed=0)


def test_revealed_errors_are_the_revisions():
    """Forecasts x * (1 + R_l): entry 0 is the last lead-0 forecast against its measurement, entry k the
    previous lead-k forecast against the current lead-(k-1) one."""
    h, f = 2, 4
    rng = np.random.default_rng(0)
    truth = rng.uniform(1.0, 2.0, size=h + f + 1)  # steps t-1-h .. t+f-1
    err_prev, err_now = rng.uniform(-0.2, 0.2, size=f), rng.uniform(-0.2, 0.2, size=f)
    previous = np.r_[truth[: h], truth[h : h + f] * (1 + err_prev)][None, :, None]
    current = np.r_[truth[1 : h + 1], truth[h + 1 : h + 1 + f] * (1 + err_now)][None, :, None]
    revealed = revealed_errors(previous, current, h)[0, :, 0]
    assert revealed[0] == pytest.approx(err_prev[0])  # lead-0 forecast of t-1 against its measurement
    np.testing.assert_allclose(revealed[1:], (1 + err_prev[1:]) / (1 + err_now[:-1]) - 1)


def test_a_predicted_error_beyond_half_never_scales_a_forecast_more_than_the_bound_allows():
    """A predicted relative error is bounded to +-0.5: dividing by ``1 + error`` then scales a forecast by a factor
    in [1/1.5, 1/0.5] = [2/3, 2], never flips its sign (error -2) nor multiplies it tenfold (error -0.9)."""
    h = 2
    predicted = np.array([-2.0, -0.9, -0.5, -0.2, 0.0, 0.3, 0.5, 3.0])
    windows = np.arange(1.0, h + predicted.size + 1)[None, :, None]  # (1, H + F, 1), all positive
    out = divide_out(windows, predicted[None, :, None], h)
    np.testing.assert_array_equal(out[:, :h], windows[:, :h])  # the history rows are measurements: untouched
    factor = (out[:, h:] / windows[:, h:])[0, :, 0]
    assert (factor >= 1 / 1.5 - 1e-12).all() and (factor <= 2.0 + 1e-12).all()
    # inside the bound the error is divided out as predicted; beyond it, as the bound
    np.testing.assert_allclose(factor, 1 / (1 + np.array([-0.5, -0.5, -0.5, -0.2, 0.0, 0.3, 0.5, 0.5])), rtol=1e-12)


def test_perfect_forecasts_reveal_nothing_and_stay_as_they_are(corrector):
    windows, previous, truth, layout = collect_windows("campus", 64, seed=1)
    h = layout.history_steps
    exact_prev, exact_now = previous.copy(), windows.copy()
    # replace the forecast rows of both windows by the truth
    exact_now[:, h:] = truth
    exact_prev[:, h + 1 :] = truth[:, :-1]
    exact_prev[:, h] = windows[:, h - 1]
    assert np.abs(revealed_errors(exact_prev, exact_now, h)).max() < 1e-6
    np.testing.assert_allclose(corrector.correct(exact_prev, exact_now), exact_now, atol=1e-6)


def test_fitted_corrector_lowers_the_error_of_near_forecasts_on_validation_days(corrector):
    windows, previous, truth, layout = collect_windows("campus", 64, seed=5, split="validation")
    h = layout.history_steps
    raw = np.abs(windows[:, h:] - truth)
    corrected = np.abs(corrector.correct(previous, windows)[:, h:] - truth)
    # persistence is strongest one step ahead: most of the error there is predictable
    assert corrected[:, :4].mean() < 0.8 * raw[:, :4].mean()
    assert corrected.mean() < raw.mean()


def test_a_zero_corrector_leaves_the_base_controller_unchanged():
    env = MicrogridEnv(split="test")
    lay = env.obs_layout
    zero = ForecastCorrector(lay, np.zeros((len(lay.window_names), lay.forecast_steps, lay.forecast_steps)), noise_signature(env.scenario))
    wrapped, base = CorrectedForecastController(PlannerController(), zero), PlannerController()
    obs, _ = env.reset(seed=0, options={"day": "2024-02-01"})
    wrapped.reset(env, obs)
    base.reset(env, obs)
    for _ in range(8):
        action = wrapped.act(obs)
        np.testing.assert_array_equal(action, base.act(obs))
        obs, *_ = env.step(action)


def test_the_fitted_corrector_changes_what_the_base_sees(corrector):
    seen = []

    class Recorder(PlannerController):
        def act(self, obs):
            seen.append(obs.copy())
            return super().act(obs)

    env = MicrogridEnv(split="validation")
    controller = CorrectedForecastController(Recorder(), corrector)
    obs, _ = env.reset(seed=0)
    controller.reset(env, obs)
    raw = [obs]
    for _ in range(3):
        obs, *_ = env.step(controller.act(obs))
        raw.append(obs)
    np.testing.assert_array_equal(seen[0], raw[0])  # no previous observation at the first step
    assert any(not np.allclose(s, r) for s, r in zip(seen[1:], raw[1:3]))


def test_save_load_round_trip_and_make_controller(corrector, tmp_path):
    corrector.save(tmp_path, "planner")
    loaded, base, scenarios = ForecastCorrector.load(tmp_path)
    assert scenarios == 0 and loaded.residuals is None
    assert base == "planner" and loaded.layout == corrector.layout
    np.testing.assert_array_equal(loaded.weights, corrector.weights)
    controller = make_controller(str(tmp_path))
    assert isinstance(controller, CorrectedForecastController) and isinstance(controller.base, PlannerController)
    with pytest.raises(ValueError, match="controller folder"):
        make_controller(str(tmp_path), algo="ppo")  # a controller folder names its own base


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.update(weights=[[1.0]]), "'weights'.*shape"),
        (lambda r: r["weights"][0][0].__setitem__(0, "nan"), "'weights'"),
        (lambda r: r["weights"][0].__setitem__(0, [1.0]), "'weights'"),
        (lambda r: r.update(base="runs/x/model.zip"), "'base' must be one of"),
        (lambda r: r.update(base="optimal"), "'base' must be one of"),
        (lambda r: r.pop("layout"), "'layout' must be an object"),
        (lambda r: r["layout"].update(history_steps=10**400), "'layout' is not an observation layout"),
        (lambda r: r["layout"].update(history_steps=float("inf")), "Infinity is not a JSON value"),
        (lambda r: r.update(fit="abc"), "'fit' must be an object"),
        (lambda r: r.update(format=2), "'format' must be 1"),
        (lambda r: r.update(format=True), "'format' must be 1"),  # True == 1 in Python
        (lambda r: r.pop("signature"), "'signature' must be an object"),
    ],
    ids=["shape", "nan", "ragged", "base_path", "base_optimal", "no_layout", "huge_steps", "infinite_steps", "fit", "format", "format_true", "no_signature"],
)
def test_a_bad_corrector_file_is_named(corrector, tmp_path, change, message):
    corrector.save(tmp_path, "mpc")
    record = json.loads((tmp_path / CORRECTOR_FILE).read_text())
    change(record)
    (tmp_path / CORRECTOR_FILE).write_text(json.dumps(record))
    with pytest.raises(ValueError, match=message):
        CorrectedForecastController.load(tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [("[1, 2]", "expected a JSON object"), ("{", "not JSON"), ("[" * 100_000 + "]" * 100_000, "not JSON"), (b"\xff\xfe", "cannot read"),
     ('{"format": 1, "fit": {"note": NaN}}', "NaN is not a JSON value"), ('{"format": 1, "weights": [-Infinity]}', "-Infinity is not a JSON value")],
    ids=["array", "truncated", "deeply_nested", "not_utf8", "nan", "infinity"],
)
def test_a_file_that_is_not_a_corrector_is_named(tmp_path, text, message):
    target = tmp_path / CORRECTOR_FILE
    target.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match=message):
        ForecastCorrector.load(tmp_path)


def test_an_undefined_figure_in_the_fit_record_is_saved_as_null(corrector, tmp_path):
    """A gap closed where naive and the optimum cost the same is NaN: the file gets null, and it round-trips."""
    corrector.fit_info["validation"] = {"gap_closed": float("nan"), "cost_per_day": np.float64(1.5)}
    try:
        corrector.save(tmp_path, "mpc")
    finally:
        del corrector.fit_info["validation"]
    loaded, _, _ = ForecastCorrector.load(tmp_path)
    assert loaded.fit_info["validation"] == {"gap_closed": None, "cost_per_day": 1.5}
    loaded.save(tmp_path / "again", "mpc")
    assert ForecastCorrector.load(tmp_path / "again")[0].fit_info == loaded.fit_info


def test_cli_fit_forecast_where_control_cannot_earn_writes_its_file(tmp_path, capsys):
    """No battery power and no chargers: naive is the optimum, the gap closed is undefined, the fit is still saved."""
    scenario = tmp_path / "flat.yaml"
    scenario.write_text("base: campus\nbattery: {charge_power_kw: 0, discharge_power_kw: 0, self_discharge_per_hour: 0}\nev: {n_ports: 0}\n")
    out = tmp_path / "fit"
    assert main(["fit-forecast", "--scenario", str(scenario), "--days", "1", "--validation-days", "1", "--base", "rule", "--out", str(out)]) == 0
    assert "gap closed undefined" in capsys.readouterr().out
    assert ForecastCorrector.load(out)[0].fit_info["validation"]["gap_closed"] is None


def test_save_refuses_a_base_that_does_not_plan_on_forecasts(corrector, tmp_path):
    with pytest.raises(ValueError, match="base must be one of"):
        corrector.save(tmp_path, "optimal")


@pytest.mark.parametrize(
    "scenario, message",
    [
        ({"forecast": {"forecast_steps": 12}}, "fitted on the window"),
        ({"forecast": {"load_noise": 0.2}}, "other forecast errors"),
        ("campus_tod", "other forecast errors"),
    ],
    ids=["window", "noise", "tariff"],
)
def test_a_corrector_of_other_forecasts_is_refused_at_reset(corrector, scenario, message):
    env = MicrogridEnv(scenario=scenario)
    controller = CorrectedForecastController("planner", corrector)
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        controller.reset(env, obs)


def test_a_corrector_is_refused_once_a_curriculum_changed_the_renewable_noise(corrector):
    """The check read the scenario's difficulty, not the one set_difficulty put in use: a corrector fitted at noise
    0.2 kept correcting at 1.5."""
    env = MicrogridEnv(scenario="campus")
    controller = CorrectedForecastController("planner", corrector)
    obs, _ = env.reset(seed=0)
    controller.reset(env, obs)
    env.set_difficulty(renewable_noise=1.5)
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match=r"other forecast errors.*'renewable_noise': \(0\.2, 1\.5\)"):
        controller.reset(env, obs)


def test_a_fit_on_a_history_with_gaps_or_wrong_shapes_is_refused_naming_the_batch():
    """A NaN counted as 'no error' and shrank the weights (by half with half the truths missing), without a word."""
    windows, previous, truth, lay = collect_windows("campus", 64, seed=0)
    signature = noise_signature(load_scenario("campus"))
    gappy = truth.copy()
    gappy[5, 0, 2] = np.nan
    cases = [((windows, previous, gappy), "batch 1 truth holds values that are not finite"),
             ((windows, previous, truth[:, :-1]), "batch 1 truth must have shape (samples, "),
             ((windows.astype(str), previous, truth), "batch 1 windows must be an array of numbers")]  # fmt: skip
    for batch, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            ForecastCorrector.fit([(windows, previous, truth), batch], lay, signature)
        fitted = ForecastCorrector.fit([(windows, previous, truth)], lay, signature)
        with pytest.raises(ValueError, match=re.escape(message.replace("batch 1", "batch 0"))):
            fitted.fit_residuals([batch], 10)
    for ridge in (-1.0, float("nan"), True):
        with pytest.raises(ValueError, match="ridge"):
            ForecastCorrector.fit([(windows, previous, truth)], lay, signature, ridge=ridge)
    with pytest.raises(ValueError, match="no samples to draw residuals from"):
        fitted.fit_residuals([], 10)


def test_fit_recovers_known_persistence():
    """Synthetic revisions whose next error is 0.6 times the revealed one (lead 0 on entry 1): the fit finds it."""
    scenario = load_scenario("campus")
    lay = observation_layout(scenario)
    h, f, s = lay.history_steps, lay.forecast_steps, len(lay.window_names)
    rng = np.random.default_rng(0)
    n = 4000
    truth = rng.uniform(1.0, 2.0, size=(n, f, s))
    previous = rng.uniform(1.0, 2.0, size=(n, h + f, s))
    revealed_1 = rng.normal(0.0, 0.05, size=(n, s))  # the previous lead-1 forecast against the current lead-0 one
    current = np.empty_like(previous)
    current[:, :h] = previous[:, :h]
    current[:, h - 1] = previous[:, h]  # entry 0 reveals nothing
    current[:, h:] = truth * (1.0 + 0.6 * revealed_1[:, None, :] * (np.arange(f) == 0)[None, :, None])
    previous[:, h + 1] = current[:, h] * (1.0 + revealed_1)
    fitted = ForecastCorrector.fit([(current, previous, truth)], lay, noise_signature(scenario), ridge=1e-6)
    np.testing.assert_allclose(fitted.weights[:, 0, 1], 0.6, atol=0.02)
    assert np.abs(fitted.weights[:, 1:, :]).max() < 0.05


def test_fit_seeds_draw_disjoint_days_and_noise():
    a = collect_windows("campus", 64, seed=0)[0]
    b = collect_windows("campus", 64, seed=1)[0]
    # with MicrogridVecEnv's seed + i, seeds 0 and 1 would share 63 of their 64 microgrids' streams
    shared = sum(any(np.array_equal(x, y) for y in b[:64]) for x in a[:64])
    assert shared == 0


def test_fit_arguments_are_checked():
    with pytest.raises(ValueError, match="days"):
        fit_corrector("campus", days=0)
    with pytest.raises(ValueError, match="ridge"):
        fit_corrector("campus", days=64, ridge=-1.0)
    # the published ToD price has no forecast error: without a ridge its normal equations are singular
    with pytest.raises(ValueError, match=r"ridge 0 leaves the normal equations of series \['price'\] singular"):
        fit_corrector("campus_tod", days=64, ridge=0)


def test_cli_fit_forecast_then_evaluate(tmp_path, capsys):
    out = tmp_path / "corrector"
    assert main(["fit-forecast", "--days", "64", "--validation-days", "2", "--base", "planner", "--out", str(out)]) == 0
    record = json.loads((out / CORRECTOR_FILE).read_text())
    assert record["base"] == "planner" and record["fit"]["validation"]["days"] == 2
    assert main(["evaluate", "--controller", str(out), "--split", "validation", "--days", "2"]) == 0
    assert "gap closed" in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    assert main(["fit-forecast", "--days", "64", "--out", str(tmp_path / "file")]) == 2
    assert main(["fit-forecast", "--days", "64", "--base", "optimal", "--out", str(tmp_path / "other")]) == 2
    assert "--base must be one of ['mpc', 'planner', 'rule']" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
    # a folder holds one controller: an export folder is refused before any fit, and the reverse
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "manifest.json").write_text("{}")
    assert main(["fit-forecast", "--days", "64", "--out", str(tmp_path / "export")]) == 2
    assert "holds manifest.json, another controller" in capsys.readouterr().err
    assert not (tmp_path / "export" / CORRECTOR_FILE).exists()
    assert main(["export", "runs/none/model.zip", "--out", str(out)]) == 2
    assert f"holds {CORRECTOR_FILE}, another controller" in capsys.readouterr().err


@pytest.mark.slow
def test_mpc_on_corrected_forecasts_beats_mpc_on_validation_days():
    corrector = fit_corrector("campus", days=1024, seed=0)
    learned = evaluate(CorrectedForecastController("mpc", corrector), scenario="campus", split="validation", days=20, seed=0).summary
    plain = evaluate("mpc", scenario="campus", split="validation", days=20, seed=0).summary
    assert learned["gap_closed"] > plain["gap_closed"] + 0.02
    assert learned["safety_violations"] == 0 and learned["unmet_ev_kwh_per_day"] <= plain["unmet_ev_kwh_per_day"] + 1e-9


@pytest.mark.parametrize("base", ["rule", "mpc"])
def test_a_corrector_fitted_under_the_aggregate_ev_interface_serves_a_per_port_base(base):
    """The base acts per port, on the ports twin, whose static block differs: the whole-layout check refused it
    always. The corrector reads only the window, which the twin shares."""
    aggregate = {"base": "campus", "ev": {"dispatch": "aggregate"}}
    corrector = fit_corrector(aggregate, days=4)
    corrected = evaluate(CorrectedForecastController(base, corrector), scenario=aggregate, split="validation", days=2, reference=False)
    plain = evaluate(base, scenario=aggregate, split="validation", days=2, reference=False)
    assert corrected.summary["safety_violations"] == 0 and corrected.summary["cost_per_day"] != plain.summary["cost_per_day"]
    other = observation_layout(load_scenario({"base": "campus", "forecast": {"forecast_steps": 12}}))
    with pytest.raises(ValueError, match=r"fitted on the window .* the env has"):
        corrector.check(load_scenario("campus"), other)


def test_a_corrector_fitted_on_a_site_preset_is_evaluated_there_by_default(tmp_path, capsys):
    """A site preset has the aggregate EV interface: the CLI's check reset the corrector's per-port MPC on the
    aggregate env and refused it; and without --scenario the folder was scored on campus, not where it was fitted."""
    out = tmp_path / "clinic"
    assert main(["fit-forecast", "--scenario", "clinic_200kw", "--days", "4", "--validation-days", "0", "--out", str(out)]) == 0
    site = fitted_scenario(out)
    assert site.name == "clinic_200kw" and site.ev.dispatch == "aggregate"
    capsys.readouterr()
    for scenario in ([], ["--scenario", "clinic_200kw"]):
        assert main(["evaluate", "--controller", str(out), *scenario, "--split", "validation", "--days", "1", "--no-reference", "--json", str(tmp_path / "e.json")]) == 0
        assert capsys.readouterr().out.startswith("scenario clinic_200kw")
        assert json.loads((tmp_path / "e.json").read_text())["summary"]["scenario"] == "clinic_200kw"


def test_a_corrector_file_without_its_site_and_a_bad_site_record(tmp_path):
    corrector = fit_corrector("campus", days=4)
    corrector.save(tmp_path / "old", "mpc")
    assert fitted_scenario(tmp_path / "old") is not None
    corrector.fit_info.pop("site")
    corrector.save(tmp_path / "old", "mpc")
    assert fitted_scenario(tmp_path / "old") is None  # an older file: evaluate falls back to campus
    corrector.fit_info["site"] = {"battery": {"capacity_kwh": -1}}
    corrector.save(tmp_path / "bad", "mpc")
    with pytest.raises(ValueError, match="field 'fit.site' is not a scenario: .*capacity_kwh"):
        fitted_scenario(tmp_path / "bad")


def test_fit_forecast_refuses_validation_days_and_an_output_folder_before_the_fit(tmp_path, capsys, monkeypatch):
    """--validation-days 400 ended in a traceback after the fit, writing nothing; a folder under a file likewise."""
    import sb3_microgrid.forecasting

    monkeypatch.setattr(sb3_microgrid.forecasting, "fit_corrector", lambda *a, **k: pytest.fail("the fit ran"))
    assert main(["fit-forecast", "--validation-days", "400", "--out", str(tmp_path / "a")]) == 2
    assert "--validation-days: days must be in [1, 365] (the start days of split 'validation'), got 400" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["fit-forecast", "--out", str(tmp_path / "file" / "sub")]) == 2
    assert f"cannot write {tmp_path / 'file' / 'sub'}" in capsys.readouterr().err


def test_corrected_controller_arguments_of_the_wrong_type_and_numpy_numbers():
    corrector = fit_corrector("campus", days=4)
    with pytest.raises(ValueError, match="base must be one of .* got 5"):
        CorrectedForecastController(5, corrector)  # an AttributeError before
    with pytest.raises(TypeError, match="corrector must be a ForecastCorrector"):
        CorrectedForecastController("mpc", None)  # accepted, then an AttributeError at reset
    controller = CorrectedForecastController("mpc", corrector, seed=np.int64(3), scenarios=np.int64(0))
    assert type(controller.seed) is int and controller.seed == 3
