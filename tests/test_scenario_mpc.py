"""MPC planning on forecast scenarios drawn from the corrector's residuals (sample-average LP)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from sb3_microgrid.baselines import MPCController, make_controller, solve_dispatch, solve_scenarios
from sb3_microgrid.baselines.lp import _repeat_diagonal, _series_entries, dispatch_program
from sb3_microgrid.cli import main
from sb3_microgrid.envs import MicrogridEnv
from sb3_microgrid.evaluation import evaluate
from sb3_microgrid.forecasting import CORRECTOR_FILE, CorrectedForecastController, ForecastCorrector, fit_corrector


@pytest.fixture(scope="module")
def corrector() -> ForecastCorrector:
    return fit_corrector("campus", days=128, seed=0, residual_days=32, residual_samples=256)


def mpc_problem(hour: int = 6):
    """MPC's LP at ``hour`` of a test day with EVs connected."""
    env = MicrogridEnv(split="test")
    obs, _ = env.reset(seed=0, options={"day": "2024-03-05"})
    mpc = MPCController()
    mpc.reset(env, obs)
    for _ in range(hour):
        obs, *_ = env.step(mpc.act(obs))
    return mpc.problem(obs)


def test_identical_scenarios_plan_as_one_forecast():
    problem = mpc_problem()
    one, many = solve_dispatch(problem), solve_scenarios([problem] * 4)
    assert many.cost == pytest.approx(one.cost, rel=1e-9, abs=1e-6)
    assert many.battery_kw[0] == pytest.approx(one.battery_kw[0], abs=1e-6)
    np.testing.assert_allclose(many.ev_kw[0], one.ev_kw[0], atol=1e-6)


def test_scenarios_share_their_first_step_and_pay_for_it():
    """Two loads that want different first steps: the shared plan costs more than each scenario's own optimum on
    average (the first step is not free per scenario), and scenario 0's plan is not its own optimum."""
    problem = mpc_problem(hour=12)
    low, high = replace(problem, load_kw=problem.load_kw * 0.6), replace(problem, load_kw=problem.load_kw * 1.4)
    own = [solve_dispatch(p) for p in (low, high)]
    assert own[0].battery_kw[0] != pytest.approx(own[1].battery_kw[0], abs=1.0)  # the test needs different first steps
    shared = solve_scenarios([low, high])
    assert shared.cost > np.mean([p.cost for p in own]) + 1.0
    assert shared.battery_kw[0] != pytest.approx(own[0].battery_kw[0], abs=1.0)


def test_every_scenario_gets_the_same_first_step():
    """The same two scenarios in either order: each call returns its first scenario's plan, whose first step
    (battery and every EV port) is shared, so both calls return the same first step."""
    problem = mpc_problem(hour=12)
    assert problem.session_port.size > 0  # the test needs EVs connected
    low, high = replace(problem, load_kw=problem.load_kw * 0.6), replace(problem, load_kw=problem.load_kw * 1.4)
    a, b = solve_scenarios([low, high]), solve_scenarios([high, low])
    assert a.battery_kw[0] == pytest.approx(b.battery_kw[0], abs=1e-4)
    np.testing.assert_allclose(a.ev_kw[0], b.ev_kw[0], atol=1e-4)
    assert a.cost == pytest.approx(b.cost, rel=1e-7)


def test_scenarios_must_match():
    problem = mpc_problem()
    with pytest.raises(ValueError, match="differ in 'energy0'"):
        solve_scenarios([problem, replace(problem, energy0=problem.energy0 + 10.0)])
    with pytest.raises(ValueError, match="differ in 'demand_rate'"):
        solve_scenarios([problem, replace(problem, load_kw=problem.load_kw[:-1], renewable_kw=problem.renewable_kw[:-1], import_price=problem.import_price[:-1],
                                           emission=problem.emission[:-1], demand_rate=problem.demand_rate[:-1], day=problem.day[:-1])])  # fmt: skip
    with pytest.raises(ValueError, match="non-empty"):
        solve_scenarios([])
    solve_scenarios([problem, replace(problem, load_kw=problem.load_kw * 1.1)])  # the series may differ


