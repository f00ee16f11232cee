"""The corrector's calibration wrapper: a zero action is the least-squares corrector, an action moves the
forecasts the base plans on, a trained run evaluates with no flag, and its settings are checked."""

import numpy as np
import pytest
from stable_baselines3.common.env_checker import check_env

from sb3_microgrid.envs import MicrogridEnv
from sb3_microgrid.forecasting import CorrectedForecastController
from sb3_microgrid.wrappers import CalibratedController, CalibrationWrapper
from sb3_microgrid.wrappers.calibration import corrector_for

FIT = {"fit_days": 64, "fit_seed": 0}


class _Fixed:
    """A policy with one fixed action."""

    name = "fixed"

    def __init__(self, action):
        self.action = np.asarray(action, dtype=np.float32)

    def reset(self, env, obs):
        pass

    def act(self, obs):
        return self.action


class _Recording:
    """A base controller that records the observations it plans on and idles."""

    name = "recording"

    def __init__(self):
        self.seen = []

    def reset(self, env, obs):
        self.n = env.action_space.shape[0]

    def act(self, obs):
        self.seen.append(obs.copy())
        return np.zeros(self.n)


def _run(controller, env, day="2024-03-05", seed=3):
    obs, _ = env.reset(seed=seed, options={"day": day})
    controller.reset(env, obs)
    actions, done = [], False
    while not done:
        actions.append(np.asarray(controller.act(obs), dtype=np.float64))
        obs, _, done, _, _ = env.step(actions[-1])
    return np.array(actions)


def test_a_zero_action_is_the_least_squares_corrector_exactly():
    env = MicrogridEnv(scenario="campus", split="test")
    corrector = corrector_for(env.scenario, **{"days": 64, "seed": 0})
    reference = _run(CorrectedForecastController("planner", corrector), env)
    shape = (3 * len(env.obs_layout.window_names),)
    calibrated = _run(CalibratedController(_Fixed(np.zeros(shape)), "planner", **FIT), env)
    np.testing.assert_array_equal(calibrated, reference)


def test_the_action_moves_the_forecasts_the_base_plans_on():
    env = MicrogridEnv(scenario="campus", split="test")
    lay = env.obs_layout
    s, h = len(lay.window_names), lay.history_steps
    seen = {}
    for label, bias in (("zero", 0.0), ("load up", 1.0)):
        action = np.zeros((3, s))
        action[1, lay.window_names.index("load")] = bias
        ctl = CalibratedController(_Fixed(action.ravel()), "rule", bias=0.05, **FIT)
        ctl.base = _Recording()  # rule's slot, watched
        _run(ctl, env)
        seen[label] = np.array([lay.windows(o) for o in ctl.base.seen])
    load = lay.window_names.index("load")
    # a bias of +0.05 on load's predicted relative error: at the first step, where nothing is revealed yet, every
    # load forecast is divided by 1.05; later ones by 1 + their corrected error + 0.05, so all are lower
    up, zero = seen["load up"][:, h:, load], seen["zero"][:, h:, load]
    np.testing.assert_allclose(up[0], zero[0] / 1.05, rtol=1e-6)
    assert np.all(up[zero > 0] < zero[zero > 0])
    np.testing.assert_array_equal(np.delete(seen["load up"], load, axis=2), np.delete(seen["zero"], load, axis=2))
    np.testing.assert_array_equal(seen["load up"][:, :h], seen["zero"][:, :h])


def test_wrapper_spaces_and_checker():
    env = CalibrationWrapper(MicrogridEnv(scenario="campus", split="train"), **FIT)
    assert env.action_space.shape == (15,) and env.obs_layout.static_names == ("hour_sin", "hour_cos", "weekend", "time_left", "soc", "day_peak")
    check_env(env, warn=False)


