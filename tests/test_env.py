"""The environment: API contracts, determinism, end-of-day rule, difficulty, vector core equality."""

import hashlib
import re
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

import sb3_microgrid  # noqa: F401  (registers Microgrid-v0)
from sb3_microgrid.baselines import MPCController, NaiveController, OptimalController, RuleController
from sb3_microgrid.envs import EPISODE_KEYS, STEP_KEYS, MicrogridEnv, MicrogridVecEnv, ObservationLayout


def run_episode(env: gym.Env, policy, seed: int = 0, options=None):
    obs, _ = env.reset(seed=seed, options=options)
    infos, rewards, observations = [], [], [obs]
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        done = terminated or truncated
        infos.append(info)
        rewards.append(reward)
        observations.append(obs)
    return np.array(observations), np.array(rewards), infos


def test_checkers_pass():
    """Both checkers pass, and their only complaints are the observation box's infinite bounds (by design:
    ``Box(-inf, inf)``, docs/environment.md)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(MicrogridEnv(), skip_render_check=True)
        sb3_check_env(MicrogridEnv(), warn=True)
    unexpected = [str(w.message) for w in caught if "Box observation space" not in str(w.message) or "infinity" not in str(w.message)]
    assert unexpected == []


def test_gym_make_defaults_and_kwargs():
    env = gym.make("Microgrid-v0")
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.unwrapped.scenario.name == "campus"
    assert env.unwrapped.scenario.episode_steps == 24
    env = gym.make("Microgrid-v0", scenario="campus_tod", split="test", seed=0)
    _, info = env.reset()
    assert info["date"].startswith("2024")
    assert env.unwrapped.scenario.grid.tariff == "tod"


def test_make_vec_env_eight():
    venv = make_vec_env("Microgrid-v0", n_envs=8, seed=0)
    obs = venv.reset()
    assert obs.shape == (8, venv.observation_space.shape[0])
    obs, rew, done, infos = venv.step(np.zeros((8, venv.action_space.shape[0])))
    assert rew.shape == (8,) and len(infos) == 8


def test_registration_from_fresh_interpreter():
    code = "import gymnasium as gym, sb3_microgrid; e = gym.make('Microgrid-v0'); e.reset(seed=1); print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("ok")


def test_the_constructor_seed_serves_the_first_reset_only():
    """gymnasium's contract: a seedless reset continues the stream, even after a seeded one."""
    seeded, plain = MicrogridEnv(seed=0), MicrogridEnv()
    dates = [[env.reset(seed=3)[1]["date"]] + [env.reset()[1]["date"] for _ in range(3)] for env in (seeded, plain)]
    assert dates[0] == dates[1]
    assert len(set(dates[0])) == 4
    assert MicrogridEnv(seed=5).reset()[1] == MicrogridEnv().reset(seed=5)[1]


def test_same_seed_same_episode():
    policy_rng = np.random.default_rng(0)
    actions = policy_rng.uniform(-1, 1, size=(24, 13))
    it = iter(actions)
    obs_a, rew_a, info_a = run_episode(MicrogridEnv(), lambda o: next(it), seed=7)
    it = iter(actions)
    obs_b, rew_b, info_b = run_episode(MicrogridEnv(), lambda o: next(it), seed=7)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    assert info_a == info_b
    _, _, info_c = run_episode(MicrogridEnv(), lambda o: actions[0], seed=8)
    assert info_c[-1]["episode_metrics"] != info_a[-1]["episode_metrics"]


def test_info_keys_every_step_and_episode_metrics():
    env = MicrogridEnv()
    _, _, infos = run_episode(env, lambda o: env.action_space.sample())
    for info in infos:
        assert set(STEP_KEYS) <= set(info)
    assert set(EPISODE_KEYS) <= set(infos[-1]["episode_metrics"])
    assert "episode_metrics" not in infos[0]
    total = sum(i["cost"] for i in infos)
    assert infos[-1]["episode_metrics"]["total_cost"] == pytest.approx(total)


def test_reward_is_scaled_negative_cost():
    env = MicrogridEnv()
    env.reset(seed=3)
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert reward == pytest.approx(-info["cost"] / env.scenario.reward.scale_inr)


