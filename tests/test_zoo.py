"""The rl_zoo3 launcher: our algorithms in the zoo's registries, each with the -optimize sampler of the zoo
algorithm it extends, keeping the file's policy_kwargs; the zoo's own train, -optimize and enjoy run end to
end (slow); files and study trials that would make the zoo run code are refused before it starts, and the zoo
reads the file that was checked. Sweeps on a shared study: tests/test_sweeps.py."""

import argparse
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import rl_zoo3
import rl_zoo3.enjoy
import rl_zoo3.train
import yaml
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER

from sb3_microgrid.algos import ALGOS
from sb3_microgrid.envs import MicrogridEnv
from sb3_microgrid.hyperparams import constructor_parameters
from sb3_microgrid.policies import ForecastAttentionExtractor
from sb3_microgrid.zoo import SavedRunLoader, check_inputs, main, register, study_storage, zoo_base

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
ZOO_BASE = {"twin_ppo": "ppo", "reptile": "ppo", "dyna_sac": "sac", "per_sac": "sac", "per_td3": "td3", "epsilon_sac": "sac",
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


@pytest.mark.parametrize(("extra", "expected"), [
    ([], {"scenario": {"base": "campus", "reward": {"exogenous_baseline": True}}}),
    (["--hyperparams", "env_kwargs:dict(scenario='campus_tod')"], {"scenario": "campus_tod"}),
    (["--env-kwargs", "scenario:'campus_tod'"], {"scenario": "campus_tod"}),
    (["--eval-env-kwargs", "split:'validation'"], {"split": "validation"}),
])  # fmt: skip
def test_the_zoo_evaluation_env_scores_the_scenario_trained_on(tmp_path, monkeypatch, extra, expected):
    # rl_zoo3 2.9 copies the training env's arguments for its evaluation env before it reads the file and --hyperparams
    from rl_zoo3.exp_manager import ExperimentManager

    conf = tmp_path / "conf.yml"
    conf.write_text(TINY + "  env_kwargs:\n    scenario: {base: campus, reward: {exogenous_baseline: true}}\n")
    seen = []

    def stop(self, *args, **kwargs):  # the arguments both envs get, then no training
        seen.append((self.env_kwargs, self.eval_env_kwargs))
        raise KeyboardInterrupt

    monkeypatch.setattr(ExperimentManager, "create_log_folder", stop)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(KeyboardInterrupt):
        main([*_train_argv("ppo", conf, tmp_path, "--num-threads", "1", "--eval-freq", "32"), *extra])
    (trained, evaluated), = seen
    assert evaluated == expected and (extra[:1] == ["--eval-env-kwargs"] or trained == expected)


# ---- files that would make the zoo run code are refused before the zoo runs --------------------------------
#: A section the zoo trains in a few seconds; each case below adds one hostile field to it.
TINY = "Microgrid-v0:\n  n_envs: 1\n  n_timesteps: 64\n  policy: 'MlpPolicy'\n  n_steps: 32\n  batch_size: 32\n"
#: Python that creates the file MARKER when evaluated (MARKER is replaced by a path under tmp_path).
TOUCH = "__import__('pathlib').Path('MARKER').touch()"
#: A module that creates MARKER when imported, with classes of every kind a wrapper or policy key expects.
EVIL_MODULE = f"""
import gymnasium as gym
from stable_baselines3.common.vec_env import VecEnvWrapper
from stable_baselines3.common.policies import ActorCriticPolicy
{TOUCH}
class Wrapper(gym.Wrapper):
    pass
class VecWrapper(VecEnvWrapper):
    def reset(self):
        return self.venv.reset()
    def step_wait(self):
        return self.venv.step_wait()
class Policy(ActorCriticPolicy):
    pass
"""
#: Hostile train files: (algorithm, what the section adds, the field the refusal names).
HOSTILE_CONFS = {
    "normalize eval": ("ppo", f'  normalize: "{TOUCH} or True"\n', "normalize"),
    "policy_kwargs eval": ("ppo", f'  policy_kwargs: "dict(net_arch=[8], ortho_init={TOUCH})"\n', "policy_kwargs"),
    "monitor_kwargs eval": ("ppo", f'  monitor_kwargs: "{TOUCH} or {{}}"\n', "monitor_kwargs"),
    "replay_buffer_kwargs eval": ("sac", f'  replay_buffer_kwargs: "dict(handle_timeout_termination={TOUCH} or True)"\n', "replay_buffer_kwargs"),
    "callback os.system": ("ppo", "  callback:\n    - os.system: {command: 'touch MARKER'}\n", "callback"),
    "env_wrapper untrusted": ("ppo", "  env_wrapper: evilmod.Wrapper\n", "env_wrapper"),
    "vec_env_wrapper untrusted": ("ppo", "  vec_env_wrapper: evilmod.VecWrapper\n", "vec_env_wrapper"),
    "policy untrusted": ("ppo", "  policy: evilmod.Policy\n", "policy"),
    # the launcher hands env_kwargs to the zoo as --eval-env-kwargs key:expression; a ':' in a key moved code there
    "env_kwargs key": ("ppo", f'  env_kwargs:\n    "split:{TOUCH} #": 1\n', "env_kwargs"),
}  # fmt: skip


@pytest.fixture
def zoo_calls(monkeypatch, tmp_path):
    """The zoo's train and enjoy, each call recorded before it runs (a refusal must come before the zoo), and
    ``evilmod`` importable from tmp_path; the marker file is ``tmp_path / "pwned"``."""
    calls: list[str] = []
    for module, name in ((rl_zoo3.train, "train"), (rl_zoo3.enjoy, "enjoy")):
        monkeypatch.setattr(module, name, lambda real=getattr(module, name), name=name: (calls.append(name), real())[1])
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # main sets sys.argv for the zoo
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "evilmod", raising=False)
    (tmp_path / "evilmod.py").write_text(EVIL_MODULE.replace("MARKER", str(tmp_path / "pwned")))
    return calls


