"""ValidationCallback: scores on validation days as the run's controller, keeps the best, stops on a budget."""

import json

import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv, VecNormalize

from sb3_microgrid import MicrogridVecEnv
from sb3_microgrid.envs import MicrogridEnv
from sb3_microgrid.common.json_values import refuse_constant
from sb3_microgrid.evaluation import evaluate
from sb3_microgrid.paired_ars import PairedARS
from sb3_microgrid.validation import ValidationCallback, ValidationFileError
from sb3_microgrid.wrappers import ResidualController, ResidualWrapper


def test_scores_match_evaluate_and_the_best_parameters_come_back(tmp_path):
    env = VecNormalize(MicrogridVecEnv(4, seed=0), gamma=1.0)
    model = PPO("MlpPolicy", env, n_steps=48, batch_size=96, n_epochs=1, learning_rate=3e-3, seed=0, device="cpu")
    callback = ValidationCallback(days=2, eval_freq=192, log_path=str(tmp_path))
    model.learn(192 * 3, callback=callback)
    history = json.loads((tmp_path / "validation.json").read_text())["history"]
    assert [row["steps"] for row in history] == [0, 192, 384, 576]
    naive = evaluate("naive", split="validation", days=2, reference=False).summary["cost_per_day"]
    best = min(history, key=lambda row: row["cost_per_day"])
    assert max(history, key=lambda row: row["gap_closed"]) == best  # the same choice while the gap is defined
    assert callback.best == best and best["steps"] != history[-1]["steps"]  # the last parameters are not the best
    # the model now holds the best parameters: scoring it again gives the best row's cost
    again = evaluate(callback.controller(), split="validation", days=2, reference=False).summary["cost_per_day"]
    assert again == pytest.approx(best["cost_per_day"])
    assert len({row["cost_per_day"] for row in history}) > 1 and naive > 0


def test_a_residual_run_is_scored_with_its_base_controller():
    venv = make_vec_env(MicrogridEnv, n_envs=2, seed=0, wrapper_class=ResidualWrapper, wrapper_kwargs={"controller": "rule", "battery_only": True})
    model = PairedARS("LinearPolicy", venv, n_delta=2, n_top=2, n_eval_episodes=2, seed=0, device="cpu")
    callback = ValidationCallback(days=1, eval_freq=10**9)
    model.learn(1, callback=callback)
    controller = callback.controller()
    assert isinstance(controller, ResidualController) and controller.battery_only
    rule = evaluate("rule", split="validation", days=1, reference=False).summary["cost_per_day"]
    assert callback.history[0]["cost_per_day"] == pytest.approx(rule)  # zero weights: the rule itself


def test_without_a_defined_gap_it_selects_on_cost_and_writes_strict_json(tmp_path):
    # naive and the optimum cost the same (the battery cannot discharge, no EVs): every gap closed is undefined
    scenario = {"base": "campus", "battery": {"charge_power_kw": 0.07, "discharge_power_kw": 0.0, "self_discharge_per_hour": 0.0}, "difficulty": {"ev_count": 0}}
    model = PPO("MlpPolicy", MicrogridVecEnv(2, scenario=scenario, seed=0), n_steps=48, batch_size=48, n_epochs=1, learning_rate=3e-2, seed=0, device="cpu")
    callback = ValidationCallback(days=2, eval_freq=96, log_path=str(tmp_path))
    model.learn(96 * 3, callback=callback)
    text = (tmp_path / "validation.json").read_text()
    record = json.loads(text, parse_constant=refuse_constant)  # strict: no NaN
    assert all(row["gap_closed"] is None for row in record["history"]) and len(record["history"]) == 4
    assert record["best"] == min(record["history"], key=lambda row: row["cost_per_day"])
    assert len({row["cost_per_day"] for row in record["history"]}) > 1