def test_layout_window_matches_true_history():
    """The history rows of the window are the true past PV and load, read through the layout."""
    env = MicrogridEnv()
    layout = env.obs_layout
    obs, _ = env.reset(seed=0, options={"day": "2016-03-02"})
    pv_col, load_col = layout.window_names.index("pv"), layout.window_names.index("load")
    load_seen = []
    for _ in range(layout.history_steps + 1):
        load_seen.append(env.core.episode.load_kw[0, env.core.t])
        obs, *_ = env.step(np.zeros(env.action_space.shape))
    window = obs[layout.window].reshape(layout.window_shape)
    # the last history row is the previous step: its load equals what the env used then
    scale = env.core.site.window_scale[load_col]
    np.testing.assert_allclose(window[: layout.history_steps, load_col] * scale, load_seen[1:], rtol=1e-5)
    assert (window[:, pv_col] >= 0).all()
    assert layout.static.stop == layout.window.start and layout.size == obs.size


def test_forecast_error_grows_with_lead():
    env = MicrogridEnv(scenario={"forecast": {"load_noise": 0.2}})
    h = env.obs_layout.history_steps
    errors = []
    for seed in range(40):
        obs, _ = env.reset(seed=seed)
        truth = env.core.episode.window_mean[0, : env.obs_layout.window_shape[0]]
        window = obs[env.obs_layout.window].reshape(env.obs_layout.window_shape)
        errors.append(np.abs(window[h:, 2] - truth[h:, 2]) / truth[h:, 2])
    err = np.mean(errors, axis=0)
    assert err[-1] > 2 * err[0]
    assert np.all(np.isfinite(err))


def test_forecast_error_variance_grows_linearly_with_lead():
    """The relative error at lead l has the variance sigma**2 * (l + 1) / F (docs/environment.md)."""
    env = MicrogridEnv(scenario={"forecast": {"load_noise": 0.2}})
    h, f = env.obs_layout.history_steps, env.obs_layout.forecast_steps
    load = env.obs_layout.window_names.index("load")
    rel = []
    for seed in range(200):
        obs, _ = env.reset(seed=seed)
        truth = env.core.episode.window_mean[0, h : h + f, load]
        rel.append(obs[env.obs_layout.window].reshape(env.obs_layout.window_shape)[h:, load] / truth - 1.0)
    variance = np.var(rel, axis=0)
    np.testing.assert_allclose(variance / 0.2**2, (np.arange(f) + 1) / f, rtol=0.3)


def test_two_successive_forecasts_do_not_reveal_the_truth():
    """A forecast revised one lead closer drops one error increment; it must not let an agent that
    remembers the previous observation solve for the true series (the error of one rescaled path did)."""
    env = MicrogridEnv(scenario={"forecast": {"load_noise": 0.2}})
    h, f = env.obs_layout.history_steps, env.obs_layout.forecast_steps
    load = env.obs_layout.window_names.index("load")
    lead_now, lead_next = np.sqrt(np.arange(2, f + 1) / f), np.sqrt(np.arange(1, f) / f)
    forecast_err, solved_err = [], []
    for seed in range(20):
        obs0, _ = env.reset(seed=seed)
        truth = env.core.episode.window_mean[0, h + 1 : h + f, load]
        obs1, *_ = env.step(np.zeros(env.action_space.shape))
        earlier = obs0[env.obs_layout.window].reshape(env.obs_layout.window_shape)[h + 1 :, load]
        later = obs1[env.obs_layout.window].reshape(env.obs_layout.window_shape)[h : h + f - 1, load]
        # Under x * (1 + c * u) with one u per target, these two forecasts give x exactly.
        solved = (lead_next * earlier - lead_now * later) / (lead_next - lead_now)
        forecast_err.append(np.abs(later - truth).mean())
        solved_err.append(np.abs(solved - truth).mean())
    assert np.mean(solved_err) > np.mean(forecast_err)


