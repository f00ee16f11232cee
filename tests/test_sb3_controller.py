"""Saved models as controllers: one algorithm registry, the class found without --algo, VecNormalize statistics
found in every layout the training tools write, a warning when they are missing, a recurrent policy's state."""

import json
import shutil
import warnings
from collections import OrderedDict

import gymnasium as gym
import numpy as np
import pytest
import yaml
from stable_baselines3 import SAC, HerReplayBuffer
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_microgrid.algos import ALGOS, candidates, load, saved_data
from sb3_microgrid.baselines import SB3Controller, make_controller
from sb3_microgrid.baselines.sb3_model import NormalizationWarning, find_vecnormalize, trained_with_normalization
from sb3_microgrid.envs import MicrogridEnv
from sb3_microgrid.evaluation import run_day

DAY = "2016-03-01"
POLICY = {"ppo_lstm": "MlpLstmPolicy", "ars": "LinearPolicy"}
OFF_POLICY = {"ddpg", "sac", "td3", "dyna_sac", "per_sac", "per_td3", "crossq", "tqc"}


def tiny(name: str, env) -> object:
    """An untrained model of a registered algorithm, small enough to build in milliseconds."""
    kwargs = {"buffer_size": 100} if name in OFF_POLICY else {}
    if name != "ars":
        kwargs["policy_kwargs"] = {"net_arch": [8]} if name != "ppo_lstm" else {"net_arch": [8], "lstm_hidden_size": 8}
    return ALGOS[name](POLICY.get(name, "MlpPolicy"), env, device="cpu", seed=0, **kwargs)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One zip per registered algorithm, each alone in its folder (no run record)."""
    root, env = tmp_path_factory.mktemp("models"), MicrogridEnv()
    paths = {}
    for name in ALGOS:
        (root / name).mkdir()
        paths[name] = root / name / "agent.zip"
        tiny(name, env).save(paths[name])
    return paths


# ---- the registry and the class of a zip --------------------------------------------------------------------------
def test_registry_holds_ours_and_sb3_contribs():
    from sb3_contrib import ARS, TQC, TRPO, CrossQ, RecurrentPPO

    from sb3_microgrid import training

    assert {ARS, TQC, TRPO, CrossQ, RecurrentPPO} <= set(ALGOS.values())
    assert training.ALGOS is ALGOS  # training, the zoo launcher and evaluation read the same registry


def test_zoo_launcher_registers_the_same_classes():
    import rl_zoo3

    from sb3_microgrid.zoo import register

    register([])
    assert all(rl_zoo3.ALGOS[name] is cls for name, cls in ALGOS.items())


@pytest.mark.parametrize("name", sorted(ALGOS))
def test_a_zip_loads_as_its_own_class_without_a_record(saved, name):
    # DDPG saves what TD3 saves, ARS what PairedARS saves (module docstring of sb3_microgrid.algos): they
    # load as TD3 and PairedARS, with the same predictions
    expected = ALGOS[{"ddpg": "td3", "ars": "paired_ars"}.get(name, name)]
    model = load(saved[name])
    assert type(model) is expected
    obs = MicrogridEnv().reset(seed=0)[0]
    reference = ALGOS[name].load(saved[name], device="cpu")
    assert np.array_equal(model.predict(obs, deterministic=True)[0], reference.predict(obs, deterministic=True)[0])


def test_candidates_rank_the_closest_policy_and_settings_first(saved):
    assert candidates(saved_data(saved["twin_ppo"]))[0] == "twin_ppo"
    assert candidates(saved_data(saved["ppo"]))[:2] == ["ppo", "a2c"]
    assert candidates(saved_data(saved["trpo"]))[0] == "trpo"
    assert candidates(saved_data(saved["dyna_sac"]))[0] == "dyna_sac"


def test_the_run_record_names_the_class(saved, tmp_path):
    # a PPO zip read as A2C proves the record, not the zip, decided; in the folder or its parent
    # (sb3-microgrid train's run.json beside model.zip, and in checkpoints/<steps>/ or the run folder)
    folder = tmp_path / "run" / "checkpoints" / "4096"
    folder.mkdir(parents=True)
    (folder / "model.zip").write_bytes(saved["ppo"].read_bytes())
    (tmp_path / "run" / "checkpoints" / "run.json").write_text(json.dumps({"algo": "a2c"}))
    assert type(SB3Controller(folder / "model.zip").model) is ALGOS["a2c"]
    (folder / "run.json").write_text(json.dumps({"algo": "ppo"}))
    assert type(SB3Controller(folder / "model.zip").model) is ALGOS["ppo"]
    (folder / "run.json").write_text(json.dumps({"algo": "nosuch"}))
    with pytest.raises(ValueError, match="nosuch"):
        SB3Controller(folder / "model.zip")


def test_an_explicit_algorithm_is_honoured(saved):
    assert type(SB3Controller(saved["ppo"], algo="a2c").model) is ALGOS["a2c"]
    assert type(make_controller(f"{saved['ppo']}:a2c").model) is ALGOS["a2c"]
    with pytest.raises(ValueError, match="unknown algorithm 'nosuch'"):
        make_controller(f"{saved['ppo']}:nosuch")


def test_a_file_that_is_not_a_model_is_a_value_error(tmp_path):
    bad = tmp_path / "notes.zip"
    bad.write_text("not a zip")
    with pytest.raises(ValueError, match="not a saved Stable-Baselines3 model"):
        SB3Controller(bad)


def test_a_her_model_loads_without_its_env_and_acts_on_the_goal_env(tmp_path):
    env = gym.make("MicrogridGoal-v0", budget_range=((-3.0, 3.0), (-3.0, 3.0))).unwrapped
    model = SAC("MultiInputPolicy", DummyVecEnv([lambda: env]), replay_buffer_class=HerReplayBuffer, buffer_size=100,
                policy_kwargs={"net_arch": [8]}, device="cpu")  # fmt: skip
    model.save(tmp_path / "her.zip")
    controller = SB3Controller(tmp_path / "her.zip")
    assert type(controller.model) is SAC
    metrics, _ = run_day(controller, env, DAY, seed=0)
    assert metrics["total_cost"] > 0
    with pytest.raises(ValueError, match="observes Dict"):
        run_day(controller, MicrogridEnv(), DAY, seed=0)


# ---- a recurrent policy -------------------------------------------------------------------------------------------
def test_a_recurrent_policy_carries_its_state_through_the_episode(saved):
    controller, env = SB3Controller(saved["ppo_lstm"]), MicrogridEnv()
    obs, _ = env.reset(seed=0, options={"day": DAY})
    controller.reset(env, obs)
    actions = [controller.act(obs) for _ in range(3)]
    # the same observation three times: only the LSTM state differs
    assert not np.allclose(actions[0], actions[1]) and not np.allclose(actions[1], actions[2])
    state, start = None, np.ones(1, dtype=bool)
    for expected in actions:
        action, state = controller.model.predict(obs, state=state, episode_start=start, deterministic=True)
        start = np.zeros(1, dtype=bool)
        np.testing.assert_allclose(action, expected)
    controller.reset(env, obs)  # a new episode starts from a fresh state
    np.testing.assert_allclose(controller.act(obs), actions[0])


# ---- VecNormalize statistics --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model, stats",
    [
        ("model.zip", "model_vecnormalize.pkl"),  # sb3-microgrid train: the run folder and each checkpoints/<steps>/
        ("checkpoints/model_4096_steps.zip", "checkpoints/model_vecnormalize_4096_steps.pkl"),  # SB3's CheckpointCallback
        ("rl_model_4096_steps.zip", "rl_model_vecnormalize_4096_steps.pkl"),  # rl_zoo3's checkpoints
        ("Microgrid-v0.zip", "Microgrid-v0/vecnormalize.pkl"),  # rl_zoo3's final model
        ("best_model.zip", "Microgrid-v0/vecnormalize.pkl"),  # rl_zoo3's best model
    ],
)
def test_statistics_are_found_where_each_tool_writes_them(tmp_path, model, stats):
    for name in (model, stats):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert find_vecnormalize(tmp_path / model) == tmp_path / stats
    (tmp_path / stats).unlink()
    assert find_vecnormalize(tmp_path / model) is None


def test_a_checkpoint_is_evaluated_with_its_own_statistics(saved, tmp_path):
    venv = VecNormalize(DummyVecEnv([MicrogridEnv]))
    venv.reset()
    for _ in range(30):
        venv.step(np.zeros((1, 13)))
    (tmp_path / "model_24_steps.zip").write_bytes(saved["ppo"].read_bytes())
    venv.save(str(tmp_path / "model_vecnormalize_24_steps.pkl"))
    controller, env = SB3Controller(tmp_path / "model_24_steps.zip"), MicrogridEnv()
    obs, _ = env.reset(seed=0)
    controller.reset(env, obs)
    assert controller._normalizer is not None
    np.testing.assert_allclose(controller._normalizer.obs_rms.mean, venv.obs_rms.mean)


def zoo_config(normalize) -> str:
    """rl_zoo3's ``config.yml``: its saved hyperparameters, an OrderedDict dumped by ``yaml.dump``."""
    return yaml.dump(OrderedDict([("gamma", 1.0), ("normalize", normalize), ("policy", "MlpPolicy")]))


