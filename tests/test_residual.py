"""The residual wrapper: a zero residual is the base controller, and the policy sees the base action."""

import re

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env

from sb3_microgrid.baselines import RuleController
from sb3_microgrid.envs import MicrogridEnv
from sb3_microgrid.goal_env import MicrogridGoalEnv
from sb3_microgrid.wrappers import ResidualWrapper, combine


def _day(env, policy, day="2024-03-05", seed=3):
    obs, _ = env.reset(seed=seed, options={"day": day})
    actions, cost, done = [], 0.0, False
    while not done:
        action = policy(obs)
        actions.append(np.asarray(action, dtype=np.float64))
        obs, _, done, _, info = env.step(action)
        cost += info["cost"]
    return np.array(actions), cost


def test_zero_residual_reproduces_the_rule_exactly():
    raw = MicrogridEnv(scenario="campus", split="test")
    rule = RuleController()

    def rule_policy(obs):
        if raw.core.t == 0:
            rule.reset(raw, obs)
        return rule.act(obs)

    rule_actions, rule_cost = _day(raw, rule_policy)
    wrapped = ResidualWrapper(MicrogridEnv(scenario="campus", split="test"), "rule", scale=0.5)
    sent = []
    inner_step = wrapped.env.step

    def record(action):
        sent.append(np.array(action))
        return inner_step(action)

    wrapped.env.step = record
    _, cost = _day(wrapped, lambda obs: np.zeros(wrapped.action_space.shape, dtype=np.float32))
    np.testing.assert_array_equal(np.array(sent), rule_actions)
    assert cost == rule_cost


def test_the_observation_carries_the_base_action_and_the_unchanged_window():
    env = ResidualWrapper(MicrogridEnv(scenario="campus", split="test"), "rule")
    obs, _ = env.reset(seed=1)
    inner = env.env.unwrapped.core.observe()[0]
    lay, inner_lay = env.obs_layout, env.env.unwrapped.obs_layout
    assert env.observation_space.shape == (lay.size,) and env.observation_space.layout == lay
    base = obs[[lay.index(f"base_action_{k}") for k in range(env.action_space.shape[0])]]
    np.testing.assert_allclose(base, env.base_action.astype(np.float32))
    assert np.any(base != 0.0)
    np.testing.assert_array_equal(obs[lay.window], inner[inner_lay.window])
    np.testing.assert_array_equal(obs[: inner_lay.n_static], inner[inner_lay.static])


def test_a_residual_moves_the_action_and_stays_in_range():
    base = np.array([0.5, -1.0, 0.2])
    np.testing.assert_allclose(combine(base, np.array([1.0, -1.0, 0.2]), 0.5), [1.0, -1.0, 0.3])


def test_wrapped_env_passes_the_checkers():
    env = ResidualWrapper(MicrogridEnv(scenario="campus", split="train"), "rule")
    check_env(env, warn=False)
    gym_check_env(env, skip_render_check=True)


@pytest.mark.parametrize("scale", [-0.1, 3.0, "0.5"])
def test_scale_is_checked(scale):
    with pytest.raises(ValueError, match="scale"):
        ResidualWrapper(MicrogridEnv(scenario="campus"), "rule", scale=scale)


def test_battery_only_residual_moves_the_battery_alone():
    env = ResidualWrapper(MicrogridEnv(scenario="campus", split="test"), "rule", scale=0.5, battery_only=True)
    assert env.action_space.shape == (1,)
    env.reset(seed=2, options={"day": "2024-03-05"})
    for _ in range(9):  # into the day, with EVs connected
        env.step(np.zeros(1, dtype=np.float32))
    base = env.base_action
    assert np.any(base[1:] != 0.0)
    np.testing.assert_allclose(combine(base, np.array([0.4]), 0.5, battery_only=True), np.r_[np.clip(base[0] + 0.2, -1, 1), base[1:]])


def test_a_residual_run_evaluates_with_no_flag(tmp_path):
    """``sb3-microgrid evaluate --controller RUN/model.zip`` puts the run's base controller back under the policy."""
    from sb3_microgrid.baselines import make_controller
    from sb3_microgrid.cli import main
    from sb3_microgrid.evaluation import evaluate
    from sb3_microgrid.wrappers.residual import ResidualController

    conf = tmp_path / "residual.yml"
    conf.write_text(
        "Microgrid-v0:\n"
        "  n_envs: 2\n"
        "  policy: LinearPolicy\n"
        "  n_delta: 2\n"
        "  n_top: 2\n"
        "  n_eval_episodes: 2\n"
        "  delta_std: 0.05\n"
        "  env_wrapper:\n"
        "    - sb3_microgrid.wrappers.ResidualWrapper: {controller: rule, scale: 0.5, battery_only: true}\n"
        "  normalize: \"{'norm_obs': True, 'norm_reward': False}\"\n"
    )
    run = tmp_path / "run"
    assert main(["train", "--algo", "paired_ars", "--conf", str(conf), "--run-dir", str(run), "--timesteps", "400", "--save-freq", "100000"]) == 0
    controller = make_controller(str(run / "model.zip"))
    assert isinstance(controller, ResidualController) and controller.battery_only and controller.scale == 0.5
    assert isinstance(controller.controller, RuleController)
    learned = evaluate(controller, scenario="campus", split="test", days=1, reference=False).summary["cost_per_day"]
    rule = evaluate("rule", scenario="campus", split="test", days=1, reference=False).summary["cost_per_day"]
    assert learned != rule  # the trained residual acts: a plain SB3Controller on the raw env would fail on the layout
    assert main(["evaluate", "--controller", str(run / "model.zip"), "--days", "1", "--no-reference"]) == 0
    # on a site with another observation layout it fails before any controller runs, naming the layout
    other = tmp_path / "six_ports.yaml"
    other.write_text("base: campus\nev: {n_ports: 6}\n")
    assert main(["evaluate", "--controller", f"rule,{run / 'model.zip'}", "--scenario", str(other), "--days", "1", "--no-reference"]) == 2


