"""Exploration pieces: each test fails if its piece silently does nothing (Gaussian log-probs stored, actions
not uniform, weights not perturbed or not restored, σ fixed, a constant or absent bonus)."""

import copy
import math
import re
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from scipy import stats
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_microgrid import MicrogridEnv, MicrogridVecEnv
from sb3_microgrid.epsilon_sac import EpsilonSAC
from sb3_microgrid.epsilon_td3 import EpsilonTD3
from sb3_microgrid.exploration import (
    EpsilonActorCriticPolicy,
    EpsilonDecayCallback,
    ParameterNoiseCallback,
    RNDRewardWrapper,
    unperturbed,
)

ACTION_DIM = 13
LOG_UNIFORM = -ACTION_DIM * np.log(2.0)  # U over [-1, 1]^13


class Probe(BaseCallback):
    """Runs ``hooks[event](model)`` at ``rollout_start``, ``step`` and ``rollout_end``."""

    def __init__(self, **hooks: Callable[[BaseAlgorithm], None]) -> None:
        super().__init__()
        self.hooks = hooks

    def _call(self, event: str) -> None:
        if event in self.hooks:
            self.hooks[event](self.model)

    def _on_rollout_start(self) -> None:
        self._call("rollout_start")

    def _on_step(self) -> bool:
        self._call("step")
        return True

    def _on_rollout_end(self) -> None:
        self._call("rollout_end")


