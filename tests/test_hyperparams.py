"""A hyperparameter file never runs code: dotted names resolve only to classes of the toolkit's trusted
packages (or modules trusted on the command line) that subclass what their key expects, refused before
anything is imported; every malformed value is a ``HyperparamsError`` naming its key."""

import re
import sys
import textwrap
from pathlib import Path

import gymnasium
import pytest
import yaml
import torch
from stable_baselines3 import PPO, SAC, TD3, HerReplayBuffer

from sb3_microgrid.callbacks import MicrogridMetricsCallback
from sb3_microgrid.cli import main
from sb3_microgrid.hyperparams import HyperparamsError, load_hyperparams, parse_python
from sb3_microgrid.training import ALGOS
from sb3_microgrid.validation import ValidationCallback
from sb3_microgrid.zoo import file_policy_kwargs

HYPERPARAMS = Path(__file__).parent.parent / "hyperparams"
#: Every shipped file and the algorithms it is for (the README's and the files' own commands).
SHIPPED = {
    "ppo.yml": ("ppo",),
    "twin_ppo.yml": ("twin_ppo",),
    "sac.yml": ("sac", "per_sac"),
    "sac_fast.yml": ("sac", "per_sac"),
    "td3.yml": ("td3", "per_td3"),
    "dyna_sac.yml": ("dyna_sac",),
    "her_sac.yml": ("sac",),
    "residual_ars.yml": ("paired_ars",),
}
TINY_PPO = "Microgrid-v0:\n  n_envs: 1\n  n_timesteps: 64\n  n_steps: 32\n  batch_size: 32\n  n_epochs: 1\n  policy_kwargs: \"dict(net_arch=[8])\"\n"


def write(tmp_path: Path, settings: str, env: str = "Microgrid-v0") -> Path:
    """A file with one section ``env`` holding ``settings`` (YAML lines, unindented)."""
    path = tmp_path / "conf.yml"
    path.write_text(f"{env}:\n" + textwrap.indent(textwrap.dedent(settings), "  "))
    return path


