"""Dyna: the ensemble world model fits, stops early and knows where it has not been; DynaSAC stores imagined
transitions like real ones, mixes them into SAC's batches, equals SAC when it mixes none, and saves its model."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_microgrid import MicrogridEnv
from sb3_microgrid.dyna import DynaSAC, EnsembleLinear, MixedSampler, TooFewTransitions, WorldModel
from sb3_microgrid.hyperparams import load_hyperparams
from sb3_microgrid.training import algorithm, train

HYPERPARAMS = Path(__file__).parent.parent / "hyperparams"
NOISE_STD = 0.05  # of each next-state coordinate of the linear system
REWARD_NOISE_STD = 0.1


class LinearSystem:
    """``next = x + x A + a B + N(0, NOISE_STD^2)``, ``reward = x c + N(0, REWARD_NOISE_STD^2)``."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.A = rng.normal(size=(3, 3)) * 0.3
        self.B = rng.normal(size=(2, 3)) * 0.5
        self.c = rng.normal(size=3)

    def mean(self, x: np.ndarray, a: np.ndarray) -> np.ndarray:
        """True mean of ``[next - x, reward]``."""
        return np.concatenate([x @ self.A + a @ self.B, (x @ self.c)[:, None]], axis=1)

    def transitions(self, n: int, low: float = -1.0, high: float = 1.0) -> tuple[np.ndarray, ...]:
        x = self.rng.uniform(low, high, (n, 3)).astype(np.float32)
        a = self.rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        mean = self.mean(x, a)
        next_x = x + mean[:, :3] + NOISE_STD * self.rng.normal(size=(n, 3))
        reward = mean[:, 3] + REWARD_NOISE_STD * self.rng.normal(size=n)
        return x, a, next_x.astype(np.float32), reward.astype(np.float32)


@pytest.fixture(scope="module")
def linear_fit() -> tuple[LinearSystem, WorldModel]:
    system = LinearSystem(np.random.default_rng(0))
    model = WorldModel(3, 2, np.random.default_rng(1), ensemble_size=5, net_arch=(64, 64))
    result = model.fit(*system.transitions(2000), rng=np.random.default_rng(2), max_epochs=300, patience=5)
    assert result.stopped_early and result.epochs < 300
    return system, model


def tiny(**overrides) -> dict:
    """Small-budget DynaSAC kwargs (fresh dicts each time: SAC writes into ``policy_kwargs``)."""
    return dict(
        learning_starts=100, batch_size=32, buffer_size=2000, seed=0, policy_kwargs=dict(net_arch=[32, 32]),
        model_train_freq=100, rollout_batch_size=300, model_buffer_size=2000, model_train_samples=None,
        world_model_kwargs=dict(ensemble_size=3, net_arch=[32, 32]), model_fit_kwargs=dict(max_epochs=5),
    ) | overrides  # fmt: skip


def test_ensemble_layer_applies_each_member_its_own_weights(rng: np.random.Generator) -> None:
    layer = EnsembleLinear(4, 3, 2, rng)
    x = th.randn(4, 5, 3)
    out = layer(x)
    for k in range(4):
        th.testing.assert_close(out[k], x[k] @ layer.weight[k] + layer.bias[k])


def test_world_model_fits_a_linear_system(linear_fit: tuple[LinearSystem, WorldModel]) -> None:
    system, model = linear_fit
    x, a, _, _ = system.transitions(2000)
    prediction = model.predict(x, a)
    assert prediction.mean.shape == prediction.var.shape == (5, 2000, 4)
    truth = system.mean(x, a)
    noise_var = np.array([NOISE_STD**2] * 3 + [REWARD_NOISE_STD**2])
    # the ensemble mean is close to the true mean: its squared error is a small fraction of the noise
    assert (((prediction.mean.mean(axis=0) - truth) ** 2).mean(axis=0) < 0.1 * noise_var).all()
    # and the predicted variance is the noise variance
    ratio = prediction.var.mean(axis=(0, 1)) / noise_var
    assert ((ratio > 0.75) & (ratio < 1.35)).all(), ratio