def _refused(calls: list[str], tmp_path: Path, argv: list[str], *named: str) -> None:
    """``main(argv)`` exits with a message naming each of ``named``, before the zoo runs and without the marker."""
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--num-threads", "1", "--eval-freq", "-1"] if argv[0] == "train" else [*argv, "--num-threads", "1", "--no-render"])
    message = str(exit_.value.code)
    assert all(name in message for name in named), message
    assert calls == [] and not (tmp_path / "pwned").exists()


def _train_argv(algo: str, conf: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["train", "--algo", algo, "--env", "Microgrid-v0", "--gym-packages", "sb3_microgrid", "--conf-file", str(conf),
            "-n", "64", "-f", str(tmp_path / "logs"), *extra]  # fmt: skip


@pytest.mark.parametrize("case", HOSTILE_CONFS)
def test_train_refuses_a_file_that_would_run_code_naming_the_field(zoo_calls, tmp_path, case):
    algo, field, named = HOSTILE_CONFS[case]
    conf = tmp_path / "evil.yml"
    conf.write_text(TINY + field.replace("MARKER", str(tmp_path / "pwned")))
    _refused(zoo_calls, tmp_path, _train_argv(algo, conf, tmp_path), str(conf), named)


def test_train_checks_the_file_the_zoo_reads_whatever_the_option_spelling(zoo_calls, tmp_path):
    (tmp_path / "good.yml").write_text(TINY)
    conf = tmp_path / "evil.yml"
    conf.write_text(TINY + f'  normalize: "{TOUCH} or True"\n'.replace("MARKER", str(tmp_path / "pwned")))
    base = ["train", "--algo", "ppo", "--env", "Microgrid-v0", "--gym-packages", "sb3_microgrid", "-n", "64", "-f", str(tmp_path / "logs")]
    for spelling in (["--conf", str(conf)], [f"--conf-file={conf}"], ["-conf", str(conf)], ["--conf-file", str(tmp_path / "good.yml"), "--conf-file", str(conf)]):
        _refused(zoo_calls, tmp_path, [*base, *spelling], str(conf), "normalize")
    # without --env the zoo reads the section of its default env, CartPole-v1: the check reads that one too
    (tmp_path / "two.yml").write_text(TINY + f'CartPole-v1:\n  normalize: "{TOUCH} or True"\n'.replace("MARKER", str(tmp_path / "pwned")))
    _refused(zoo_calls, tmp_path, ["train", "--algo", "ppo", "--conf-file", str(tmp_path / "two.yml")], "[CartPole-v1]", "normalize")


@pytest.mark.parametrize(("field", "instead"), [('rollout_buffer_class: "stable_baselines3.common.buffers.RolloutBuffer"', "use sb3-microgrid train"),
    ('rollout_buffer_kwargs: "dict()"', "write it as a YAML mapping")])  # fmt: skip
def test_train_refuses_the_strings_the_zoo_passes_on_unevaluated(zoo_reads, tmp_path, field, instead):
    # sb3-microgrid train parses them; rl_zoo3 2.9 hands the string to the algorithm ('str' object is not callable)
    conf = tmp_path / "conf.yml"
    conf.write_text(TINY + f"  {field}\n")
    named = (str(conf), field.partition(":")[0], "rl_zoo3 does not evaluate this string", instead)
    _refused(zoo_reads.calls, tmp_path, _train_argv("ppo", conf, tmp_path), *named)
    conf.write_text(TINY + "  rollout_buffer_kwargs: {}\n")  # the YAML mapping the zoo passes as it is
    main(_train_argv("ppo", conf, tmp_path))
    assert zoo_reads.read[-1]["rollout_buffer_kwargs"] == {}


@pytest.mark.parametrize("name", ["evil_conf.py", "evil_conf"])
def test_train_refuses_a_python_conf_file(zoo_calls, tmp_path, name):
    # rl_zoo3 execs a .py file and imports any other name as a module; this one is YAML too (annotations)
    (tmp_path / "evil_conf.py").write_text(f"_: int = {TOUCH}\nhyperparams: dict = dict([('Microgrid-v0', dict(n_timesteps=64))])\n".replace("MARKER", str(tmp_path / "pwned")))
    conf = str(tmp_path / name) if name.endswith(".py") else name
    _refused(zoo_calls, tmp_path, _train_argv("ppo", Path(conf), tmp_path), f"--conf-file {conf}", "runs as code", "python -m rl_zoo3.train")


@pytest.fixture
def zoo_reads(monkeypatch, tmp_path):
    """The zoo's train replaced by what it does first, without training: an ``ExperimentManager`` from the command
    line main hands it reads its hyperparameters and prepares them (the ``eval`` of ``normalize`` and
    ``policy_kwargs`` strings, the import of ``policy``, ``callback`` and wrapper names). Each call is recorded with
    what it read; ``evilmod`` is importable from tmp_path and the marker file is ``tmp_path / "pwned"``. A test may
    set ``before`` to run something first (an attacker changing a file after the launcher's check)."""
    state = SimpleNamespace(calls=[], read=[], before=None)
    parser = argparse.ArgumentParser()  # the options of rl_zoo3.train's parser that the ExperimentManager below takes
    for option, kwargs in (("--algo", {}), ("--env", {}), ("--conf-file", {}), ("--storage", {}), ("--study-name", {}), ("--trial-id", {"type": int})):
        parser.add_argument(option, **kwargs)

    def reads_only():
        if state.before is not None:
            state.before()
        zoo = parser.parse_known_args(sys.argv[1:])[0]
        manager = ExperimentManager(argparse.Namespace(), zoo.algo, zoo.env, str(tmp_path / "logs"), config=zoo.conf_file,
                                    storage=zoo.storage, study_name=zoo.study_name, trial_id=zoo.trial_id)  # fmt: skip
        state.calls.append(zoo.conf_file)
        hyperparams, _ = manager.read_hyperparameters()
        state.read.append(dict(hyperparams))
        manager._preprocess_hyperparams(hyperparams)

    monkeypatch.setattr(rl_zoo3.train, "train", reads_only)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "evilmod", raising=False)
    (tmp_path / "evilmod.py").write_text(EVIL_MODULE.replace("MARKER", str(tmp_path / "pwned")))
    return state


