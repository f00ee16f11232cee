"""Training callbacks and schedules: each test fails if its piece silently does nothing."""

import math
import pickle

import numpy as np
import pytest
import yaml
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.utils import FloatSchedule
from stable_baselines3.common.vec_env import SubprocVecEnv, VecMonitor, VecNormalize

from sb3_microgrid import MicrogridEnv, MicrogridVecEnv
from sb3_microgrid.callbacks import CurriculumCallback, KLMonitorCallback, MicrogridMetricsCallback, ReduceLROnPlateau, lr_scale_schedule
from sb3_microgrid.callbacks.metrics import monte_carlo_returns
from sb3_microgrid.schedules import LinearSchedule, ScaledSchedule, WarmupSchedule

T = 24  # steps per episode of the campus scenario


def ppo(env, learning_rate=1e-3, **kwargs) -> PPO:
    """One episode per env per rollout, a tiny network."""
    kwargs = {"n_steps": T, "batch_size": 24, "n_epochs": 2, "policy_kwargs": {"net_arch": [16]}, "seed": 0, **kwargs}
    return PPO("MlpPolicy", env, learning_rate=learning_rate, **kwargs)


class TrainLR(BaseCallback):
    """The learning rate each ``train()`` used, read from the optimizer after it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.lrs: list[float] = []

    def _read(self) -> None:
        self.lrs.append(self.model.policy.optimizer.param_groups[0]["lr"])

    def _on_training_start(self) -> None:
        self._updated = False

    def _on_rollout_start(self) -> None:
        if self._updated:
            self._read()
        self._updated = True

    def _on_training_end(self) -> None:
        self._read()

    def _on_step(self) -> bool:
        return True


class Capture(KVWriter):
    """Keeps every dump of the logger."""

    def __init__(self) -> None:
        self.dumps: list[dict] = []

    def write(self, key_values, key_excluded, step=0) -> None:
        self.dumps.append(dict(key_values))

    def close(self) -> None:
        pass


def capture_logger(model: PPO) -> Capture:
    capture = Capture()
    model.set_logger(Logger(folder=None, output_formats=[capture]))
    return capture


# ---- schedules ------------------------------------------------------------------------------------
def test_schedule_values():
    warm = WarmupSchedule(LinearSchedule(1.0, 0.0, 1.0), 0.1)
    assert warm(1.0) == 0.0
    assert warm(0.95) == pytest.approx(0.95 * 0.5)  # half-way through the warm-up, of the decayed base
    assert warm(0.5) == pytest.approx(0.5)  # after it, the base
    assert WarmupSchedule(2.0, 0.0)(1.0) == 2.0
    scaled = ScaledSchedule(LinearSchedule(1.0, 0.0, 1.0), scale=0.5, min_value=0.2)
    assert scaled(1.0) == 0.5
    assert scaled(0.3) == pytest.approx(0.2)  # the scale cannot go below the floor ...
    assert scaled(0.1) == pytest.approx(0.1)  # ... but the base decaying below it is followed
    assert ScaledSchedule(1.0, scale=4.0, max_value=2.0)(0.5) == 2.0


def test_scaled_schedule_rescale_stops_at_bounds():
    scaled = ScaledSchedule(1e-3, min_value=3e-4, max_value=2e-3)
    assert scaled.rescale(0.5, 1.0) == 0.5
    assert scaled.rescale(0.5, 1.0) == pytest.approx(0.3)  # stops at the floor, no wind-up below it
    assert scaled.rescale(0.5, 1.0) == pytest.approx(0.3)
    assert scaled.rescale(10.0, 1.0) == pytest.approx(2.0)  # and at the ceiling
    with pytest.raises(ValueError, match="empty"):
        scaled.bound(min_value=5e-3)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: WarmupSchedule(1e-3, 1.5), r"\[0, 1\]"),
        (lambda: WarmupSchedule("fast", 0.1), "callable"),
        (lambda: ScaledSchedule(1e-3, scale=0.0), "> 0"),
        (lambda: ScaledSchedule(1e-3, min_value=1.0, max_value=0.5), "max_value"),
    ],
)
def test_schedule_validation(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_schedules_pickle():
    schedule = ScaledSchedule(WarmupSchedule(LinearSchedule(3e-4, 0.0, 1.0), 0.05), scale=0.25)
    clone = pickle.loads(pickle.dumps(schedule))
    assert [clone(p) for p in (1.0, 0.97, 0.5)] == [schedule(p) for p in (1.0, 0.97, 0.5)]


# ---- learning rate ------------------------------------------------------------------------------
class WriteParamGroups(BaseCallback):
    """The naive way: write the optimizer's rate after each rollout, before the update."""

    def _on_rollout_end(self) -> None:
        for group in self.model.policy.optimizer.param_groups:
            group["lr"] = 0.0

    def _on_step(self) -> bool:
        return True