@pytest.mark.parametrize(
    "files, normalised",
    [
        ({"config.yml": "Microgrid-v0:\n  normalize: true\n"}, True),  # sb3-microgrid train's copy of the file
        ({"config.yml": "Microgrid-v0:\n  normalize: \"{'norm_obs': False, 'norm_reward': True}\"\n"}, False),
        ({"config.yml": "Microgrid-v0:\n  gamma: 0.99\n"}, False),
        ({"run.json": json.dumps({"algo": "ppo", "files": {"model.zip": 1, "model_vecnormalize.pkl": 1}})}, True),
        ({"run.json": json.dumps({"algo": "ppo", "files": {"model.zip": 1}})}, False),
        ({"model/config.yml": zoo_config("{'norm_obs': True, 'norm_reward': False}")}, True),  # rl_zoo3
        ({"model/config.yml": zoo_config(False)}, False),
        ({"model/config.yml": zoo_config(True), "other/config.yml": zoo_config(False)}, True),  # its own folder first
        ({"a/config.yml": zoo_config(True), "b/config.yml": zoo_config(False)}, None),  # which one is its? none says
        # another run's folder beside a model saved by hand (runs/twin.zip beside sb3-microgrid train's runs/<run>/)
        ({"other/config.yml": zoo_config(False), "other/run.json": json.dumps({"algo": "ppo"})}, None),
        ({"model/config.yml": zoo_config(False), "model/run.json": json.dumps({"algo": "ppo"})}, None),
        ({}, None),
    ],
)
def test_whether_a_run_normalised_is_read_from_its_records(tmp_path, files, normalised):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert trained_with_normalization(tmp_path / "model.zip") is normalised