@pytest.fixture
def userpkg(tmp_path, monkeypatch):
    """An importable package of the user's: importing it leaves ``imported`` in ``tmp_path``; its callback
    leaves ``callback_ran`` when training starts."""
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pathlib import Path\n(Path(__file__).parent.parent / 'imported').write_text('yes')\n")
    (pkg / "cbs.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            from stable_baselines3.common.callbacks import BaseCallback

            class StartCallback(BaseCallback):
                def _on_training_start(self):
                    (Path(__file__).parent.parent / "callback_ran").write_text("yes")

                def _on_step(self):
                    return True

            def not_a_class():
                pass
            """
        )
    )
    (pkg / "reexport.py").write_text("from userpkg.cbs import StartCallback\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "imported"
    for name in [m for m in sys.modules if m == "userpkg" or m.startswith("userpkg.")]:
        del sys.modules[name]


# ---- what must keep working -------------------------------------------------------------------------
def test_every_shipped_file_loads_for_its_algorithms():
    assert sorted(p.name for p in HYPERPARAMS.glob("*.yml")) == sorted(SHIPPED)
    for name, algos in SHIPPED.items():
        for algo in algos:
            hp = load_hyperparams(HYPERPARAMS / name, ALGOS[algo])
            assert hp.n_timesteps > 0 and hp.normalize is not None
            assert hp.callbacks == ([(ValidationCallback, {"days": 30, "eval_freq": 100_000, "max_minutes": 15})] if name == "residual_ars.yml" else [(MicrogridMetricsCallback, {})])
    her = load_hyperparams(HYPERPARAMS / "her_sac.yml", SAC)
    assert her.algo_kwargs["replay_buffer_class"] is HerReplayBuffer and her.policy == "MultiInputPolicy"
    assert load_hyperparams(HYPERPARAMS / "td3.yml", TD3).noise == ("normal", 0.1)


def test_classes_resolve_where_their_key_expects_them(tmp_path):
    kwargs = parse_python("dict(activation_fn=th.nn.SiLU, optimizer_class=th.optim.RMSprop, net_arch=dict(pi=[8], vf=[8]))", "policy_kwargs")
    assert kwargs == {"activation_fn": torch.nn.SiLU, "optimizer_class": torch.optim.RMSprop, "net_arch": {"pi": [8], "vf": [8]}}
    path = write(
        tmp_path,
        """
        policy: stable_baselines3.common.policies.ActorCriticPolicy
        policy_kwargs: "dict(features_extractor_class=get_class_by_name('sb3_microgrid.policies.ForecastAttentionExtractor'))"
        normalize: "True"
        env_wrapper: [{gymnasium.wrappers.TimeLimit: {max_episode_steps: 24}}]
        vec_env_wrapper: [{stable_baselines3.common.vec_env.VecFrameStack: {n_stack: 2}}]
        callback: [{stable_baselines3.common.callbacks.StopTrainingOnMaxEpisodes: {max_episodes: 3}}]
        learning_rate: lin_1.0e-3
        """,
    )
    hp = load_hyperparams(path, PPO)
    assert hp.policy.__name__ == "ActorCriticPolicy" and hp.normalize == {}
    # rl_zoo3, once imported by another test, replaces gymnasium's TimeLimit with its subclass: compare with the name now
    assert hp.env_wrappers == [(gymnasium.wrappers.TimeLimit, {"max_episode_steps": 24})]
    assert hp.vec_env_wrappers[0][0].__name__ == "VecFrameStack" and hp.callbacks[0][1] == {"max_episodes": 3}
    assert hp.algo_kwargs["learning_rate"](0.5) == pytest.approx(5e-4)


# ---- dotted names never run code ----------------------------------------------------------------------
def test_train_refuses_a_shell_command_and_a_folder_deletion_before_running_anything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    keep = tmp_path / "keep"
    keep.mkdir()
    for callback in ('[{subprocess.run: {args: "touch pwned", shell: true}}]', f"[{{shutil.rmtree: {{path: '{keep}'}}}}]"):
        conf = tmp_path / "conf.yml"
        conf.write_text(TINY_PPO + f"  callback: {callback}\n")
        assert main(["train", "--algo", "ppo", "--conf", str(conf), "--run-dir", str(tmp_path / "run"), "--timesteps", "32"]) == 2
        with pytest.raises(HyperparamsError, match=r"callback: '(subprocess\.run|shutil\.rmtree)' is not in a trusted package"):
            load_hyperparams(conf, PPO)
    assert not (tmp_path / "pwned").exists() and keep.is_dir()


@pytest.mark.parametrize(
    "settings,match",
    [
        ("callback: userpkg.cbs.StartCallback", r"callback: 'userpkg\.cbs\.StartCallback' is not in a trusted package.*--trust-module"),
        ("env_wrapper: userpkg.Wrapper", "env_wrapper: 'userpkg.Wrapper' is not in a trusted package"),
        ("policy: userpkg.Policy", "policy: 'userpkg.Policy' is not in a trusted package"),
        ('policy_kwargs: "dict(activation_fn=userpkg.Act)"', "policy_kwargs.activation_fn: 'userpkg.Act' is not in a trusted package"),
        ("policy_kwargs: \"dict(features_extractor_class=get_class_by_name('userpkg.X'))\"", "features_extractor_class: 'userpkg.X' is not in"),
        ('policy_kwargs: "dict(ortho_init=userpkg.flag)"', r"policy_kwargs\.ortho_init: class name 'userpkg\.flag' not allowed here"),
        ('normalize: "userpkg.on"', r"normalize: class name 'userpkg\.on' not allowed here"),
    ],
)
def test_untrusted_modules_are_refused_before_import(tmp_path, userpkg, settings, match):
    with pytest.raises(HyperparamsError, match=match):
        load_hyperparams(write(tmp_path, settings), PPO)
    assert not userpkg.exists()  # userpkg/__init__.py never ran


def test_a_package_whose_name_only_begins_like_a_trusted_one_is_refused_before_import(tmp_path, monkeypatch):
    """Trust is by dotted module path: ``sb3_microgrid_x`` is not under ``sb3_microgrid``, nor ``userpkgx`` under a
    trusted ``userpkg``. A check on the bare string prefix would import the look-alike and run its code."""
    marker = tmp_path / "imported"
    for name in ("sb3_microgrid_x", "userpkgx"):
        pkg = tmp_path / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
        (pkg / "cbs.py").write_text(
            "from stable_baselines3.common.callbacks import BaseCallback\n\n"
            "class StartCallback(BaseCallback):\n    def _on_step(self):\n        return True\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        for name, trust in (("sb3_microgrid_x", []), ("userpkgx", ["userpkg"])):
            with pytest.raises(HyperparamsError, match=rf"callback: '{name}\.cbs\.StartCallback' is not in a trusted package"):
                load_hyperparams(write(tmp_path, f"callback: {name}.cbs.StartCallback"), PPO, trust_modules=trust)
            assert not marker.exists(), f"{name} was imported"
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] in ("sb3_microgrid_x", "userpkgx")]:
            del sys.modules[name]


def test_a_module_trusted_by_name_is_imported_and_its_callback_runs(tmp_path, userpkg):
    conf = tmp_path / "conf.yml"
    conf.write_text(TINY_PPO + "  callback: userpkg.cbs.StartCallback\n")
    assert load_hyperparams(conf, PPO, trust_modules=["userpkg"]).callbacks[0][0].__name__ == "StartCallback"
    assert userpkg.exists()
    args = ["train", "--algo", "ppo", "--conf", str(conf), "--run-dir", str(tmp_path / "run"), "--timesteps", "32"]
    assert main([*args, "--trust-module", "other", "--trust-module", "userpkg"]) == 0
    assert (tmp_path / "callback_ran").exists()
    assert main([*args[:-4], "--run-dir", str(tmp_path / "run2"), "--trust-module", "user pkg"]) == 2  # not a module name
    # trusting a submodule trusts only classes defined under it, not what it imports from elsewhere
    conf.write_text(TINY_PPO + "  callback: userpkg.reexport.StartCallback\n")
    with pytest.raises(HyperparamsError, match=r"defined in 'userpkg\.cbs', not in a trusted package"):
        load_hyperparams(conf, PPO, trust_modules=["userpkg.reexport"])


@pytest.mark.parametrize(
    "settings,match",
    [
        # plain functions and modules are not classes
        ("policy: os.system", "policy: 'os.system' is not in a trusted package"),
        ("policy: torch.nn.functional.relu", r"policy: 'torch\.nn\.functional\.relu' is not a class"),
        ('policy_kwargs: "dict(activation_fn=nn.functional.relu)"', r"policy_kwargs\.activation_fn: 'torch\.nn\.functional\.relu' is not a class"),
        ('policy_kwargs: "dict(activation_fn=os.system)"', "policy_kwargs.activation_fn: 'os.system' is not in a trusted package"),
        ("callback: sb3_microgrid.training.shutil.rmtree", r"'sb3_microgrid\.training\.shutil\.rmtree' reaches module 'shutil'"),
        ("callback: sb3_microgrid.callbacks.BaseCallback.__subclasses__", "is not a dotted class name"),
        # classes that are not what their key expects
        ("policy: stable_baselines3.common.callbacks.BaseCallback", "policy: .* is not a subclass of BasePolicy"),
        ("callback: torch.nn.ReLU", r"callback: 'torch\.nn\.ReLU' is not a subclass of BaseCallback"),
        ("env_wrapper: stable_baselines3.common.vec_env.VecNormalize", "env_wrapper: .* is not a subclass of Wrapper"),
        ("vec_env_wrapper: gymnasium.wrappers.TimeLimit", "vec_env_wrapper: .* is not a subclass of VecEnvWrapper"),
        ('policy_kwargs: "dict(activation_fn=sb3_microgrid.callbacks.MicrogridMetricsCallback)"', "activation_fn: .* is not a subclass of Module"),
        ('policy_kwargs: "dict(features_extractor_class=nn.ReLU)"', "features_extractor_class: .* is not a subclass of BaseFeaturesExtractor"),
        ("rollout_buffer_class: stable_baselines3.common.buffers.ReplayBuffer", "rollout_buffer_class: .* is not a subclass of RolloutBuffer"),
        ("callback: sb3_microgrid.callbacks.NoSuchCallback", "cannot import 'sb3_microgrid.callbacks.NoSuchCallback'"),
        # dotted calls and other code in Python strings
        ('policy_kwargs: "dict(activation_fn=os.system(\'touch pwned\'))"', r"policy_kwargs\.activation_fn: call os\.system\(\.\.\.\) is not allowed"),
        ("normalize: \"os.system('touch pwned')\"", r"normalize: call os\.system\(\.\.\.\) is not allowed"),
        ('policy_kwargs: "dict(activation_fn=nn.ReLU())"', r"call torch\.nn\.ReLU\(\.\.\.\)|call nn\.ReLU\(\.\.\.\) is not allowed"),
        ("policy_kwargs: \"dict(a=__import__('os').system('touch pwned'))\"", r"policy_kwargs\.a: call \?\(\.\.\.\) is not allowed"),
        ("policy_kwargs: \"dict(activation_fn=get_class_by_name('os.system'))\"", "'os.system' is not in a trusted package"),
        ('policy_kwargs: "dict(a=this.s)"', r"policy_kwargs\.a: class name 'this\.s' not allowed here"),
    ],
)
def test_dotted_names_must_be_trusted_classes_of_the_expected_kind(tmp_path, monkeypatch, settings, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HyperparamsError, match=match):
        load_hyperparams(write(tmp_path, settings), PPO)
    assert not (tmp_path / "pwned").exists()


# ---- every malformed value is named -------------------------------------------------------------------
@pytest.mark.parametrize(
    "settings,match",
    [
        # keys the command line sets, or that would be ignored
        ("seed: 3", "seed: set by the command line"),
        ("device: cuda", "device: set by the command line"),
        ("tensorboard_log: /tmp/tb", "tensorboard_log: set by the command line"),
        ("verbose: 2", "verbose: set by sb3-microgrid train"),
        ("monitor_kwargs: {info_keywords: [cost]}", "monitor_kwargs: not supported"),
        ("frame_stack: 4", "frame_stack: not supported"),
        ("learning_rat: 0.1", r"unknown key\(s\) \['learning_rat'\] for PPO"),
        # out of range
        ("clip_range: -1", r"clip_range: -1 is out of range; allowed: a number in \(0, inf\)"),
        ("gamma: 1.5", r"gamma: 1.5 is out of range; allowed: a number in \(0, 1\]"),
        ("gamma: 0", "gamma: 0 is out of range"),
        ("gae_lambda: -0.1", "gae_lambda: -0.1 is out of range"),
        ("n_steps: 0", r"n_steps: 0 is out of range; allowed: an integer in \[1, inf\)"),
        ("batch_size: 2.5", "batch_size: 2.5 is out of range"),
        ("ent_coef: -0.01", "ent_coef: -0.01 is out of range"),
        ("ent_coef: auto", "ent_coef must be a number"),  # PPO's ent_coef is a number
        ("learning_rate: .nan", "learning_rate must be a finite number"),
        ("learning_rate: 3e-4", r"learning_rate: expected a number or lin_<start>, got '3e-4' \(YAML reads 3e-4 as a string"),
        ("learning_rate: lin_-1", "learning_rate: -1.0 is out of range"),
        ("learning_rate: lin_abc", "learning_rate: expected a number or lin_<start>"),
        ("n_envs: 0", "n_envs: 0 is out of range"),
        ("n_envs: 4097", r"n_envs: 4097 is out of range; allowed: an integer in \[1, 4096\]"),  # a typo, not a machine out of memory
        ("n_envs: abc", "n_envs must be a number, got the string 'abc'"),
        ("n_envs: true", "n_envs must be a finite number, got True"),
        ("n_timesteps: -5", "n_timesteps: -5 is out of range"),
        ("target_kl: 0", "target_kl: 0 is out of range"),
        ("use_sde: 'yes'", "use_sde: expected true or false"),
        ("noise_type: normal", "noise_type: PPO takes no action noise"),
        # wrong types and shapes
        ("normalize: 1", "normalize: expected true, false or a mapping"),
        ("normalize: \"'yes'\"", "normalize: expected true, false or a mapping"),
        ('normalize: "dict(norm_obs=True, bogus=1)"', r"normalize: VecNormalize\(\.\.\.\): got an unexpected keyword argument 'bogus'"),
        ("policy: 5", "policy: expected a policy name"),
        ("policy: NoSuchPolicy", r"policy: 'NoSuchPolicy' is not a policy of PPO; allowed: \['CnnPolicy', 'MlpPolicy', 'MultiInputPolicy'\]"),
        ('policy_kwargs: "{**a}"', r"policy_kwargs: keys must be strings \(no \*\* unpacking\)"),
        ("policy_kwargs: \"dict(**{'a': 1})\"", "policy_kwargs: keys must be strings"),
        ('policy_kwargs: "{nn.ReLU: 1}"', "policy_kwargs: keys must be strings"),
        ('policy_kwargs: "dict(log_std_init=1, log_std_init=2)"', "policy_kwargs: key 'log_std_init' given twice"),
        ("policy_kwargs: \"dict(log_std_init=-'a')\"", r"policy_kwargs\.log_std_init: \"-'a'\" is not allowed"),
        ('policy_kwargs: "dict(net_arch=[64"', "policy_kwargs: cannot parse"),
        ('policy_kwargs: "' + "[" * 250 + "]" * 250 + '"', "policy_kwargs: cannot parse"),
        ("policy_kwargs: 5", "policy_kwargs: expected a mapping"),
        ("policy_kwargs: [1, 2]", "policy_kwargs: expected a mapping"),
        ('policy_kwargs: "dict(bogus=1)"', r"policy_kwargs: unknown key\(s\) \['bogus'\] for ActorCriticPolicy"),
        ("policy_kwargs: \"dict(net_arch=[64, 'a'])\"", "policy_kwargs.net_arch: expected a list of layer sizes"),
        ('policy_kwargs: "dict(net_arch=dict(pi=[0]))"', "policy_kwargs.net_arch: expected a list of layer sizes"),
        ("policy_kwargs: {activation_fn: nn.Tanh}", r"policy_kwargs\.activation_fn: expected a class, got 'nn\.Tanh'; write policy_kwargs as a string"),
        ("env_kwargs: abc", "env_kwargs: expected a mapping"),
        # the held-out days, the run's seed and code-only arguments are not the file's
        ("env_kwargs: {split: test}", "env_kwargs.split: training uses the train split only"),
        ("env_kwargs: {split: validation}", "env_kwargs.split: training uses the train split only"),
        ("env_kwargs: {seed: 3}", r"env_kwargs.seed: set by the command line \(--seed\)"),
        ("env_kwargs: {data: foo}", "env_kwargs.data: loaded data is passed in code"),
        # VecNormalize's numbers and booleans
        ("normalize: \"{'norm_obs': True, 'clip_obs': -1.0}\"", r"normalize.clip_obs: -1.0 is out of range; allowed: a number in \(0, inf\)"),
        ('normalize: "dict(clip_reward=0)"', "normalize.clip_reward: 0 is out of range"),
        ('normalize: "dict(epsilon=-1e-8)"', "normalize.epsilon: -1e-08 is out of range"),
        ('normalize: "dict(gamma=1.5)"', r"normalize.gamma: 1.5 is out of range; allowed: a number in \[0, 1\]"),
        ("normalize: {norm_obs: 'yes'}", "normalize.norm_obs: expected true or false, got 'yes'"),
        ("normalize: {norm_reward: 1}", "normalize.norm_reward: expected true or false"),
        # an on-policy net_arch: pi and vf (qf would leave a linear value function)
        ('policy_kwargs: "dict(net_arch=dict(pi=[64], qf=[64]))"', r"net_arch: expected .* or dict\(pi=\[\.\.\.\], vf=\[\.\.\.\]\) for ActorCriticPolicy"),
        ("callback: [5]", "callback: each entry is a dotted class name or a one-key mapping"),
        ("callback: [{a: 1, b: 2}]", "callback: each entry is a dotted class name or a one-key mapping"),
        ("callback: [{sb3_microgrid.callbacks.MicrogridMetricsCallback: [1]}]", "callback.sb3_microgrid.callbacks.MicrogridMetricsCallback: expected a mapping"),
        ("callback: [{sb3_microgrid.callbacks.MicrogridMetricsCallback: {bogus: 1}}]", "MicrogridMetricsCallback.*got an unexpected keyword argument 'bogus'"),
        ("rollout_buffer_class: 5", "rollout_buffer_class: expected a class name"),
    ],
)
def test_malformed_values_name_their_key(tmp_path, settings, match):
    with pytest.raises(HyperparamsError, match=match) as err:
        load_hyperparams(write(tmp_path, settings), PPO)
    assert str(err.value).startswith(f"{tmp_path / 'conf.yml'} [Microgrid-v0]: ")


@pytest.mark.parametrize(
    "settings,match",
    [
        ("ent_coef: auto_x", r"ent_coef: 'auto_x' is neither a number in \[0, 100\] nor auto / auto_<initial value in \(0, 100\]>"),
        ("ent_coef: auto_0", "ent_coef: 'auto_0' is neither"),
        ("ent_coef: auto_1000", "ent_coef: 'auto_1000' is neither"),  # the initial value is bounded as a fixed one
        ("tau: 0", "tau: 0 is out of range"),
        ("train_freq: [1, day]", r"train_freq: expected n or \[n, step\|episode\]"),
        ("train_freq: 0", "train_freq: 0 is out of range"),
        ("noise_std: 0.1", "noise_type: None unknown"),
        ("buffer_size: 0", "buffer_size: 0 is out of range"),
        ("buffer_size: !!float 1e12", r"buffer_size: 1000000000000.0 is out of range; allowed: an integer in \[1, 1e\+08\]"),
        ('policy_kwargs: "dict(net_arch=dict(pi=[64], vf=[64]))"', r"net_arch: expected .* dict\(pi=\[\.\.\.\], qf=\[\.\.\.\]\) \(both keys needed\) for SACPolicy"),
        ('policy_kwargs: "dict(net_arch=dict(pi=[64]))"', r"\(both keys needed\) for SACPolicy"),
        ("replay_buffer_class: stable_baselines3.common.buffers.RolloutBuffer", "replay_buffer_class: .* is not a subclass of ReplayBuffer"),
    ],
)
def test_off_policy_values_name_their_key(tmp_path, settings, match):
    with pytest.raises(HyperparamsError, match=match):
        load_hyperparams(write(tmp_path, settings), SAC)


@pytest.mark.parametrize(
    "settings,match",
    [
        ("n_delta: 0", r"n_delta: 0 is out of range; allowed: an integer in \[1, inf\)"),  # would never finish
        ("n_eval_episodes: 0", "n_eval_episodes: 0 is out of range"),  # would never finish
        ("delta_std: -0.5", r"delta_std: -0.5 is out of range; allowed: a number in \(0, inf\)"),
        ("delta_std: lin_-0.5", "delta_std: -0.5 is out of range"),
        ("n_delta: 2\nn_top: 3", r"n_top: 3 is out of range; allowed: an integer in \[1, n_delta = 2\]"),
        ("n_top: 9", r"n_top: 9 is out of range; allowed: an integer in \[1, n_delta = 8\]"),  # ARS's default n_delta
        ("n_top: 0", "n_top: 0 is out of range"),
    ],
)
def test_ars_values_name_their_key(tmp_path, settings, match):
    with pytest.raises(HyperparamsError, match=match):
        load_hyperparams(write(tmp_path, "policy: LinearPolicy\n" + settings), ALGOS["ars"])


def test_net_arch_dicts_with_the_policy_keys_load(tmp_path):
    for algo, arch in (("ppo", "dict(pi=[8], vf=[8])"), ("ppo", "dict(pi=[8])"), ("sac", "dict(pi=[8], qf=[8])"), ("ars", "[8]")):
        hp = load_hyperparams(write(tmp_path, f'policy_kwargs: "dict(net_arch={arch})"'), ALGOS[algo])
        assert hp.algo_kwargs["policy_kwargs"]["net_arch"] == eval(arch)  # noqa: S307 - a literal of this test
    with pytest.raises(HyperparamsError, match=r"net_arch: expected a list of layer sizes >= 1 for ARSPolicy, got \{'pi': \[8\]\}"):
        load_hyperparams(write(tmp_path, 'policy_kwargs: "dict(net_arch=dict(pi=[8]))"'), ALGOS["ars"])  # ARS: a list only


def test_ars_delta_std_schedule_trains(tmp_path):
    # the zoo's lin_<start> for delta_std, as for learning_rate: ARS asserted on the string before
    path = write(tmp_path, "n_envs: 1\npolicy: LinearPolicy\nn_delta: 1\nn_eval_episodes: 1\ndelta_std: lin_0.05\n")
    hp = load_hyperparams(path, ALGOS["ars"])
    assert hp.algo_kwargs["delta_std"](1.0) == pytest.approx(0.05)
    assert main(["train", "--algo", "ars", "--conf", str(path), "--run-dir", str(tmp_path / "run"), "--timesteps", "48"]) == 0


def test_off_policy_special_forms_are_converted(tmp_path):
    hp = load_hyperparams(write(tmp_path, "ent_coef: auto_0.1\ntrain_freq: [1, episode]\ntarget_entropy: auto\n"), SAC)
    assert hp.algo_kwargs["ent_coef"] == "auto_0.1" and hp.algo_kwargs["train_freq"] == (1, "episode")
    hp = load_hyperparams(write(tmp_path, "n_timesteps: !!float 1e5\ngamma: 1\ntarget_kl: null\nclip_range_vf: null\nn_envs: 4096\n"), PPO)
    assert hp.n_timesteps == 100_000 and isinstance(hp.n_timesteps, int) and hp.n_envs == 4096


@pytest.mark.parametrize(
    "text,match",
    [
        ("just a string", "expected a mapping from env ids to their settings"),
        ("- Microgrid-v0\n- n_envs: 2\n", "expected a mapping from env ids"),
        ("", "expected a mapping from env ids"),
        ("Microgrid-v0: 5\n", r"\[Microgrid-v0\]: expected a mapping of setting names"),
        ("Microgrid-v0: {1: 2}\n", r"\[Microgrid-v0\]: expected a mapping of setting names"),
        ("Microgrid-v0: {a: [}\n", "cannot read a YAML file"),
        ("Microgrid-v0: !!python/object/apply:os.system ['touch pwned']\n", "cannot read a YAML file"),
        ("A: {}\nB: {}\n", r"holds sections \['A', 'B'\]; say which env to train"),
        # PyYAML would keep the last of a repeated key (or section) without a word
        ("Microgrid-v0:\n  learning_rate: 0.001\n  learning_rate: 0.1\n", r"(?s)cannot read a YAML file.*found the key 'learning_rate' twice.*line 3"),
        ("Microgrid-v0: {}\nMicrogrid-v0: {n_envs: 2}\n", "found the key 'Microgrid-v0' twice"),
    ],
)
def test_malformed_files_are_named(tmp_path, monkeypatch, text, match):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "conf.yml"
    path.write_text(text)
    with pytest.raises(HyperparamsError, match=match):
        load_hyperparams(path, PPO)
    with pytest.raises(HyperparamsError, match="cannot read a YAML file"):
        load_hyperparams(tmp_path / "missing.yml", PPO)
    assert not (tmp_path / "pwned").exists()


def test_zoo_launcher_trusts_its_gym_packages(tmp_path, userpkg):
    conf = write(tmp_path, "policy_kwargs: \"dict(features_extractor_class=get_class_by_name('userpkg.cbs.Extractor'))\"")
    argv = ["--env", "Microgrid-v0", "--conf-file", str(conf)]
    with pytest.raises(HyperparamsError, match="'userpkg.cbs.Extractor' is not in a trusted package"):
        file_policy_kwargs(argv)
    assert not userpkg.exists()
    (tmp_path / "userpkg" / "cbs.py").write_text(
        "from stable_baselines3.common.torch_layers import FlattenExtractor\nclass Extractor(FlattenExtractor):\n    pass\n"
    )
    kwargs = file_policy_kwargs([*argv, "--gym-packages", "sb3_microgrid", "userpkg", "--num-threads", "1"])
    assert kwargs["features_extractor_class"].__name__ == "Extractor"


@pytest.mark.parametrize("section", ["evilmod:Microgrid-v0", "NoSuchEnv-v0"])
def test_the_section_name_must_be_a_registered_env_id(tmp_path, section):
    # gymnasium.make("module:Env") imports module: a section name is an env id, never a module
    marker = tmp_path / "imported"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    sys.path.insert(0, str(tmp_path))
    try:
        path = write(tmp_path, "n_envs: 1", env=section)
        with pytest.raises(HyperparamsError, match="env id"):
            load_hyperparams(path, PPO)
        assert main(["train", "--algo", "ppo", "--conf", str(path), "--run-dir", str(tmp_path / "run"), "--timesteps", "24"]) == 2
    finally:
        sys.path.remove(str(tmp_path))
    assert not marker.exists() and not (tmp_path / "run").exists()


# ---- values SB3 would fail on deep inside, train NaN weights with, or run differently ------------------------
BIG = "1" + "0" * 400  # an int beyond the float range: math.isfinite raised OverflowError inside the checker


@pytest.mark.parametrize(
    "algo,settings,match",
    [
        # numbers beyond the float range, NaN and inf in any algorithm argument, nested ones too
        ("ppo", f"n_steps: {BIG}", r"n_steps must be a finite number, got an integer of about 1e400, beyond the float range; allowed: an integer in \[1, inf\)"),
        ("ppo", f"policy_kwargs: {{log_std_init: {BIG}}}", "policy_kwargs.log_std_init must be a finite number, got an integer of about 1e400"),
        ("ppo", "n_steps: 1" + "0" * 5000, "cannot read a YAML file: Exceeds the limit"),  # over Python's int-from-string limit
        ("ars", "alive_bonus_offset: .nan", r"alive_bonus_offset must be a finite number, got nan; allowed: a number in \(-inf, inf\)"),
        ("sac", "target_entropy: .nan", "target_entropy must be a finite number, got nan"),
        ("sac", "target_entropy: .inf", "target_entropy must be a finite number, got inf"),
        ("ppo", "policy_kwargs: {log_std_init: .nan}", "policy_kwargs.log_std_init must be a finite number, got nan"),
        ("ppo", 'policy_kwargs: "dict(log_std_init=1e999)"', "policy_kwargs.log_std_init must be a finite number, got inf"),
        ("ppo", "policy_kwargs: {optimizer_kwargs: {betas: [0.9, .nan]}}", r"policy_kwargs\.optimizer_kwargs\.betas\[1\] must be a finite number"),
        ("a2c", "rms_prop_eps: .nan", "rms_prop_eps must be a finite number"),
        # coefficients and learning rates far beyond any use overflow the loss or the optimizer
        ("ppo", "vf_coef: 1.0e+308", r"vf_coef: 1e\+308 is out of range; allowed: a number in \[0, 100\]"),
        ("ppo", "ent_coef: 1.0e+308", r"ent_coef: 1e\+308 is out of range; allowed: a number in \[0, 100\]"),
        ("sac", "ent_coef: 101", "ent_coef: 101 is out of range"),
        ("ppo", "learning_rate: 1.0e+300", r"learning_rate: 1e\+300 is out of range; allowed: a number in \(0, 1\]"),
        ("sac", "learning_rate: lin_2", "learning_rate: 2.0 is out of range"),
        ("ppo", "stats_window_size: -1", r"stats_window_size: -1 is out of range; allowed: an integer in \[1, inf\)"),
        ("sac", "stats_window_size: 0", "stats_window_size: 0 is out of range"),
        # rules between keys
        ("ppo", "n_envs: 1\nn_steps: 1", r"n_steps: 1 is out of range with n_envs = 1; allowed: n_steps \* n_envs >= 2 \(normalize_advantage is true\)"),
        ("a2c", "n_envs: 1\nn_steps: 1\nnormalize_advantage: true", "n_steps: 1 is out of range with n_envs = 1"),
        ("ppo", "n_steps: 8\nbatch_size: 1", r"batch_size: 1 is out of range; allowed: an integer in \[2, inf\)"),
        ("ppo_lstm", "policy: MlpLstmPolicy\nn_steps: 8\nbatch_size: 1", "batch_size: 1 is out of range"),  # NaN advantages, no assert
        ("ppo", "gamma: 1.0\nnormalize: {gamma: 0.9}", r"normalize.gamma: 0.9 differs from gamma: 1.0, which VecNormalize discounts"),
        ("sac", "n_envs: 2\ntrain_freq: [1, episode]", r"train_freq: \[1, episode\] needs n_envs = 1, got n_envs = 2"),
        ("tqc", "top_quantiles_to_drop_per_net: 100", r"top_quantiles_to_drop_per_net: 100 is out of range; allowed: an integer in \[0, n_quantiles = 25\)"),
        ("tqc", "top_quantiles_to_drop_per_net: 5\npolicy_kwargs: {n_quantiles: 5}", r"an integer in \[0, n_quantiles = 5\)"),
        ("tqc", "policy_kwargs: {n_quantiles: 0}", "policy_kwargs.n_quantiles: 0 is out of range"),
        ("sac", "policy_kwargs: {n_critics: 0}", "policy_kwargs.n_critics: 0 is out of range"),
        # a class of the right base that the algorithm, the env or SB3's train loop cannot use
        ("ppo", "policy: stable_baselines3.sac.policies.SACPolicy", r"policy: .*SACPolicy' is not a policy of PPO; allowed: its aliases or a subclass of ActorCriticPolicy"),
        ("sac", "policy: stable_baselines3.common.policies.ActorCriticPolicy", "is not a policy of SAC; allowed: its aliases or a subclass of SACPolicy"),
        ("sac", "replay_buffer_class: stable_baselines3.HerReplayBuffer", "replay_buffer_class: HerReplayBuffer needs Dict observations, but Microgrid-v0 observes a Box vector"),
        ("sac", "replay_buffer_class: HerReplayBuffer", "replay_buffer_class: HerReplayBuffer needs Dict observations"),
        ("sac", "replay_buffer_class: stable_baselines3.common.buffers.DictReplayBuffer", "replay_buffer_class: DictReplayBuffer needs Dict observations"),
        ("ppo", "rollout_buffer_class: stable_baselines3.common.buffers.DictRolloutBuffer", "rollout_buffer_class: DictRolloutBuffer needs Dict observations"),
        ("ppo", 'policy_kwargs: "dict(features_extractor_class=stable_baselines3.common.torch_layers.NatureCNN)"', "features_extractor_class: NatureCNN needs image observations"),
        ("ppo", "policy: CnnPolicy", "policy: ActorCriticCnnPolicy's features extractor: NatureCNN needs image observations"),
        ("sac", "policy: MultiInputPolicy", "policy: MultiInputPolicy's features extractor: CombinedExtractor needs Dict observations"),
        ("ppo", "vec_env_wrapper: stable_baselines3.common.vec_env.VecTransposeImage", "vec_env_wrapper: VecTransposeImage needs image observations"),
        ("ppo", "vec_env_wrapper: [{stable_baselines3.common.vec_env.VecFrameStack: {n_stack: 0}}]",
         r"VecFrameStack\.n_stack: 0 is out of range; allowed: an integer in \[1, inf\)"),  # fmt: skip
        ("trpo", "line_search_shrinking_factor: 2.0", r"line_search_shrinking_factor: 2\.0 is out of range; allowed: a number in \(0, 1\)"),
        ("trpo", "n_critic_updates: 0", r"n_critic_updates: 0 is out of range; allowed: an integer in \[1, inf\)"),
        ("trpo", "cg_max_steps: 0", "cg_max_steps: 0 is out of range"),
        ("ppo", 'policy_kwargs: "dict(optimizer_class=torch.optim.LBFGS)"', r"'torch\.optim\.LBFGS' cannot be used: its step\(\) needs a closure"),
        ("ppo", 'policy_kwargs: "dict(optimizer_class=torch.optim.SparseAdam)"', "'torch.optim.SparseAdam' cannot be used: it takes sparse gradients only"),
        ("ppo", 'policy_kwargs: "dict(optimizer_class=torch.optim.Optimizer)"', r"cannot be used: it is abstract \(no step\(\)\); optimizer_class takes a concrete subclass of Optimizer"),
        ("ppo", 'policy_kwargs: "dict(activation_fn=nn.Module)"', r"activation_fn: 'torch\.nn\.Module' cannot be used: it is abstract \(no forward\(\)\)"),
        ("ppo", 'policy_kwargs: "dict(activation_fn=nn.ModuleList)"', r"cannot be used: it is abstract \(no forward\(\)\)"),
        ("ppo", 'policy_kwargs: "dict(features_extractor_class=stable_baselines3.common.torch_layers.BaseFeaturesExtractor)"', "it is abstract"),
        ("ppo", "callback: stable_baselines3.common.callbacks.BaseCallback", r"callback: .* cannot be used: it is abstract \(no _on_step\)"),
    ],
)
def test_train_refuses_what_sb3_would_fail_on_before_writing_anything(tmp_path, capsys, algo, settings, match):
    path = write(tmp_path, settings)
    assert main(["train", "--algo", algo, "--conf", str(path), "--run-dir", str(tmp_path / "run"), "--timesteps", "64"]) == 2
    assert re.search(match, capsys.readouterr().err) and not (tmp_path / "run").exists()


def test_values_next_to_the_new_limits_load(tmp_path):
    load = lambda algo, settings, env="Microgrid-v0": load_hyperparams(write(tmp_path, settings, env), ALGOS[algo])  # noqa: E731
    assert load("dyna_sac", "max_disagreement: .inf").algo_kwargs["max_disagreement"] == float("inf")  # keeps every imagined transition
    assert load("ppo", "learning_rate: 1\nvf_coef: 100\nent_coef: 100\nn_envs: 2\nn_steps: 1\nbatch_size: 2").algo_kwargs["n_steps"] == 1
    assert load("sac", "ent_coef: auto_100\nstats_window_size: 1").algo_kwargs["ent_coef"] == "auto_100"
    assert load("a2c", "n_envs: 1\nn_steps: 1").algo_kwargs["n_steps"] == 1  # A2C does not normalise advantages by default
    assert load("trpo", "n_steps: 8\nbatch_size: 1").algo_kwargs["batch_size"] == 1  # TRPO normalises over the whole rollout
    assert load("tqc", "top_quantiles_to_drop_per_net: 24").algo_kwargs["top_quantiles_to_drop_per_net"] == 24
    assert load("tqc", "top_quantiles_to_drop_per_net: 30\npolicy_kwargs: {n_quantiles: 35}").algo_kwargs["top_quantiles_to_drop_per_net"] == 30
    # a wrapper may change the observations: the env's kind is then unknown before it is built
    wrapped = load("sac", "replay_buffer_class: HerReplayBuffer\nenv_wrapper: [{gymnasium.wrappers.TimeLimit: {max_episode_steps: 24}}]")
    assert wrapped.algo_kwargs["replay_buffer_class"] is HerReplayBuffer
    assert load("ppo", "policy: MultiInputPolicy", env="MicrogridGoal-v0").policy == "MultiInputPolicy"
    # an integer comes back as written, not rounded through a float
    assert load("ppo", f"n_timesteps: {2**53 + 1}").n_timesteps == 2**53 + 1


def test_a_value_the_constructors_refuse_is_named_and_writes_nothing(tmp_path, capsys):
    path = write(tmp_path, "n_envs: 1\nenv_kwargs: {scenario: {base: campus, battery: {capacity_kwh: -5}}}")
    assert main(["train", "--algo", "ppo", "--conf", str(path), "--run-dir", str(tmp_path / "run"), "--timesteps", "24"]) == 2
    assert "env_kwargs" in capsys.readouterr().err and not (tmp_path / "run").exists()


def _alias_bomb(depth: int) -> str:
    """About 60 bytes a level; each level lists the previous one ten times: 10**depth values."""
    levels = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, depth)]
    return "Microgrid-v0:\n" + "".join(f"  x{line}\n" for line in levels) + f"  n_envs: *a{depth - 1}\n"


def test_an_alias_bomb_is_refused_before_any_walk_over_it(tmp_path):
    """564 bytes of nested aliases held the checker for minutes (its error message built the value's whole repr);
    anchors and merge keys as zoo files use them still read."""
    path = tmp_path / "bomb.yml"
    path.write_text(_alias_bomb(9))
    with pytest.raises(HyperparamsError, match="expands to more than 100,000 values"):
        load_hyperparams(path, PPO)
    path.write_text("defaults: &defaults\n  n_envs: 2\n  policy: MlpPolicy\nMicrogrid-v0:\n  <<: *defaults\n  n_steps: 64\n")
    hp = load_hyperparams(path, PPO, "Microgrid-v0")
    assert hp.n_envs == 2 and hp.algo_kwargs["n_steps"] == 64


def test_the_alias_cap_holds_just_above_it_and_for_saved_run_files():
    """A million values (depth 6) is refused too, a document just under the cap reads, and a run's saved files (read
    with their own loader) are capped the same way."""
    from sb3_microgrid.common.yaml_files import MAX_VALUES, SavedRunLoader, load_yaml

    with pytest.raises(yaml.YAMLError, match="expands to more than 100,000 values"):
        load_yaml(_alias_bomb(6))
    with pytest.raises(yaml.YAMLError, match="expands to more than 100,000 values"):
        yaml.load(_alias_bomb(9), Loader=SavedRunLoader)  # noqa: S506
    under = "a: &a [" + ", ".join(["1"] * 999) + "]\nb: [" + ", ".join(["*a"] * ((MAX_VALUES - 1010) // 1000)) + "]\n"
    assert len(load_yaml(under)["b"]) == (MAX_VALUES - 1010) // 1000


@pytest.mark.parametrize(
    "buffer", ["stable_baselines3.common.buffers.ReplayBuffer", "sb3_microgrid.buffers.PrioritizedReplayBuffer"]
)
def test_a_plain_replay_buffer_on_the_goal_env_is_refused_naming_the_observation(tmp_path, capsys, buffer):
    """SB3 failed with a vague message on the Dict observations; the Dict buffers (HER) still load there."""
    path = write(tmp_path, f"policy: MultiInputPolicy\nreplay_buffer_class: {buffer}", env="MicrogridGoal-v0")
    assert main(["train", "--algo", "sac", "--conf", str(path), "--run-dir", str(tmp_path / "run"), "--timesteps", "64"]) == 2
    assert f"replay_buffer_class: {buffer.rsplit('.', 1)[1]} needs Box vector observations, but MicrogridGoal-v0 observes a Dict" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    load_hyperparams(write(tmp_path, "policy: MultiInputPolicy\nreplay_buffer_class: HerReplayBuffer", env="MicrogridGoal-v0"), SAC)