def test_a_calibrated_run_evaluates_with_no_flag(tmp_path):
    from sb3_microgrid.baselines import make_controller
    from sb3_microgrid.cli import main
    from sb3_microgrid.evaluation import evaluate

    conf = tmp_path / "calibrated.yml"
    conf.write_text(
        "Microgrid-v0:\n  n_envs: 2\n  policy: LinearPolicy\n  n_delta: 2\n  n_top: 2\n  n_eval_episodes: 2\n  delta_std: 0.5\n"
        "  env_wrapper:\n    - sb3_microgrid.wrappers.CalibrationWrapper: {controller: rule, fit_days: 64, fit_seed: 0, bias: 0.2}\n"
        "  normalize: \"{'norm_obs': True, 'norm_reward': False}\"\n"
    )
    run = tmp_path / "run"
    assert main(["train", "--algo", "paired_ars", "--conf", str(conf), "--run-dir", str(run), "--timesteps", "200", "--save-freq", "100000"]) == 0
    controller = make_controller(str(run / "model.zip"))
    assert isinstance(controller, CalibratedController) and controller.fit_days == 64 and controller.ranges[1] == 0.2
    learned = evaluate(controller, scenario="campus", split="test", days=1, reference=False).summary["cost_per_day"]
    start = CorrectedForecastController("rule", corrector_for(MicrogridEnv(scenario="campus").scenario, 64, 0))
    corrected = evaluate(start, scenario="campus", split="test", days=1, reference=False).summary["cost_per_day"]
    assert learned != corrected  # the trained calibration acts
    assert main(["evaluate", "--controller", str(run / "model.zip"), "--days", "1", "--no-reference"]) == 0


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"controller": "runs/x/model.zip"}, "controller"),
        ({"controller": "optimal"}, "controller"),
        ({"fit_days": 10}, "fit_days"),
        ({"fit_days": True}, "fit_days"),
        ({"fit_seed": -1}, "fit_seed"),
        ({"gain": 2.0}, "gain"),
        ({"bias": "0.1"}, "bias"),
        ({"slope": float("nan")}, "slope"),
        ({"features": "soc"}, "features"),
        ({"features": ["soc", "nope"]}, "features"),
    ],
)
def test_settings_are_checked_naming_the_field(settings, field):
    with pytest.raises(ValueError, match=field):
        CalibrationWrapper(MicrogridEnv(scenario="campus"), **{**FIT, **settings})


def test_a_wrong_length_action_is_refused_and_nan_or_out_of_range_values_are_bounded():
    env = CalibrationWrapper(MicrogridEnv(scenario="campus", split="test"), **FIT)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must have 15 entries"):
        env.step(np.zeros(14, dtype=np.float32))
    raw = env.env.unwrapped
    hostile = np.r_[np.full(5, 7.0), np.full(5, np.nan), np.full(5, -7.0)]  # rows gain, bias, slope
    bounded = np.r_[np.ones(5), np.zeros(5), -np.ones(5)]
    decisions = []
    for action in (hostile, bounded):
        obs, _ = raw.reset(seed=0, options={"day": "2024-03-05"})
        env.calibrated.start(raw, obs)
        first = env.calibrated.decide(obs, action)
        obs, *_ = raw.step(first)
        decisions.append((first, env.calibrated.decide(obs, action)))  # the second step: the gain acts on a prediction
    for hostile_action, bounded_action in zip(*decisions):
        assert np.isfinite(hostile_action).all()
        np.testing.assert_array_equal(hostile_action, bounded_action)


def test_a_new_episode_forgets_the_previous_window():
    env = MicrogridEnv(scenario="campus", split="test")
    shape = (3 * len(env.obs_layout.window_names),)
    used = CalibratedController(_Fixed(np.full(shape, 0.3)), "planner", **FIT)
    _run(used, env, day="2024-03-04")
    fresh = CalibratedController(_Fixed(np.full(shape, 0.3)), "planner", **FIT)
    np.testing.assert_array_equal(_run(used, env), _run(fresh, env))


def test_wrappers_that_change_the_spaces_go_outside():
    from sb3_microgrid.wrappers import ResidualWrapper

    with pytest.raises(TypeError, match="outside it"):
        CalibrationWrapper(ResidualWrapper(MicrogridEnv(scenario="campus"), "rule", battery_only=True), **FIT)


def test_another_tariff_gets_its_own_corrector():
    campus = corrector_for(MicrogridEnv(scenario="campus").scenario, 64, 0)
    tod = corrector_for(MicrogridEnv(scenario="campus_tod").scenario, 64, 0)
    assert campus is corrector_for(MicrogridEnv(scenario="campus").scenario, 64, 0)  # fitted once per process
    assert campus.signature != tod.signature