@pytest.mark.parametrize("scenario", [None, {"base": "campus", "reward": {"carbon_price_inr_per_kg": 50.0}}], ids=["no_carbon_price", "carbon_price"])
def test_draining_at_end_of_day_does_not_pay(scenario):
    """Idling all day vs idling and then emptying the battery in the last hour (with a carbon price,
    the shortfall must be priced with the carbon of buying it back)."""
    for day in ("2016-01-05", "2016-06-14", "2016-10-20"):
        idle = MicrogridEnv(scenario)
        n = idle.action_space.shape[0]
        hold = np.zeros(n)
        _, _, info_idle = run_episode(idle, lambda o: hold, options={"day": day})
        env = MicrogridEnv(scenario)
        _, _, info_drain = run_episode(env, lambda o, e=env: hold if e.core.t < 23 else np.r_[-1.0, np.zeros(n - 1)], options={"day": day})
        assert info_drain[-1]["battery_kwh"] < -100  # it really discharged
        assert info_drain[-1]["cost_terminal"] > 0
        assert info_drain[-1]["episode_metrics"]["total_cost"] > info_idle[-1]["episode_metrics"]["total_cost"]


def test_set_difficulty_validates_and_applies_at_next_reset():
    env = MicrogridEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="soc_min"):
        env.set_difficulty(soc_min=0.8, soc_max=0.5)
    with pytest.raises(ValueError, match="renewable_noise"):
        env.set_difficulty(renewable_noise=-1)
    with pytest.raises(ValueError, match="unknown difficulty"):
        env.set_difficulty(bogus=1)
    env.set_difficulty(ev_count=2, soc_min=0.3, soc_max=0.7, ev_deadline_buffer=2.0, price_volatility=0.5)
    assert env.difficulty.ev_count is None  # not yet
    env.reset(seed=0, options={"day": "2016-03-02"})
    assert env.difficulty.ev_count == 2
    arrivals = (env.core.episode.arrival_energy[0] > 0).sum()
    assert 0 < arrivals <= 2
    assert env.core.episode.soc_min[0] == 0.3 and env.core.episode.soc_max[0] == 0.7
    prices = env.core.episode.import_price[0]
    base = MicrogridEnv()
    base.reset(seed=0, options={"day": "2016-03-02"})
    assert prices.std() == pytest.approx(0.5 * base.core.episode.import_price[0].std(), rel=1e-6)


def test_set_difficulty_takes_numpy_numbers_as_python_ones():
    """A curriculum interpolating with numpy gave float32 and int64 values, which the range checks refused."""
    env = MicrogridEnv()
    merged = env.set_difficulty(renewable_noise=np.float32(0.25), ev_count=np.int64(3))
    assert (merged.renewable_noise, merged.ev_count) == (pytest.approx(0.25), 3)
    assert type(merged.renewable_noise) is float and type(merged.ev_count) is int
    with pytest.raises(ValueError, match="renewable_noise"):
        env.set_difficulty(renewable_noise=np.float32(-1.0))


@pytest.mark.parametrize("kind", ["dummy", "subproc", "vecnormalize", "microgrid"])
def test_set_difficulty_through_env_method(kind):
    if kind == "microgrid":
        venv = MicrogridVecEnv(2, seed=0)
    else:
        # a class, not the id: forkserver workers do not import sb3_microgrid, so the id is unknown there
        venv = make_vec_env(MicrogridEnv, n_envs=2, seed=0, vec_env_cls=SubprocVecEnv if kind == "subproc" else DummyVecEnv)
    if kind == "vecnormalize":
        venv = VecNormalize(venv)
    venv.reset()
    venv.env_method("set_difficulty", ev_count=1)
    assert [d.ev_count for d in venv.get_attr("difficulty")] == [None, None]
    venv.reset()
    assert [d.ev_count for d in venv.get_attr("difficulty")] == [1, 1]
    venv.close()