def test_a_residual_run_in_subprocesses_is_scored_with_its_base_controller():
    venv = make_vec_env(MicrogridEnv, n_envs=2, seed=0, wrapper_class=ResidualWrapper, wrapper_kwargs={"controller": "rule", "battery_only": True}, vec_env_cls=SubprocVecEnv)
    try:
        model = PairedARS("LinearPolicy", venv, n_delta=2, n_top=2, n_eval_episodes=2, seed=0, device="cpu")
        callback = ValidationCallback(days=1, eval_freq=10**9)
        model.learn(1, callback=callback)
        controller = callback.controller()
        assert isinstance(controller, ResidualController) and controller.battery_only and controller.policy.model is model
    finally:
        venv.close()
    rule = evaluate("rule", split="validation", days=1, reference=False).summary["cost_per_day"]
    assert callback.history[0]["cost_per_day"] == pytest.approx(rule)


def test_a_resumed_run_takes_up_the_scores_and_the_best_weights(tmp_path):
    env = VecNormalize(MicrogridVecEnv(4, seed=0), gamma=1.0)
    model = PPO("MlpPolicy", env, n_steps=48, batch_size=96, n_epochs=1, learning_rate=3e-3, seed=0, device="cpu")
    first = ValidationCallback(days=2, eval_freq=192, log_path=str(tmp_path), restore_best=False)
    model.learn(192 * 3, callback=first)  # as a run killed after its checkpoint at 576 steps
    model.save(tmp_path / "checkpoint.zip")
    env.save(str(tmp_path / "stats.pkl"))
    before = json.loads((tmp_path / "validation.json").read_text(), parse_constant=refuse_constant)
    assert before["best"]["steps"] != 576 and (tmp_path / before["best_file"]).is_file()
    # resumed, learning nothing more (learning rate 0, statistics frozen): the best predates the resume
    env2 = VecNormalize.load(str(tmp_path / "stats.pkl"), MicrogridVecEnv(4, seed=1))
    env2.training = False
    resumed = PPO.load(tmp_path / "checkpoint.zip", env=env2, device="cpu", custom_objects={"learning_rate": 0.0, "lr_schedule": lambda _: 0.0})
    second = ValidationCallback(days=2, eval_freq=192, log_path=str(tmp_path))
    resumed.learn(192, callback=second, reset_num_timesteps=False)
    after = json.loads((tmp_path / "validation.json").read_text(), parse_constant=refuse_constant)
    assert [row["steps"] for row in after["history"]] == [0, 192, 384, 576, 768]
    assert after["history"][:4] == before["history"] and after["best"] == before["best"]
    assert after["history"][4]["minutes"] >= before["history"][3]["minutes"]  # the budget counts the earlier minutes
    again = evaluate(second.controller(), split="validation", days=2, reference=False).summary["cost_per_day"]
    assert again == pytest.approx(before["best"]["cost_per_day"])  # the best weights and statistics, read back


def test_a_malformed_validation_file_is_refused_by_name(tmp_path):
    model = PPO("MlpPolicy", MicrogridVecEnv(2, seed=0), n_steps=24, batch_size=48, n_epochs=1, seed=0, device="cpu")
    model.learn(48)
    (tmp_path / "validation.json").write_text('{"days": 1, "seed": 0, "best": null, "best_file": null, "history": [{"steps": NaN}]}')
    with pytest.raises(ValidationFileError, match="validation.json"):
        model.learn(48, callback=ValidationCallback(days=1, log_path=str(tmp_path)), reset_num_timesteps=False)


def test_training_stops_on_the_budget():
    env = MicrogridVecEnv(2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=24, batch_size=48, n_epochs=1, seed=0, device="cpu")
    callback = ValidationCallback(days=1, eval_freq=10**9, max_minutes=1e-9)
    model.learn(10_000, callback=callback)
    assert model.num_timesteps < 10_000 and callback.training_minutes >= 1e-9


@pytest.mark.parametrize("kwargs", [{"days": 0}, {"eval_freq": 2.5}, {"max_minutes": -1}, {"seed": -1}, {"seed": 2**32}])
def test_arguments_are_checked(kwargs):
    with pytest.raises(ValueError):
        ValidationCallback(**kwargs)