def test_writing_param_groups_is_undone():
    model = ppo(MicrogridVecEnv(2, seed=0), learning_rate=1e-3)
    seen = TrainLR()
    model.learn(3 * 2 * T, callback=CallbackList([WriteParamGroups(), seen]))
    assert seen.lrs == [1e-3, 1e-3, 1e-3]  # train() reset the rate from model.lr_schedule every time


def test_reduce_on_plateau_eval_mode_lowers_train_lr_to_floor_and_survives_save(tmp_path):
    model = ppo(VecMonitor(MicrogridVecEnv(2, seed=0)), learning_rate=1e-3)
    # threshold 1e9: after the first evaluation no value counts as an improvement, a plateau by construction
    plateau = ReduceLROnPlateau(mode="eval", patience=1, factor=0.5, min_lr=2e-4, threshold=1e9)
    evaluation = EvalCallback(VecMonitor(MicrogridVecEnv(1, split="validation", seed=0)), callback_after_eval=plateau, n_eval_episodes=1, eval_freq=T, verbose=0)
    seen = TrainLR()
    model.learn(8 * 2 * T, callback=CallbackList([evaluation, seen]))
    # each evaluation precedes its update: checks 1 (best), 2, 3 (halve), 4, 5 (halve), 6, 7 (floor), 8
    assert seen.lrs == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4, 2e-4, 2e-4])
    assert plateau.reductions == 3

    model.save(tmp_path / "model.zip")
    loaded = PPO.load(tmp_path / "model.zip", env=MicrogridVecEnv(2, seed=1))
    assert loaded.lr_schedule(0.5) == pytest.approx(2e-4)
    seen = TrainLR()
    loaded.learn(2 * 2 * T, callback=seen)
    assert seen.lrs == pytest.approx([2e-4, 2e-4])


def test_replacing_lr_schedule_alone_is_lost_on_load(tmp_path):
    """Why lr_scale_schedule also sets model.learning_rate: load() rebuilds lr_schedule from it."""
    model = ppo(MicrogridVecEnv(1, seed=0), learning_rate=1e-3)
    model.lr_schedule = FloatSchedule(ScaledSchedule(1e-3, scale=0.5))
    model.save(tmp_path / "model.zip")
    assert PPO.load(tmp_path / "model.zip").lr_schedule(1.0) == 1e-3
    lr_scale_schedule(model).scale = 0.5
    model.save(tmp_path / "model.zip")
    assert PPO.load(tmp_path / "model.zip").lr_schedule(1.0) == 5e-4


def test_reduce_on_plateau_rollout_mode_and_decaying_base():
    env = make_vec_env(MicrogridEnv, n_envs=2, seed=0)  # Monitor fills ep_info_buffer
    model = ppo(env, learning_rate=LinearSchedule(1e-3, 0.0, 1.0))
    plateau = ReduceLROnPlateau(mode="rollout", patience=0, factor=0.5, min_lr=1e-4, threshold=1e9)
    seen = TrainLR()
    model.learn(4 * 2 * T, callback=CallbackList([plateau, seen]))
    base = [1e-3 * (1 - k / 4) for k in (1, 2, 3, 4)]  # progress after each rollout
    # the third plateau finds the rate at the floor; at the end the base itself decays to 0 and is followed
    assert seen.lrs == pytest.approx([base[0], base[1] * 0.5, 1e-4, 0.0])
    assert plateau.reductions == 2


def test_reduce_on_plateau_refuses_silent_setups():
    with pytest.raises(ValueError, match="callback_after_eval"):
        ppo(MicrogridVecEnv(1, seed=0)).learn(T, callback=ReduceLROnPlateau(mode="eval"))
    with pytest.raises(RuntimeError, match="VecMonitor"):  # no Monitor: ep_info_buffer never fills
        ppo(MicrogridVecEnv(1, seed=0)).learn(T, callback=ReduceLROnPlateau(mode="rollout"))
    ppo(VecMonitor(MicrogridVecEnv(1, seed=0))).learn(T, callback=ReduceLROnPlateau(mode="rollout"))
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=1.5)