class RecordActions(gym.Wrapper):
    """Keeps every action the env receives."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.actions: list[np.ndarray] = []

    def step(self, action):
        self.actions.append(np.array(action, dtype=np.float64))
        return self.env.step(action)


def assert_uniform(actions: np.ndarray) -> None:
    """Every dimension passes a KS test against U(-1, 1)."""
    assert actions.min() >= -1.0 and actions.max() <= 1.0
    p_values = [stats.kstest(actions[:, j], stats.uniform(-1, 2).cdf).pvalue for j in range(actions.shape[1])]
    assert min(p_values) > 1e-3, p_values


def small_ppo(policy, env, n_steps: int = 128, **policy_kwargs) -> PPO:
    return PPO(policy, env, n_steps=n_steps, batch_size=64, n_epochs=2, policy_kwargs=dict(net_arch=[32, 32], **policy_kwargs), seed=0)


def rollout_data(model: PPO) -> tuple[th.Tensor, th.Tensor, np.ndarray]:
    buffer = model.rollout_buffer
    obs = th.as_tensor(buffer.observations.reshape(-1, buffer.observations.shape[-1]))
    actions = th.as_tensor(buffer.actions.reshape(-1, ACTION_DIM))
    return obs, actions, buffer.log_probs.reshape(-1).copy()


# ---- epsilon: PPO ------------------------------------------------------------------------------
def test_ppo_stores_the_mixture_log_density():
    epsilon = 0.5
    captured = {}

    def capture(model: PPO) -> None:
        obs, actions, stored = rollout_data(model)
        with th.no_grad():
            gaussian = model.policy.get_distribution(obs).distribution  # SB3's own Gaussian, not the mixture code
            _, train_log_prob, _ = model.policy.evaluate_actions(obs, actions)
        captured.update(
            actions=actions.numpy(),
            stored=stored,
            mean=gaussian.mean.numpy(),
            std=gaussian.stddev.numpy(),
            train_log_prob=train_log_prob.numpy(),
        )

    # A small std puts some Gaussian samples inside the Box and some outside: both cases of the density are hit.
    model = small_ppo(EpsilonActorCriticPolicy, MicrogridEnv(seed=0), n_steps=512, epsilon=epsilon, log_std_init=-1.0)
    model.learn(512, callback=Probe(rollout_end=capture))

    a = captured["actions"].astype(np.float64)
    log_gauss = stats.norm.logpdf(a, captured["mean"], captured["std"]).sum(axis=1)
    inside = np.all(np.abs(a) <= 1.0, axis=1)
    log_uniform = np.where(inside, np.log(epsilon) + LOG_UNIFORM, -np.inf)
    expected = np.logaddexp(log_uniform, np.log1p(-epsilon) + log_gauss)

    np.testing.assert_allclose(captured["stored"], expected, rtol=1e-4, atol=1e-3)
    # train() recomputes the same density, so the first ratio is 1.
    np.testing.assert_allclose(captured["train_log_prob"], captured["stored"], rtol=1e-5, atol=1e-4)
    assert 0 < inside.sum() < len(a), "need samples both inside and outside the Box"
    # The mixture is not the Gaussian: uniform draws have a far higher mixture density.
    assert np.mean(np.abs(captured["stored"] - log_gauss) > 1.0) > 0.3


def test_ppo_epsilon_one_acts_uniformly():
    received = RecordActions(MicrogridEnv(seed=1))
    model = small_ppo(EpsilonActorCriticPolicy, received, n_steps=512, epsilon=1.0)
    model.learn(512)
    stored = model.rollout_buffer.actions.reshape(-1, ACTION_DIM)
    assert_uniform(stored)
    # Inside the Box SB3's clipping is a no-op: the env executed the stored actions.
    np.testing.assert_allclose(np.array(received.actions), stored, atol=1e-6)
    # predict(deterministic=False) samples the same mixture; deterministic is the Gaussian mean.
    obs = np.repeat(received.env.reset(seed=0)[0][None], 400, axis=0)
    assert_uniform(model.predict(obs, deterministic=False)[0])
    assert np.ptp(model.predict(obs, deterministic=True)[0], axis=0).max() == 0.0


def test_ppo_epsilon_decays_between_rollouts_and_is_saved(tmp_path):
    seen = []
    model = small_ppo(EpsilonActorCriticPolicy, MicrogridEnv(seed=2), n_steps=64, epsilon=0.9)
    callbacks = CallbackList([EpsilonDecayCallback(0.4, 0.1, decay_steps=128), Probe(rollout_end=lambda m: seen.append(m.policy.epsilon))])
    model.learn(256, callback=callbacks)
    np.testing.assert_allclose(seen, [0.4, 0.25, 0.1, 0.1])
    model.save(tmp_path / "ppo")
    assert PPO.load(tmp_path / "ppo").policy.epsilon == pytest.approx(0.1)
    with pytest.raises(ValueError):
        model.policy.epsilon = 1.5


# ---- epsilon: SAC / TD3 ------------------------------------------------------------------------
@pytest.mark.parametrize("algo", [EpsilonSAC, EpsilonTD3])
def test_off_policy_epsilon_one_stores_the_executed_uniform_action(algo, tmp_path):
    received = RecordActions(MicrogridEnv(seed=3))
    model = algo("MlpPolicy", received, epsilon=1.0, learning_starts=50, batch_size=32, policy_kwargs=dict(net_arch=[32, 32]), seed=0)
    model.learn(450)
    buffer = model.replay_buffer.actions[: model.replay_buffer.pos, 0]
    np.testing.assert_allclose(buffer, np.array(received.actions), atol=1e-6)
    # After the warm-up the policy would act (SAC: tanh-Gaussian, TD3: deterministic); ε = 1 keeps it uniform.
    assert_uniform(buffer[50:])
    model.save(tmp_path / "m")
    assert algo.load(tmp_path / "m").epsilon == 1.0


def test_off_policy_epsilon_decays():
    model = EpsilonSAC("MlpPolicy", MicrogridEnv(seed=4), epsilon=0.9, learning_starts=100, policy_kwargs=dict(net_arch=[32]), seed=0)
    seen = []
    callbacks = CallbackList([EpsilonDecayCallback(0.5, 0.0, decay_steps=20), Probe(step=lambda m: seen.append(m.epsilon))])
    model.learn(30, callback=callbacks)
    # train_freq=1: a rollout, hence an update of ε, at every step.
    np.testing.assert_allclose(seen, [0.5 * max(0.0, 1 - t / 20) for t in range(30)])


def test_off_policy_epsilon_zero_keeps_the_policy_action():
    received = RecordActions(MicrogridEnv(seed=4))
    model = EpsilonTD3("MlpPolicy", received, epsilon=0.0, learning_starts=0, policy_kwargs=dict(net_arch=[32, 32]), seed=0)
    model.learn(60)
    # TD3 without action noise is deterministic: a single repeated action per observation, far from uniform.
    with pytest.raises(AssertionError):
        assert_uniform(np.array(received.actions))


class BoxActionEnv(gym.Env):
    """A constant observation and an asymmetric action Box (float32, or ``dtype``); reward 0."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def __init__(self, dtype: type = np.float32) -> None:
        self.action_space = gym.spaces.Box(np.array([-2, 0, 5]), np.array([1, 3, 6]), dtype=dtype)

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, False, {}