def test_a_run_resumed_from_an_earlier_checkpoint_drops_the_scores_after_it(tmp_path):
    """The killed run scored up to 576 steps, its last checkpoint was at 384: the rows after 384 belong to a
    continuation that no longer exists (they came back as duplicate, out-of-order steps); its best stays a candidate."""
    env = VecNormalize(MicrogridVecEnv(4, seed=0), gamma=1.0)
    model = PPO("MlpPolicy", env, n_steps=48, batch_size=96, n_epochs=1, learning_rate=3e-3, seed=0, device="cpu")
    model.learn(192 * 3, callback=ValidationCallback(days=2, eval_freq=192, log_path=str(tmp_path), restore_best=False))
    before = json.loads((tmp_path / "validation.json").read_text(), parse_constant=refuse_constant)
    assert before["best"]["steps"] <= 384  # so the abandoned rows are not the best's
    model.num_timesteps = 384  # as if resumed from the checkpoint at 384
    model.learn(192, callback=ValidationCallback(days=2, eval_freq=192, log_path=str(tmp_path)), reset_num_timesteps=False)
    after = json.loads((tmp_path / "validation.json").read_text(), parse_constant=refuse_constant)
    kept = [row for row in before["history"] if row["steps"] <= 384 or row == before["best"]]
    assert after["history"][: len(kept)] == kept and [row["steps"] for row in after["history"][len(kept) :]] == [576]


def test_scores_are_of_the_clean_weights_under_parameter_noise(monkeypatch):
    """The noise callback perturbs the actor at rollout start, before the validation callback scores there."""
    import torch as th
    from stable_baselines3.common.callbacks import CallbackList

    from sb3_microgrid.exploration import ParameterNoiseCallback

    noise, clean = ParameterNoiseCallback(), []
    real = ValidationCallback._summary

    def spy(self, controller):
        if controller.name == "validation" and noise.perturbed:
            clean.append(all(th.equal(p, c) for p, c in zip(noise._params, noise._clean)))
        return real(self, controller)

    monkeypatch.setattr(ValidationCallback, "_summary", spy)
    model = PPO("MlpPolicy", MicrogridVecEnv(2, seed=0), n_steps=48, batch_size=96, n_epochs=1, seed=0, device="cpu")
    model.learn(96 * 3, callback=CallbackList([noise, ValidationCallback(days=1, eval_freq=96)]))
    assert clean and all(clean)


class StopAt(BaseCallback):
    """Stops training at its ``n``-th step, inside a rollout (as ``max_minutes`` does)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def _on_step(self) -> bool:
        return self.n_calls < self.n


@pytest.mark.parametrize("validation_first", [True, False])
def test_the_best_comes_back_whole_after_a_stop_under_parameter_noise(monkeypatch, validation_first):
    """Stopped mid-rollout, the actor is perturbed; a noise callback after the validation one put the last rollout's
    clean actor over the best one at training end."""
    import itertools

    import torch as th

    from sb3_microgrid.exploration import ParameterNoiseCallback

    costs = itertools.count()  # each score worse than the last: the best is the first, the initial weights
    monkeypatch.setattr(ValidationCallback, "_summary", lambda self, controller: {"cost_per_day": float(next(costs)), "unmet_ev_kwh_per_day": 0.0, "safety_violations": 0.0})
    validation, noise = ValidationCallback(days=1, eval_freq=48), ParameterNoiseCallback(initial_sigma=0.05)
    model = PPO("MlpPolicy", MicrogridVecEnv(2, seed=0), n_steps=24, batch_size=48, n_epochs=1, learning_rate=1e-2, seed=0, device="cpu")
    model.learn(10**4, callback=CallbackList([validation, noise, StopAt(24 + 12)] if validation_first else [noise, validation, StopAt(24 + 12)]))
    assert validation.best["steps"] == 0 and model.num_timesteps == 72
    best, now = validation._best_state[0]["policy"], model.policy.state_dict()
    assert all(th.equal(best[key], now[key]) for key in best)


def test_max_minutes_is_refused_under_plain_ars():
    """sb3-contrib's ARS discards on_step()'s False: the budget would never stop it (PairedARS honours it)."""
    from sb3_contrib import ARS

    model = ARS("LinearPolicy", MicrogridVecEnv(2, seed=0), n_delta=2, n_eval_episodes=1, seed=0, device="cpu")
    with pytest.raises(TypeError, match=r"ValidationCallback\(max_minutes=\.\.\.\).*ARS.*paired_ars"):
        model.learn(96, callback=ValidationCallback(days=1, max_minutes=1.0))
    assert model.num_timesteps == 0