@pytest.mark.parametrize("controller", ["runs/x/model.zip", "nope"])
def test_a_base_controller_named_by_a_string_is_a_baseline(controller):
    # a model path would be unpickled on the say-so of a hyperparameter file
    with pytest.raises(ValueError, match="controller must be one of"):
        ResidualWrapper(MicrogridEnv(scenario="campus"), controller)


@pytest.mark.parametrize("features", [["soc", "no_such_feature"], [], "soc", [1, 2]])
def test_features_are_checked_against_the_layout(features):
    with pytest.raises(ValueError, match="features"):
        ResidualWrapper(MicrogridEnv(scenario="campus"), "rule", features=features)


def test_features_give_a_small_observation_with_the_base_action():
    env = ResidualWrapper(MicrogridEnv(scenario="campus", split="test"), "rule", features=["soc", "hour_sin"])
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == (2 + env.env.action_space.shape[0],) == obs.shape
    assert obs[0] == env.env.unwrapped.core.observe()[0][env.env.unwrapped.obs_layout.index("soc")]


def test_wrappers_that_change_the_spaces_go_outside():
    inner = ResidualWrapper(MicrogridEnv(scenario="campus"), "rule", battery_only=True)
    with pytest.raises(TypeError, match="ResidualWrapper must wrap Microgrid-v0 with its own"):
        ResidualWrapper(inner, "rule")


@pytest.mark.parametrize(("battery_only", "residual"), [(False, np.array([0.7])), (False, np.float32(0.7)), (False, np.zeros(50)), (True, np.zeros(4)), (True, np.zeros(0))])
def test_a_residual_of_another_size_is_refused_not_broadcast(battery_only, residual):
    """A (1,) residual used to move all 13 entries, and a (4,) battery residual lost 3 of them."""
    env = ResidualWrapper(MicrogridEnv(scenario="campus"), "rule", battery_only=battery_only)
    env.reset(seed=0)
    size = 1 if battery_only else 13
    with pytest.raises(ValueError, match=rf"must have {size} entries .* got shape {re.escape(str(np.shape(residual)))}"):
        env.step(residual)


def test_the_goal_env_is_refused():
    """MicrogridGoal-v0 is a MicrogridEnv observing a dict, which no base controller reads (it failed at reset)."""
    goal = MicrogridGoalEnv("campus", budget_range=((-5, 5), (-5, 5)), seed=0)
    with pytest.raises(TypeError, match="ResidualWrapper needs a Microgrid-v0 env .*MicrogridGoalEnv"):
        ResidualWrapper(goal, "rule")


def test_the_wrappers_refuse_an_aggregate_env_their_per_port_base_cannot_act_in_when_built(monkeypatch):
    """The base's check came at the first reset, after the wrapper was built and (calibration) a corrector fitted."""
    import sb3_microgrid.wrappers.calibration as calibration
    from sb3_microgrid.wrappers import CalibrationWrapper

    aggregate = MicrogridEnv({"base": "campus", "ev": {"dispatch": "aggregate"}})
    with pytest.raises(ValueError, match=r"ResidualWrapper: its base controller acts with ev.dispatch = 'ports', this env has 'aggregate'"):
        ResidualWrapper(aggregate, "rule")
    monkeypatch.setattr(calibration, "fit_corrector", lambda *a, **k: pytest.fail("the corrector was fitted"))
    with pytest.raises(ValueError, match=r"CalibrationWrapper: its base controller acts with ev.dispatch = 'ports'"):
        CalibrationWrapper(aggregate, "planner", fit_days=4)
    ResidualWrapper(aggregate.with_dispatch("ports"), "rule").reset(seed=0)


def test_residual_arguments_of_the_wrong_type_are_refused_and_numpy_numbers_taken():
    env = MicrogridEnv()
    with pytest.raises(ValueError, match="battery_only must be true or false, got 'no'"):
        ResidualWrapper(env, battery_only="no")  # "no" was true
    with pytest.raises(ValueError, match="controller must be one of .* or a Controller object, got 5"):
        ResidualWrapper(env, 5)  # built, then an AttributeError at reset
    assert ResidualWrapper(env, scale=np.float32(0.25)).residual.scale == 0.25
