"""Zoo-format YAML read without eval, and training with checkpoints and resume."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from stable_baselines3 import PPO, SAC

from sb3_microgrid.cli import main
from sb3_microgrid.hyperparams import HyperparamsError, load_hyperparams, parse_python
from sb3_microgrid.training import ALGOS, last_checkpoint, train

HYPERPARAMS = Path(__file__).parent.parent / "hyperparams"

SMALL = """
Microgrid-v0:
  n_envs: 2
  n_timesteps: 256
  policy: 'MlpPolicy'
  learning_rate: lin_3e-4
  n_steps: 64
  batch_size: 64
  n_epochs: 1
  normalize: "{'norm_obs': True, 'norm_reward': True, 'clip_obs': 10.0}"
  policy_kwargs: "dict(ortho_init=True, net_arch=dict(pi=[16], vf=[16]), activation_fn=nn.Tanh)"
"""


def test_parse_python_accepts_the_zoo_grammar_and_nothing_else():
    value = parse_python("dict(net_arch=dict(pi=[64, 64], vf=[64]), activation_fn=nn.ReLU, log_std_init=-1.5)")
    assert value == {"net_arch": {"pi": [64, 64], "vf": [64]}, "activation_fn": torch.nn.ReLU, "log_std_init": -1.5}
    assert parse_python("get_class_by_name('stable_baselines3.common.buffers.ReplayBuffer')", "replay_buffer_class").__name__ == "ReplayBuffer"
    assert parse_python("th.nn.SiLU", "activation_fn") is torch.nn.SiLU  # a class only where the key takes one (test_hyperparams.py)
    for bad in ("__import__('os').system('echo hacked')", "open('/etc/passwd')", "[x for x in range(3)]", "1 + 2"):
        with pytest.raises(HyperparamsError, match="policy_kwargs"):
            parse_python(bad, "policy_kwargs")
    with pytest.raises(HyperparamsError, match="cannot import"):
        parse_python("nn.NoSuchLayer", "activation_fn")


def test_shipped_files_load_for_their_algorithms():
    for name, cls in (("ppo", PPO), ("sac", SAC)):
        hp = load_hyperparams(HYPERPARAMS / f"{name}.yml", cls)
        assert hp.env_id == "Microgrid-v0" and hp.n_timesteps > 0
        assert all(isinstance(cb, type) for cb, _ in hp.callbacks)
    ppo = load_hyperparams(HYPERPARAMS / "ppo.yml", PPO)
    assert ppo.algo_kwargs["learning_rate"] == 3e-4 and ppo.algo_kwargs["n_steps"] * ppo.n_envs == 4096
    assert ppo.algo_kwargs["batch_size"] == 1024 and ppo.algo_kwargs["ent_coef"] == 0.02
    # Measured changes from the start (docs/results.md): no discounting inside the day, less initial noise.
    assert ppo.algo_kwargs["gamma"] == ppo.algo_kwargs["gae_lambda"] == 1.0 and ppo.algo_kwargs["policy_kwargs"]["log_std_init"] == -1.5
    assert ppo.env_kwargs == {"scenario": {"base": "campus", "reward": {"exogenous_baseline": True}}}
    assert ppo.normalize == {"norm_obs": True, "norm_reward": True, "clip_obs": 10.0, "clip_reward": 10.0}
    assert ppo.algo_kwargs["policy_kwargs"]["ortho_init"] is True


def test_mixin_algorithms_accept_their_base_class_keys(tmp_path):
    """PerSAC/PerTD3 take SAC's/TD3's arguments through a mixin's ``**kwargs``: the key check must
    look along the MRO, and still name a wrong key."""
    assert load_hyperparams(HYPERPARAMS / "sac.yml", ALGOS["per_sac"]).algo_kwargs["learning_starts"] == 2400
    assert load_hyperparams(HYPERPARAMS / "td3.yml", ALGOS["per_td3"]).algo_kwargs["learning_rate"] == 1e-3
    path = tmp_path / "bad.yml"
    path.write_text("Microgrid-v0:\n  n_timesteps: 10\n  learning_rat: 0.1\n")
    with pytest.raises(HyperparamsError, match=r"unknown key\(s\) \['learning_rat'\] for PerSAC"):
        load_hyperparams(path, ALGOS["per_sac"])


def test_unknown_keys_and_classes_are_named(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("Microgrid-v0:\n  n_timesteps: 10\n  learning_rat: 0.1\n")
    with pytest.raises(HyperparamsError, match=r"unknown key\(s\) \['learning_rat'\] for PPO"):
        load_hyperparams(path, PPO)
    path.write_text("Microgrid-v0:\n  n_timesteps: 10\n  callback: sb3_microgrid.callbacks.NoSuchCallback\n")
    with pytest.raises(HyperparamsError, match="NoSuchCallback"):
        load_hyperparams(path, PPO)
    assert main(["train", "--algo", "nope", "--conf", str(path)]) == 2


def test_train_checkpoints_and_resumes(tmp_path):
    conf = tmp_path / "small.yml"
    conf.write_text(SMALL)
    run = tmp_path / "run"
    model = train("ppo", conf, run, timesteps=256, save_freq=128, progress_bar=False)
    # lin_3e-4: 3e-4 at the start of training, falling linearly to 0 at its end
    assert [model.lr_schedule(p) for p in (1.0, 0.5, 0.0)] == pytest.approx([3e-4, 1.5e-4, 0.0])
    assert (run / "model.zip").exists() and (run / "model_vecnormalize.pkl").exists() and (run / "config.yml").exists()
    steps, _ = last_checkpoint(run)
    assert steps == 256
    resumed = train("ppo", conf, run, timesteps=512, save_freq=128, resume=True, progress_bar=False)
    assert resumed.num_timesteps == 512  # continued from 256, not restarted
    assert last_checkpoint(run)[0] == 512
    assert main(["evaluate", "--controller", str(run / "model.zip"), "--days", "1", "--no-reference"]) == 0


def test_a_validation_callback_of_the_file_writes_its_scores_into_the_run_folder(tmp_path):
    """Where export and --resume look for them, not in the logger's tb/ folder; a log_path the file gives stays."""
    conf = tmp_path / "val.yml"
    conf.write_text(SMALL + "  callback:\n    - sb3_microgrid.validation.ValidationCallback: {days: 1, eval_freq: 128}\n")
    run = tmp_path / "run"
    train("ppo", conf, run, timesteps=256, save_freq=128, progress_bar=False)
    assert (run / "validation.json").is_file() and list(run.glob("validation_best_*.zip"))
    assert not list((run / "tb").rglob("validation.json"))
    elsewhere = tmp_path / "elsewhere"
    conf.write_text(conf.read_text().replace("eval_freq: 128}", f"eval_freq: 128, log_path: {elsewhere}}}"))
    train("ppo", conf, tmp_path / "run2", timesteps=128, save_freq=128, progress_bar=False)
    assert (elsewhere / "validation.json").is_file() and not (tmp_path / "run2" / "validation.json").exists()