def test_a_normalised_run_without_its_statistics_warns(saved, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "24").mkdir(parents=True)
    (run / "config.yml").write_text("Microgrid-v0:\n  normalize: true\n")
    (run / "checkpoints" / "24" / "model.zip").write_bytes(saved["ppo"].read_bytes())
    with pytest.warns(NormalizationWarning, match="raw observations"):
        SB3Controller(run / "checkpoints" / "24" / "model.zip")
    VecNormalize(DummyVecEnv([MicrogridEnv])).save(str(run / "checkpoints" / "24" / "model_vecnormalize.pkl"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", NormalizationWarning)
        assert SB3Controller(run / "checkpoints" / "24" / "model.zip")._stats_path is not None


def test_statistics_for_another_layout_are_a_value_error(saved, tmp_path):
    other = MicrogridEnv(scenario={"forecast": {"forecast_steps": 12}})
    VecNormalize(DummyVecEnv([lambda: other])).save(str(tmp_path / "stats.pkl"))
    controller, env = SB3Controller(saved["ppo"], vecnormalize=tmp_path / "stats.pkl"), MicrogridEnv()
    with pytest.raises(ValueError, match="stats.pkl"):
        controller.reset(env, env.reset(seed=0)[0])


def test_a_run_recorded_as_unnormalised_takes_no_stray_statistics(saved, tmp_path):
    # rule 4 of find_vecnormalize (DIR/vecnormalize.pkl) would otherwise apply someone else's statistics
    shutil.copy(saved["ppo"], tmp_path / "model.zip")
    VecNormalize(DummyVecEnv([MicrogridEnv])).save(str(tmp_path / "vecnormalize.pkl"))
    assert find_vecnormalize(tmp_path / "model.zip") == tmp_path / "vecnormalize.pkl"
    (tmp_path / "run.json").write_text(json.dumps({"algo": "ppo", "files": {"model.zip": 1}}))
    assert SB3Controller(tmp_path / "model.zip")._stats_path is None


def test_a_crafted_config_beside_a_model_is_skipped_not_a_crash(tmp_path):
    """config.yml was read with a loader of its own whose OrderedDict tag raised IndexError on `[]`: evaluate, plot
    and export crashed; it is now the zoo launcher's checked loader."""
    from sb3_microgrid.baselines.sb3_model import run_settings

    (tmp_path / "config.yml").write_text("!!python/object/apply:collections.OrderedDict []\n")
    assert run_settings(tmp_path / "model.zip") is None
    (tmp_path / "config.yml").write_text("!!python/object/apply:collections.OrderedDict [[[normalize, true], [n_timesteps, 10]]]\n")
    assert run_settings(tmp_path / "model.zip") == {"normalize": True, "n_timesteps": 10}


def test_an_older_runs_config_with_a_repeated_key_is_still_read():
    """The saved-run reader refused repeated keys, so an older run's config.yml was skipped and the run scored on
    the default scenario without a word; only files a user writes now are read strictly."""
    import tempfile
    from pathlib import Path

    from sb3_microgrid.baselines.sb3_model import run_settings

    folder = Path(tempfile.mkdtemp())
    (folder / "config.yml").write_text("Microgrid-v0:\n  n_epochs: 2\n  n_epochs: 3\n  env_kwargs: {scenario: campus_tod}\n")
    assert run_settings(folder / "model.zip") == {"n_epochs": 3, "env_kwargs": {"scenario": "campus_tod"}}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"deterministic": "no"}, "deterministic must be true or false, got 'no'"), ({"deterministic": None}, "deterministic must be true or false"),
     ({"algo": 5}, "algo must be a registered name"), ({"vecnormalize": 5}, "vecnormalize must be a path or None, got 5")],
)  # fmt: skip
def test_sb3_controller_arguments_of_the_wrong_type_are_refused(saved, kwargs, message):
    """ "no" acted deterministically and None sampled; 5 as algo or statistics was a traceback from inside."""
    with pytest.raises(TypeError, match=message):
        SB3Controller(saved["ppo"], **kwargs)
    assert SB3Controller(saved["ppo"], deterministic=np.bool_(False)).deterministic is False