def _journal_study(path: Path, trials: list[tuple[dict, dict]]) -> None:
    """A study ``S`` in the journal file ``path`` holding complete trials with these (params, distributions)."""
    path.touch()
    study = optuna.create_study(study_name="S", storage=study_storage(str(path)))
    for params, distributions in trials:
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=1.0))


#: A PPO trial's parameters as the zoo's sampler records them, and their distributions.
PPO_TRIAL = ({"one_minus_gamma": 0.01, "one_minus_gae_lambda": 0.05, "net_arch": "small", "activation_fn": "tanh"},
             {"one_minus_gamma": optuna.distributions.FloatDistribution(1e-4, 0.03), "one_minus_gae_lambda": optuna.distributions.FloatDistribution(1e-4, 0.1),
              "net_arch": optuna.distributions.CategoricalDistribution(["small"]), "activation_fn": optuna.distributions.CategoricalDistribution(["tanh"])})  # fmt: skip
#: Hostile trial parameters (the zoo's converter passes any parameter through): (algorithm, parameter, value, field named).
HOSTILE_TRIALS = {
    "normalize eval": ("ppo", "normalize", f"{TOUCH} or {{}}", "normalize"),
    "policy_kwargs eval": ("ppo", "policy_kwargs", f"dict(ortho_init={TOUCH} or True)", "policy_kwargs"),
    "callback import": ("twin_ppo", "callback", "evilmod.Wrapper", "callback"),
    "policy import": ("ppo", "policy", "evilmod.Policy", "policy"),
    "env_wrapper import": ("twin_ppo", "env_wrapper", "evilmod.Wrapper", "env_wrapper"),
}  # fmt: skip