def test_disagreement_is_larger_off_distribution(linear_fit: tuple[LinearSystem, WorldModel]) -> None:
    system, model = linear_fit
    seen = model.predict(*system.transitions(500)[:2]).disagreement
    unseen = model.predict(*system.transitions(500, low=4.0, high=5.0)[:2]).disagreement
    assert unseen.mean() > 3 * seen.mean()


def test_sample_draws_around_a_member_mean(linear_fit: tuple[LinearSystem, WorldModel]) -> None:
    system, model = linear_fit
    x, a, _, _ = system.transitions(4000)
    next_x, reward, disagreement = model.sample(x, a, np.random.default_rng(3))
    assert next_x.shape == x.shape and next_x.dtype == np.float32 and reward.shape == disagreement.shape == (4000,)
    residual = np.concatenate([next_x - x, reward[:, None]], axis=1) - system.mean(x, a)
    # the spread of the draws is the noise (the means are almost exact, see above)
    np.testing.assert_allclose(residual.std(axis=0), [NOISE_STD] * 3 + [REWARD_NOISE_STD], rtol=0.2)


def test_early_stopping_stops_and_max_epochs_caps(rng: np.random.Generator) -> None:
    x = rng.normal(size=(1000, 2)).astype(np.float32)
    a = rng.normal(size=(1000, 1)).astype(np.float32)
    noise = rng.normal(size=(1000, 2)).astype(np.float32)  # nothing to learn: the holdout cannot keep improving
    model = WorldModel(2, 1, rng, net_arch=(16,))
    result = model.fit(x, a, x + noise, noise[:, 0], rng, max_epochs=500, patience=3)
    assert result.stopped_early and 3 < result.epochs < 500
    capped = model.fit(x, a, x + noise, noise[:, 0], rng, max_epochs=2, patience=3)
    assert capped.epochs == 2 and not capped.stopped_early


def test_world_model_refuses_bad_settings(rng: np.random.Generator) -> None:
    with pytest.raises(ValueError, match="ensemble_size"):
        WorldModel(2, 1, rng, ensemble_size=1)
    with pytest.raises(ValueError, match="nll_beta"):
        WorldModel(2, 1, rng, nll_beta=2.0)
    model = WorldModel(2, 1, rng)
    with pytest.raises(RuntimeError, match="fit"):
        model.predict(np.zeros((1, 2), np.float32), np.zeros((1, 1), np.float32))
    with pytest.raises(ValueError, match="holdout_ratio"):
        model.fit(*(np.zeros((10, d), np.float32) for d in (2, 1, 2)), np.zeros(10, np.float32), rng, holdout_ratio=1.0)


def test_mixed_sampler_takes_the_real_ratio() -> None:
    obs_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = spaces.Box(-1, 1, (1,), np.float32)
    real = ReplayBuffer(100, obs_space, action_space, device="cpu")
    imagined = ReplayBuffer(100, obs_space, action_space, device="cpu")
    for _ in range(10):
        real.add(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 1)), np.zeros(1), np.zeros(1), [{}])
    sampler = MixedSampler(real, imagined, real_ratio=0.3)
    assert (sampler.sample(50).observations == 0).all()  # nothing imagined yet: all real
    for _ in range(10):
        imagined.add(np.ones((1, 2)), np.ones((1, 2)), np.ones((1, 1)), np.ones(1), np.ones(1), [{}])
    batch = sampler.sample(50)
    assert batch.observations.shape == (50, 2) and batch.rewards.shape == batch.dones.shape == (50, 1)
    assert int((batch.observations[:, 0] == 0).sum()) == 15 and int((batch.rewards == 1).sum()) == 35