def test_vec_env_equals_single_envs():
    n, seed = 4, 11
    vec = MicrogridVecEnv(n, seed=seed)
    dummy = DummyVecEnv([lambda: MicrogridEnv() for _ in range(n)])
    dummy.seed(seed)
    assert vec.observation_space == dummy.observation_space
    obs_v, obs_d = vec.reset(), dummy.reset()
    np.testing.assert_array_equal(obs_v, obs_d)
    assert vec.reset_infos == dummy.reset_infos
    rng = np.random.default_rng(0)
    for _ in range(3 * 24):  # three episodes: auto-reset continues each env's generator
        action = rng.uniform(-1.5, 1.5, size=(n, vec.action_space.shape[0]))
        obs_v, rew_v, done_v, info_v = vec.step(action)
        obs_d, rew_d, done_d, info_d = dummy.step(action)
        np.testing.assert_array_equal(obs_v, obs_d)
        np.testing.assert_array_equal(rew_v, rew_d)
        np.testing.assert_array_equal(done_v, done_d)
        for a, b in zip(info_v, info_d):
            b = {k: v for k, v in b.items() if k != "TimeLimit.truncated" or done_d[0]}
            assert set(a) == set(b)
            for key in a:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_quarter_hour_steps():
    env = MicrogridEnv(scenario={"step_hours": 0.25})
    _, rewards, infos = run_episode(env, lambda o: env.action_space.sample())
    assert len(rewards) == 96
    assert sum(i["safety_violations"] for i in infos) == 0
    hourly = MicrogridEnv()
    _, _, infos_h = run_episode(hourly, lambda o: np.r_[0.0, np.ones(12)], options={"day": "2016-03-02"})
    env = MicrogridEnv(scenario={"step_hours": 0.25})
    _, _, infos_q = run_episode(env, lambda o: np.r_[0.0, np.ones(12)], options={"day": "2016-03-02"})
    load_h = sum(i["load_kwh"] for i in infos_h)
    assert sum(i["load_kwh"] for i in infos_q) == pytest.approx(load_h, rel=0.02)


def test_capacity_fades_over_years():
    """A daily full cycle over three years: SoH falls every day, by a plausible amount."""
    env = MicrogridEnv(scenario={"horizon_days": 3 * 365}, split="all")
    env.reset(seed=0, options={"day": "2015-01-01"})
    n = env.action_space.shape[0]
    soh = [env.core.soh[0]]
    for t in range(env.scenario.episode_steps):
        hour = t % 24
        a = 1.0 if hour < 4 else (-1.0 if 17 <= hour < 21 else 0.0)
        _, _, done, _, info = env.step(np.r_[a, np.zeros(n - 1)])
        if hour == 23:
            soh.append(env.core.soh[0])
    soh = np.array(soh)
    assert np.all(np.diff(soh) < 0)
    assert 0.03 < 1 - soh[-1] < 0.3
    assert done and info["episode_metrics"]["battery_degradation"] == pytest.approx(1 - soh[-1])


def test_split_years_are_disjoint():
    dates = {}
    for split in ("train", "validation", "test"):
        env = MicrogridEnv(split=split)
        dates[split] = set(env.core.site.dates[env.core.starts].year)
    assert dates["train"] == set(range(2015, 2023))
    assert dates["validation"] == {2023} and dates["test"] == {2024}
    with pytest.raises(ValueError, match="not a start day"):
        MicrogridEnv(split="train").reset(options={"day": "2024-03-01"})


def test_step_after_the_end_raises():
    env = MicrogridEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(env.action_space.shape))
    run_episode(env, lambda o: np.zeros(env.action_space.shape))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(env.action_space.shape))


def test_hoarding_at_end_of_day_does_not_pay():
    """Filling the battery from the grid in the last hours and ending fuller costs more than idling."""
    for day in ("2016-01-05", "2016-06-14"):
        hold = np.zeros(13)
        _, _, info_idle = run_episode(MicrogridEnv(), lambda o: hold, options={"day": day})
        env = MicrogridEnv()
        _, _, info_fill = run_episode(env, lambda o, e=env: hold if e.core.t < 21 else np.r_[1.0, np.zeros(12)], options={"day": day})
        assert info_fill[-1]["cost_terminal"] < 0  # credited for the surplus...
        assert info_fill[-1]["episode_metrics"]["total_cost"] > info_idle[-1]["episode_metrics"]["total_cost"]  # ...not enough


def test_observation_space_carries_its_layout_through_wrappers_and_pickle():
    import pickle

    env = MicrogridEnv()
    assert env.observation_space.layout == env.obs_layout
    assert pickle.loads(pickle.dumps(env.observation_space)).layout == env.obs_layout
    venv = VecNormalize(make_vec_env(MicrogridEnv, n_envs=2, vec_env_cls=SubprocVecEnv))
    assert venv.observation_space.layout == env.obs_layout
    venv.close()
    assert MicrogridVecEnv(2).observation_space.layout == env.obs_layout