@pytest.mark.parametrize("case", HOSTILE_TRIALS)
def test_train_refuses_a_study_trial_that_would_run_code_naming_the_field(zoo_reads, tmp_path, case):
    # rl_zoo3 puts study.trials[--trial-id].params, through its converter, on top of the file, then evaluates and imports
    algo, name, value, named = HOSTILE_TRIALS[case]
    value = value.replace("MARKER", str(tmp_path / "pwned"))
    params, distributions = PPO_TRIAL
    hostile = ({**params, name: value}, {**distributions, name: optuna.distributions.CategoricalDistribution([value])})
    _journal_study(tmp_path / "sweep.log", [PPO_TRIAL, hostile])
    conf = tmp_path / "tiny.yml"
    conf.write_text(TINY)
    trial = ["--storage", str(tmp_path / "sweep.log"), "--study-name", "S", "--trial-id", "1"]
    _refused(zoo_reads.calls, tmp_path, _train_argv(algo, conf, tmp_path, *trial), "--trial-id 1", named)
    # the same study's other trial is a plain one: the zoo reads it (and --trial-id 0, which the zoo ignores)
    for trial_id in ("0", "-2"):
        main(_train_argv(algo, conf, tmp_path, *trial[:-1], trial_id))
    assert zoo_reads.read[-1]["gamma"] == pytest.approx(0.99) and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("swap", ["rewritten", "symlink re-pointed"])
