"""The rl_zoo3 launcher: our algorithms in the zoo's registries, each with the -optimize sampler of the zoo
algorithm it extends, keeping the file's policy_kwargs; the zoo's own train, -optimize and enjoy run end to
end (slow). Sweeps on a shared study: tests/test_sweeps.py."""

import argparse
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import rl_zoo3
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
from rl_zoo3.utils import StoreDict

from sb3_microgrid.algos import ALGOS
from sb3_microgrid.envs import MicrogridEnv
from sb3_microgrid.hyperparams import constructor_parameters
from sb3_microgrid.policies import ForecastAttentionExtractor
from sb3_microgrid.zoo import eval_env_arguments, register, zoo_base

HYPERPARAMS = Path(__file__).parent.parent / "hyperparams"

ATTENTION_CONF = """
Microgrid-v0:
  n_envs: 2
  n_timesteps: 512
  policy: 'MlpPolicy'
  n_steps: 128
  batch_size: 64
  n_epochs: 1
  normalize: true
  policy_kwargs: "dict(value_aggregation='mean', features_extractor_class=get_class_by_name('sb3_microgrid.policies.ForecastAttentionExtractor'), features_extractor_kwargs=dict(embed_dim=8, n_heads=2, features_dim=16))"
"""
#: policy_kwargs every policy takes (SB3's, sb3-contrib's, ours), besides what the samplers choose.
EXTRACTOR_CONF = """
Microgrid-v0:
  policy_kwargs: "dict(features_extractor_class=get_class_by_name('sb3_microgrid.policies.ForecastAttentionExtractor'), features_extractor_kwargs=dict(embed_dim=8, n_heads=2, features_dim=16), optimizer_kwargs=dict(eps=1e-5))"
"""


#: The zoo algorithm whose sampler serves each registered one (its nearest tuned base class); CrossQ has none in the zoo.
ZOO_BASE = {"twin_ppo": "ppo", "dyna_sac": "sac", "per_sac": "sac", "per_td3": "td3", "epsilon_sac": "sac",
            "epsilon_td3": "td3", "paired_ars": "ars", "crossq": None}  # fmt: skip
#: The algorithms the launcher adds to the zoo.
LAUNCHER_ALGOS = [name for name in ALGOS if name not in rl_zoo3.ALGOS]


def test_every_registered_algorithm_maps_to_the_sampler_of_the_zoo_algorithm_it_extends():
    assert sorted(LAUNCHER_ALGOS) == sorted(set(ZOO_BASE) - {"crossq"})
    assert {name: zoo_base(cls) for name, cls in ALGOS.items()} == {name: ZOO_BASE.get(name, name) for name in ALGOS}


@pytest.mark.parametrize("name", LAUNCHER_ALGOS)
def test_the_sampler_of_each_added_algorithm_keeps_the_file_policy_kwargs_and_builds_the_model(tmp_path, name):
    conf = tmp_path / "attention.yml"
    conf.write_text(EXTRACTOR_CONF)
    register(["--env", "Microgrid-v0", "--conf-file", str(conf)])
    assert rl_zoo3.ALGOS[name] is ALGOS[name]
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    sampled = HYPERPARAMS_SAMPLER[name](trial, 13, 1, {"using_her_replay_buffer": False, "her_kwargs": {}})
    policy = "MlpPolicy"
    if zoo_base(ALGOS[name]) == "ars":  # ARS's sampler samples no policy_kwargs: the zoo leaves the file's whole
        assert "policy_kwargs" not in sampled
        policy, sampled["policy_kwargs"] = "LinearPolicy", {}
    else:
        kwargs = sampled["policy_kwargs"]
        assert kwargs["features_extractor_class"] is ForecastAttentionExtractor
        assert kwargs["features_extractor_kwargs"] == {"embed_dim": 8, "n_heads": 2, "features_dim": 16}
        assert kwargs["optimizer_kwargs"] == {"eps": 1e-5}
        assert "net_arch" in kwargs  # the sampler's own choice stays
        # the same for a trial loaded back by the zoo (--trial-id) or `best`: the converter keeps them too
        assert HYPERPARAMS_CONVERTER[name](trial.params)["policy_kwargs"] == kwargs
    extra = {"buffer_size": 100} if "buffer_size" in constructor_parameters(ALGOS[name]) else {}
    model = ALGOS[name](policy, MicrogridEnv(), device="cpu", **extra, **sampled)
    assert any(isinstance(m, ForecastAttentionExtractor) for m in model.policy.modules()) == (policy == "MlpPolicy")


