"""Auxiliary prioritized value replay: the value head(s) move, the policy does not, priorities and weights follow PER."""

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.vec_env import VecEnvWrapper, VecNormalize
from torch import nn

from sb3_microgrid import MicrogridEnv, MicrogridVecEnv
from sb3_microgrid.callbacks import AuxiliaryValueReplayCallback, CurriculumCallback
from sb3_microgrid.callbacks.aux_value_replay import ValueReplayStore, reward_scale
from sb3_microgrid.callbacks.metrics import monte_carlo_returns
from sb3_microgrid.policies import ForecastAttentionExtractor
from sb3_microgrid.twin_ppo import TwinValuePPO

T = 24  # steps per episode of the campus scenario: with n_steps=T a rollout is one episode per env
N_ENVS = 4
ATTENTION = dict(features_extractor_class=ForecastAttentionExtractor, features_extractor_kwargs=dict(embed_dim=8, n_heads=2, features_dim=16))


def make_model(env=None, algo=PPO, **kwargs):
    """A frozen policy (learning_rate=0 for PPO's own optimizer): whatever moves was moved by the callback."""
    params = dict(learning_rate=0.0, n_steps=T, batch_size=48, n_epochs=1, seed=0, policy_kwargs=dict(net_arch=[16])) | kwargs
    return algo("MlpPolicy", env if env is not None else MicrogridVecEnv(N_ENVS, seed=0), **params)


def observations() -> th.Tensor:
    """One episode of random actions."""
    env = MicrogridEnv(seed=1)
    env.action_space.seed(1)
    rows = [env.reset(seed=1)[0]] + [env.step(env.action_space.sample())[0] for _ in range(T - 1)]
    return th.as_tensor(np.array(rows))


def distribution(model) -> tuple[th.Tensor, th.Tensor]:
    model.policy.set_training_mode(False)  # the attention extractor's eval path differs from its training one by rounding
    with th.no_grad():
        normal = model.policy.get_distribution(observations()).distribution
    return normal.mean.clone(), normal.stddev.clone()


