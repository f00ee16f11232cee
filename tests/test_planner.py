"""The dynamic-programming planner: batched, safe, and close to the optimum with perfect forecasts."""

import numpy as np
import pytest

from sb3_microgrid.baselines import PlannerController, make_controller
from sb3_microgrid.baselines.planner import ObservationReader, plan
from sb3_microgrid.envs import MicrogridVecEnv
from sb3_microgrid.evaluation import evaluate

DAYS = 4


@pytest.fixture(scope="module")
def scores():
    out = {}
    for label, controller in {"forecast": PlannerController(), "perfect": PlannerController(perfect_forecasts=True)}.items():
        out[label] = evaluate(controller, scenario="campus", split="test", days=DAYS, seed=0).days
    return out


def test_planner_is_a_named_controller():
    assert isinstance(make_controller("planner"), PlannerController)


def test_planner_is_safe_and_serves_every_ev(scores):
    for frame in scores.values():
        assert frame["safety_violations"].sum() == 0
        assert frame["unmet_ev_kwh"].sum() == pytest.approx(0.0, abs=1e-6)


def test_planner_with_perfect_forecasts_is_within_one_percent_of_the_optimum(scores):
    # It does not know future EV arrivals and plans on 81 energy levels (15 kWh apart for the campus):
    # 1 % of the bill is about 40 % of the headroom between naive and the optimum on these days.
    frame = scores["perfect"]
    assert (frame["cost"] >= frame["cost_optimal"] - 1e-6).all()
    assert frame["cost"].mean() <= 1.01 * frame["cost_optimal"].mean()


def test_planner_on_forecasts_earns_most_of_the_gap(scores):
    # A planner that did nothing would close 0; this one closes about two thirds on these days.
    frame = scores["forecast"]
    gap = (frame["cost_naive"].mean() - frame["cost"].mean()) / (frame["cost_naive"].mean() - frame["cost_optimal"].mean())
    assert gap > 0.4


def test_one_batched_call_plans_each_microgrid_as_alone():
    venv = MicrogridVecEnv(3, scenario="campus", split="test", seed=5)
    obs = venv.reset()
    for _ in range(7):  # a state with EVs connected and a day peak
        obs, *_ = venv.step(np.zeros((3, venv.action_space.shape[0]), dtype=np.float32))
    reader = ObservationReader(venv.scenario, venv.obs_layout, venv.core.site.window_scale)
    reader.reset(obs)
    battery, ports = plan(reader.inputs(obs, venv.core), venv.scenario)
    assert np.any(battery != 0.0) and np.any(ports > 0.0)
    for i in range(3):
        row = ObservationReader(venv.scenario, venv.obs_layout, venv.core.site.window_scale)
        row.reset(obs[i : i + 1])
        inputs = reader.inputs(obs, venv.core)
        single = type(inputs)(**{k: v[i : i + 1] for k, v in vars(inputs).items()})
        b, p = plan(single, venv.scenario)
        assert b[0] == battery[i] and np.array_equal(p[0], ports[i])


def test_plan_rejects_a_degenerate_grid():
    venv = MicrogridVecEnv(1, scenario="campus", split="test", seed=0)
    obs = venv.reset()
    reader = ObservationReader(venv.scenario, venv.obs_layout, venv.core.site.window_scale)
    reader.reset(obs)
    with pytest.raises(ValueError, match="n_levels"):
        plan(reader.inputs(obs, venv.core), venv.scenario, n_levels=1)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"n_levels": 1}, "n_levels"),
        ({"n_levels": 2.5}, "n_levels"),  # was a numba TypingError at the first step
        ({"n_levels": 10**6}, "n_levels"),  # planned for minutes a step
        ({"n_levels": True}, "n_levels"),
        ({"n_caps": 0}, "n_caps"),
        ({"n_caps": 101}, "n_caps"),
        ({"n_caps": "12"}, "n_caps"),
        ({"perfect_forecasts": "no"}, "perfect_forecasts"),
    ],
)
def test_controller_checks_its_arguments_at_construction(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PlannerController(**kwargs)


def test_whole_numbers_of_any_type_are_plain_ints():
    planner = PlannerController(n_levels=np.int64(2), n_caps=100.0, perfect_forecasts=np.True_)
    assert (planner.n_levels, planner.n_caps, planner.perfect_forecasts) == (2, 100, True)
    assert type(planner.n_levels) is int and type(planner.n_caps) is int and planner.perfect_forecasts is True


def test_plan_checks_its_grid_like_the_controller():
    venv = MicrogridVecEnv(1, scenario="campus", split="test", seed=0)
    obs = venv.reset()
    reader = ObservationReader(venv.scenario, venv.obs_layout, venv.core.site.window_scale)
    reader.reset(obs)
    inputs = reader.inputs(obs, venv.core)
    with pytest.raises(ValueError, match=r"n_levels must be an integer in \[2, 1000\]"):
        plan(inputs, venv.scenario, n_levels=2.5)
    with pytest.raises(ValueError, match=r"n_caps = 101 is outside the allowed range \[1, 100\]"):
        plan(inputs, venv.scenario, n_caps=101)
    battery, _ = plan(inputs, venv.scenario, n_levels=np.int64(81), n_caps=12.0)
    assert battery[0] == plan(inputs, venv.scenario)[0][0]
