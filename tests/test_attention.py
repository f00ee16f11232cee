"""ForecastAttentionExtractor: it finds the window through the layout, really reads it (history and
forecasts, by position), trains under PPO, SAC and TD3, and survives save/load."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecNormalize

from sb3_microgrid.envs import MicrogridEnv, ObservationLayout
from sb3_microgrid.policies import ForecastAttentionExtractor
from sb3_microgrid.wrappers import ResidualWrapper

TINY = dict(embed_dim=16, n_heads=2, features_dim=32)
FAKE = ObservationLayout(static_names=("a", "b", "c", "d"), window_names=("x", "y", "z"), history_steps=2, forecast_steps=3)


def fake_space(layout: ObservationLayout = FAKE) -> gym.spaces.Box:
    space = gym.spaces.Box(-np.inf, np.inf, shape=(layout.size,), dtype=np.float32)
    space.layout = layout
    return space


def env_observations(env: MicrogridEnv, n: int = 8) -> th.Tensor:
    obs, _ = env.reset(seed=0)
    rows = [obs]
    for _ in range(n - 1):
        obs, *_ = env.step(env.action_space.sample())
        rows.append(obs)
    return th.as_tensor(np.stack(rows))


@pytest.fixture(scope="module")
def env() -> MicrogridEnv:
    return MicrogridEnv(seed=0)


@pytest.fixture
def extractor(env) -> ForecastAttentionExtractor:
    th.manual_seed(0)
    return ForecastAttentionExtractor(env.observation_space).eval()


def features(extractor: ForecastAttentionExtractor, obs: th.Tensor) -> th.Tensor:
    with th.no_grad():
        return extractor(obs)


def test_output_shape(env, extractor):
    assert features(extractor, env_observations(env)).shape == (8, 128)


@pytest.mark.parametrize(
    "scenario, window_shape, n_static",
    [
        ({"step_hours": 0.25}, (32, 5), 46),
        ({"step_hours": 0.25, "forecast": {"history_steps": 16, "forecast_steps": 96}, "ev": {"n_ports": 4}}, (112, 5), 22),
    ],
    ids=["15min", "15min-24h-forecast-4-ports"],
)
def test_adapts_to_the_scenario_without_indices(scenario, window_shape, n_static):
    # history_steps and forecast_steps count steps: 15-minute steps alone keep the (32, 5) window.
    env = MicrogridEnv(scenario=scenario, seed=0)
    assert env.observation_space.layout.window_shape == window_shape and env.observation_space.layout.n_static == n_static
    extractor = ForecastAttentionExtractor(env.observation_space, **TINY)
    assert extractor.position.shape[1] == window_shape[0] and extractor.static_net[0].in_features == n_static
    assert extractor(env_observations(env, 4)).shape == (4, 32)


def with_window(obs: th.Tensor, layout: ObservationLayout, edit) -> th.Tensor:
    """A copy of ``obs`` whose window, as a (batch, steps, series) tensor, went through ``edit``."""
    changed = obs.clone()
    window = changed[:, layout.window].reshape(-1, *layout.window_shape).clone()
    edit(window)
    changed[:, layout.window] = window.reshape(len(obs), -1)
    return changed


def test_reads_the_window_its_forecasts_and_their_order(env, extractor):
    obs = env_observations(env)
    layout = env.observation_space.layout
    base = features(extractor, obs)
    last = layout.history_steps + layout.forecast_steps - 1

    def shift_all(window: th.Tensor) -> None:
        window += 0.5

    def bump_last_forecast(window: th.Tensor) -> None:
        window[:, last] += 1.0

    def swap_last_two_forecasts(window: th.Tensor) -> None:
        window[:, [last - 1, last]] = window[:, [last, last - 1]]

    for edit in (shift_all, bump_last_forecast, swap_last_two_forecasts):
        changed = with_window(obs, layout, edit)
        assert th.equal(changed[:, layout.static], obs[:, layout.static]) and not th.equal(changed, obs), edit.__name__
        # A swap of two rows that are not the current step is invisible without the positional embedding.
        assert (features(extractor, changed) - base).abs().max() > 1e-4, edit.__name__


def test_attention_receives_gradients(env):
    th.manual_seed(0)
    extractor = ForecastAttentionExtractor(env.observation_space, **TINY)
    extractor(env_observations(env)).pow(2).sum().backward()
    grads = {name: param.grad for name, param in extractor.named_parameters()}
    assert {"position", "encoder.layers.0.self_attn.in_proj_weight", "encoder.layers.0.self_attn.out_proj.weight"} <= grads.keys()
    for name, grad in grads.items():
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize("history_steps", [2, 0])
def test_reads_the_layout_not_positions(history_steps):
    layout = ObservationLayout(FAKE.static_names, FAKE.window_names, history_steps, FAKE.forecast_steps)
    th.manual_seed(0)
    extractor = ForecastAttentionExtractor(fake_space(layout), **TINY).eval()
    assert extractor.step_embed.in_features == 3 and extractor.static_net[0].in_features == 4
    obs = th.randn(6, layout.size)
    tokens = []
    extractor.encoder.register_forward_hook(lambda module, args, out: tokens.append(out))
    base = features(extractor, obs)
    assert base.shape == (6, 32)

    static_changed = obs.clone()
    static_changed[:, layout.index("c")] += 1.0
    assert (features(extractor, static_changed) - base).abs().max() > 1e-4
    # The change came through the static path: the window's tokens are untouched.
    assert th.equal(tokens[0], tokens[1])


def test_layout_argument_for_a_space_without_one(env):
    bare = gym.spaces.Box(-np.inf, np.inf, shape=env.observation_space.shape, dtype=np.float32)
    layout = env.observation_space.layout
    for given in (layout, layout.to_dict()):
        assert ForecastAttentionExtractor(bare, layout=given, **TINY).layout == layout


def test_invalid_configurations(env):
    bare = gym.spaces.Box(-np.inf, np.inf, shape=env.observation_space.shape, dtype=np.float32)
    with pytest.raises(ValueError, match="has no .layout"):
        ForecastAttentionExtractor(bare)
    with pytest.raises(ValueError, match="divisible by n_heads"):
        ForecastAttentionExtractor(env.observation_space, embed_dim=10, n_heads=4)
    with pytest.raises(ValueError, match="shape"):
        ForecastAttentionExtractor(bare, layout=FAKE)
    with pytest.raises(ValueError, match="differs"):
        ForecastAttentionExtractor(fake_space(), layout=ObservationLayout(("a",), ("x", "y", "z", "w"), 2, 2))


@pytest.mark.parametrize(
    "name, value",
    [("n_heads", 0), ("n_heads", -2), ("embed_dim", 0), ("n_layers", 0), ("ff_dim", 0), ("static_dim", 0),
     ("features_dim", 0), ("dropout", -0.1), ("dropout", float("nan")), ("n_heads", 2.5), ("n_heads", True)],
)
def test_sizes_are_checked_before_use(name, value):
    with pytest.raises(ValueError, match=rf"{name}.*[\[(]"):
        ForecastAttentionExtractor(fake_space(), **(TINY | {name: value}))


def test_sizes_may_be_numpy_numbers_or_whole_floats_as_yaml_gives_them():
    extractor = ForecastAttentionExtractor(fake_space(), **(TINY | {"n_heads": np.int64(2), "features_dim": 16.0, "dropout": np.float32(0.0)}))
    assert extractor.features_dim == 16 and isinstance(extractor.features_dim, int)


@pytest.mark.parametrize(
    "layout",
    [
        ObservationLayout(("a", "b"), (), 0, 0),  # what ResidualWrapper(features=[...]) and CalibrationWrapper give
        ObservationLayout(("a",), ("x", "y"), 3, 0),  # history only: no current-step row
        ObservationLayout(("a",), (), 0, 4),  # steps but no series
    ],
)
def test_a_layout_without_a_forecast_window_is_refused_at_construction(layout):
    with pytest.raises(ValueError, match="no forecast window to attend over"):
        ForecastAttentionExtractor(fake_space(layout), **TINY)


def test_a_residual_wrapper_with_features_is_refused_at_construction():
    wrapped = ResidualWrapper(MicrogridEnv(seed=0), "rule", features=["hour_sin", "hour_cos"])
    with pytest.raises(ValueError, match="no forecast window to attend over"):
        ForecastAttentionExtractor(wrapped.observation_space, **TINY)


def extractors(model) -> list[ForecastAttentionExtractor]:
    return [m for m in model.policy.modules() if isinstance(m, ForecastAttentionExtractor)]


# (algorithm, kwargs, number of extractors: PPO shares one; SAC and TD3 default to share_features_extractor=False,
# so actor, critic and their targets each own one)
ALGOS = {
    "ppo": (PPO, dict(n_steps=128, batch_size=64, n_epochs=2), 1),
    "sac": (SAC, dict(learning_starts=64, batch_size=32, buffer_size=1000), 3),
    "td3": (TD3, dict(learning_starts=64, batch_size=32, buffer_size=1000), 4),
}


@pytest.mark.parametrize("algo", list(ALGOS))
def test_learns_saves_and_loads(algo, env, tmp_path):
    cls, kwargs, n_extractors = ALGOS[algo]
    policy_kwargs = dict(features_extractor_class=ForecastAttentionExtractor, features_extractor_kwargs=TINY)
    model = cls("MlpPolicy", MicrogridEnv(seed=0), policy_kwargs=policy_kwargs, seed=0, **kwargs)
    assert len(extractors(model)) == n_extractors
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(256)
    # Every parameter of every extractor moved: by its own loss, or by Polyak averaging for the targets.
    params = dict(zip(model.policy.parameters(), before))
    for extractor in extractors(model):
        for name, param in extractor.named_parameters():
            assert not th.equal(params[param], param), name

    model.save(tmp_path / "model")
    loaded = cls.load(tmp_path / "model", device="cpu")
    assert len(extractors(loaded)) == n_extractors
    obs = env_observations(env).numpy()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_through_vecnormalize_and_a_policy_subclass():
    class AttentionPolicy(ActorCriticPolicy):
        def __init__(self, *args, **kwargs) -> None:
            kwargs.setdefault("features_extractor_class", ForecastAttentionExtractor)
            kwargs.setdefault("features_extractor_kwargs", TINY)
            super().__init__(*args, **kwargs)

    venv = VecNormalize(make_vec_env(MicrogridEnv, 2, seed=0))
    assert venv.observation_space.layout == MicrogridEnv().observation_space.layout
    model = PPO(AttentionPolicy, venv, n_steps=64, batch_size=64, n_epochs=1, seed=0)
    assert isinstance(model.policy.features_extractor, ForecastAttentionExtractor)
    model.learn(128)
    assert model.num_timesteps == 128


def test_trpo_trains_through_the_extractor():
    """TRPO differentiates the KL twice; the CPU flash attention kernel has no second derivative."""
    from sb3_contrib import TRPO

    kwargs = dict(features_extractor_class=ForecastAttentionExtractor, features_extractor_kwargs=dict(embed_dim=8, n_heads=2, features_dim=16))
    model = TRPO("MlpPolicy", MicrogridEnv(seed=0), n_steps=32, batch_size=32, policy_kwargs=kwargs, seed=0)
    before = [p.detach().clone() for p in model.policy.action_net.parameters()]
    model.learn(32)
    assert any(not th.equal(b, p) for b, p in zip(before, model.policy.action_net.parameters()))
