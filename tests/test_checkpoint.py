"""Interrupted training loses nothing: checkpoints hold the update of their steps, are written as atomic
sets, resume only from a complete set, and a run killed at any moment ends where an uninterrupted one does."""

import base64
import functools
import io
import json
import multiprocessing
import os
import pickle
import re
import shutil
import signal
import zipfile
from pathlib import Path

import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.save_util import load_from_pkl
from stable_baselines3.common.vec_env import VecNormalize

from sb3_microgrid.baselines import sb3_model
from sb3_microgrid.callbacks import checkpoint as checkpoint_module
from sb3_microgrid.callbacks.checkpoint import MODEL, REPLAY_BUFFER, RUN_JSON, VECNORMALIZE, CheckpointError, CheckpointSetCallback, checkpoint_problem, checkpoints, load_checkpoint, write_run_json
from sb3_microgrid.cli import main
from sb3_microgrid.common.safe_pickle import UnsafePickleError
from sb3_microgrid.envs import MicrogridVecEnv
from sb3_microgrid import training
from sb3_microgrid.training import ALGOS, last_checkpoint, train
from sb3_microgrid.training import make_env as training_make_env

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
# SB3's memory-optimised replay buffer (it requires handle_timeout_termination=False).
SAC_MEMORY_CONF = """
Microgrid-v0:
  n_envs: 1
  n_timesteps: 96
  policy: 'MlpPolicy'
  buffer_size: 1000
  batch_size: 16
  learning_starts: 24
  optimize_memory_usage: true
  replay_buffer_kwargs: "dict(handle_timeout_termination=False)"
  policy_kwargs: "dict(net_arch=[16, 16])"
"""


def _killed_run(algo: str, conf: Path, run: Path, save_freq: int, resume: bool, kill: str, arg: int) -> None:
    """Train in a forked process that SIGKILLs itself at a chosen moment: ``step``, at the first env step
    past ``arg`` (mid-rollout); the others while or right after writing the set of ``arg`` steps. The
    patches live in that process only: the package has no test hooks."""
    die = functools.partial(os.kill, os.getpid(), signal.SIGKILL)

    def writing(path) -> bool:
        return f"{os.sep}{arg}.tmp" in str(path)

    def half_then_die(save):
        def write(self, path, *args, **kwargs):
            if not writing(path):
                return save(self, path, *args, **kwargs)
            data = io.BytesIO()
            save(self, data, *args, **kwargs)
            Path(path).write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
            die()

        return write

    if kill == "step":
        CheckpointSetCallback._on_step = lambda self: die() if self.num_timesteps > arg else True
    elif kill == "in_model":  # half of model.zip written
        BaseAlgorithm.save = half_then_die(BaseAlgorithm.save)
    elif kill == "before_statistics":  # model.zip written, statistics not yet
        save = VecNormalize.save
        VecNormalize.save = lambda self, path: die() if writing(path) else save(self, path)
    elif kill == "in_buffer":  # half of the replay buffer written
        OffPolicyAlgorithm.save_replay_buffer = half_then_die(OffPolicyAlgorithm.save_replay_buffer)
    elif kill == "before_manifest":  # every file but run.json written
        write_manifest = checkpoint_module.write_run_json
        checkpoint_module.write_run_json = lambda directory, *a: die() if writing(directory / RUN_JSON) else write_manifest(directory, *a)
    elif kill == "after_commit":  # the set renamed into place, older replay buffers not yet deleted
        save_set = checkpoint_module.save_checkpoint
        checkpoint_module.save_checkpoint = lambda model, directory, *rest: die() if save_set(model, directory, *rest).name == str(arg) else directory
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
# A kill at every moment of the writer, twice in the same set, and before the first set exists.
LONG_KILL_CHAINS = {
    "ppo": (PPO_CONF, 64, [("in_model", 64), ("after_commit", 128), ("step", 150), ("before_statistics", 192), ("in_model", 192),
                           ("before_manifest", 256), ("step", 330), ("after_commit", 384), ("step", 500)]),
    "per_sac": (PER_SAC_CONF, 48, [("before_manifest", 48), ("after_commit", 48), ("in_model", 96), ("before_statistics", 96),
                                   ("in_buffer", 96), ("after_commit", 144), ("step", 170)]),
}


def _newest(run: Path) -> int:
    found = last_checkpoint(run)
    return 0 if found is None else found[0]


def _kill_and_resume(tmp_path: Path, algo: str, text: str, save_freq: int, kills: list[tuple[str, int]]) -> None:
    """Run ``kills`` in order, each run resuming the last; then resume from the command line to the end,
    and compare the steps, updates, normalisation counts and stored transitions with an uninterrupted run."""
    conf = _conf(tmp_path, text)
    train(algo, conf, tmp_path / "whole", save_freq=save_freq, progress_bar=False)
    run = tmp_path / "killed"
    for i, (kill, arg) in enumerate(kills):
        _kill(algo, conf, run, save_freq, i > 0, kill, arg)
        if kill == "after_commit":
            assert _newest(run) == arg
        elif kill != "step":  # killed inside the writer: a .tmp folder, never a set
            assert (run / "checkpoints" / f"{arg}.tmp").is_dir() and not (run / "checkpoints" / str(arg)).exists()
            assert _newest(run) == arg - save_freq
    cli = ["train", "--algo", algo, "--conf", str(conf), "--run-dir", str(run), "--save-freq", str(save_freq), "--resume"]
    assert main(cli) == 0
    assert _counts(run, algo) == _counts(tmp_path / "whole", algo)
    assert json.loads((run / RUN_JSON).read_text())["algo"] == algo
    assert not list((run / "checkpoints").glob("*.tmp")) and len(list((run / "checkpoints").rglob(REPLAY_BUFFER))) <= 1