@pytest.mark.parametrize("algo", [EpsilonSAC, EpsilonTD3])
def test_off_policy_epsilon_draws_are_uniform_in_the_bounds_and_follow_the_space_seed(algo):
    n_envs, calls = 64, 20
    model = algo("MlpPolicy", DummyVecEnv([BoxActionEnv] * n_envs), epsilon=1.0, learning_starts=0, buffer_size=100, policy_kwargs=dict(net_arch=[8]), seed=0)
    model._last_obs = model.env.reset()
    space = model.action_space
    space.seed(123)
    drawn = [model._sample_action(0, None, n_envs) for _ in range(calls)]
    actions = np.concatenate([action for action, _ in drawn])
    # Reproducible from the space's seed: the same values as one space.sample() per replaced env, in env order.
    reference = copy.deepcopy(space)
    reference.seed(123)
    expected = np.array([reference.sample() for _ in range(n_envs * calls)])
    np.testing.assert_array_equal(np.concatenate([buffer_action for _, buffer_action in drawn]), model.policy.scale_action(expected))
    np.testing.assert_allclose(actions, expected, atol=1e-6)
    assert np.all(actions >= space.low - 1e-6) and np.all(actions <= space.high + 1e-6)
    for j in range(3):
        assert stats.kstest(actions[:, j], stats.uniform(space.low[j], space.high[j] - space.low[j]).cdf).pvalue > 1e-3


def test_off_policy_epsilon_refuses_an_integer_action_box():
    with pytest.raises(ValueError, match="bounded float Box"):
        EpsilonSAC("MlpPolicy", DummyVecEnv([lambda: BoxActionEnv(np.int64)]), buffer_size=100, policy_kwargs=dict(net_arch=[8]))


# ---- parameter-space noise ---------------------------------------------------------------------
ACTOR_MODULES = {PPO: ["mlp_extractor.policy_net", "action_net"], SAC: ["actor.latent_pi", "actor.mu"], TD3: ["actor.mu"]}


def actor_vector(model: BaseAlgorithm) -> th.Tensor:
    modules = ACTOR_MODULES[next(cls for cls in ACTOR_MODULES if isinstance(model, cls))]
    return th.cat([p.detach().flatten().clone() for name in modules for p in model.policy.get_submodule(name).parameters()])


def test_param_noise_ppo_stores_the_perturbed_policy_log_prob():
    model = small_ppo("MlpPolicy", MicrogridEnv(seed=5), n_steps=256, log_std_init=-1.0)
    noise = ParameterNoiseCallback(initial_sigma=0.3)
    snap: dict = {}

    def before_perturbation(m: PPO) -> None:
        snap["clean"] = {k: v.clone() for k, v in m.policy.state_dict().items()}

    def before_restore(m: PPO) -> None:
        obs, actions, stored = rollout_data(m)
        snap["stored"] = stored
        snap["perturbed_state"] = {k: v.clone() for k, v in m.policy.state_dict().items()}
        with th.no_grad():
            snap["perturbed"] = m.policy.evaluate_actions(obs, actions)[1].numpy()
            clean = copy.deepcopy(m.policy)
            clean.load_state_dict(snap["clean"])
            snap["clean_lp"] = clean.evaluate_actions(obs, actions)[1].numpy()

    # Probe first: it sees the clean weights before the noise is added and the perturbed ones before restore.
    model.learn(256, callback=CallbackList([Probe(rollout_start=before_perturbation, rollout_end=before_restore), noise]))

    np.testing.assert_allclose(snap["stored"], snap["perturbed"], rtol=1e-5, atol=1e-4)
    assert np.abs(snap["stored"] - snap["clean_lp"]).mean() > 0.5
    changed = {k for k in snap["clean"] if not th.equal(snap["clean"][k], snap["perturbed_state"][k])}
    assert changed == {k for k in snap["clean"] if k.startswith(("mlp_extractor.policy_net", "action_net"))}