def snapshot(module: nn.Module) -> dict[str, th.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed(module: nn.Module, before: dict[str, th.Tensor]) -> set[str]:
    return {name for name, p in module.named_parameters() if not th.equal(p, before[name])}


def submodule(name: str) -> str:
    """The policy's submodule a parameter belongs to: ``mlp_extractor.value_net.0.weight`` -> ``mlp_extractor.value_net``."""
    parts = name.split(".")
    return ".".join(parts[:2] if parts[0] == "mlp_extractor" else parts[:1])


def collection_order(array: np.ndarray, n_envs: int = N_ENVS) -> np.ndarray:
    """A rollout-buffer array that ``train()`` flattened env by env (``RolloutBuffer.get()``), back in the
    ``(step, env)`` order of collection, flattened: the order the store copied it in at the rollout end."""
    return array.reshape(n_envs, -1, *array.shape[1:]).swapaxes(0, 1).reshape(array.shape)


def newest_block(store: ValueReplayStore) -> np.ndarray:
    block = (store._next - 1) % store.n_rollouts
    return np.arange(block * store.rollout_size, (block + 1) * store.rollout_size)


def exact_priorities(callback: AuxiliaryValueReplayCallback, indices: np.ndarray) -> np.ndarray:
    """``(|target - V| + epsilon) ** alpha`` from the current value function, computed here from scratch."""
    observations, targets = callback._batch(indices)
    with th.no_grad():
        values = callback.model.policy.predict_values(observations)
    return ((targets - values).abs().squeeze(1).numpy().astype(np.float64) + callback.epsilon) ** callback.alpha


# ---- the policy never moves, the value head does ------------------------------------------------------------
@pytest.mark.parametrize("share", [True, False])
def test_value_parameters_move_and_policy_is_unchanged(share):
    model = make_model(policy_kwargs=dict(net_arch=[16], share_features_extractor=share, **ATTENTION))
    policy = model.policy
    mean, std = distribution(model)
    before = snapshot(policy)
    value_modules = {"mlp_extractor.value_net", "value_net"} | (set() if share else {"vf_features_extractor"})

    model.learn(3 * T * N_ENVS, callback=AuxiliaryValueReplayCallback(gradient_steps=4, batch_size=32))

    assert {submodule(name) for name in changed(policy, before)} == value_modules
    new_mean, new_std = distribution(model)
    assert th.equal(mean, new_mean) and th.equal(std, new_std)
    logged = model.logger.name_to_value  # the phase after the last update: recorded, not dumped yet
    assert logged["aux_value/n_stored"] == 3 * T * N_ENVS and logged["aux_value/mean_priority"] > 0 and logged["aux_value/loss"] > 0


def test_twin_value_ppo_fits_both_heads_only():
    model = make_model(algo=TwinValuePPO)
    policy = model.policy
    mean, std = distribution(model)
    heads = {
        "latent_1": policy.mlp_extractor.value_net,
        "head_1": policy.value_net,
        "latent_2": policy.value_latent_net_2,
        "head_2": policy.value_net_2,
    }
    before = {name: snapshot(module) for name, module in heads.items()}
    actor = {"latent": policy.mlp_extractor.policy_net, "action_net": policy.action_net}
    actor_before = {name: snapshot(module) for name, module in actor.items()}

    model.learn(2 * T * N_ENVS, callback=AuxiliaryValueReplayCallback(gradient_steps=4, batch_size=32))

    for name, module in heads.items():
        assert changed(module, before[name]), name
    for name, module in actor.items():
        assert not changed(module, actor_before[name]), name
    new_mean, new_std = distribution(model)
    assert th.equal(mean, new_mean) and th.equal(std, new_std)


# ---- prioritized store ---------------------------------------------------------------------------------------
def test_importance_weights_follow_the_priorities(rng):
    store = ValueReplayStore(n_rollouts=3, rollout_size=8, obs_shape=(2,), alpha=0.6, epsilon=1e-6)
    for _ in range(2):
        store.add(rng.normal(size=(8, 2)), rng.normal(size=8))
    errors = rng.uniform(0.0, 5.0, size=16)
    store.update_priorities(np.arange(16), errors)
    priorities = (errors + 1e-6) ** 0.6

    indices, weights = store.sample(64, beta=0.5, rng=rng)

    expected = (16 * priorities[indices] / priorities.sum()) ** -0.5
    np.testing.assert_allclose(weights, expected / expected.max())
    assert weights.max() == 1.0 and weights.min() < 1.0
    # a new rollout is not drawn until its priorities are set, and it replaces the oldest when the ring is full
    store.add(np.zeros((8, 2)), np.zeros(8))
    assert store.sample(256, beta=0.5, rng=rng)[0].max() < 16
    store.add(np.ones((8, 2)), np.ones(8))
    assert store.n_stored == 24 and np.all(store.targets[:8] == 1.0) and store.tree[np.arange(8)].sum() == 0.0


def test_priorities_are_written_back_from_the_value_error():
    callback = AuxiliaryValueReplayCallback(gradient_steps=4, batch_size=16, learning_rate=0.0)
    model = make_model()
    model.learn(2 * T * N_ENVS, callback=callback)
    store = callback.store
    stored = np.arange(store.n_stored)
    # nothing moves (both learning rates 0): every priority, refreshed or written back, is the exact current one
    np.testing.assert_allclose(store.tree[stored], exact_priorities(callback, stored), rtol=1e-5)

    callback.on_rollout_end()  # the last rollout again, as a new one
    old = np.setdiff1d(stored, newest_block(store))
    store.tree.update(old, np.ones(len(old)))
    model.policy.zero_grad(set_to_none=True)
    callback.fit()

    # gradients were computed for the value parameters only
    assert {submodule(name) for name, p in model.policy.named_parameters() if p.grad is not None} == {"mlp_extractor.value_net", "value_net"}

    rewritten = old[store.tree[old] != 1.0]
    assert 0 < len(rewritten) <= 4 * 16
    np.testing.assert_allclose(store.tree[rewritten], exact_priorities(callback, rewritten), rtol=1e-5)


def test_store_keeps_only_the_last_rollouts():
    callback = AuxiliaryValueReplayCallback(gradient_steps=1, batch_size=8, n_rollouts=2)
    model = make_model()
    model.learn(3 * T * N_ENVS, callback=callback)
    assert callback.store.n_stored == 2 * T * N_ENVS
    np.testing.assert_array_equal(callback.store.targets[newest_block(callback.store)], collection_order(model.rollout_buffer.returns).ravel())


# ---- VecNormalize --------------------------------------------------------------------------------------------
def test_vec_normalize_entries_follow_the_current_statistics():
    env = VecNormalize(MicrogridVecEnv(N_ENVS, seed=0))
    model = make_model(env)
    mean, std = distribution(model)
    value_before = snapshot(model.policy.value_net)
    callback = AuxiliaryValueReplayCallback(gradient_steps=2, batch_size=16)
    model.learn(2 * T * N_ENVS, callback=callback)
    assert changed(model.policy.value_net, value_before)
    assert all(th.equal(a, b) for a, b in zip((mean, std), distribution(model)))

    newest = newest_block(callback.store)
    observations, targets = callback._batch(newest)
    # a reward scale twice as large halves every target; a shifted observation mean shifts the inputs
    env.ret_rms.var = 4 * (env.ret_rms.var + env.epsilon) - env.epsilon
    env.obs_rms.mean = env.obs_rms.mean + 1.0
    shifted_obs, halved = callback._batch(newest)
    assert reward_scale(env) > 1.0
    np.testing.assert_allclose(halved.numpy(), targets.numpy() / 2, rtol=1e-5)
    moved = np.abs(shifted_obs.numpy() - observations.numpy()).max(axis=0)
    assert np.all(moved[env.obs_rms.var > 1e-3] > 0)


class RawRecorder(VecEnvWrapper):
    """Below ``VecNormalize``: keeps every raw observation (the reset's first) and reward."""

    def __init__(self, venv) -> None:
        super().__init__(venv)
        self.observations: list[np.ndarray] = []
        self.rewards: list[np.ndarray] = []

    def reset(self):
        obs = self.venv.reset()
        self.observations.append(obs.copy())
        return obs

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        self.observations.append(obs.copy())
        self.rewards.append(rewards.copy())
        return obs, rewards, dones, infos


def test_vec_normalize_entries_are_the_raw_data_as_it_arrived():
    # The first rollout, where VecNormalize's statistics move most: recovering raw data with the end-of-rollout
    # statistics is off by percents there. With gamma = lambda = 1 and a rollout of exactly one episode per env,
    # the GAE target of a step is the sum of the raw rewards left in its episode, whatever the values.
    recorder = RawRecorder(MicrogridVecEnv(N_ENVS, seed=0))
    model = make_model(VecNormalize(recorder), gamma=1.0, gae_lambda=1.0)
    callback = AuxiliaryValueReplayCallback(gradient_steps=1, batch_size=16)
    model.learn(T * N_ENVS, callback=callback)
    n = T * N_ENVS
    raw_obs = np.stack(recorder.observations[:T]).reshape(n, -1)
    np.testing.assert_array_equal(callback.store.observations[:n], raw_obs)
    raw_rewards = np.stack(recorder.rewards)
    rewards_to_go = np.flip(np.cumsum(np.flip(raw_rewards, axis=0), axis=0), axis=0)
    np.testing.assert_allclose(callback.store.targets[:n], rewards_to_go.ravel(), rtol=1e-5)


def test_the_first_observation_is_the_one_after_a_later_callbacks_reset():
    """A CurriculumCallback listed after it resets the env at training start: step 0 was stored with the observation of
    the discarded first reset."""
    recorder = RawRecorder(MicrogridVecEnv(N_ENVS, seed=0))
    model = make_model(VecNormalize(recorder))
    callback = AuxiliaryValueReplayCallback(gradient_steps=1, batch_size=16)
    model.learn(T * N_ENVS, callback=[callback, CurriculumCallback({"ev_count": 0}, {"ev_count": None}, n_levels=2)])
    first_reset, second_reset, *steps = recorder.observations
    assert not np.array_equal(first_reset, second_reset)
    n = T * N_ENVS
    np.testing.assert_array_equal(callback.store.observations[:n], np.stack([second_reset, *steps[: T - 1]]).reshape(n, -1))


# ---- the point of it: a better value function for the same policy ----------------------------------------------
def held_out_value_errors(model, scale: float, episodes: int = 2) -> tuple[float, float]:
    """Mean squared error of V against Monte-Carlo returns (in the model's reward scale) and the returns' variance,
    on fresh episodes of the same (frozen) policy."""
    env = MicrogridVecEnv(8, seed=1000)
    obs, rows, rewards, dones = env.reset(), [], [], []
    for _ in range(episodes * T):
        rows.append(obs)
        action, _ = model.predict(obs)
        obs, reward, done, _ = env.step(action)
        rewards.append(reward), dones.append(done)
    returns, complete = monte_carlo_returns(np.array(rewards), np.array(dones), model.gamma)
    assert complete.all()
    with th.no_grad():
        values = model.policy.predict_values(th.as_tensor(np.array(rows).reshape(-1, obs.shape[1]))).numpy().ravel()
    targets = returns.ravel() / scale
    return float(np.mean((values - targets) ** 2)), float(np.var(targets))


def test_aux_steps_reduce_held_out_value_error():
    # gae_lambda=1 and one whole episode per rollout: the targets are the policy's Monte-Carlo returns
    env = VecNormalize(MicrogridVecEnv(8, seed=0), norm_obs=False)
    model = make_model(env, gae_lambda=1.0, policy_kwargs=dict(net_arch=[32]))
    model.learn(T * 8)  # settle the reward scale first, so that "before" and "after" use nearly the same one
    error_before, _ = held_out_value_errors(model, reward_scale(env))

    model.learn(6 * T * 8, callback=AuxiliaryValueReplayCallback(gradient_steps=32, batch_size=64, learning_rate=1e-3), reset_num_timesteps=False)

    error_after, variance = held_out_value_errors(model, reward_scale(env))
    assert error_after < error_before
    assert error_after < variance  # better than the best constant


# ---- save/load, reuse, errors ----------------------------------------------------------------------------------
def test_model_saves_and_loads_and_callback_follows_a_loaded_model(tmp_path):
    callback = AuxiliaryValueReplayCallback(gradient_steps=2, batch_size=16)
    model = make_model()
    model.learn(2 * T * N_ENVS, callback=callback)
    model.save(tmp_path / "model.zip")
    loaded = PPO.load(tmp_path / "model.zip", env=MicrogridVecEnv(N_ENVS, seed=1))
    obs = observations()
    with th.no_grad():
        assert th.equal(model.policy.predict_values(obs), loaded.policy.predict_values(obs))
    original = snapshot(model.policy)
    loaded_value = snapshot(loaded.policy.value_net)

    loaded.learn(T * N_ENVS, callback=callback)

    assert changed(loaded.policy.value_net, loaded_value)
    assert not changed(model.policy, original)
    assert {id(p) for group in callback.optimizer.param_groups for p in group["params"]} <= {id(p) for p in loaded.policy.parameters()}
    assert callback.store.n_stored == T * N_ENVS  # the store restarted with the new model


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="gradient_steps"):
        AuxiliaryValueReplayCallback(gradient_steps=0)
    with pytest.raises(ValueError, match="beta"):
        AuxiliaryValueReplayCallback(beta_final=1.5)
    with pytest.raises(TypeError, match="learning_rate"):
        AuxiliaryValueReplayCallback(learning_rate="1e-3")
    sac = SAC("MlpPolicy", MicrogridEnv(seed=0), learning_starts=10, policy_kwargs=dict(net_arch=[8]))
    with pytest.raises(TypeError, match="on-policy"):
        sac.learn(1, callback=AuxiliaryValueReplayCallback())