@pytest.mark.parametrize("algo", sorted(KILL_CHAINS))
def test_a_run_killed_at_any_moment_ends_like_an_uninterrupted_one(tmp_path, algo):
    """SIGKILL mid-rollout, while a set is being written and again after resuming: the run resumed from
    the command line ends like an uninterrupted run (with SB3's CheckpointCallback each resume lost a
    PPO update or a SAC transition, and counted a reset twice in the statistics)."""
    _kill_and_resume(tmp_path, algo, *KILL_CHAINS[algo])


@pytest.mark.parametrize("algo", sorted(LONG_KILL_CHAINS))
def test_a_run_killed_at_every_moment_of_the_writer_ends_like_an_uninterrupted_one(tmp_path, algo):
    """Also: a kill before the first set (the resume starts over) and two kills writing one set."""
    _kill_and_resume(tmp_path, algo, *LONG_KILL_CHAINS[algo])


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


def test_a_checkpoint_holds_the_clean_weights_of_a_parameter_noise_run(tmp_path):
    """ParameterNoiseCallback perturbs the actor at the rollout start where the set is saved: the set must
    hold the weights the update left, or a resumed run keeps the noise for good."""
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList

    from sb3_microgrid.exploration import ParameterNoiseCallback

    class CleanWeights(BaseCallback):  # first in the list: the weights of each rollout start before the noise
        def __init__(self) -> None:
            super().__init__()
            self.at: dict = {}

        def _on_rollout_start(self) -> None:
            self.at[self.num_timesteps] = {k: v.clone() for k, v in self.model.policy.state_dict().items()}

        def _on_step(self) -> bool:
            return True

    clean = CleanWeights()
    model = PPO("MlpPolicy", MicrogridVecEnv(1, seed=0), n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu", policy_kwargs=dict(net_arch=[16]))
    noise = ParameterNoiseCallback(initial_sigma=0.05)
    model.learn(192, callback=CallbackList([clean, noise, CheckpointSetCallback(64, tmp_path, "ppo")]))
    for steps in (64, 128):
        saved = PPO.load(tmp_path / str(steps) / MODEL, device="cpu").policy.state_dict()
        assert all(th.equal(saved[k], v) for k, v in clean.at[steps].items()), steps
    assert not noise.perturbed


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory) -> tuple[Path, Path]:
    """A finished PPO run of 256 steps with a set every 64: ``(conf, run)``; copy ``run`` before changing it."""
    root = tmp_path_factory.mktemp("ppo")
    conf = _conf(root, PPO_CONF)
    train("ppo", conf, root / "run", timesteps=256, save_freq=64, progress_bar=False)
    return conf, root / "run"


def _copy(run: Path, tmp_path: Path) -> Path:
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "damage,file,problem",
    [(_truncate, MODEL, "truncated"), (_truncate, VECNORMALIZE, "truncated"), (Path.unlink, VECNORMALIZE, "missing")],
)
def test_resume_falls_back_past_a_damaged_newest_set_and_names_the_file(ppo_run, tmp_path, damage, file, problem):
    conf, run = ppo_run[0], _copy(ppo_run[1], tmp_path)
    damage(run / "checkpoints" / "256" / file)
    with pytest.warns(UserWarning, match=re.escape(str(run / "checkpoints" / "256" / file)) + f".*{problem}") as record:
        model = train("ppo", conf, run, timesteps=320, save_freq=64, resume=True, progress_bar=False)
    assert f"resuming from {run / 'checkpoints' / '192'}" in str(record[0].message)
    assert model.num_timesteps == 320 and model._n_updates == 320 // 64  # from 192, nothing of it lost
    assert checkpoint_problem(run / "checkpoints" / "256") is None  # rewritten whole by the resumed run


def test_only_the_newest_set_keeps_a_replay_buffer_and_a_run_without_one_does_not_resume(tmp_path, capsys):
    conf = _conf(tmp_path, PER_SAC_CONF)
    run = tmp_path / "run"
    train("per_sac", conf, run, timesteps=96, save_freq=48, progress_bar=False)
    assert load_from_pkl(run / "checkpoints" / "96" / REPLAY_BUFFER).size() == 96 // 2  # rows of 2 envs: every step stored
    assert not (run / "checkpoints" / "48" / REPLAY_BUFFER).exists()
    (run / "checkpoints" / "96" / REPLAY_BUFFER).unlink()  # resuming with an empty buffer would be silent data loss
    config = (run / "config.yml").read_bytes()
    assert main(["train", "--algo", "per_sac", "--conf", str(conf), "--run-dir", str(run), "--resume", "--timesteps", "144"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'checkpoints' / '96' / REPLAY_BUFFER} is missing" in err and "only the newest checkpoint keeps" in err
    assert (run / "config.yml").read_bytes() == config and checkpoints(run / "checkpoints")[0][0] == 96


def test_resume_refuses_another_algorithm_or_file_and_writes_nothing(ppo_run, tmp_path, capsys):
    conf, run = ppo_run[0], _copy(ppo_run[1], tmp_path)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["train", "--algo", "twin_ppo", "--conf", str(conf), "--run-dir", str(run), "--resume"]) == 2
    assert f"{run} is a ppo run; it cannot be resumed as twin_ppo" in capsys.readouterr().err
    other = tmp_path / "other.yml"
    other.write_text(PPO_CONF.replace("n_epochs: 1", "n_epochs: 2"))
    assert main(["train", "--algo", "ppo", "--conf", str(other), "--run-dir", str(run), "--resume"]) == 2
    assert f"{other} differs from the run's {run / 'config.yml'}" in capsys.readouterr().err
    assert main(["train", "--algo", "ppo", "--conf", str(conf), "--run-dir", str(run)]) == 2  # a new run over it
    assert f"{run} already holds a run: pass --resume" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    # the newest set's own record names another algorithm (a set copied from a twin_ppo run): refused, naming both
    newest = run / "checkpoints" / "256"
    record = json.loads((newest / RUN_JSON).read_text())
    (newest / RUN_JSON).write_text(json.dumps({**record, "algo": "twin_ppo"}))
    assert main(["train", "--algo", "ppo", "--conf", str(conf), "--run-dir", str(run), "--resume", "--timesteps", "320"]) == 2
    assert f"{newest} holds a twin_ppo model, but {run} is a ppo run" in capsys.readouterr().err