def test_imagined_transitions_are_stored_like_real_ones() -> None:
    """With VecNormalize (raw storage, normalised at sample time) and two-step rollouts."""
    env = VecNormalize(DummyVecEnv([lambda: MicrogridEnv(seed=0)]), norm_reward=True)
    model = DynaSAC("MlpPolicy", env, **tiny(rollout_length=2))
    model.learn(150)
    imagined, real = model.model_buffer, model.replay_buffer
    assert model.world_model.fitted and imagined.size() > 300
    for name in ("observations", "next_observations", "actions", "rewards", "dones"):
        assert getattr(imagined, name).dtype == getattr(real, name).dtype
        assert getattr(imagined, name).shape[1:] == getattr(real, name).shape[1:]
    for ours, theirs in zip(imagined.sample(64, env=env), real.sample(64, env=env)):
        assert (ours is None and theirs is None) or (ours.shape == theirs.shape and ours.dtype == theirs.dtype)
    # stored raw: the episode clock is still a whole number of hours left; the transition out of the day's last
    # step (one hour left) ends the episode, and only that one
    hours_left = imagined.observations[: imagined.size(), 0, model._clock_index] * 24
    np.testing.assert_allclose(hours_left, np.rint(hours_left), atol=1e-3)
    dones = imagined.dones[: imagined.size(), 0]
    np.testing.assert_array_equal(dones, np.rint(hours_left) == 1)
    assert 0 < dones.sum() < len(dones)
    # a branch stops at the end of the day: no imagined transition starts after it
    assert hours_left.min() > 0.5


def test_real_ratio_one_trains_exactly_as_sac() -> None:
    kwargs = tiny()
    dyna_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith(("model_", "rollout_", "world_"))}
    sac = SAC("MlpPolicy", MicrogridEnv(seed=0), **kwargs).learn(250)
    dyna = DynaSAC("MlpPolicy", MicrogridEnv(seed=0), real_ratio=1.0, **kwargs, **dyna_kwargs).learn(250)
    # the model was fitted (first training call at step 101, again at 201) and rolled out, with its own random streams ...
    assert dyna.world_model.fitted and dyna._last_model_update == 201 and dyna.model_buffer.size() > 0
    # ... and SAC did not notice
    for (name, ours), theirs in zip(dyna.policy.state_dict().items(), sac.policy.state_dict().values()):
        assert th.equal(ours, theirs), name
    mixed = DynaSAC("MlpPolicy", MicrogridEnv(seed=0), real_ratio=0.5, **tiny()).learn(250)
    assert not th.equal(mixed.actor.mu.weight, sac.actor.mu.weight)


def test_save_load_round_trips_the_world_model(tmp_path: Path) -> None:
    model = DynaSAC("MlpPolicy", MicrogridEnv(seed=0), **tiny(learning_starts=60))
    model.learn(120)
    saved_rng_state = model.dyna_rng.bit_generator.state
    model.save(tmp_path / "dyna")
    loaded = DynaSAC.load(tmp_path / "dyna", env=MicrogridEnv(seed=0))
    assert loaded.world_model.fitted and loaded._last_model_update is None  # refits at its first training call
    # building the network that the saved weights replace drew nothing: a resumed run continues the saved stream
    assert loaded.dyna_rng.bit_generator.state == saved_rng_state
    buffer = model.replay_buffer
    obs, actions = buffer.observations[:100, 0], buffer.actions[:100, 0]
    before, after = model.world_model.predict(obs, actions), loaded.world_model.predict(obs, actions)
    for ours, theirs in zip(before, after):
        np.testing.assert_array_equal(ours, theirs)
    assert loaded.world_model.optimizer.state_dict()["state"]  # Adam's moments came back too
    loaded.learn(120)  # the model buffer is not saved: training refits and refills it
    assert loaded.model_buffer.size() > 0


@pytest.mark.parametrize("learning_starts", [0, 1])
def test_sac_trains_on_real_batches_until_the_model_can_be_fitted(learning_starts: int) -> None:
    model = DynaSAC("MlpPolicy", MicrogridEnv(seed=0), **tiny(learning_starts=learning_starts, rollout_batch_size=50))
    model.learn(5)
    # a gradient step at every step after learning_starts; the first fit at 3 transitions (1 held out, 2 trained on)
    assert model._n_updates == 5 - learning_starts
    assert model.world_model.fitted and model._last_model_update == 3 and model.model_buffer.size() > 0
    # a sample capped below what the holdout needs never grows: that is an error, not a wait
    capped = DynaSAC("MlpPolicy", MicrogridEnv(seed=0), **tiny(learning_starts=0, model_train_samples=10, model_fit_kwargs=dict(holdout_ratio=0.04)))
    with pytest.raises(TooFewTransitions, match="got 10 with holdout_ratio=0.04"):
        capped.learn(12)