@pytest.mark.parametrize("make", [MicrogridMetricsCallback, lambda: ReduceLROnPlateau(mode="rollout")], ids=["metrics", "plateau"])
def test_plain_ars_is_refused_and_paired_ars_works(make):
    """sb3-contrib's ARS calls on_step() without the step's rewards, dones and infos; PairedARS passes them."""
    from sb3_contrib import ARS

    from sb3_microgrid.paired_ars import PairedARS

    kwargs = dict(n_delta=2, n_eval_episodes=1, seed=0, device="cpu")
    with pytest.raises(TypeError, match="ARS.*paired_ars"):
        ARS("LinearPolicy", VecMonitor(MicrogridVecEnv(2, seed=0)), **kwargs).learn(2 * T, callback=make())
    PairedARS("LinearPolicy", VecMonitor(MicrogridVecEnv(2, seed=0)), **kwargs).learn(2 * T, callback=make())


# ---- KL -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("learning_rate", [1e-2, 0.0])
def test_kl_exact_of_each_update(learning_rate):
    model = ppo(MicrogridVecEnv(2, seed=0), learning_rate=learning_rate)
    capture = capture_logger(model)
    kl = KLMonitorCallback()
    model.learn(3 * 2 * T, callback=kl)
    logged = [d["train/kl_exact"] for d in capture.dumps if "train/kl_exact" in d]
    assert len(logged) == 2  # updates 1 and 2 are logged at the next rollout start; update 3 at training end
    values = [*logged, kl.last_kl]
    if learning_rate:
        assert all(v > 1e-4 for v in values)
    else:
        assert all(abs(v) < 1e-9 for v in values)


@pytest.mark.parametrize("noise_first", [True, False])
def test_kl_exact_measures_the_update_not_the_parameter_noise(noise_first):
    from sb3_microgrid.exploration import ParameterNoiseCallback

    model = ppo(MicrogridVecEnv(2, seed=0), learning_rate=0.0)  # no update: the clean policy never changes
    kl, noise = KLMonitorCallback(), ParameterNoiseCallback(initial_sigma=0.05)
    measured = []
    measure = kl._measure
    kl._measure = lambda: measured.append(measure()) or measured[-1]
    model.learn(3 * 2 * T, callback=CallbackList([noise, kl] if noise_first else [kl, noise]))
    assert noise.kl > 1e-3  # the perturbation moved the acting policy
    assert len(measured) == 3 and all(abs(v) < 1e-9 for v in measured)


@pytest.mark.parametrize(
    "learning_rate, target_kl, expected",
    [
        (1e-3, 1e-8, [1e-3, 1e-3 / 1.5, 1e-3 / 1.5**2, 1e-3 / 1.5**3]),  # KL far above target: down
        (1e-6, 10.0, [1e-6, 1.5e-6, 2e-6, 2e-6]),  # far below: up, to max_lr
    ],
)
def test_kl_adaptive_lr_direction(learning_rate, target_kl, expected):
    model = ppo(MicrogridVecEnv(2, seed=0), learning_rate=learning_rate)
    seen = TrainLR()
    model.learn(4 * 2 * T, callback=CallbackList([KLMonitorCallback(target_kl=target_kl, factor=1.5, min_lr=1e-7, max_lr=2e-6 if learning_rate < 1e-5 else 1e-2), seen]))
    assert seen.lrs == pytest.approx(expected)


@pytest.mark.parametrize("name", ["KLMonitorCallback", "AuxiliaryValueReplayCallback", "ParameterNoiseCallback"])
def test_callbacks_that_read_the_distribution_refuse_a_recurrent_policy(name):
    """RecurrentPPO passes the on-policy and Gaussian checks, but its distribution and values need LSTM states: the
    callbacks crashed at the first rollout."""
    from sb3_microgrid import callbacks, exploration

    callback = getattr(callbacks, name, None) or getattr(exploration, name)
    model = RecurrentPPO("MlpLstmPolicy", MicrogridVecEnv(2, seed=0), n_steps=T, batch_size=2 * T, n_epochs=1, seed=0, device="cpu",
                         policy_kwargs={"lstm_hidden_size": 8, "net_arch": [8]})  # fmt: skip
    with pytest.raises(TypeError, match=f"{name} cannot run with RecurrentPPO.*LSTM states"):
        model.learn(2 * T, callback=callback())
    assert model.num_timesteps == 0  # refused before the first step