def test_resume_refuses_another_seed_or_vec_env_naming_both_and_writes_nothing(ppo_run, tmp_path, capsys):
    conf, run = ppo_run[0], _copy(ppo_run[1], tmp_path)
    assert {key: json.loads((run / RUN_JSON).read_text())[key] for key in ("seed", "vec_env")} == {"seed": 0, "vec_env": "microgrid"}
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    resume = ["train", "--algo", "ppo", "--conf", str(conf), "--run-dir", str(run), "--resume", "--timesteps", "320"]
    assert main([*resume, "--seed", "1"]) == 2
    assert f"{run} was trained with --seed 0; it cannot be resumed with --seed 1" in capsys.readouterr().err
    assert main([*resume, "--vec-env", "dummy"]) == 2
    assert f"{run} was trained with --vec-env microgrid; it cannot be resumed with --vec-env dummy" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_resume_takes_the_run_seed_and_vec_env_when_not_given(tmp_path, monkeypatch):
    conf, run = _conf(tmp_path, PPO_CONF), tmp_path / "run"
    assert main(["train", "--algo", "ppo", "--conf", str(conf), "--run-dir", str(run), "--seed", "3", "--vec-env", "dummy", "--timesteps", "64"]) == 0
    built = []
    monkeypatch.setattr(training, "make_env", lambda hp, seed, vec_env: built.append((seed, vec_env)) or training_make_env(hp, seed, vec_env))
    assert main(["train", "--algo", "ppo", "--conf", str(conf), "--run-dir", str(run), "--resume", "--timesteps", "128"]) == 0
    assert built == [(3, "dummy")]
    record = json.loads((run / RUN_JSON).read_text())
    assert (record["seed"], record["vec_env"], record["num_timesteps"]) == (3, "dummy", 128)  # still recorded after publishing
    (run / RUN_JSON).write_text(json.dumps({k: v for k, v in record.items() if k not in ("seed", "vec_env")}))  # an older run's record
    with pytest.warns(UserWarning, match="records no seed or vec_env .*; resuming with seed 5, vec_env microgrid"):
        train("ppo", conf, run, timesteps=192, seed=5, resume=True, progress_bar=False)


GOAL_SECTION = """
MicrogridGoal-v0:
  n_envs: 1
  n_timesteps: 64
  policy: 'MultiInputPolicy'
  env_kwargs: "dict(scenario='campus_tod')"
"""


@pytest.mark.parametrize(("key", "value", "named"), [
    ("env", 5, "'env' must be a string"), ("vec_env", 1, "'vec_env' must be a string"),
    ("seed", "0", "'seed' must be an integer"), ("seed", True, "'seed' must be an integer"),
    ("save_freq", "64", "'save_freq' must be an integer"), ("save_freq", 64.0, "'save_freq' must be an integer"),
    ("save_freq", True, "'save_freq' must be an integer"),
    ("publishing", "yes", "'publishing' must be true or absent"),
])  # fmt: skip
def test_a_run_record_of_the_wrong_types_is_refused_naming_the_key(tmp_path, key, value, named):
    (tmp_path / RUN_JSON).write_text(json.dumps({"algo": "ppo", key: value}))
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / RUN_JSON}: {named}")):
        checkpoint_module.read_run_json(tmp_path)


def test_a_two_section_run_records_its_section_for_resume_and_evaluation(tmp_path, capsys):
    """The section read is recorded: a resume without --env reads it again, one with the other section is
    refused, and evaluation reads the run's settings (normalisation, scenario) from that section."""
    conf, run = _conf(tmp_path, PPO_CONF + GOAL_SECTION), tmp_path / "run"
    assert main(["train", "--algo", "ppo", "--conf", str(conf), "--run-dir", str(run), "--env", "Microgrid-v0", "--timesteps", "64"]) == 0
    assert json.loads((run / RUN_JSON).read_text())["env"] == "Microgrid-v0"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    resume = ["train", "--algo", "ppo", "--conf", str(conf), "--run-dir", str(run), "--resume", "--timesteps", "128"]
    assert main([*resume, "--env", "MicrogridGoal-v0"]) == 2
    assert f"{run} was trained with --env Microgrid-v0; it cannot be resumed with --env MicrogridGoal-v0" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert main(resume) == 0
    assert json.loads((run / RUN_JSON).read_text())["num_timesteps"] == 128
    checkpoint = run / "checkpoints" / "128" / MODEL  # its set's run.json records no settings: the run folder's does
    for model in (run / MODEL, checkpoint):
        assert sb3_model.run_settings(model)["n_steps"] == 32  # the recorded section's, not None
        assert sb3_model.recorded_scenario(model) is None  # the other section's campus_tod is not this run's
    assert sb3_model.trained_with_normalization(run / MODEL) is True
    (run / "config.yml").write_text(GOAL_SECTION + GOAL_SECTION.replace("MicrogridGoal-v0", "CartPole-v1"))
    with pytest.raises(ValueError, match="records the section 'Microgrid-v0', which .* does not have"):
        sb3_model.run_settings(checkpoint)
    (run / "config.yml").write_text(PPO_CONF + GOAL_SECTION)
    # a record that names no section (an older run) resumes a two-section file only with --env
    record = json.loads((run / RUN_JSON).read_text())
    (run / RUN_JSON).write_text(json.dumps({k: v for k, v in record.items() if k != "env"}))
    assert main([*resume[:-1], "192"]) == 2
    assert "sections" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="records no env .*; resuming with env Microgrid-v0"):
        train("ppo", conf, run, timesteps=192, env_id="Microgrid-v0", resume=True, progress_bar=False)