def test_dyna_sac_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="termination_feature"):
        DynaSAC("MlpPolicy", gym.make("Pendulum-v1"))
    assert DynaSAC("MlpPolicy", gym.make("Pendulum-v1"), termination_feature=None).model_buffer.size() == 0
    with pytest.raises(ValueError, match="use_sde"):
        DynaSAC("MlpPolicy", MicrogridEnv(), use_sde=True)
    with pytest.raises(ValueError, match=r"real_ratio must be in \[0, 1\]"):
        DynaSAC("MlpPolicy", MicrogridEnv(), real_ratio=1.5)
    with pytest.raises(ValueError, match="rollout_length must be an integer >= 1"):
        DynaSAC("MlpPolicy", MicrogridEnv(), rollout_length=0)


def test_shipped_file_trains_from_the_cli_settings(tmp_path: Path) -> None:
    assert algorithm("dyna_sac") is DynaSAC
    text = (HYPERPARAMS / "dyna_sac.yml").read_text()
    hp = load_hyperparams(HYPERPARAMS / "dyna_sac.yml", DynaSAC)
    assert hp.algo_kwargs["world_model_kwargs"]["net_arch"] == [128, 128] and hp.algo_kwargs["real_ratio"] == 0.5
    for old, new in (
        ("buffer_size: 300000", "buffer_size: 1000"), ("learning_starts: 1200", "learning_starts: 48"),
        ("net_arch=[256, 256]", "net_arch=[16, 16]"), ("rollout_batch_size: 5000", "rollout_batch_size: 200"),
        ("model_train_freq: 1000", "model_train_freq: 40"), ("net_arch: [128, 128]", "net_arch: [16]"),
    ):  # fmt: skip
        assert old in text
        text = text.replace(old, new)
    conf = tmp_path / "dyna_sac.yml"
    conf.write_text(text)
    model = train("dyna_sac", conf, tmp_path / "run", timesteps=100, progress_bar=False)
    assert isinstance(model, DynaSAC) and model.world_model.fitted and model.model_buffer.size() > 0
    assert (tmp_path / "run" / "model.zip").exists()


@pytest.mark.slow
def test_beta_nll_learns_the_battery_where_the_plain_nll_does_not() -> None:
    """Why ``nll_beta`` defaults to 0.5 (docs/replay_dyna.md): on Microgrid-v0 data (random actions), the plain NLL
    of PETS/MBPO lets the 160 window features that shift exactly take over, and the model never learns how the
    battery action moves the state of charge; the beta-NLL does."""
    env = MicrogridEnv(seed=0)
    env.action_space.seed(0)
    obs, _ = env.reset()
    rows = []
    for _ in range(8000):
        action = env.action_space.sample()
        next_obs, reward, done, _, _ = env.step(action)
        rows.append((obs, action, next_obs, reward))
        obs = env.reset()[0] if done else next_obs
    data = [np.array(column, dtype=np.float32) for column in zip(*rows)]
    train, test = [d[:6000] for d in data], [d[6000:] for d in data]
    soc = env.observation_space.layout.index("soc")
    correlation = {}
    for beta in (0.0, 0.5):
        model = WorldModel(data[0].shape[1], data[1].shape[1], np.random.default_rng(0), ensemble_size=3, net_arch=(64, 64), nll_beta=beta)
        model.fit(*train, rng=np.random.default_rng(1), max_epochs=40, patience=40)
        predicted = model.predict(test[0], test[1]).mean.mean(axis=0)[:, soc]
        correlation[beta] = np.corrcoef(predicted, test[2][:, soc] - test[0][:, soc])[0, 1]
    assert correlation[0.0] < 0.3 and correlation[0.5] > 0.8, correlation
