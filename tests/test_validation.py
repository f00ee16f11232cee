"""ValidationCallback: scores on validation days as the run's controller, keeps the best, stops on a budget."""

import json

import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_microgrid import MicrogridVecEnv
from sb3_microgrid.envs import MicrogridEnv
from sb3_microgrid.evaluation import evaluate
from sb3_microgrid.paired_ars import PairedARS
from sb3_microgrid.validation import ValidationCallback
from sb3_microgrid.wrappers import ResidualController, ResidualWrapper


def test_scores_match_evaluate_and_the_best_parameters_come_back(tmp_path):
    env = VecNormalize(MicrogridVecEnv(4, seed=0), gamma=1.0)
    model = PPO("MlpPolicy", env, n_steps=48, batch_size=96, n_epochs=1, learning_rate=3e-3, seed=0, device="cpu")
    callback = ValidationCallback(days=2, eval_freq=192, log_path=str(tmp_path))
    model.learn(192 * 3, callback=callback)
    history = json.loads((tmp_path / "validation.json").read_text())["history"]
    assert [row["steps"] for row in history] == [0, 192, 384, 576]
    naive = evaluate("naive", split="validation", days=2, reference=False).summary["cost_per_day"]
    best = max(history, key=lambda row: row["gap_closed"])
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


def test_training_stops_on_the_budget():
    env = MicrogridVecEnv(2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=24, batch_size=48, n_epochs=1, seed=0, device="cpu")
    callback = ValidationCallback(days=1, eval_freq=10**9, max_minutes=1e-9)
    model.learn(10_000, callback=callback)
    assert model.num_timesteps < 10_000 and callback.training_minutes >= 1e-9


@pytest.mark.parametrize("kwargs", [{"days": 0}, {"eval_freq": 2.5}, {"max_minutes": -1}])
def test_arguments_are_checked(kwargs):
    with pytest.raises(ValueError):
        ValidationCallback(**kwargs)