@pytest.mark.parametrize(
    "make",
    [
        lambda env: small_ppo("MlpPolicy", env, n_steps=64),
        lambda env: SAC("MlpPolicy", env, learning_starts=40, batch_size=32, policy_kwargs=dict(net_arch=[32, 32]), seed=0),
        lambda env: TD3("MlpPolicy", env, learning_starts=40, batch_size=32, policy_kwargs=dict(net_arch=[32, 32]), seed=0),
    ],
    ids=["ppo", "sac", "td3"],
)
def test_param_noise_trains_the_clean_weights(make):
    model = make(MicrogridEnv(seed=6))
    off_policy = not isinstance(model, PPO)
    noise = ParameterNoiseCallback(initial_sigma=0.05, resample_freq=24 if off_policy else 0)
    clean = [actor_vector(model)]  # the clean weights: initial, then after every train()
    perturbations: list[th.Tensor] = []
    train = model.train

    def checked_train(*args, **kwargs):
        assert not noise.perturbed
        assert th.equal(actor_vector(model), clean[-1]), "train() must start from the clean weights"
        train(*args, **kwargs)
        clean.append(actor_vector(model))

    def during_rollout(m: BaseAlgorithm) -> None:
        perturbations.append(actor_vector(m) - clean[-1])

    model.train = checked_train
    model.learn(200 if off_policy else 256, callback=CallbackList([noise, Probe(step=during_rollout)]))

    assert th.equal(actor_vector(model), clean[-1]), "weights after learn() are the clean ones"
    assert not th.equal(clean[-1], clean[0]), "train() updated the actor"
    assert all(p.abs().max() > 0 for p in perturbations), "the actor acted perturbed at every step"
    if off_policy:
        # One draw per 24 steps, re-added on top of each update.
        draws = 1 + sum(not th.allclose(a, b, atol=1e-5) for a, b in zip(perturbations, perturbations[1:]))
        assert draws == int(np.ceil(200 / 24))