# ---- curriculum ---------------------------------------------------------------------------------
START = {"ev_count": 2, "renewable_noise": 0.0, "soc_min": 0.3, "price_volatility": 0.5}
END = {"ev_count": 7, "renewable_noise": None, "soc_min": None, "price_volatility": 1.0}


class FirstDifficulty(BaseCallback):
    """The difficulty the first episodes of training play."""

    def _on_step(self) -> bool:
        if self.n_calls == 1:
            self.first = self.training_env.get_attr("difficulty")
        return True


def make_env(kind: str):
    if kind == "MicrogridVecEnv":
        return MicrogridVecEnv(2, seed=0)
    if kind == "SubprocVecEnv":  # the class, not the id: forkserver workers do not import sb3_microgrid
        return make_vec_env(MicrogridEnv, n_envs=2, seed=0, vec_env_cls=SubprocVecEnv)
    env = make_vec_env(MicrogridEnv, n_envs=2, seed=0)
    return VecNormalize(env) if kind == "VecNormalize" else env


@pytest.mark.parametrize("kind", ["MicrogridVecEnv", "DummyVecEnv", "VecNormalize", "SubprocVecEnv"])
def test_curriculum_progress_reaches_env(kind):
    env = make_env(kind)
    try:
        curriculum = CurriculumCallback(START, END, n_levels=3)
        first = FirstDifficulty()
        ppo(env).learn(3 * 2 * T, callback=CallbackList([curriculum, first]))
        level0 = {"ev_count": 2, "renewable_noise": 0.0, "soc_min": 0.3, "price_volatility": 0.5}
        assert all({k: getattr(d, k) for k in level0} == level0 for d in first.first)  # first episodes at level 0
        assert curriculum.params(1) == {"ev_count": 4, "renewable_noise": 0.1, "soc_min": pytest.approx(0.2), "price_volatility": 0.75}
        env.reset()
        last = {"ev_count": 7, "renewable_noise": 0.2, "soc_min": 0.1, "price_volatility": 1.0}  # None: the campus values
        assert curriculum.level == 2
        assert all({k: getattr(d, k) for k in last} == last for d in env.get_attr("difficulty"))
    finally:
        env.close()


@pytest.mark.parametrize("threshold, level", [(-1e9, 2), (1e9, 0)])
def test_curriculum_performance_mode_follows_eval(threshold, level):
    env = VecMonitor(MicrogridVecEnv(2, seed=0))
    eval_env = VecMonitor(MicrogridVecEnv(1, split="validation", seed=0))
    curriculum = CurriculumCallback({"ev_count": 0}, {"ev_count": None}, n_levels=3, mode="performance", threshold=threshold)
    evaluation = EvalCallback(eval_env, callback_after_eval=curriculum, n_eval_episodes=1, eval_freq=T, verbose=0)
    model = ppo(env)
    capture = capture_logger(model)
    model.learn(3 * 2 * T, callback=evaluation)
    assert curriculum.level == level
    expected = None if level == 2 else 0  # ev_count None is every session: it switches at the last level
    for venv in (env, eval_env):
        venv.reset()
        assert [d.ev_count for d in venv.get_attr("difficulty")] == [expected] * venv.num_envs
    assert [d["curriculum/level"] for d in capture.dumps if "curriculum/level" in d][-1] == level


def test_curriculum_validation():
    with pytest.raises(ValueError, match="same parameters"):
        CurriculumCallback({"ev_count": 1}, {"renewable_noise": 0.2})
    with pytest.raises(ValueError, match="unknown"):
        CurriculumCallback({"pv_noise": 1}, {"pv_noise": 2})
    with pytest.raises(ValueError, match="outside"):
        CurriculumCallback({"renewable_noise": 5.0}, {"renewable_noise": 0.2})
    with pytest.raises(ValueError, match="threshold"):
        CurriculumCallback({"ev_count": 1}, {"ev_count": 5}, mode="performance")
    with pytest.raises(ValueError, match="callback_after_eval"):
        ppo(MicrogridVecEnv(1, seed=0)).learn(T, callback=CurriculumCallback({"ev_count": 1}, {"ev_count": 5}, mode="performance", threshold=0.0))


