"""PairedARS: both candidates of an antithetic pair run the same days; steps are counted exactly."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import CallbackList

from sb3_microgrid import MicrogridVecEnv
from sb3_microgrid.paired_ars import PairedARS


def _model(n_envs=2, n_delta=3, seed=0):
    env = MicrogridVecEnv(n_envs, scenario={"base": "campus", "reward": {"exogenous_baseline": True}}, seed=seed)
    return PairedARS("LinearPolicy", env, n_delta=n_delta, n_top=n_delta, n_eval_episodes=n_envs, delta_std=0.05, seed=seed, device="cpu")


def _evaluate(model, weights):
    _, callback = model._setup_learn(10**6, CallbackList([]))
    return model.evaluate_candidates(weights, callback, None).numpy()


def test_the_two_candidates_of_a_pair_see_the_same_days():
    model = _model()
    # Equal weights everywhere: any return difference is the days'. Within a pair there must be none.
    returns = _evaluate(model, th.zeros(model.pop_size, model.n_params))
    np.testing.assert_array_equal(returns, 0.0)  # centred on the pair's mean: no difference, nothing left
    raw = np.array([np.sum(info["r"]) for info in model.ep_info_buffer]).reshape(model.pop_size, -1).sum(axis=1)
    np.testing.assert_allclose(raw[: model.n_delta], raw[model.n_delta :])
    assert len(set(np.round(raw[: model.n_delta], 6).tolist())) == model.n_delta  # a fresh seed per pair


def test_a_pair_differs_only_by_its_decisions():
    model = _model()
    weights = th.zeros(model.pop_size, model.n_params)
    weights[model.n_delta :] = 0.05  # the minus candidates act differently
    returns = _evaluate(model, weights)
    assert np.all(returns[: model.n_delta] != 0.0)
    np.testing.assert_allclose(returns[: model.n_delta], -returns[model.n_delta :], rtol=1e-5)  # +-half the pair's difference


def test_num_timesteps_counts_env_steps():
    model = _model(n_envs=2, n_delta=2)
    _evaluate(model, th.zeros(model.pop_size, model.n_params))
    assert model.num_timesteps == model.pop_size * 2 * model.env.get_attr("scenario")[0].episode_steps


def test_uneven_episodes_per_env_are_counted_exactly():
    env = MicrogridVecEnv(2, scenario="campus", seed=0)
    model = PairedARS("LinearPolicy", env, n_delta=2, n_top=2, n_eval_episodes=3, seed=0, device="cpu")  # 1 + 2 per env
    _evaluate(model, th.zeros(model.pop_size, model.n_params))
    assert model.num_timesteps == model.pop_size * 3 * 24


def test_callbacks_are_called_once_per_vector_step():
    from stable_baselines3.common.callbacks import BaseCallback

    class Count(BaseCallback):
        def _on_step(self):
            return True

    model = _model(n_envs=2, n_delta=2)
    count = Count()
    model.learn(model.pop_size * 2 * 24, callback=count)
    # as in SB3's algorithms (ProgressBarCallback adds num_envs per call; CheckpointCallback's save_freq counts calls)
    assert count.n_calls == model.pop_size * 24 and count.n_calls * model.env.num_envs == model.num_timesteps


def test_async_evaluation_is_refused():
    model = _model()
    with pytest.raises(ValueError, match="async_eval"):
        model.evaluate_candidates(th.zeros(model.pop_size, model.n_params), CallbackList([]), object())


def test_save_and_load_round_trip(tmp_path):
    model = _model()
    model.learn(2 * model.pop_size * 24)
    model.save(tmp_path / "m.zip")
    loaded = PairedARS.load(tmp_path / "m.zip", device="cpu")
    assert isinstance(loaded, PairedARS)
    obs = model.env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    assert th.equal(loaded.weights, model.weights) and np.any(model.weights.numpy() != 0.0)


def test_a_callback_returning_false_stops_training():
    from stable_baselines3.common.callbacks import StopTrainingOnMaxEpisodes

    model = _model(n_envs=2, n_delta=2)
    model.learn(10**6, callback=StopTrainingOnMaxEpisodes(max_episodes=1))
    assert model.num_timesteps == model.pop_size * 2 * 24  # one update, then stop