def test_exogenous_baseline_keeps_policy_differences():
    """The subtracted term is fixed by the day, so two policies' returns differ by the same amount with
    and without it, the costs in ``info`` are untouched, and the spread of returns across days shrinks."""
    plain = MicrogridEnv(split="test")
    exo = MicrogridEnv({"base": "campus", "reward": {"exogenous_baseline": True}}, split="test")
    policies = {"idle": lambda obs: np.r_[0.0, np.ones(12)], "discharge": lambda obs: np.r_[-1.0, np.ones(12)]}
    returns = {}
    for env_name, env in (("plain", plain), ("exo", exo)):
        for name, policy in policies.items():
            for seed in range(6):
                _, rewards, infos = run_episode(env, policy, seed=seed)
                returns[env_name, name, seed] = (rewards.sum(), sum(i["cost"] for i in infos))
    for seed in range(6):
        assert returns["plain", "idle", seed][1] == pytest.approx(returns["exo", "idle", seed][1])
        plain_gap = returns["plain", "idle", seed][0] - returns["plain", "discharge", seed][0]
        exo_gap = returns["exo", "idle", seed][0] - returns["exo", "discharge", seed][0]
        assert exo_gap == pytest.approx(plain_gap, rel=1e-9, abs=1e-9)
        assert returns["exo", "idle", seed][0] != pytest.approx(returns["plain", "idle", seed][0])
    spread = {env_name: np.std([returns[env_name, "idle", s][0] for s in range(6)]) for env_name in ("plain", "exo")}
    assert spread["exo"] < 0.5 * spread["plain"]


@pytest.mark.parametrize("shape", [(0,), (2,), (12,), (14,), (1, 13), ()])
def test_wrong_action_shape_raises_before_the_step(shape):
    """The compiled step reads 13 entries whatever it is given: a short action was read past its end."""
    env = MicrogridEnv()
    env.reset(seed=0)
    before = env.core.state.copy()
    with pytest.raises(ValueError, match=re.escape(f"action must have shape (13,), got shape {shape}")):
        env.step(np.zeros(shape))
    assert env.core.t == 0
    np.testing.assert_array_equal(env.core.state, before)


NO_CHARGERS = {"base": "campus", "ev": {"n_ports": 0}}


def test_site_without_chargers_env_api():
    env = MicrogridEnv(NO_CHARGERS)
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(MicrogridEnv(NO_CHARGERS), warn=True)
    assert env.action_space.shape == (1,)
    assert not any(name.startswith("ev") for name in env.obs_layout.static_names)
    assert env.observation_space.shape[0] == MicrogridEnv().observation_space.shape[0] - 3 * 12
    env.reset(seed=0)
    with pytest.raises(ValueError, match=re.escape("shape (1,), got shape ()")):
        env.step(0.5)
    venv = MicrogridVecEnv(3, NO_CHARGERS, seed=0)
    venv.reset()
    with pytest.raises(ValueError, match=re.escape("shape (3, 1), got shape (3,)")):
        venv.step(np.zeros(3))
    _, reward, _, infos = venv.step(np.ones((3, 1)))
    assert np.isfinite(reward).all() and all(info["battery_kwh"] > 0 for info in infos)


def test_site_without_chargers_baselines():
    """Every baseline and the LP run on a site without chargers, without a safety violation, and the
    perfect-foresight optimum is the cheapest and costs what its LP says."""
    env = MicrogridEnv(NO_CHARGERS, split="test")
    costs = {}
    for controller in (NaiveController(), RuleController(), MPCController(), OptimalController()):
        obs, _ = env.reset(seed=0, options={"day": "2024-03-05"})
        controller.reset(env, obs)
        done, infos = False, []
        while not done:
            obs, _, done, _, info = env.step(controller.act(obs))
            infos.append(info)
        assert sum(i["safety_violations"] for i in infos) == 0
        assert all(i["ev_kwh"] == 0 and i["unmet_ev_kwh"] == 0 for i in infos)
        costs[controller.name] = info["episode_metrics"]["total_cost"]
    assert costs["optimal"] == pytest.approx(controller.schedule.cost, rel=1e-9)  # as tests/test_baselines.py replays it
    assert costs["optimal"] <= min(costs.values())