def test_a_run_with_optimize_memory_usage_warns_and_is_not_resumed(tmp_path, capsys):
    """SB3's memory-optimised buffer stores a transition's next observation as the next slot's observation:
    the resumed run's first observation (a new day) would overwrite it for the last transition saved."""
    conf = _conf(tmp_path, SAC_MEMORY_CONF)
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="optimize_memory_usage=True: the checkpoints in .* can be evaluated but not resumed"):
        train("sac", conf, run, timesteps=48, save_freq=48, progress_bar=False)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["train", "--algo", "sac", "--conf", str(conf), "--run-dir", str(run), "--resume", "--timesteps", "96"]) == 2
    assert "SAC with optimize_memory_usage=True cannot be resumed" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(tmp_path):
    conf = _conf(tmp_path, PPO_CONF)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(conf, run / "config.yml")
    write_run_json(run, "ppo", settings={"seed": 0, "vec_env": "microgrid"})  # what a new run writes before its first step
    with pytest.warns(UserWarning, match="no checkpoint .* yet; starting .* from the beginning"):
        model = train("ppo", conf, run, timesteps=64, save_freq=64, resume=True, progress_bar=False)
    assert model.num_timesteps == 64 and json.loads((run / RUN_JSON).read_text())["num_timesteps"] == 64


def test_load_checkpoint_refuses_a_set_that_does_not_fit_the_env_or_algorithm(ppo_run, tmp_path):
    """``load_checkpoint`` is public: a script may pass an env or class the set was not saved with."""
    newest = last_checkpoint(ppo_run[1])[1]
    with pytest.raises(CheckpointError, match=f"{re.escape(str(newest))} has {VECNORMALIZE} but the configuration does not normalise"):
        load_checkpoint(newest, PPO, MicrogridVecEnv(2), seed=0)
    bare = tmp_path / "64"
    bare.mkdir()
    shutil.copyfile(newest / MODEL, bare / MODEL)
    write_run_json(bare, "per_sac", 64, [MODEL])  # a set listing no replay buffer
    with pytest.raises(CheckpointError, match=f"has no {REPLAY_BUFFER}: PerSAC would resume with an empty buffer"):
        load_checkpoint(bare, ALGOS["per_sac"], MicrogridVecEnv(2), seed=0)


@pytest.mark.parametrize("file", [VECNORMALIZE, MODEL])
def test_resume_refuses_a_set_whose_pickle_would_run_code(ppo_run, tmp_path, file):
    """A file of the newest set replaced by a pickle that creates a file when unpickled, its size recorded as the
    writer would: the resume names the file and what it named, and nothing runs."""

    class Touch:
        def __reduce__(self):
            return (open, (str(tmp_path / "ran"), "w"))

    conf, run = ppo_run[0], _copy(ppo_run[1], tmp_path)
    newest = run / "checkpoints" / "256"
    hostile = pickle.dumps(Touch())
    if file == MODEL:  # the model zip's pickled attributes, as SB3 writes them
        with zipfile.ZipFile(newest / MODEL) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        data = json.loads(members["data"])
        data["policy_class"] = {":type:": "<class 'type'>", ":serialized:": base64.b64encode(hostile).decode()}
        members["data"] = json.dumps(data).encode()
        with zipfile.ZipFile(newest / MODEL, "w") as archive:
            for name, content in members.items():
                archive.writestr(name, content)
    else:
        (newest / file).write_bytes(hostile)
    record = json.loads((newest / RUN_JSON).read_text())
    record["files"][file] = (newest / file).stat().st_size
    (newest / RUN_JSON).write_text(json.dumps(record))
    with pytest.raises(UnsafePickleError, match=f"{re.escape(str(newest / file)) if file == VECNORMALIZE else 'policy_class'}.*refused"):
        train("ppo", conf, run, timesteps=320, save_freq=64, resume=True, progress_bar=False)
    assert not (tmp_path / "ran").exists()