def test_registering_again_does_not_keep_an_earlier_file_policy_kwargs(tmp_path):
    conf = tmp_path / "attention.yml"
    conf.write_text(EXTRACTOR_CONF)
    register(["--env", "Microgrid-v0", "--conf-file", str(conf)])
    register(["--env", "Microgrid-v0"])
    sampled = HYPERPARAMS_SAMPLER["twin_ppo"](optuna.create_study().ask(), 13, 1, {})
    assert "features_extractor_class" not in sampled["policy_kwargs"]


def test_the_zoo_evaluation_env_gets_the_file_env_kwargs(tmp_path):
    # rl_zoo3 2.9 copies the training env's arguments for its evaluation env before it reads the file's
    conf = tmp_path / "conf.yml"
    conf.write_text("Microgrid-v0:\n  env_kwargs:\n    scenario: {base: campus, reward: {exogenous_baseline: true}}\n    split: train\n")
    argv = ["--env", "Microgrid-v0", "--conf-file", str(conf)]
    parser = argparse.ArgumentParser()
    parser.add_argument("--eval-env-kwargs", type=str, nargs="+", action=StoreDict)  # as rl_zoo3.train reads it
    expected = {"scenario": {"base": "campus", "reward": {"exogenous_baseline": True}}, "split": "train"}
    assert parser.parse_args(eval_env_arguments(argv)).eval_env_kwargs == expected
    for given in (["--eval-env-kwargs", "split:'validation'"], ["--env-kwargs=split:'test'"]):  # the user's own stay
        assert eval_env_arguments([*argv, *given]) == []
    assert eval_env_arguments(["--env", "Microgrid-v0"]) == []


def _zoo(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sb3_microgrid.zoo", *args, "--env", "Microgrid-v0", "--gym-packages", "sb3_microgrid", "--num-threads", "1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_launcher_trains_optimizes_and_enjoys_twin_ppo(tmp_path):
    logs = tmp_path / "logs"
    conf = tmp_path / "twin_ppo.yml"
    conf.write_text((HYPERPARAMS / "twin_ppo.yml").read_text().replace("n_timesteps: !!float 1e6", "n_timesteps: 4096"))
    out = _zoo("train", "--algo", "twin_ppo", "--conf-file", str(conf), "-f", str(logs), "--eval-freq", "-1")
    assert out.returncode == 0, out.stderr[-2000:]
    assert list((logs / "twin_ppo").rglob("Microgrid-v0.zip"))

    out = _zoo("enjoy", "--algo", "twin_ppo", "-f", str(logs), "-n", "48", "--no-render", "--deterministic")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Episode Reward" in out.stdout and "2 Episodes" in out.stdout

    attention = tmp_path / "attention.yml"
    attention.write_text(ATTENTION_CONF)
    out = _zoo("train", "--algo", "twin_ppo", "--conf-file", str(attention), "-f", str(tmp_path / "opt"), "-optimize",
               "--n-trials", "2", "--n-jobs", "1", "--sampler", "random", "--pruner", "none", "-n", "512",
               "--n-evaluations", "1", "--eval-episodes", "1")  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    reports = list((tmp_path / "opt" / "twin_ppo").glob("report_Microgrid-v0_2-trials-512*.csv"))
    assert reports and len(reports[0].read_text().strip().splitlines()) == 3  # header + 2 trials