def test_param_noise_is_taken_off_inside_unperturbed():
    model = small_ppo("MlpPolicy", MicrogridEnv(seed=6), n_steps=64)
    clean, perturbed, inside, after = [], [], [], []

    def during_rollout(m: BaseAlgorithm) -> None:
        perturbed.append(actor_vector(m))
        with unperturbed(m.policy):
            inside.append(actor_vector(m))
        after.append(actor_vector(m))

    probes = [Probe(rollout_start=lambda m: clean.append(actor_vector(m))), ParameterNoiseCallback(initial_sigma=0.05), Probe(step=during_rollout)]
    model.learn(128, callback=CallbackList(probes))
    for t in range(128):
        assert not th.equal(perturbed[t], clean[t // 64])
        assert th.equal(inside[t], clean[t // 64]) and th.equal(after[t], perturbed[t])  # off inside, exactly back after
    final = actor_vector(model)
    with unperturbed(model.policy):  # no noise on: nothing changes
        assert th.equal(actor_vector(model), final)


@pytest.mark.parametrize("target, direction", [(1e-6, -1), (1e3, +1)])
def test_param_noise_sigma_adapts_towards_the_kl_target(tmp_path, target, direction):
    model = small_ppo("MlpPolicy", MicrogridEnv(seed=7), n_steps=64)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    # a distance target that would move sigma the other way: the Gaussian policy follows target_kl
    noise = ParameterNoiseCallback(initial_sigma=0.1, target_kl=target, target_distance=1e3 if direction < 0 else 1e-6, adaptation_coef=1.5)
    model.learn(256, callback=noise)
    assert noise.sigma == pytest.approx(0.1 * 1.5 ** (4 * direction))
    assert noise.kl > 0 and noise.distance is None
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    assert {"exploration/param_noise_sigma", "exploration/param_noise_kl"} <= set(header)


def test_param_noise_kl_is_that_of_the_perturbed_against_the_clean_policy():
    model = small_ppo("MlpPolicy", MicrogridEnv(seed=8), n_steps=64)
    noise = ParameterNoiseCallback(initial_sigma=0.05)
    snap: dict = {}

    def before_perturbation(m: PPO) -> None:
        snap["clean"] = copy.deepcopy(m.policy)

    def before_restore(m: PPO) -> None:
        obs = rollout_data(m)[0]
        with th.no_grad():
            perturbed = m.policy.get_distribution(obs).distribution
            clean = snap["clean"].get_distribution(obs).distribution
        snap["kl"] = th.distributions.kl_divergence(perturbed, clean).sum(dim=-1).mean().item()

    model.learn(64, callback=CallbackList([Probe(rollout_start=before_perturbation, rollout_end=before_restore), noise]))
    assert snap["kl"] > 1e-4
    assert noise.kl == pytest.approx(snap["kl"], rel=1e-4)


@pytest.mark.parametrize("target, direction", [(1e-6, -1), (1e3, +1)])
def test_param_noise_deterministic_policy_adapts_to_the_distance(target, direction):
    model = TD3("MlpPolicy", MicrogridEnv(seed=7), learning_starts=1000, policy_kwargs=dict(net_arch=[32]), train_freq=24, seed=0)
    noise = ParameterNoiseCallback(initial_sigma=0.1, target_distance=target, adaptation_coef=1.5)
    model.learn(96, callback=noise)
    assert noise.sigma == pytest.approx(0.1 * 1.5 ** (4 * direction))
    assert 0 < noise.distance < 10 and noise.kl is None


def test_param_noise_arguments_are_named():
    for name in ("initial_sigma", "target_kl", "target_distance"):
        with pytest.raises(ValueError, match=name):
            ParameterNoiseCallback(**{name: 0.0})
    with pytest.raises(ValueError, match="adaptation_coef"):
        ParameterNoiseCallback(adaptation_coef=1.0)


# ---- RND -------------------------------------------------------------------------------------------
_points = np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32)
SEEN, NOVEL = _points[:16], _points[16:]


class SeenPointsEnv(gym.Env):
    """Cycles through the 16 ``SEEN`` observations; reward 1."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (8,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return SEEN[self.offset % 16], {}

    def step(self, action):
        self.t += 1
        return SEEN[(self.offset + self.t) % 16], 1.0, self.t >= 20, False, {}


def test_rnd_bonus_falls_on_seen_observations_and_stays_high_on_novel_ones():
    env = RNDRewardWrapper(DummyVecEnv([lambda i=i: SeenPointsEnv(4 * i) for i in range(4)]), beta=0.5, seed=0)
    env.reset()
    bonuses = []
    for step in range(400):
        _, rewards, _, infos = env.step(np.zeros((4, 1)))
        bonuses.append([info["rnd_intrinsic"] for info in infos])
        np.testing.assert_allclose(rewards, [1.0 + 0.5 * info["rnd_intrinsic"] for info in infos], rtol=1e-6)
        assert all(info["extrinsic_reward"] == 1.0 for info in infos)
        if step == 7:  # every point seen twice: the statistics have settled, the predictor barely trained
            early_seen = env.prediction_error(SEEN).mean()
    late_seen, late_novel = env.prediction_error(SEEN).mean(), env.prediction_error(NOVEL).mean()
    assert late_seen < 0.05 * early_seen
    assert late_novel > 20 * late_seen
    assert np.mean(bonuses[-20:]) < 0.05 * np.mean(bonuses[:8])


@pytest.mark.parametrize(
    "name, value",
    [
        ("buffer_size", 0), ("buffer_size", 2.5), ("batch_size", 0), ("batch_size", -1), ("embedding_dim", 0),
        ("beta", math.nan), ("beta", -0.1), ("beta", math.inf), ("gamma", math.nan), ("gamma", 1.5), ("gamma", -0.1),
        ("obs_clip", -1.0), ("obs_clip", 0.0), ("obs_clip", math.inf), ("obs_clip", math.nan), ("beta_decay_steps", -1),
        ("learning_rate", math.nan), ("learning_rate", 0.0), ("learning_rate", math.inf), ("train_freq", 0),
        ("gradient_steps", 0), ("hidden_sizes", [64, 0]), ("hidden_sizes", 64), ("seed", -1),
    ],
)
def test_rnd_arguments_are_checked_at_construction(name, value):
    # The error names the argument and its allowed range.
    with pytest.raises(ValueError, match=rf"{re.escape(name)}.*(range|in|of) .*[\[(]"):
        RNDRewardWrapper(DummyVecEnv([lambda: SeenPointsEnv(0)]), **{name: value})


def test_rnd_arguments_may_be_numpy_numbers_or_whole_floats_as_yaml_gives_them():
    env = RNDRewardWrapper(DummyVecEnv([lambda: SeenPointsEnv(0)]), beta=np.float32(0.5), beta_decay_steps=1e6, buffer_size=np.int64(64), seed=np.int64(0))
    assert (env.beta, env.beta_decay_steps, env._buffer.shape[0]) == (0.5, 1_000_000, 64)
    with pytest.raises(ValueError, match="beta_decay_steps must be an integer"):
        env.beta_decay_steps = 1.5


def test_rnd_beta_and_its_decay_are_checked_when_set():
    env = RNDRewardWrapper(DummyVecEnv([lambda: SeenPointsEnv(0)]), seed=0)
    for name, value in (("beta", math.nan), ("beta", -1.0), ("beta_decay_steps", -5)):
        with pytest.raises(ValueError, match=name):
            setattr(env, name, value)
    env.beta, env.beta_decay_steps = 0.2, 10
    assert env.current_beta == pytest.approx(0.2)


def test_rnd_beta_zero_gives_the_env_reward_and_beta_decays():
    plain = MicrogridVecEnv(4, seed=0)
    silent = RNDRewardWrapper(MicrogridVecEnv(4, seed=0), beta=0.0, seed=0)
    decaying = RNDRewardWrapper(MicrogridVecEnv(4, seed=0), beta=2.0, beta_decay_steps=80, seed=0)
    envs = (plain, silent, decaying)
    for env in envs:
        env.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, size=(30, 4, ACTION_DIM)).astype(np.float32)
    for t, action in enumerate(actions):  # crosses the episode end at step 24
        (_, r_env, _, _), (_, r_silent, _, i_silent), (_, r_decay, _, i_decay) = (env.step(action) for env in envs)
        np.testing.assert_array_equal(r_silent, r_env)
        assert all(info["rnd_intrinsic"] > 0 for info in i_silent)
        beta = 2.0 * max(0.0, 1 - 4 * (t + 1) / 80)
        np.testing.assert_allclose(r_decay, [info["extrinsic_reward"] + beta * info["rnd_intrinsic"] for info in i_decay], rtol=1e-5)
        np.testing.assert_allclose([info["extrinsic_reward"] for info in i_decay], r_env, rtol=1e-6)
    assert decaying.current_beta == 0.0


def test_rnd_save_and_load_restore_the_predictor(tmp_path):
    env = RNDRewardWrapper(MicrogridVecEnv(2, seed=0), seed=0)
    env.reset()
    for _ in range(30):
        obs, *_ = env.step(np.zeros((2, ACTION_DIM), dtype=np.float32))
    env.save(tmp_path / "rnd.pt")
    other = RNDRewardWrapper(MicrogridVecEnv(2, seed=0), seed=1)
    assert not np.allclose(other.prediction_error(obs), env.prediction_error(obs))
    other.load(tmp_path / "rnd.pt")
    np.testing.assert_allclose(other.prediction_error(obs), env.prediction_error(obs), rtol=1e-6)
    assert other.num_timesteps == env.num_timesteps == 60


@pytest.mark.parametrize("vecnormalize", ["outside", "inside"])
def test_rnd_under_ppo_with_vecnormalize(vecnormalize):
    venv = MicrogridVecEnv(4, seed=0)
    if vecnormalize == "outside":  # recommended: VecNormalize(RNDRewardWrapper(venv))
        rnd = RNDRewardWrapper(venv, beta=1.0, seed=0)
        env = VecNormalize(rnd)
    else:
        env = rnd = RNDRewardWrapper(VecNormalize(venv), beta=1.0, seed=0)
    predictor = [p.detach().clone() for p in rnd.predictor.parameters()]

    def check_reward(rollout_locals: dict) -> None:
        infos, rewards = rollout_locals["infos"], rollout_locals["rewards"]
        total = [info["extrinsic_reward"] + info["rnd_intrinsic"] for info in infos]
        # The reward the agent is given carries the bonus (before VecNormalize's scaling when it is outside).
        np.testing.assert_allclose(env.get_original_reward() if vecnormalize == "outside" else rewards, total, rtol=1e-5)
        if vecnormalize == "outside":
            np.testing.assert_allclose([info["extrinsic_reward"] for info in infos], venv.core.reward, rtol=1e-5)

    model = small_ppo("MlpPolicy", env, n_steps=32)
    probe = Probe(step=lambda _: check_reward(probe.locals))
    model.learn(256, callback=probe)
    assert rnd.n_calls == 64
    assert all(not th.equal(a, b) for a, b in zip(predictor, rnd.predictor.parameters()))


def test_rnd_load_refuses_a_file_that_does_not_fit_naming_it(tmp_path):
    """Another number of envs, other network sizes or a non-finite statistic: an error naming the file and the
    entry, before anything is set (the wrapper keeps its own state)."""
    env = RNDRewardWrapper(MicrogridVecEnv(2, seed=0), seed=0)
    env.reset()
    env.step(np.zeros((2, ACTION_DIM), dtype=np.float32))
    env.save(tmp_path / "rnd.pt")
    for other, named in ((RNDRewardWrapper(MicrogridVecEnv(3, seed=0), seed=0), "intrinsic_return must be finite of shape (3,)"),
                         (RNDRewardWrapper(MicrogridVecEnv(2, seed=0), embedding_dim=8, seed=0), "must be a finite tensor of shape")):
        before = other.prediction_error(np.zeros((1, *other.observation_space.shape), dtype=np.float32))
        with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'rnd.pt'} does not fit this RNDRewardWrapper") + ".*" + re.escape(named)):
            other.load(tmp_path / "rnd.pt")
        np.testing.assert_array_equal(other.prediction_error(np.zeros((1, *other.observation_space.shape), dtype=np.float32)), before)
    state = th.load(tmp_path / "rnd.pt", weights_only=True)
    state["obs_var"][0] = float("nan")
    th.save(state, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match="obs_var must be finite"):
        env.load(tmp_path / "nan.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pt is not an RNDRewardWrapper file"):
        env.load(tmp_path / "junk.pt")


@pytest.mark.parametrize(("change", "named"), [
    (lambda state: state["predictor"].__setitem__(next(iter(state["predictor"])), th.full_like(next(iter(state["predictor"].values())), float("nan"))), "must be a finite tensor"),
    (lambda state: state.__setitem__("obs_count", -1.0), "obs_count"),
])  # fmt: skip
def test_rnd_load_refuses_non_finite_weights_and_negative_counts(tmp_path, change, named):
    env = RNDRewardWrapper(MicrogridVecEnv(2, seed=0), seed=0)
    env.reset()
    env.save(tmp_path / "rnd.pt")
    state = th.load(tmp_path / "rnd.pt", weights_only=True)
    change(state)
    th.save(state, tmp_path / "bad.pt")
    obs = np.zeros((1, *env.observation_space.shape), dtype=np.float32)
    before = env.prediction_error(obs)
    with pytest.raises(ValueError, match=named):
        env.load(tmp_path / "bad.pt")
    np.testing.assert_array_equal(env.prediction_error(obs), before)