def test_a_run_killed_while_publishing_its_final_model_is_refused_then_resumes(ppo_run, tmp_path, monkeypatch, capsys):
    """Killed between copying model.zip and the statistics, the folder held a model and statistics of different
    steps under the old run.json, and evaluate scored it without a word."""
    conf, run = ppo_run[0], _copy(ppo_run[1], tmp_path)
    replace = os.replace

    def killed_at_the_statistics(src, dst):
        if Path(dst).name == VECNORMALIZE:
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr(checkpoint_module.os, "replace", killed_at_the_statistics)
    with pytest.raises(KeyboardInterrupt):  # a finished run resumed: nothing to train, the model published again
        train("ppo", conf, run, resume=True, progress_bar=False)
    monkeypatch.setattr(checkpoint_module.os, "replace", replace)
    assert main(["evaluate", "--controller", str(run / MODEL), "--days", "1", "--no-reference"]) == 2
    assert "was left while its final model was being written: resume the run" in capsys.readouterr().err
    assert main(["train", "--algo", "ppo", "--conf", str(conf), "--run-dir", str(run), "--resume"]) == 0
    assert "publishing" not in json.loads((run / RUN_JSON).read_text())
    assert main(["evaluate", "--controller", str(run / MODEL), "--days", "1", "--no-reference"]) == 0


def test_resume_without_seed_or_run_dir_names_the_runs_of_the_file(tmp_path, monkeypatch, capsys):
    """The default folder carries the seed: a seed-3 run resumed without --seed was looked for in the _0 folder."""
    monkeypatch.chdir(tmp_path)
    conf = _conf(tmp_path, PPO_CONF)
    assert main(["train", "--algo", "ppo", "--conf", str(conf), "--seed", "3", "--timesteps", "64"]) == 0
    capsys.readouterr()
    assert main(["train", "--algo", "ppo", "--conf", str(conf), "--resume", "--timesteps", "128"]) == 2
    err = capsys.readouterr().err
    assert f"no run at runs/ppo_{conf.stem}_0 to resume: name the run's --run-dir, or its --env and --seed (runs of this file: runs/ppo_{conf.stem}_3)" in err
    assert main(["train", "--algo", "ppo", "--conf", str(conf), "--resume", "--seed", "3", "--timesteps", "128"]) == 0
    # the default folder carries the section named with --env too; a run of another file is not listed
    two = tmp_path / "two.yml"
    two.write_text(PPO_CONF + GOAL_SECTION)
    assert main(["train", "--algo", "ppo", "--conf", str(two), "--env", "Microgrid-v0", "--seed", "3", "--timesteps", "64"]) == 0
    capsys.readouterr()
    assert main(["train", "--algo", "ppo", "--conf", str(two), "--resume", "--seed", "3", "--timesteps", "128"]) == 2
    assert "no run at runs/ppo_two_3 to resume: name the run's --run-dir, or its --env and --seed (runs of this file: runs/ppo_Microgrid-v0_3)" in capsys.readouterr().err
    assert main(["train", "--algo", "ppo", "--conf", str(two), "--resume", "--env", "Microgrid-v0", "--seed", "3", "--timesteps", "128"]) == 0


# Callbacks whose adapted state a resumed run needs: a parameter-noise scale, a plateau's best return and count.
STATEFUL_CONF = PPO_CONF + """  callback:
    - sb3_microgrid.exploration.ParameterNoiseCallback: {initial_sigma: 0.05}
    - sb3_microgrid.callbacks.ReduceLROnPlateau: {mode: rollout, patience: 2}
    - sb3_microgrid.callbacks.MicrogridMetricsCallback
"""


def _started_with(monkeypatch) -> dict:
    """Record each stateful callback's state when training starts."""
    from sb3_microgrid.callbacks import ReduceLROnPlateau
    from sb3_microgrid.exploration import ParameterNoiseCallback

    seen: dict = {}
    for cls in (ParameterNoiseCallback, ReduceLROnPlateau):
        def start(self, original=cls._on_training_start, name=cls.__name__) -> None:
            seen[name] = self.state_dict()
            original(self)

        monkeypatch.setattr(cls, "_on_training_start", start)
    return seen


def test_a_resumed_run_takes_back_what_its_callbacks_adapted(tmp_path, monkeypatch):
    """σ of parameter noise and the plateau's best return and count are in each set; --resume loads them back,
    where the callbacks used to start afresh (σ from initial_sigma, a plateau from -inf)."""
    conf, run = _conf(tmp_path, STATEFUL_CONF), tmp_path / "run"
    train("ppo", conf, run, timesteps=256, save_freq=128, progress_bar=False)
    saved = json.loads((run / "checkpoints" / "256" / checkpoint_module.CALLBACKS).read_text())
    assert [entry["callback"] for entry in saved] == ["ParameterNoiseCallback", "ReduceLROnPlateau"]
    noise, plateau = (entry["state"] for entry in saved)
    assert noise["sigma"] != 0.05 and plateau["best"] is not None  # adapted over the 4 rollouts
    assert checkpoint_module.CALLBACKS in json.loads((run / "checkpoints" / "256" / RUN_JSON).read_text())["files"]
    seen = _started_with(monkeypatch)
    train("ppo", conf, run, timesteps=320, resume=True, save_freq=128, progress_bar=False)
    assert seen == {"ParameterNoiseCallback": noise, "ReduceLROnPlateau": plateau}


def _tamper(run: Path, content: str) -> Path:
    """Replace the newest set's callbacks.json, its size recorded as the writer would."""
    newest = run / "checkpoints" / "256"
    (newest / checkpoint_module.CALLBACKS).write_text(content)
    record = json.loads((newest / RUN_JSON).read_text())
    write_run_json(newest, "ppo", record["num_timesteps"], sorted(record["files"]))
    return newest / checkpoint_module.CALLBACKS