def test_the_zoo_reads_the_file_that_was_checked_not_the_path_again(zoo_reads, tmp_path, swap):
    # an attacker who can write to the file (or its folder) changes it between the launcher's check and the zoo's read
    good, evil = tmp_path / "good.yml", tmp_path / "evil.yml"
    good.write_text(TINY)
    evil.write_text(TINY + f'  normalize: "{TOUCH} or {{}}"\n'.replace("MARKER", str(tmp_path / "pwned")))
    conf = tmp_path / "conf.yml"
    if swap == "rewritten":
        conf.write_text(TINY)
        zoo_reads.before = lambda: conf.write_text(evil.read_text())
    else:
        conf.symlink_to(good)
        zoo_reads.before = lambda: (conf.unlink(), conf.symlink_to(evil))
    main(_train_argv("ppo", conf, tmp_path))
    assert zoo_reads.calls == [str(conf)]  # the zoo's command line names the user's file (its args.yml records it)
    assert "normalize" not in zoo_reads.read[0] and zoo_reads.read[0]["n_steps"] == 32
    assert not (tmp_path / "pwned").exists()


def test_best_exits_with_a_message_on_a_file_or_trial_it_cannot_use(tmp_path):
    # before: a conf that is YAML but no mapping, or a trial whose policy_kwargs is a string, ended in a traceback
    params, distributions = PPO_TRIAL
    odd = ({**params, "policy_kwargs": "dict(a=1)"}, {**distributions, "policy_kwargs": optuna.distributions.CategoricalDistribution(["dict(a=1)"])})
    _journal_study(tmp_path / "sweep.log", [PPO_TRIAL, odd])
    (tmp_path / "list.yml").write_text("- a\n- b\n")
    (tmp_path / "tiny.yml").write_text(TINY)
    best = ["best", "--algo", "ppo", "--storage", str(tmp_path / "sweep.log"), "--study-name", "S", "--out", str(tmp_path / "out.yml")]
    for conf, trial, message in (("list.yml", "0", "list.yml: expected a mapping from env ids"), ("tiny.yml", "1", "TypeError")):
        with pytest.raises(SystemExit, match=message):
            main([*best, "--conf-file", str(tmp_path / conf), "--trial", trial])
    assert not (tmp_path / "out.yml").exists()


def test_train_refuses_a_conf_file_that_is_not_a_regular_file(zoo_reads, tmp_path):
    fifo = tmp_path / "conf.yml"
    os.mkfifo(fifo)  # opening it to read would wait for a writer; a device (/dev/zero) would never end
    _refused(zoo_reads.calls, tmp_path, _train_argv("ppo", fifo, tmp_path), f"--conf-file {fifo}: not a regular file")


@pytest.mark.parametrize(("name", "algo", "env"), [("ppo.yml", "ppo", "Microgrid-v0"), ("twin_ppo.yml", "twin_ppo", "Microgrid-v0"),
    ("sac.yml", "sac", "Microgrid-v0"), ("sac_fast.yml", "sac", "Microgrid-v0"), ("td3.yml", "td3", "Microgrid-v0"), ("dyna_sac.yml", "dyna_sac", "Microgrid-v0"),
    ("her_sac.yml", "sac", "MicrogridGoal-v0"), ("residual_ars.yml", "paired_ars", "Microgrid-v0")])  # fmt: skip
def test_every_shipped_hyperparameter_file_passes_the_launcher_check(name, algo, env):
    assert sorted(p.name for p in HYPERPARAMS.glob("*.yml")) == sorted(SHIPPED)  # a new file needs a case here
    check_inputs("train", ["--algo", algo, "--env", env, "--gym-packages", "sb3_microgrid", "--conf-file", str(HYPERPARAMS / name)])


SHIPPED = ("ppo.yml", "twin_ppo.yml", "sac.yml", "sac_fast.yml", "td3.yml", "dyna_sac.yml", "her_sac.yml", "residual_ars.yml")