def test_layout_windows_is_the_window_of_one_or_many_observations():
    env = MicrogridEnv()
    lay = env.obs_layout
    obs, _ = env.reset(seed=0)
    rows, cols = lay.window_shape
    one = lay.windows(obs)
    assert one.shape == (rows, cols)
    np.testing.assert_array_equal(one.ravel(), obs[lay.n_static : lay.n_static + rows * cols])
    batch = np.stack([obs, obs * 2])
    np.testing.assert_array_equal(lay.windows(batch), np.stack([one, one * 2]))
    one[0, 0] = -7.0  # a view: writing it writes the observation
    assert obs[lay.n_static] == -7.0


#: sha256 of the observations, rewards and step infos of :func:`_trajectory_digest`, computed at commit ef7e3e1,
#: before the aggregate EV interface: the default per-port interface must stay bit for bit what it was (on this
#: machine's libraries; float results of another platform may differ in the last bit).
PORTS_DIGESTS = {
    "campus": "6055211a1cdc24814adbf5abf6edbe161c7cfe9239c1c39e080c489a889c640d",
    "tod_v2g_quarter": "012a6a2ffde6f128a3e6caae4a057022eb028c8e77aabe110a319935097de775",
    "no_ports": "b46f9c803abef05713a9c49ba5eabb8c798fcfc1ce3436493f612b88d49d0780",
}
PORTS_SCENARIOS = {
    "campus": "campus",
    "tod_v2g_quarter": {"base": "campus_tod", "step_hours": 0.25, "ev": {"n_ports": 5, "v2g": True}},
    "no_ports": {"base": "campus", "ev": {"n_ports": 0}},
}


def _trajectory_digest(scenario, n_envs: int = 3, seed: int = 11, steps: int = 30) -> str:
    """30 steps of 3 microgrids (an automatic reset included at 24 hourly steps) under random actions, some outside the box."""
    venv = MicrogridVecEnv(n_envs, scenario=scenario, seed=seed)
    rng = np.random.default_rng(5)
    digest = hashlib.sha256(venv.reset().tobytes())
    for _ in range(steps):
        obs, reward, _, _ = venv.step(rng.uniform(-1.2, 1.2, size=(n_envs, venv.action_space.shape[0])))
        for array in (obs, reward, venv.last_step_info):
            digest.update(array.tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("name", sorted(PORTS_SCENARIOS))
def test_per_port_interface_is_bit_identical_to_before_the_aggregate_one(name):
    assert _trajectory_digest(PORTS_SCENARIOS[name]) == PORTS_DIGESTS[name]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"history_steps": 10**400}, r"'history_steps' must be an integer in \[0, 1000\]"),
        ({"forecast_steps": -1}, r"'forecast_steps' must be an integer in \[0, 1000\]"),
        ({"history_steps": True}, "'history_steps' must be an integer"),
        ({"forecast_steps": 24.0}, "'forecast_steps' must be an integer"),
        ({"window_names": "pv"}, "'window_names' must be a list of strings"),
        ({"static_names": [1, 2]}, "'static_names' must be a list of strings"),
        ({"static_names": None}, "'static_names' must be a list of strings"),
    ],
)
def test_a_layout_read_from_a_file_is_checked(change, message):
    layout = MicrogridEnv().obs_layout
    assert ObservationLayout.from_dict(layout.to_dict()) == layout
    with pytest.raises(ValueError, match=message):
        ObservationLayout.from_dict({**layout.to_dict(), **change})
    with pytest.raises(ValueError, match="must be an object"):
        ObservationLayout.from_dict([layout.to_dict()])


EXACT_FORECASTS = {"base": "campus", "forecast": {"load_noise": 0.0, "price_noise": 0.0, "emission_noise": 0.0}, "difficulty": {"renewable_noise": 0.0}}


