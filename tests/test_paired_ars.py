"""PairedARS: both candidates of an antithetic pair run the same days; steps are counted exactly."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

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
    np.testing.assert_array_equal(returns[: model.n_delta], returns[model.n_delta :])
    raw = np.array([np.sum(info["r"]) for info in model.ep_info_buffer]).reshape(model.pop_size, -1).sum(axis=1)
    np.testing.assert_allclose(returns, raw, rtol=1e-6)  # the summed episode returns, uncentred
    assert len(set(np.round(raw[: model.n_delta], 6).tolist())) == model.n_delta  # a fresh seed per pair


def test_a_pair_differs_only_by_its_decisions():
    """Changing the minus candidates' weights changes their returns alone: the plus candidates' days and returns are
    those of the same update with every candidate equal."""
    model = _model()
    same = _evaluate(model, th.zeros(model.pop_size, model.n_params))
    weights = th.zeros(model.pop_size, model.n_params)
    weights[model.n_delta :] = 0.05  # the minus candidates act differently
    returns = _evaluate(model, weights)  # the same update index, so the same pair seeds
    np.testing.assert_array_equal(returns[: model.n_delta], same[: model.n_delta])
    assert np.all(returns[model.n_delta :] != same[model.n_delta :])


def test_n_top_keeps_the_pairs_whose_decisions_mattered_most_and_the_step_uses_the_paired_std():
    """Against its pair's mean a return is +-|r+ - r-| / 2: ARS's ranking by the better return, on raw returns,
    would keep the pairs that drew cheap days (each pair runs days of its own)."""
    model = PairedARS("LinearPolicy", MicrogridVecEnv(2, scenario="campus", seed=0), n_delta=6, n_top=2, n_eval_episodes=2, delta_std=0.3, seed=0, device="cpu")
    candidates = []
    evaluate = model.evaluate_candidates
    model.evaluate_candidates = lambda weights, callback, async_eval: candidates.append(weights) or evaluate(weights, callback, async_eval)
    before = model.weights.clone()
    model.learn(model.pop_size * 2 * 24, log_interval=None)  # one update
    raw = th.tensor([sum(info["r"] for info in model.ep_info_buffer[2 * k : 2 * k + 2]) for k in range(model.pop_size)], dtype=th.float32)
    plus, minus, deltas = raw[: model.n_delta], raw[model.n_delta :], candidates[0][: model.n_delta] - before
    top = th.argsort((plus - minus).abs(), descending=True)[: model.n_top]
    raw_choice = th.argsort(th.max(th.vstack((plus, minus)), dim=0).values, descending=True)[: model.n_top]
    assert set(top.tolist()) != set(raw_choice.tolist())  # where it matters
    differences = (plus - minus)[top]
    direction, step = differences @ deltas[top], model.weights - before
    np.testing.assert_allclose((step / step.norm()).numpy(), (direction / direction.norm()).numpy(), rtol=1e-4, atol=1e-6)
    paired_std = th.cat([differences / 2, -differences / 2]).std().item()  # the top pairs' returns centred on their pair's mean
    assert model.logger.name_to_value["rollout/return_std"] == pytest.approx(paired_std, rel=1e-5)
    assert model.logger.name_to_value["train/step_size"] == pytest.approx(model.learning_rate / (model.n_top * paired_std + 1e-6), rel=1e-5)


def _record_seeds(model):
    seeds = []
    seed = model.env.seed
    model.env.seed = lambda value=None: seeds.append(value) or seed(value)
    return seeds


def test_a_loaded_model_continues_the_pair_seeds_of_an_uninterrupted_run(tmp_path):
    env_kwargs = dict(scenario="campus", seed=0)
    kwargs = dict(n_delta=2, n_top=2, n_eval_episodes=1, seed=0, device="cpu")
    update = 2 * 2 * 24  # pop_size candidates of one 24-step day

    uninterrupted = PairedARS("LinearPolicy", MicrogridVecEnv(1, **env_kwargs), **kwargs)
    seeds = _record_seeds(uninterrupted)
    uninterrupted.learn(3 * update)

    model = PairedARS("LinearPolicy", MicrogridVecEnv(1, **env_kwargs), **kwargs)
    model.learn(2 * update)
    model.save(tmp_path / "m.zip")
    loaded = PairedARS.load(tmp_path / "m.zip", env=MicrogridVecEnv(1, **env_kwargs), device="cpu")
    resumed = _record_seeds(loaded)
    loaded.learn(update, reset_num_timesteps=False)
    assert resumed == seeds[2 * 4 :] and len(set(resumed)) == 2  # update 3's pair seeds, one per pair


def test_a_resumed_run_shows_callbacks_its_whole_total(tmp_path):
    """SB3's progress bar counts to locals()['total_timesteps'] minus the steps done: the total including the earlier
    steps (sb3-contrib's ARS hands callbacks the remaining steps only, so a resumed bar read 0% of 0)."""
    model = PairedARS("LinearPolicy", MicrogridVecEnv(1, scenario="campus", seed=0), n_delta=2, n_top=2, n_eval_episodes=1, seed=0, device="cpu")
    model.learn(2 * 2 * 24)
    seen = []

    class Totals(BaseCallback):
        def _on_training_start(self) -> None:
            seen.append((self.locals["total_timesteps"], self.model.num_timesteps))

        def _on_step(self) -> bool:
            return True

    model.learn(2 * 2 * 24, callback=Totals(), reset_num_timesteps=False)
    assert seen == [(2 * 2 * 2 * 24, 2 * 2 * 24)]


def test_the_first_update_gets_the_schedule_value_after_its_steps():
    from sb3_microgrid.schedules import WarmupSchedule

    warmup, rates = WarmupSchedule(0.02, 1.0), []

    def rate(progress_remaining: float) -> float:
        rates.append((progress_remaining, warmup(progress_remaining)))
        return rates[-1][1]

    model = PairedARS("LinearPolicy", MicrogridVecEnv(1, scenario="campus", seed=0), n_delta=2, n_eval_episodes=1, learning_rate=rate, seed=0, device="cpu")
    model.learn(2 * 96, log_interval=None)  # two updates of 96 steps
    # read after each update's steps, as SB3's algorithms read it before train(): the warm-up's first rate is not 0
    assert rates == [(0.5, pytest.approx(0.01)), (0.0, 0.02)]


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


def test_reward_normalisation_is_refused():
    """The candidates act with frozen statistics, so the reward scale never moved from its start: the rewards were
    only clipped (about 4 % of a random policy's steps at -10)."""
    from stable_baselines3.common.vec_env import VecNormalize

    with pytest.raises(ValueError, match=r"PairedARS needs VecNormalize\(norm_reward=False\)"):
        PairedARS("LinearPolicy", VecNormalize(MicrogridVecEnv(2, seed=0), norm_reward=True), n_delta=2, n_top=2, n_eval_episodes=2, seed=0, device="cpu")
    model = PairedARS("LinearPolicy", MicrogridVecEnv(2, seed=0), n_delta=2, n_top=2, n_eval_episodes=2, seed=0, device="cpu")
    model.set_env(VecNormalize(MicrogridVecEnv(2, seed=0), norm_reward=True))
    with pytest.raises(ValueError, match=r"PairedARS needs VecNormalize\(norm_reward=False\)"):
        model.learn(96)
    assert model.num_timesteps == 0
    PairedARS("LinearPolicy", VecNormalize(MicrogridVecEnv(2, seed=0), norm_reward=False), n_delta=2, n_top=2, n_eval_episodes=2, seed=0, device="cpu").learn(96)


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


def test_train_refuses_reward_normalisation_before_writing_the_run_folder(tmp_path):
    from sb3_microgrid.hyperparams import HyperparamsError
    from sb3_microgrid.training import train

    conf = tmp_path / "ars.yml"
    conf.write_text("Microgrid-v0:\n  policy: LinearPolicy\n  n_delta: 2\n  normalize: true\n")
    with pytest.raises(HyperparamsError, match=r"the algorithm's arguments: ValueError: PairedARS needs VecNormalize\(norm_reward=False\)"):
        train("paired_ars", conf, tmp_path / "run", timesteps=96, progress_bar=False)
    assert not (tmp_path / "run").exists()