@pytest.mark.parametrize(("content", "named"), [
    ('[{"callback": "ParameterNoiseCallback", "state": {"sigma": -1}}, {"callback": "ReduceLROnPlateau", "state": {"best": null, "bad_checks": 0, "reductions": 0}}]',
     "the state of ParameterNoiseCallback is not valid: sigma = -1 is outside the allowed range (0.0, inf)"),
    ('[{"callback": "ParameterNoiseCallback", "state": {"sigma": NaN}}]', "is not readable JSON: NaN is not a JSON value"),
    ('[{"callback": "ParameterNoiseCallback", "state": {"sigma": 0.1}}, {"callback": "ReduceLROnPlateau", "state": {"best": 1.0, "bad_checks": 9, "reductions": 0}}]',
     "the state of ReduceLROnPlateau is not valid: bad_checks = 9 is outside the allowed range [0, 2]"),
    ('[{"callback": "ParameterNoiseCallback", "state": {"sigma": 0.1}}, {"callback": "ReduceLROnPlateau", "state": {"best": 1.0}}]',
     "the state of ReduceLROnPlateau is not valid: 'bad_checks'"),
    ('[{"callback": "ReduceLROnPlateau", "state": {}}]', "holds the states of ['ReduceLROnPlateau'], the run's callbacks that keep state are"),
    ('{"sigma": 0.1}', "expected a list of"),
])  # fmt: skip
def test_resume_refuses_callback_states_that_do_not_fit_naming_the_file(tmp_path, content, named):
    conf, run = _conf(tmp_path, STATEFUL_CONF), tmp_path / "run"
    train("ppo", conf, run, timesteps=256, save_freq=256, progress_bar=False)
    path = _tamper(run, content)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}") + ".*" + re.escape(named)):
        train("ppo", conf, run, timesteps=320, resume=True, progress_bar=False)


def test_a_set_without_callback_states_resumes_with_fresh_callbacks_and_a_warning(tmp_path):
    """A set of an older version holds no callbacks.json."""
    conf, run = _conf(tmp_path, STATEFUL_CONF), tmp_path / "run"
    train("ppo", conf, run, timesteps=256, save_freq=256, progress_bar=False)
    newest = run / "checkpoints" / "256"
    (newest / checkpoint_module.CALLBACKS).unlink()
    record = json.loads((newest / RUN_JSON).read_text())
    write_run_json(newest, "ppo", record["num_timesteps"], sorted(set(record["files"]) - {checkpoint_module.CALLBACKS}))
    with pytest.warns(UserWarning, match="holds no callbacks.json .*: ParameterNoiseCallback, ReduceLROnPlateau start"):
        model = train("ppo", conf, run, timesteps=320, resume=True, progress_bar=False)
    assert model.num_timesteps == 320


def test_stateful_callbacks_are_found_inside_lists_and_evaluation_callbacks():
    """A curriculum or plateau in performance mode sits inside an EvalCallback: its state is saved too."""
    from stable_baselines3.common.callbacks import CallbackList, EvalCallback

    from sb3_microgrid.callbacks import CurriculumCallback, MicrogridMetricsCallback, ReduceLROnPlateau

    curriculum = CurriculumCallback({"ev_count": 2}, {"ev_count": 8}, n_levels=3, mode="performance", threshold=-5.0)
    plateau = ReduceLROnPlateau()
    evaluation = EvalCallback(MicrogridVecEnv(1), callback_on_new_best=plateau, callback_after_eval=curriculum)
    assert checkpoint_module.stateful_callbacks([MicrogridMetricsCallback(), CallbackList([evaluation])]) == [plateau, curriculum]
    curriculum.load_state_dict({"level": 2})
    assert curriculum.state_dict() == {"level": 2}
    with pytest.raises(ValueError, match=re.escape("level = 3 is outside the allowed range [0, 2]")):
        curriculum.load_state_dict({"level": 3})
    with pytest.raises(ValueError, match="level must be an integer"):
        curriculum.load_state_dict({"level": True})


RND_CONF = PPO_CONF + """  vec_env_wrapper:
    - sb3_microgrid.exploration.RNDRewardWrapper: {beta: 0.5, seed: 0, batch_size: 16}
"""


def test_a_resumed_run_keeps_its_rnd_predictor_and_statistics(tmp_path, capsys):
    """An RNDRewardWrapper rebuilt afresh on resume would find every state novel again: each set holds it."""
    from stable_baselines3.common.vec_env import unwrap_vec_wrapper

    from sb3_microgrid.exploration import RNDRewardWrapper

    conf, run = _conf(tmp_path, RND_CONF), tmp_path / "run"
    train("ppo", conf, run, timesteps=256, save_freq=128, progress_bar=False)
    assert checkpoint_module.RND in json.loads((run / "checkpoints" / "256" / RUN_JSON).read_text())["files"]
    model = train("ppo", conf, run, timesteps=320, resume=True, progress_bar=False)
    rnd = unwrap_vec_wrapper(model.get_env(), RNDRewardWrapper)
    assert rnd.num_timesteps == 320 and rnd.obs_rms.count > 320  # not 64 steps of a fresh wrapper
    newest = run / "checkpoints" / "320"
    (newest / checkpoint_module.RND).write_bytes(b"not a torch file")
    record = json.loads((newest / RUN_JSON).read_text())
    write_run_json(newest, "ppo", record["num_timesteps"], sorted(record["files"]))
    resume = ["train", "--algo", "ppo", "--conf", str(conf), "--run-dir", str(run), "--resume", "--timesteps", "384"]
    assert main(resume) == 2
    assert f"{newest / checkpoint_module.RND} is not an RNDRewardWrapper file" in capsys.readouterr().err
    (run / "config.yml").write_text(PPO_CONF)
    with pytest.raises(CheckpointError, match="has rnd.pt but the configuration has no RNDRewardWrapper"):
        train("ppo", _conf(tmp_path, PPO_CONF), run, timesteps=384, resume=True, progress_bar=False)