@pytest.mark.parametrize(("split", "last_day"), [("train", "2022-12-31"), ("validation", "2023-12-31")])
def test_forecasts_never_read_the_next_splits_data(split, last_day):
    """The forecasts of a split's last day read the next split's first hours (a training episode saw validation
    load and prices, a validation episode test data); they now read the split's last day again, as the data's end
    is padded. Split ``all`` still reads on."""
    env = MicrogridEnv(scenario=EXACT_FORECASTS, split=split, seed=0)
    env.reset(options={"day": last_day})
    lay, ep = env.obs_layout, env.core.episode
    h, spd = lay.history_steps, env.scenario.steps_per_day
    beyond = ep.window_mean[0, h + spd :]  # targets from the next midnight on
    same_hours_again = ep.window_mean[0, h : h + len(beyond)]
    np.testing.assert_array_equal(beyond, same_hours_again)
    everything = MicrogridEnv(scenario=EXACT_FORECASTS, split="all", seed=0)
    everything.reset(options={"day": last_day})
    following = everything.core.episode.window_mean[0, h + spd :]
    assert not np.allclose(following, same_hours_again)  # the real next day: what the split's episodes no longer see
    np.testing.assert_array_equal(everything.core.episode.window_mean[0, : h + spd], ep.window_mean[0, : h + spd])


def test_a_step_of_a_seventh_of_an_hour_keeps_the_tariff_and_calendar():
    """pd.Timedelta(hours=1/7) rounds to whole nanoseconds: the first step of an hour fell 5 ns into the hour before
    (the 17:00 step paid the solar-hours rate, a Saturday's midnight step was a weekday)."""
    from sb3_microgrid.envs.site import build_site
    from sb3_microgrid.envs.time_features import TIME_FEATURES
    from sb3_microgrid.scenario import load_scenario

    scenario = load_scenario({"base": "campus_tod", "step_hours": 1 / 7, "data": {"years": 3}})
    site, grid = build_site(scenario), scenario.grid
    saturday = int(np.flatnonzero(site.dates.day_of_week == 5)[0])
    first = site.day_start[saturday]
    for hour, factor in ((17, grid.peak_multiplier), (23, 1.0), (9, grid.solar_multiplier)):
        assert site.energy_price[first + 7 * hour] == pytest.approx(grid.normal_rate_inr_per_kwh * factor), hour
    assert (site.time_features[first : first + 3, TIME_FEATURES.index("weekend")] == 1.0).all()


def test_data_whose_training_days_have_no_load_are_refused():
    """The observation divides every load by the training days' mean load: zero gave loads of 3e11."""
    import pandas as pd

    from sb3_microgrid.data import DataValidationError, MicrogridData, generate_sessions, split_days

    index = pd.date_range("2021-03-01", periods=24 * 40, freq="h", name="time")
    series = pd.DataFrame({"pv_cf": 0.2, "wind_speed": 5.0, "load_kw": 300.0, "exchange_price": 5.0, "emission_factor": 0.7, "is_holiday": 0}, index=index)
    series.loc[series.index < "2021-04-02", "load_kw"] = 0.0  # the training days: 80 % of 40
    data = MicrogridData(series, generate_sessions(split_days(index, "all"), 12))
    with pytest.raises(DataValidationError, match=re.escape("load_kw: the mean load of the training days is 0.0 kW; it must be > 0 kW")):
        MicrogridEnv(scenario="campus", split="test", data=data)


def test_every_day_reads_its_own_split_up_to_its_end():
    """The first day of a split must end its own split, not start it: searchsorted's side decides, and the wrong one
    made the validation year's first episode read the last training day throughout."""
    env = MicrogridEnv(scenario=EXACT_FORECASTS, split="validation", seed=0)
    site = env.core.site
    assert (site.split_end > site.day_start).all()
    first = env.core.start_days[0]
    env.reset(options={"day": first})
    ep, everything = env.core.episode, MicrogridEnv(scenario=EXACT_FORECASTS, split="all", seed=0)
    everything.reset(options={"day": first})
    np.testing.assert_array_equal(ep.window_mean[0, : env.obs_layout.history_steps + env.scenario.steps_per_day],
                                  everything.core.episode.window_mean[0, : env.obs_layout.history_steps + env.scenario.steps_per_day])
    np.testing.assert_array_equal(ep.import_price, everything.core.episode.import_price)