def _saved_run(tmp_path: Path, config: dict | str, args: dict | str | None = None) -> Path:
    """A zoo log folder as enjoy finds it (``logs/ppo/Microgrid-v0_1``), its config.yml and args.yml written by
    the zoo's own writer (``ExperimentManager._save_config``) from dicts, or as the text given."""
    run = tmp_path / "logs" / "ppo" / "Microgrid-v0_1"
    params = run / "Microgrid-v0"
    params.mkdir(parents=True)
    (run / "Microgrid-v0.zip").write_bytes(b"not read: the check comes first")
    zoo_args = argparse.Namespace(algo="ppo", env="Microgrid-v0", env_kwargs=None, gym_packages=["sb3_microgrid"], seed=1)
    ExperimentManager._save_config(SimpleNamespace(params_path=str(params), save_path=str(run), args=zoo_args),
                                   OrderedDict(sorted(config.items())) if isinstance(config, dict) else OrderedDict())  # fmt: skip
    for name, text in (("config.yml", config), ("args.yml", args)):
        if isinstance(text, str):
            (params / name).write_text(text.replace("MARKER", str(tmp_path / "pwned")))
    return params


def _enjoy_argv(tmp_path: Path) -> list[str]:
    return ["enjoy", "--algo", "ppo", "--env", "Microgrid-v0", "--gym-packages", "sb3_microgrid", "-f", str(tmp_path / "logs"), "-n", "24"]


SAVED = {"n_envs": 1, "n_timesteps": 64, "policy": "MlpPolicy", "n_steps": 32, "batch_size": 32,
         "normalize": "{'norm_obs': True, 'norm_reward': True}", "policy_kwargs": "dict(net_arch=[8])",
         "env_kwargs": {"scenario": {"base": "campus"}}, "callback": ["sb3_microgrid.callbacks.MicrogridMetricsCallback"]}  # fmt: skip


def test_enjoy_reads_a_run_folder_as_the_zoo_writes_it(tmp_path):
    params = _saved_run(tmp_path, SAVED)
    assert (params / "config.yml").read_text().startswith("!!python/object/apply:collections.OrderedDict")  # the zoo's tag
    check_inputs("enjoy", _enjoy_argv(tmp_path)[1:])
    assert yaml.load((params / "config.yml").read_text(), Loader=SavedRunLoader) == SAVED


@pytest.mark.parametrize(("file", "config", "args", "named"), [
    ("config.yml", "!!python/object/apply:os.system ['touch MARKER']\n", None, "python/object/apply:os.system"),
    ("args.yml", SAVED, "!!python/object/apply:os.system ['touch MARKER']\n", "python/object/apply:os.system"),
    ("config.yml", {**SAVED, "normalize": f"{TOUCH} or True"}, None, "normalize"),
    ("config.yml", {**SAVED, "env_wrapper": "evilmod.Wrapper"}, None, "env_wrapper"),
    ("config.yml", "!!python/name:evilmod.Wrapper ''\n", None, "python/name:evilmod.Wrapper"),
    # the OrderedDict tag in another form than the zoo's, with the evil call nested inside
    ("config.yml", "!!python/object/apply:collections.OrderedDict {args: [[[a, !!python/object/apply:os.system ['touch MARKER']]]]}\n", None, "OrderedDict"),
])  # fmt: skip
def test_enjoy_refuses_a_run_folder_whose_saved_files_would_run_code(zoo_calls, tmp_path, file, config, args, named):
    if isinstance(config, dict):
        config = {key: value.replace("MARKER", str(tmp_path / "pwned")) if isinstance(value, str) else value for key, value in config.items()}
    params = _saved_run(tmp_path, config, args)
    _refused(zoo_calls, tmp_path, _enjoy_argv(tmp_path), str(params / file), named)


def test_enjoy_does_not_download_an_agent_it_cannot_find(zoo_calls, tmp_path):
    # for a folder named rl-trained-agents the zoo downloads a missing agent from the hub and then unpickles it
    _refused(zoo_calls, tmp_path, ["enjoy", "--algo", "ppo", "--env", "Microgrid-v0", "-f", str(tmp_path / "rl-trained-agents")], "does not download")


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
