"""The rl_zoo3 launcher: our algorithms in the zoo's registries, -optimize keeps the file's extractor,
and the zoo's own train, -optimize and enjoy run end to end (slow)."""

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import rl_zoo3
from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER

from sb3_microgrid.twin_ppo import TwinValuePPO
from sb3_microgrid.zoo import register

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


def test_register_adds_our_algorithms_and_keeps_the_extractor_under_optimize(tmp_path):
    conf = tmp_path / "attention.yml"
    conf.write_text(ATTENTION_CONF)
    register(["--env", "Microgrid-v0", "--conf-file", str(conf)])
    assert rl_zoo3.ALGOS["twin_ppo"] is TwinValuePPO
    trial = optuna.create_study().ask()
    sampled = HYPERPARAMS_SAMPLER["twin_ppo"](trial, 13, 2, {})
    kwargs = sampled["policy_kwargs"]
    assert kwargs["features_extractor_class"].__name__ == "ForecastAttentionExtractor"
    assert kwargs["features_extractor_kwargs"] == {"embed_dim": 8, "n_heads": 2, "features_dim": 16}
    assert kwargs["value_aggregation"] == "mean"
    assert "net_arch" in kwargs  # the sampler's own choices stay


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