def test_resume_goes_on_to_the_total_the_run_was_started_with(tmp_path):
    """run.json recorded no total: a run started with --timesteps 128 and resumed went on to the file's n_timesteps."""
    conf, run = _conf(tmp_path, PPO_CONF), tmp_path / "run"  # the file says 512
    train("ppo", conf, run, timesteps=128, save_freq=64, progress_bar=False)
    assert json.loads((run / RUN_JSON).read_text())["timesteps"] == 128
    assert train("ppo", conf, run, resume=True, progress_bar=False).num_timesteps == 128
    assert train("ppo", conf, run, timesteps=192, resume=True, progress_bar=False).num_timesteps == 192  # a new total
    assert json.loads((run / RUN_JSON).read_text())["timesteps"] == 192
    assert train("ppo", conf, run, resume=True, progress_bar=False).num_timesteps == 192


def _sets(run: Path) -> list[int]:
    return sorted(steps for steps, _ in checkpoints(run / "checkpoints"))


def test_resume_checkpoints_at_the_run_save_freq_unless_given_another(tmp_path):
    """run.json did not record the save frequency: a run started with --save-freq 64 and resumed without it wrote no set
    until the end (50,000 steps), so a second interruption lost everything since the first."""
    conf = _conf(tmp_path, PPO_CONF)  # rollouts of 64 steps
    train("ppo", conf, tmp_path / "new", timesteps=64, progress_bar=False)
    assert json.loads((tmp_path / "new" / RUN_JSON).read_text())["save_freq"] == training.DEFAULT_SAVE_FREQ == 50_000
    run = tmp_path / "run"
    train("ppo", conf, run, timesteps=128, save_freq=64, progress_bar=False)
    assert json.loads((run / RUN_JSON).read_text())["save_freq"] == 64
    train("ppo", conf, run, timesteps=256, resume=True, progress_bar=False)
    assert _sets(run) == [64, 128, 192, 256]
    # given with --resume, another frequency is used and recorded for the resumes after it
    train("ppo", conf, run, timesteps=512, save_freq=128, resume=True, progress_bar=False)
    assert _sets(run) == [64, 128, 192, 256, 384, 512] and json.loads((run / RUN_JSON).read_text())["save_freq"] == 128
    train("ppo", conf, run, timesteps=704, resume=True, progress_bar=False)
    assert _sets(run)[6:] == [640, 704]  # at 640, a multiple of 128 (not 576), and at the end
    assert json.loads((run / RUN_JSON).read_text())["save_freq"] == 128


def test_resume_refuses_a_total_below_the_steps_done_and_writes_nothing(ppo_run, tmp_path, capsys):
    """--timesteps 128 on a run of 256 steps was accepted: nothing trained, and run.json said timesteps 128 beside
    num_timesteps 256."""
    conf, run = ppo_run[0], _copy(ppo_run[1], tmp_path)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["train", "--algo", "ppo", "--conf", str(conf), "--run-dir", str(run), "--resume", "--timesteps", "128"]) == 2
    err = capsys.readouterr().err
    assert f"--timesteps 128 is below the 256 steps of {run / 'checkpoints' / '256'}, the checkpoint resumed from: --timesteps must be >= 256" in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    # the run's own total may lie below its steps (its last rollout went past it): the same command resumes it
    other = tmp_path / "other"
    train("ppo", conf, other, timesteps=100, save_freq=64, progress_bar=False)
    assert _sets(other) == [64, 128] and json.loads((other / RUN_JSON).read_text())["timesteps"] == 100
    assert train("ppo", conf, other, timesteps=100, resume=True, progress_bar=False).num_timesteps == 128
    with pytest.raises(CheckpointError, match=re.escape("--timesteps 120 is below the 128 steps of") + ".*" + re.escape(">= 128 (left out, the run's own total 100)")):
        train("ppo", conf, other, timesteps=120, resume=True, progress_bar=False)


VALIDATED_CONF = PPO_CONF.replace("n_epochs: 1", "n_epochs: 4\n  learning_rate: 0.01") + """  callback:
    - sb3_microgrid.validation.ValidationCallback: {days: 1, eval_freq: 64}
"""


def test_the_final_set_holds_the_weights_training_reached_and_the_run_publishes_the_best(tmp_path):
    """The ValidationCallback put the best weights back before the final set was written: a resumed run went on from
    the best weights and statistics while counting from the last step."""
    conf, run = _conf(tmp_path, VALIDATED_CONF), tmp_path / "run"
    train("ppo", conf, run, timesteps=256, save_freq=128, progress_bar=False)
    validation = json.loads((run / "validation.json").read_text())
    assert validation["best"]["steps"] < 256  # else the two would be the same weights
    best = PPO.load(run / validation["best_file"], device="cpu").policy.state_dict()
    published = PPO.load(run / MODEL, device="cpu").policy.state_dict()
    final = PPO.load(run / "checkpoints" / "256" / MODEL, device="cpu").policy.state_dict()
    assert all(th.equal(published[k], v) for k, v in best.items())
    assert not all(th.equal(final[k], v) for k, v in best.items())
    assert load_from_pkl(run / "checkpoints" / "256" / VECNORMALIZE).obs_rms.count == pytest.approx(2 + 256, abs=1e-3)