def test_curriculum_takes_each_sites_own_value_on_a_multi_site_env():
    """None ("the scenario's own") was resolved from site 0 for every site."""
    from sb3_microgrid.envs.multi_site import MultiSiteVecEnv

    sites = [{"base": "campus", "name": name, "difficulty": {"renewable_noise": noise}} for name, noise in (("a", 0.05), ("b", 0.3))]
    env = MultiSiteVecEnv(sites, n_envs_per_site=1, seed=0)
    curriculum = CurriculumCallback({"renewable_noise": 0.0, "ev_count": 2}, {"renewable_noise": None, "ev_count": 4}, n_levels=2)
    model = ppo(env, n_steps=T // 2)
    capture = capture_logger(model)
    model.learn(2 * T, callback=curriculum)
    assert curriculum.level == 1
    assert [d.renewable_noise for d in env.get_attr("difficulty")] == [0.05, 0.3]
    assert "curriculum/renewable_noise" not in capture.dumps[-1] and capture.dumps[-1]["curriculum/ev_count"] == 4


# ---- metrics ------------------------------------------------------------------------------------
def test_monte_carlo_returns():
    rewards = np.array([[1.0], [2.0], [3.0], [4.0]])
    ends = np.array([[False], [True], [False], [False]])  # an episode ends at step 1; steps 2-3 are unfinished
    returns, complete = monte_carlo_returns(rewards, ends, gamma=0.5)
    assert returns[:2, 0].tolist() == [2.0, 2.0]
    assert complete[:, 0].tolist() == [True, True, False, False]


METRIC_KEYS = (
    "microgrid/cost",
    "microgrid/emissions_kg",
    "microgrid/safety_violations",
    "microgrid/safety_interventions",
    "microgrid/battery_fade",
    "microgrid/unmet_ev_kwh",
    "microgrid/episodes",
    "microgrid/return_per_1k_steps",
    "microgrid/action_std",
    "microgrid/value_mc_bias",
    "microgrid/value_mc_rmse",
    "microgrid/explained_variance_mc",
    "time/steps_per_s",
    "time/wall_clock_s",
)


@pytest.mark.parametrize("kind", ["MicrogridVecEnv", "DummyVecEnv"])
def test_metrics_logged(kind):
    model = ppo(make_env(kind))
    capture = capture_logger(model)
    model.learn(2 * 2 * T, callback=MicrogridMetricsCallback())
    last = capture.dumps[-1]
    missing = [k for k in METRIC_KEYS if k not in last]
    assert not missing
    assert all(math.isfinite(last[k]) for k in METRIC_KEYS)
    assert 1e3 < last["microgrid/cost"] < 1e6  # Rs per day: tens of thousands
    assert last["microgrid/episodes"] == 2
    # the reward is -cost / 1000 per step: per 1000 steps, -cost / 24 for one-day episodes
    assert last["microgrid/return_per_1k_steps"] == pytest.approx(-last["microgrid/cost"] / T, rel=1e-5)
    assert last["microgrid/action_std"] == pytest.approx(last["train/std"], rel=0.05)


def test_metrics_of_a_recurrent_policy():
    """RecurrentPPO's distribution needs its LSTM states: the state-independent std is read from the policy."""
    model = RecurrentPPO("MlpLstmPolicy", MicrogridVecEnv(2, seed=0), n_steps=T, batch_size=2 * T, n_epochs=1, seed=0, device="cpu",
                         policy_kwargs={"lstm_hidden_size": 8, "net_arch": [8]})  # fmt: skip
    capture = capture_logger(model)
    model.learn(2 * 2 * T, callback=MicrogridMetricsCallback())
    last = capture.dumps[-1]
    assert all(math.isfinite(last[k]) for k in METRIC_KEYS)
    assert last["microgrid/action_std"] == pytest.approx(last["train/std"], rel=0.05)


class EpisodeCosts(BaseCallback):
    """The cost of each episode, in the order they end."""

    def __init__(self) -> None:
        super().__init__()
        self.costs: list[float] = []

    def _on_step(self) -> bool:
        self.costs += [info["episode_metrics"]["total_cost"] for info in self.locals["infos"] if "episode_metrics" in info]
        return True


def test_off_policy_metrics_are_those_of_the_episode_just_dumped():
    # SAC dumps at each episode end (log_interval=1), inside the rollout, before on_rollout_end
    model = SAC("MlpPolicy", MicrogridEnv(seed=0), learning_starts=10 * T, policy_kwargs={"net_arch": [16]}, seed=0)
    capture = capture_logger(model)
    costs = EpisodeCosts()
    model.learn(3 * T, callback=[MicrogridMetricsCallback(), costs], log_interval=1)
    assert len(costs.costs) == 3 and len(capture.dumps) == 3
    assert [dump.get("microgrid/cost") for dump in capture.dumps] == pytest.approx(costs.costs)
    assert all(dump["microgrid/episodes"] == 1 for dump in capture.dumps)
    # the window is the whole episode (reward -cost / 1000 per step), not the last step
    for dump, cost in zip(capture.dumps, costs.costs):
        assert dump["microgrid/return_per_1k_steps"] == pytest.approx(-cost / T, rel=1e-5)


def test_metrics_window_spans_rollouts_between_dumps():
    # log_interval=2: one dump for two rollouts of one episode per env each, so four episodes
    model = ppo(make_env("DummyVecEnv"))
    capture = capture_logger(model)
    costs = EpisodeCosts()
    model.learn(2 * 2 * T, callback=[MicrogridMetricsCallback(), costs], log_interval=2)
    assert len(capture.dumps) == 1 and len(costs.costs) == 4
    assert capture.dumps[0]["microgrid/episodes"] == 4
    assert capture.dumps[0]["microgrid/cost"] == pytest.approx(np.mean(costs.costs))


def test_metrics_keep_the_episodes_after_the_record_when_another_callback_dumps():
    """log_interval=2: the first rollout's values are recorded, not dumped by SB3; an EvalCallback dumps them within the
    second rollout, after the episodes of its first step ended. Those were dropped with the dumped window."""
    model = ppo(MicrogridVecEnv(2, seed=0), n_steps=2 * T)  # each env ends an episode at steps T and 2T of a rollout
    capture = capture_logger(model)
    costs = EpisodeCosts()
    evaluation = EvalCallback(MicrogridVecEnv(1, split="validation", seed=0), n_eval_episodes=1, eval_freq=3 * T, verbose=0)
    model.learn(8 * T, callback=CallbackList([MicrogridMetricsCallback(), costs, evaluation]), log_interval=2)
    logged = [dump["microgrid/episodes"] for dump in capture.dumps if "microgrid/episodes" in dump]
    assert len(costs.costs) == 8 and sum(logged) == 8


@pytest.mark.parametrize("order", ["recommended", "other"])
def test_metrics_return_is_the_env_reward_without_the_rnd_bonus(order):
    """Under RND the reward the agent gets (and VecNormalize's original reward in the recommended order) has the bonus."""
    from sb3_microgrid.exploration import RNDRewardWrapper

    if order == "recommended":
        env = VecNormalize(RNDRewardWrapper(MicrogridVecEnv(2, seed=0), beta=0.5, seed=0), gamma=1.0)
    else:
        env = RNDRewardWrapper(VecNormalize(MicrogridVecEnv(2, seed=0), gamma=1.0), beta=0.5, seed=0)
    model = ppo(env)
    capture = capture_logger(model)
    model.learn(2 * 2 * T, callback=MicrogridMetricsCallback())
    last = capture.dumps[-1]
    # the reward is -cost / 1000 per step: per 1000 steps, -cost / 24 for one-day episodes
    assert last["microgrid/return_per_1k_steps"] == pytest.approx(-last["microgrid/cost"] / T, rel=1e-5)


def test_callbacks_compose_from_yaml():
    """Plain constructor arguments, as rl_zoo3's ``callback:`` section passes them."""
    config = yaml.safe_load(
        """
        - sb3_microgrid.callbacks.MicrogridMetricsCallback: {}
        - sb3_microgrid.callbacks.KLMonitorCallback: {target_kl: 0.01}
        - sb3_microgrid.callbacks.ReduceLROnPlateau: {mode: rollout, patience: 0, threshold: 1.0e+9}
        - sb3_microgrid.callbacks.CurriculumCallback: {start: {ev_count: 2}, end: {ev_count: null}, n_levels: 2}
        """
    )
    import sb3_microgrid.callbacks as module

    callbacks = [getattr(module, path.rsplit(".", 1)[1])(**kwargs) for entry in config for path, kwargs in entry.items()]
    model = ppo(VecMonitor(MicrogridVecEnv(2, seed=0)))
    capture = capture_logger(model)
    model.learn(3 * 2 * T, callback=CallbackList(callbacks))
    last = capture.dumps[-1]
    for key in ("microgrid/cost", "train/kl_exact", "train/lr_scale", "curriculum/level"):
        assert key in last
    assert model.lr_schedule(1.0) < 1e-3  # KL and plateau share one ScaledSchedule


def test_yaml_string_numbers_are_refused_with_a_hint():
    kwargs = yaml.safe_load("{target_kl: 1e-2}")  # YAML 1.1: no dot, no exponent sign -> a string
    with pytest.raises(TypeError, match="1.0e-3"):
        KLMonitorCallback(**kwargs)
