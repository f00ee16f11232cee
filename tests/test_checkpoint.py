"""Interrupted training loses nothing: checkpoints hold the update of their steps, are written as atomic
sets, resume only from a complete set, and a run killed at any moment ends where an uninterrupted one does."""

import functools
import io
import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.save_util import load_from_pkl
from stable_baselines3.common.vec_env import VecNormalize

from sb3_microgrid.callbacks.checkpoint import MODEL, REPLAY_BUFFER, RUN_JSON, VECNORMALIZE, CheckpointError, CheckpointSetCallback, checkpoints
from sb3_microgrid.cli import main
from sb3_microgrid.training import ALGOS, last_checkpoint, train

# Rollouts of 2 envs x 32 steps = 64 steps; PPO's _n_updates grows by n_epochs (1) per rollout.
PPO_CONF = """
Microgrid-v0:
  n_envs: 2
  n_timesteps: 512
  policy: 'MlpPolicy'
  n_steps: 32
  batch_size: 64
  n_epochs: 1
  normalize: "{'norm_obs': True, 'norm_reward': True, 'clip_obs': 10.0}"
  policy_kwargs: "dict(net_arch=dict(pi=[16], vf=[16]))"
"""
# Two envs, one step each per rollout, one gradient step after each once 32 steps are stored.
PER_SAC_CONF = """
Microgrid-v0:
  n_envs: 2
  n_timesteps: 192
  policy: 'MlpPolicy'
  buffer_size: 1000
  batch_size: 16
  learning_starts: 32
  train_freq: 1
  gradient_steps: 1
  normalize: "{'norm_obs': True, 'norm_reward': False, 'clip_obs': 10.0}"
  policy_kwargs: "dict(net_arch=[16, 16])"
"""

def _killed_run(algo: str, conf: Path, run: Path, save_freq: int, resume: bool, kill: str, arg: int) -> None:
    """Train in a forked process that SIGKILLs itself at a chosen moment. The patches live in that
    process only: the package has no test hooks."""
    die = functools.partial(os.kill, os.getpid(), signal.SIGKILL)
    if kill == "step":  # in the middle of a rollout, at the first env step past `arg`
        CheckpointSetCallback._on_step = lambda self: die() if self.num_timesteps > arg else True
    elif kill == "before_statistics":  # writing the set of `arg` steps: model.zip written, statistics not yet
        save = VecNormalize.save
        VecNormalize.save = lambda self, path: die() if f"{os.sep}{arg}.tmp" in str(path) else save(self, path)
    elif kill == "in_buffer":  # writing the set of `arg` steps: half of the replay buffer's bytes written
        save_buffer = OffPolicyAlgorithm.save_replay_buffer

        def half_then_die(self, path):
            if f"{os.sep}{arg}.tmp" not in str(path):
                return save_buffer(self, path)
            data = io.BytesIO()
            save_buffer(self, data)
            Path(path).write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
            die()

        OffPolicyAlgorithm.save_replay_buffer = half_then_die
    train(algo, conf, run, save_freq=save_freq, resume=resume, progress_bar=False)


def _kill(*args) -> None:
    process = multiprocessing.get_context("fork").Process(target=_killed_run, args=args)
    process.start()
    process.join(300)
    assert process.exitcode == -signal.SIGKILL


def _counts(run: Path, algo: str) -> dict:
    """What an interruption must not change, read from the run's final files: steps, updates, the
    statistics' counts and (off-policy) the stored transitions of the last checkpoint set."""
    model = ALGOS[algo].load(run / MODEL, device="cpu")
    stats = load_from_pkl(run / VECNORMALIZE)
    counts = {"steps": model.num_timesteps, "updates": model._n_updates, "obs": stats.obs_rms.count, "ret": stats.ret_rms.count}
    if isinstance(model, OffPolicyAlgorithm):
        counts["buffer"] = load_from_pkl(last_checkpoint(run)[1] / REPLAY_BUFFER).size()
    return counts


def _conf(tmp_path: Path, text: str) -> Path:
    conf = tmp_path / "conf.yml"
    conf.write_text(text)
    return conf


# Each case: algorithm, configuration, save_freq, and the kills in order (each run resumes the last).
KILL_CHAINS = {
    "ppo": (PPO_CONF, 128, [("step", 200), ("before_statistics", 256), ("step", 400)]),
    "per_sac": (PER_SAC_CONF, 48, [("step", 70), ("in_buffer", 96), ("step", 150)]),
}


@pytest.mark.parametrize("algo", sorted(KILL_CHAINS))
def test_a_run_killed_at_any_moment_ends_like_an_uninterrupted_one(tmp_path, algo):
    """SIGKILL mid-rollout, while a set is being written and again after resuming: the run resumed from
    the command line ends with the steps, updates, normalisation counts and stored transitions of an
    uninterrupted run (with SB3's CheckpointCallback each resume lost a PPO update or a SAC transition,
    and counted a reset twice in the statistics)."""
    text, save_freq, kills = KILL_CHAINS[algo]
    conf = _conf(tmp_path, text)
    train(algo, conf, tmp_path / "whole", save_freq=save_freq, progress_bar=False)
    run = tmp_path / "killed"
    for i, (kill, arg) in enumerate(kills):
        _kill(algo, conf, run, save_freq, i > 0, kill, arg)
        if kill != "step":  # killed inside the writer: a .tmp folder, never a set
            assert (run / "checkpoints" / f"{arg}.tmp").is_dir() and not (run / "checkpoints" / str(arg)).exists()
            assert last_checkpoint(run)[0] == arg - save_freq
    cli = ["train", "--algo", algo, "--conf", str(conf), "--run-dir", str(run), "--save-freq", str(save_freq), "--resume"]
    assert main(cli) == 0
    assert _counts(run, algo) == _counts(tmp_path / "whole", algo)
    assert json.loads((run / RUN_JSON).read_text())["algo"] == algo


def test_a_checkpoint_holds_the_update_of_its_steps(tmp_path):
    """SB3's CheckpointCallback saved PPO before the rollout's update: ``model_128_steps`` held the
    update of 64 steps. Each set here holds the update computed from all of its steps."""
    conf = _conf(tmp_path, PPO_CONF)
    train("ppo", conf, tmp_path / "run", timesteps=256, save_freq=64, progress_bar=False)
    sets = dict(checkpoints(tmp_path / "run" / "checkpoints"))
    assert sorted(sets) == [64, 128, 192, 256]
    for steps, path in sets.items():
        model = PPO.load(path / MODEL, device="cpu")
        assert model.num_timesteps == steps and model._n_updates == steps // 64
        # two reset observations and one per step
        assert load_from_pkl(path / VECNORMALIZE).obs_rms.count == pytest.approx(2 + steps, abs=1e-3)
    final = json.loads((tmp_path / "run" / RUN_JSON).read_text())
    assert final["algo"] == "ppo" and final["num_timesteps"] == 256
    assert (tmp_path / "run" / MODEL).read_bytes() == (sets[256] / MODEL).read_bytes()