@pytest.mark.parametrize("name,file", [("sac", "sac"), ("td3", "td3"), ("per_sac", "sac")])
def test_off_policy_files_train_from_the_cli_and_resume_with_their_buffer(tmp_path, name, file):
    """The shipped SAC/TD3 files, shrunk: gradient steps happen, the replay buffer is checkpointed and
    a resumed run continues with it (for PerSAC, its prioritized buffer)."""
    text = (HYPERPARAMS / f"{file}.yml").read_text()
    for old, new in (("buffer_size: 300000", "buffer_size: 1000"), ("learning_starts: 2400", "learning_starts: 48"), ("net_arch=[256, 256]", "net_arch=[16, 16]")):
        assert old in text
        text = text.replace(old, new)
    conf = tmp_path / f"{file}.yml"
    conf.write_text(text)
    run = tmp_path / "run"
    assert main(["train", "--algo", name, "--conf", str(conf), "--timesteps", "96", "--run-dir", str(run), "--save-freq", "48"]) == 0
    assert (run / "checkpoints" / "96" / "model_replay_buffer.pkl").exists()
    resumed = train(name, conf, run, timesteps=144, save_freq=48, resume=True, progress_bar=False)
    # The checkpoint is taken after the step's transition is stored: 96 restored + 48 new, not 48 alone.
    assert resumed.num_timesteps == 144 and resumed.replay_buffer.size() == 144
    assert resumed._n_updates > 0 and type(resumed) is ALGOS[name]


@pytest.mark.slow
def test_rl_zoo3_trains_from_the_shipped_file(tmp_path):
    """The zoo is a real client we do not control: its own command line, our package and file."""
    conf = tmp_path / "ppo.yml"
    conf.write_text((HYPERPARAMS / "ppo.yml").read_text().replace("n_timesteps: !!float 1e6", "n_timesteps: 4096"))
    cmd = [sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", "Microgrid-v0", "--gym-packages", "sb3_microgrid",
           "--conf-file", str(conf), "-f", str(tmp_path / "logs"), "--num-threads", "1", "--eval-freq", "-1"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert list((tmp_path / "logs").rglob("*.zip"))


def test_wrapped_envs_are_made_without_a_render_mode_for_ours_only(tmp_path):
    """SB3's make_vec_env asks every env for render_mode="rgb_array"; ours render nothing and gymnasium warned once
    per env. Other env ids keep SB3's default (a VecVideoRecorder needs it)."""
    import warnings

    from sb3_microgrid.training import make_env

    conf = tmp_path / "wrapped.yml"
    conf.write_text(
        "Microgrid-v0:\n  n_envs: 2\n  policy: MlpPolicy\n  env_wrapper: [{gymnasium.wrappers.TimeLimit: {max_episode_steps: 24}}]\n"
        "Pendulum-v1:\n  n_envs: 1\n  policy: MlpPolicy\n"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = make_env(load_hyperparams(conf, PPO, env_id="Microgrid-v0"), seed=0)
    assert not [w for w in caught if "render_mode" in str(w.message)]
    assert ours.get_attr("render_mode") == [None, None]
    pendulum = make_env(load_hyperparams(conf, PPO, env_id="Pendulum-v1"), seed=0)
    assert pendulum.get_attr("render_mode") == ["rgb_array"]