def test_a_run_records_its_scenario_file_whole_and_resume_refuses_a_changed_one(tmp_path, monkeypatch, capsys):
    """The run kept only the file's path: a battery changed in the file after the start was trained on when
    resumed and scored by evaluate without a word, and the relative path found no file from another folder."""
    site = tmp_path / "y"
    site.mkdir()
    (site / "site.yaml").write_text("base: campus\nbattery: {capacity_kwh: 1500}\n")
    conf = _conf(tmp_path, PPO_CONF.replace("n_timesteps: 512", "n_timesteps: 512\n  env_kwargs: {scenario: y/site.yaml}"))
    monkeypatch.chdir(tmp_path)
    train("ppo", conf, tmp_path / "run", timesteps=64, save_freq=64, progress_bar=False)
    recorded = json.loads((tmp_path / "run" / RUN_JSON).read_text())["scenario"]
    assert recorded["battery"]["capacity_kwh"] == 1500
    monkeypatch.chdir(site)  # evaluate from elsewhere: the record, not the path
    assert sb3_model.recorded_scenario(tmp_path / "run" / MODEL) == recorded
    monkeypatch.chdir(tmp_path)
    (site / "site.yaml").write_text("base: campus\nbattery: {capacity_kwh: 5000}\n")
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match="the scenario 'y/site.yaml' is not the one the run was trained on"):
        train("ppo", conf, tmp_path / "run", timesteps=128, resume=True, progress_bar=False)
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before
    (site / "site.yaml").write_text("base: campus\nbattery: {capacity_kwh: 1500}\n")
    assert train("ppo", conf, tmp_path / "run", timesteps=128, resume=True, progress_bar=False).num_timesteps == 128
    assert main(["train", "--algo", "ppo", "--conf", str(conf), "--run-dir", str(conf), "--timesteps", "64"]) == 2
    assert "is a file; choose a folder" in capsys.readouterr().err


def test_the_final_set_holds_the_last_value_fit_of_the_auxiliary_replay(tmp_path):
    """With the final set written first at the end of training, it missed AuxiliaryValueReplayCallback's last fit,
    which no resume can redo (its store is not saved): without a ValidationCallback, set and model are the same."""
    conf = _conf(tmp_path, PPO_CONF + "  callback:\n    - sb3_microgrid.callbacks.AuxiliaryValueReplayCallback: {gradient_steps: 4}\n")
    train("ppo", conf, tmp_path / "run", timesteps=128, save_freq=64, progress_bar=False)
    final = PPO.load(tmp_path / "run" / "checkpoints" / "128" / MODEL, device="cpu").policy.state_dict()
    published = PPO.load(tmp_path / "run" / MODEL, device="cpu").policy.state_dict()
    assert all(th.equal(published[k], v) for k, v in final.items())


def test_a_checkpoint_set_is_scored_on_the_scenario_its_run_records(tmp_path, monkeypatch):
    """The scenario was read from the run folder's run.json for the published model only: a set fell back to the
    file's relative path."""
    (tmp_path / "site.yaml").write_text("base: campus\nbattery: {capacity_kwh: 1500}\n")
    conf = _conf(tmp_path, PPO_CONF.replace("n_timesteps: 512", "n_timesteps: 512\n  env_kwargs: {scenario: site.yaml}"))
    monkeypatch.chdir(tmp_path)
    train("ppo", conf, tmp_path / "run", timesteps=64, save_freq=64, progress_bar=False)
    monkeypatch.chdir(tmp_path / "run")
    scenario = sb3_model.recorded_scenario(tmp_path / "run" / "checkpoints" / "64" / MODEL)
    assert scenario == json.loads((tmp_path / "run" / RUN_JSON).read_text())["scenario"] and scenario["battery"]["capacity_kwh"] == 1500


def test_a_new_total_keeps_the_mark_of_a_run_left_while_publishing(ppo_run, tmp_path, monkeypatch):
    """Resumed with another --timesteps, the run record is rewritten: it must keep saying that the folder's model and
    statistics are not a finished pair until the run publishes again."""
    conf, run = ppo_run[0], _copy(ppo_run[1], tmp_path)
    record = json.loads((run / RUN_JSON).read_text())
    (run / RUN_JSON).write_text(json.dumps({**record, "publishing": True}))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "publish_model", killed)
    with pytest.raises(KeyboardInterrupt):
        train("ppo", conf, run, timesteps=320, resume=True, progress_bar=False)
    record = json.loads((run / RUN_JSON).read_text())
    assert record["publishing"] is True and record["timesteps"] == 320


def test_callback_states_named_for_other_callbacks_are_refused_even_when_they_would_load(tmp_path):
    """Swapped names: each state would load into the other callback without a word."""
    conf, run = _conf(tmp_path, STATEFUL_CONF), tmp_path / "run"
    train("ppo", conf, run, timesteps=256, save_freq=256, progress_bar=False)
    saved = json.loads((run / "checkpoints" / "256" / checkpoint_module.CALLBACKS).read_text())
    swapped = [{**saved[0], "callback": saved[1]["callback"]}, {**saved[1], "callback": saved[0]["callback"]}]
    _tamper(run, json.dumps(swapped))
    with pytest.raises(CheckpointError, match="holds the states of"):
        train("ppo", conf, run, timesteps=320, resume=True, progress_bar=False)


@pytest.mark.parametrize("key", ["timesteps", "save_freq"])
def test_a_run_record_total_or_save_freq_below_one_is_refused(tmp_path, key):
    (tmp_path / RUN_JSON).write_text(json.dumps({"algo": "ppo", key: 0}))
    with pytest.raises(CheckpointError, match=f"'{key}' must be >= 1, got 0"):
        checkpoint_module.read_run_json(tmp_path)