def test_scenario_blocks_are_each_scenarios_own_program():
    """solve_scenarios builds one program and swaps in each scenario's series: every block must be the program
    that scenario alone gives, and the repeated diagonal must be scipy's block_diag."""
    problem = mpc_problem(hour=12)
    other = replace(problem, load_kw=problem.load_kw * 1.3, renewable_kw=problem.renewable_kw * 0.7,
                    import_price=problem.import_price * 1.1, emission=problem.emission * 0.9)  # fmt: skip
    program, own = dispatch_program(problem), dispatch_program(other)
    for swapped, expected in zip(_series_entries(program, other), (own.cost, own.b_eq, own.bounds)):
        np.testing.assert_array_equal(swapped, expected)
    assert not np.array_equal(own.cost, program.cost) and not np.array_equal(own.b_eq, program.b_eq)
    # what the blocks share must not depend on the series
    np.testing.assert_array_equal(own.b_ub, program.b_ub)
    assert (own.a_eq != program.a_eq).nnz == 0 and (own.a_ub != program.a_ub).nnz == 0
    for matrix in (program.a_eq, program.a_ub):
        repeated, reference = _repeat_diagonal(matrix, 3), sp.block_diag([matrix] * 3, format="csr")
        assert repeated.shape == reference.shape and (repeated != reference).nnz == 0


def test_scenario_series_must_have_the_same_shape():
    problem = mpc_problem()
    with pytest.raises(ValueError, match="'load_kw' differ in shape"):
        solve_scenarios([problem, replace(problem, load_kw=problem.load_kw[:-1])])


def run(controller, steps: int = 6) -> list[np.ndarray]:
    env = MicrogridEnv(split="validation")
    obs, _ = env.reset(seed=3, options={"day": "2023-07-10"})
    controller.reset(env, obs)
    actions = []
    for _ in range(steps):
        actions.append(np.asarray(controller.act(obs)))
        obs, *_ = env.step(actions[-1])
    return actions


def test_zero_residuals_are_the_corrected_forecast(corrector):
    zero = ForecastCorrector(corrector.layout, corrector.weights, corrector.signature, residuals=np.zeros((3, *corrector.residuals.shape[1:])))
    for hedged, point in zip(run(CorrectedForecastController("mpc", zero, scenarios=4)), run(CorrectedForecastController("mpc", zero))):
        np.testing.assert_allclose(hedged, point, atol=1e-6)


def test_drawn_scenarios_change_the_decisions_and_repeat_with_the_seed(corrector):
    point = run(CorrectedForecastController("mpc", corrector))
    hedged = run(CorrectedForecastController("mpc", corrector, scenarios=4, seed=1))
    assert any(not np.allclose(h, p, atol=1e-4) for h, p in zip(hedged, point))
    np.testing.assert_array_equal(np.array(hedged), np.array(run(CorrectedForecastController("mpc", corrector, scenarios=4, seed=1))))


def test_draws_depend_on_the_day_not_on_what_ran_before(corrector):
    controller = CorrectedForecastController("mpc", corrector, scenarios=4, seed=1)
    first = run(controller)
    env = MicrogridEnv(split="validation")  # another day in between
    obs, _ = env.reset(seed=9, options={"day": "2023-09-01"})
    controller.reset(env, obs)
    controller.act(obs)
    np.testing.assert_array_equal(np.array(run(controller)), np.array(first))


def test_residuals_are_what_remains_after_correction(corrector):
    r = corrector.residuals
    assert r.shape == (256, corrector.layout.forecast_steps, len(corrector.layout.window_names))
    assert np.abs(r).max() <= 0.5 and r[:, :, 0].std() > 0.01  # pv errs
    # the error grows with the lead: the corrected forecast one step ahead is closer than a day ahead
    assert np.abs(r[:, 1]).mean() < np.abs(r[:, -1]).mean()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"base": "planner", "scenarios": 4}, "base 'mpc'"),
        ({"base": "mpc", "scenarios": -1}, "scenarios"),
        ({"base": "mpc", "scenarios": 257}, r"scenarios = 257 is outside the allowed range \[0, 256\]"),
        ({"base": "mpc", "scenarios": 4.0}, "scenarios must be an integer"),
        ({"base": "mpc", "scenarios": 4, "seed": -1}, "seed"),
    ],
    ids=["planner", "negative", "too_many", "float", "seed"],
)
def test_bad_scenario_settings_are_named(corrector, kwargs, message):
    base = kwargs.pop("base")
    with pytest.raises(ValueError, match=message):
        CorrectedForecastController(base, corrector, **kwargs)


def test_scenarios_need_residuals():
    plain = fit_corrector("campus", days=64, seed=0)
    with pytest.raises(ValueError, match="residuals"):
        CorrectedForecastController("mpc", plain, scenarios=4)
    with pytest.raises(ValueError, match="residual_days"):
        fit_corrector("campus", days=64, seed=0, residual_days=65)


def test_save_load_keeps_the_scenarios(corrector, tmp_path):
    corrector.save(tmp_path, "mpc", scenarios=8)
    loaded, base, scenarios = ForecastCorrector.load(tmp_path)
    assert (base, scenarios) == ("mpc", 8)
    np.testing.assert_allclose(loaded.residuals, corrector.residuals, atol=1e-5)  # kept to 5 decimals
    controller = make_controller(str(tmp_path))
    assert controller.scenarios == 8 and isinstance(controller.base, MPCController)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r["residuals"][0][0].__setitem__(0, 0.9), "'residuals'.*in \\[-0.5, 0.5\\]"),
        (lambda r: r["residuals"][0][0].__setitem__(0, "nan"), "'residuals'"),
        (lambda r: r.update(residuals=[[[0.0]]]), "'residuals'.*shape"),
        (lambda r: r.update(residuals="abc"), "'residuals'"),
        (lambda r: r["residuals"][0][0].__setitem__(0, 10**400), "'residuals'"),
        (lambda r: r["residuals"][0][0].__setitem__(0, True), "'residuals'.*numbers"),
        (lambda r: r["residuals"][0][0].__setitem__(0, "0.1"), "'residuals'.*numbers"),
        (lambda r: r["residuals"][0].__setitem__(0, [0.1]), "'residuals'"),
        (lambda r: r.update(scenarios=10**400), "'scenarios'.*allowed range"),
        (lambda r: r["weights"][0][0].__setitem__(0, True), "'weights'.*numbers"),
        (lambda r: r["weights"][0][0].__setitem__(0, "0.1"), "'weights'.*numbers"),
        (lambda r: r["weights"][0][0].__setitem__(0, 10**400), "'weights'"),
        (lambda r: r.update(scenarios=-3), "'scenarios'"),
        (lambda r: r.update(scenarios="16"), "'scenarios'.*integer"),
        (lambda r: r.update(scenarios=10**9), "'scenarios'.*allowed range"),
        (lambda r: r.update(base="planner"), "'scenarios'.*base 'mpc'"),
        (lambda r: r.update(residuals=None), "'scenarios'.*residuals"),
    ],
    ids=["out_of_range", "nan", "shape", "string", "huge_number", "bool", "numeric_string", "ragged", "huge_count", "weights_bool", "weights_string", "weights_huge", "negative", "string_count", "huge", "planner", "no_residuals"],
)
def test_a_bad_scenario_file_is_named(corrector, tmp_path, change, message):
    corrector.save(tmp_path, "mpc", scenarios=4)
    record = json.loads((tmp_path / CORRECTOR_FILE).read_text())
    change(record)
    (tmp_path / CORRECTOR_FILE).write_text(json.dumps(record))
    with pytest.raises(ValueError, match=message):
        CorrectedForecastController.load(tmp_path)


def test_cli_fit_forecast_with_scenarios_then_evaluate(tmp_path, capsys):
    out = tmp_path / "hedged"
    assert main(["fit-forecast", "--days", "64", "--scenarios", "2", "--residual-days", "8", "--validation-days", "1", "--out", str(out)]) == 0
    record = json.loads((out / CORRECTOR_FILE).read_text())
    assert record["scenarios"] == 2 and len(record["residuals"]) > 0 and record["fit"]["residual_days"] == 8
    assert main(["evaluate", "--controller", str(out), "--split", "validation", "--days", "1"]) == 0
    assert "gap closed" in capsys.readouterr().out
    assert make_controller(str(out)).scenarios == 2
    assert main(["fit-forecast", "--days", "64", "--scenarios", "2", "--base", "planner", "--out", str(tmp_path / "planner")]) == 2
    assert main(["fit-forecast", "--days", "64", "--scenarios", "2", "--residual-days", "65", "--out", str(tmp_path / "more")]) == 2
    assert not (tmp_path / "planner").exists() and not (tmp_path / "more").exists()


@pytest.mark.slow
def test_mpc_on_scenarios_beats_mpc_on_the_corrected_forecast_on_validation_days():
    corrector = fit_corrector("campus", days=1024, seed=0, residual_days=256)
    hedged = evaluate(CorrectedForecastController("mpc", corrector, scenarios=16), scenario="campus", split="validation", days=20, seed=0).summary
    point = evaluate(CorrectedForecastController("mpc", corrector), scenario="campus", split="validation", days=20, seed=0).summary
    assert hedged["gap_closed"] > point["gap_closed"] + 0.01
    assert hedged["safety_violations"] == 0 and hedged["unmet_ev_kwh_per_day"] <= point["unmet_ev_kwh_per_day"] + 1e-9
