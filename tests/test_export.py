"""Export to ONNX: the exported policy acts as the model on every step (normalisation folded in, actions
clipped or unscaled as ``predict`` does), for on-policy, off-policy, recurrent and residual runs; the
manifest; the command line; bad inputs; and a runtime that needs neither torch nor SB3."""

import json
import re
import shutil
import subprocess
import sys

import gymnasium as gym
import numpy as np
import onnx
import pytest
import torch as th
import yaml
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_microgrid import training
from sb3_microgrid.algos import ALGOS
from sb3_microgrid.baselines import LayoutMismatchError, OnnxController, SB3Controller, make_controller
from sb3_microgrid.callbacks.checkpoint import write_run_json
from sb3_microgrid.cli import main
from sb3_microgrid.envs import ActionLayout, MicrogridEnv, MicrogridVecEnv, ObservationLayout
from sb3_microgrid.evaluation import evaluate, model_sha256
from sb3_microgrid.export import ManifestError, ObservationShapeError, OnnxPolicy, RecurrentPolicyError, scenario_fingerprint
from sb3_microgrid.export import onnx_export
from sb3_microgrid.export.onnx_export import ExportError, export_model
from sb3_microgrid.scenario import Scenario, load_scenario
from sb3_microgrid.wrappers.residual import ResidualController

POLICY = {"ppo_lstm": "MlpLstmPolicy", "ars": "LinearPolicy", "paired_ars": "LinearPolicy"}
ON_POLICY = {"ppo": {"batch_size": 48}, "a2c": {}, "trpo": {"batch_size": 48}, "twin_ppo": {"batch_size": 48}, "ppo_lstm": {"batch_size": 48},
             "reptile": {"batch_size": 48}}
ARS_KWARGS = {"n_delta": 2, "n_eval_episodes": 1}
OFF_POLICY = {"buffer_size": 200, "learning_starts": 24, "batch_size": 16}
CLIP_OBS = 5.0


def train(name: str, folder, steps: int = 96, normalize: bool = True, clip_obs: float = CLIP_OBS):
    """``name`` trained for ``steps`` steps on two campus microgrids (observations normalised and clipped at
    ``clip_obs``), saved as ``sb3-microgrid train`` saves a run: ``model.zip``, statistics and ``run.json``."""
    env = MicrogridVecEnv(2, seed=0)
    if normalize:
        env = VecNormalize(env, clip_obs=clip_obs, norm_reward=False)
    if name in ON_POLICY:
        kwargs = {"n_steps": 24, **ON_POLICY[name]}
    else:
        kwargs = ARS_KWARGS if "ars" in name else OFF_POLICY
    policy_kwargs = {} if "ars" in name else {"net_arch": [32, 32]} if name != "ppo_lstm" else {"net_arch": [32], "lstm_hidden_size": 16}
    model = ALGOS[name](POLICY.get(name, "MlpPolicy"), env, seed=0, device="cpu", policy_kwargs=policy_kwargs, **kwargs).learn(steps)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.zip")
    files = ["model.zip"]
    if normalize:
        env.save(folder / "model_vecnormalize.pkl")
        files.append("model_vecnormalize.pkl")
    write_run_json(folder, name, model.num_timesteps, files)
    return folder / "model.zip"


class Both:
    """Acts with ``reference``'s action and records the largest difference of ``other``'s from it, on every step
    that ``evaluate()`` runs; the actions taken are kept."""

    name = "both"

    def __init__(self, reference, other) -> None:
        self.reference, self.other, self.diff, self.actions = reference, other, 0.0, []

    def reset(self, env, obs) -> None:
        self.reference.reset(env, obs)
        self.other.reset(env, obs)

    def act(self, obs):
        action = self.reference.act(obs)
        self.diff = max(self.diff, float(np.max(np.abs(self.other.act(obs) - action))))
        self.actions.append(action)
        return action


def assert_acts_as_the_model(zip_path, export_dir, days: int) -> None:
    """Every step of ``days`` test days: the export's action within 1e-5 of the model's; the KPIs equal."""
    both = Both(make_controller(str(zip_path)), make_controller(str(export_dir)))
    expected = evaluate(both, days=days, reference=False).summary
    actions = np.array(both.actions)
    assert actions.shape[0] == 24 * days
    assert both.diff <= 1e-5
    # not a vacuous match of constant or saturated actions
    assert np.ptp(actions) > 1e-2 and np.mean(np.abs(actions) < 0.999) > 0.5
    got = evaluate(make_controller(str(export_dir)), days=days, reference=False).summary
    numbers = {k for k, v in expected.items() if isinstance(v, float)}
    assert {k: got[k] for k in numbers} == pytest.approx({k: expected[k] for k in numbers}, rel=1e-6, abs=1e-9)
    assert {k: got[k] for k in expected.keys() - numbers - {"controller"}} == {k: expected[k] for k in expected.keys() - numbers - {"controller"}}


@pytest.fixture(scope="module")
def ppo(tmp_path_factory):
    """A PPO run with VecNormalize statistics, and its export."""
    root = tmp_path_factory.mktemp("ppo")
    path = train("ppo", root / "run")
    export_model(path, root / "export")
    return path, root / "export"


# ---- the exported policy acts as the model ------------------------------------------------------------------------
def test_ppo_with_vecnormalize_acts_as_the_model_on_30_test_days(ppo):
    path, export = ppo
    assert_acts_as_the_model(path, export, days=30)


@pytest.mark.parametrize("name", sorted(ALGOS))
def test_every_registered_algorithm_acts_as_the_model(name, tmp_path):
    path = train(name, tmp_path / "run")
    manifest = export_model(path, tmp_path / "export")
    assert manifest["algorithm"] == name and manifest["recurrent"] == (name == "ppo_lstm")
    assert manifest["observation"]["normalization"]["clip_obs"] == CLIP_OBS
    assert_acts_as_the_model(path, tmp_path / "export", days=2)


def test_the_normalisation_is_in_the_graph(ppo):
    """Without its statistics the model acts otherwise: the graph's match is the folded normalisation's."""
    path, export = ppo
    env = MicrogridEnv(split="test")
    obs = np.stack([env.reset(seed=seed)[0] for seed in range(8)])
    controller = SB3Controller(path)
    controller.reset(env, obs[0])
    exported = OnnxPolicy(export).act(obs)
    normalised, _ = controller.model.predict(controller._normalizer.normalize_obs(obs), deterministic=True)
    raw, _ = controller.model.predict(obs, deterministic=True)
    np.testing.assert_allclose(exported, normalised, atol=1e-5, rtol=0)
    assert np.max(np.abs(exported - raw)) > 1e-2
    # clip_obs is in it too: an observation far outside the statistics acts as one at the clip
    far = obs[:1] + 1e6
    clipped = controller._normalizer.normalize_obs(far)
    assert np.max(np.abs(clipped)) == CLIP_OBS
    np.testing.assert_allclose(OnnxPolicy(export).act(far), controller.model.predict(clipped, deterministic=True)[0], atol=1e-5, rtol=0)


def test_an_infinite_clip_obs_exports_as_no_clipping(tmp_path):
    """``VecNormalize(clip_obs=inf)``, SB3's way to clip nothing, failed the manifest's strict JSON with an error that
    named no field: it is written as null, and the graph clips nothing, as the model."""
    path = train("ppo", tmp_path / "run", clip_obs=np.inf)
    manifest = export_model(path, tmp_path / "export")
    assert manifest["observation"]["normalization"]["clip_obs"] is None
    controller = SB3Controller(path)
    env = MicrogridEnv(split="test")
    obs = np.stack([env.reset(seed=seed)[0] for seed in range(8)])
    controller.reset(env, obs[0])
    far = obs[:1] + 1e3  # far beyond any clip: normalised values in the hundreds
    assert np.max(np.abs(controller._normalizer.normalize_obs(far))) > 100
    for batch in (obs, far):
        expected, _ = controller.model.predict(controller._normalizer.normalize_obs(batch), deterministic=True)
        np.testing.assert_allclose(OnnxPolicy(tmp_path / "export").act(batch), expected, atol=1e-5, rtol=0)


def test_a_mean_outside_the_action_space_is_clipped_as_predict_clips_it(ppo, tmp_path):
    path, _ = ppo
    model = SB3Controller(path).model
    with th.no_grad():
        model.policy.action_net.bias.copy_(th.linspace(-3.0, 3.0, 13))
    model.save(tmp_path / "run" / "model.zip")
    (tmp_path / "run" / "model_vecnormalize.pkl").write_bytes((path.parent / "model_vecnormalize.pkl").read_bytes())
    export_model(tmp_path / "run" / "model.zip", tmp_path / "export")
    both = Both(make_controller(str(tmp_path / "run" / "model.zip")), make_controller(str(tmp_path / "export")))
    evaluate(both, days=2, reference=False)
    assert both.diff <= 1e-5 and np.mean(np.abs(np.array(both.actions)) == 1.0) > 0.2


def test_an_unnormalised_run_exports_without_normalisation(tmp_path):
    path = train("td3", tmp_path / "run", normalize=False)
    manifest = export_model(path, tmp_path / "export")
    assert manifest["observation"]["normalization"] is None
    obs = np.stack([MicrogridEnv(split="test").reset(seed=seed)[0] for seed in range(4)])
    model = SB3Controller(path).model
    np.testing.assert_allclose(OnnxPolicy(tmp_path / "export").act(obs), model.predict(obs, deterministic=True)[0], atol=1e-5, rtol=0)


def test_a_batch_and_a_single_observation_give_the_same_actions(ppo):
    policy = OnnxPolicy(ppo[1])
    env = MicrogridEnv(split="test")
    obs = np.stack([env.reset(seed=seed)[0] for seed in range(5)])
    batch = policy.act(obs)
    assert batch.shape == (5, 13) and batch.dtype == np.float32
    np.testing.assert_array_equal(np.stack([policy.act(o) for o in obs]), batch)
    assert np.all(np.abs(batch) <= 1.0)


@pytest.fixture(scope="module")
def lstm(tmp_path_factory):
    """A ppo_lstm run, and its export."""
    root = tmp_path_factory.mktemp("ppo_lstm")
    path = train("ppo_lstm", root / "run", steps=48)
    export_model(path, root / "export")
    return path, root / "export"


def test_a_recurrent_export_carries_and_resets_its_state(lstm):
    path, export = lstm
    policy, model = OnnxPolicy(export), SB3Controller(path)
    env = MicrogridEnv(split="test")
    obs, _ = env.reset(seed=0)
    model.reset(env, obs)
    stats = model._normalizer
    state, sb3_state = policy.initial_state(1), None
    for step in range(6):
        start = np.array([step in (0, 4)])  # a new episode at step 4: both reset their state
        action, state = policy.step(obs[None], state, start.astype(np.float32))
        expected, sb3_state = model.model.predict(stats.normalize_obs(obs[None]), state=sb3_state, episode_start=start, deterministic=True)
        np.testing.assert_allclose(action, expected, atol=1e-5, rtol=0)
        np.testing.assert_allclose(state[0], sb3_state[0], atol=1e-5, rtol=0)
        obs, *_ = env.step(expected[0])
    with pytest.raises(RecurrentPolicyError, match="step"):
        policy.act(obs)
    with pytest.raises(ObservationShapeError, match="state must be"):
        policy.step(obs, policy.initial_state(2), np.ones(1))


def test_a_recurrent_step_refuses_a_state_that_is_not_finite_and_starts_other_than_0_or_1(lstm):
    """A NaN cell state or episode_start gave NaN actions, a NaN hidden state an arbitrary finite one, and an
    episode_start of 2 or -1 scaled the state by 1 - episode_start: another action without a word."""
    policy = OnnxPolicy(lstm[1])
    obs = np.zeros((2, policy.obs_dim), dtype=np.float32)
    h, c = policy.initial_state(2)
    nan_h, big_c = h.copy(), c.astype(np.float64)
    nan_h[0, 1, 3] = np.nan
    big_c[0, 0, 0] = 1e300  # beyond float32: inf once cast
    for state, message in (((nan_h, c), r"state[0] (h) must be finite numbers within float32's range (|x| <= 3.4e+38); not at (layer, row, unit) (0, 1, 3)"),
                           ((h, big_c), r"state[1] (c) must be finite numbers within float32's range (|x| <= 3.4e+38); not at (layer, row, unit) (0, 0, 0)")):  # fmt: skip
        with pytest.raises(ObservationShapeError, match=re.escape(message)):
            policy.step(obs, state, np.ones(2))
    for starts, message in (([1.0, np.nan], "got nan at index 1"), ([2.0, 0.0], "got 2.0 at index 0"), ([0.0, -1.0], "got -1.0 at index 1")):
        with pytest.raises(ObservationShapeError, match=re.escape(f"episode_start must be 0 or 1 (1 resets the state); {message}")):
            policy.step(obs, (h, c), np.array(starts))
    action, _ = policy.step(obs, (h, c), np.array([True, False]))  # booleans, as predict takes them
    assert np.isfinite(action).all()


@pytest.mark.parametrize("field, value", [("layers", 2), ("hidden_size", 15), ("layers", 10**6)])
def test_a_recurrent_manifest_whose_lstm_does_not_fit_the_graph_is_refused(lstm, tmp_path, field, value):
    """It loaded, then initial_state built a state of the manifest's shape (10**6 layers: allocated first) and step
    failed inside onnxruntime."""
    folder = tmp_path / "export"
    shutil.copytree(lstm[1], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["lstm"][field] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))
    layers, hidden = manifest["lstm"]["layers"], manifest["lstm"]["hidden_size"]
    with pytest.raises(ManifestError, match=re.escape(f"lstm.layers = {layers} and lstm.hidden_size = {hidden} do not fit the graph's state")) as err:
        OnnxPolicy(folder)
    assert f"= [{layers}, 'batch', {hidden}]" in str(err.value) and "'lstm_h': [1, 'batch', 16]" in str(err.value)


@pytest.mark.parametrize("features", [None, ["soc", "time_left"]], ids=["whole_observation", "features_only"])
def test_a_residual_run_exports_and_evaluates_with_its_base_controller(tmp_path, features):
    """With ``features`` the policy sees no window at all (a layout of 0 history and 0 forecast rows)."""
    wrapper = {"controller": "rule", "scale": 0.5, "battery_only": True, **({"features": features} if features else {})}
    conf = tmp_path / "residual.yml"
    conf.write_text(yaml.safe_dump({"Microgrid-v0": {
        "n_envs": 2, "n_timesteps": 96, "policy": "LinearPolicy", "n_delta": 2, "n_top": 2, "n_eval_episodes": 2,
        "env_wrapper": [{"sb3_microgrid.wrappers.ResidualWrapper": wrapper}],
        "normalize": "{'norm_obs': True, 'norm_reward': False, 'clip_obs': 10.0}",
    }}))  # fmt: skip
    training.train("paired_ars", conf, tmp_path / "run", save_freq=10**9, progress_bar=False)
    manifest = export_model(tmp_path / "run" / "model.zip", tmp_path / "export")
    assert manifest["env_wrappers"] == [{"sb3_microgrid.wrappers.residual.ResidualWrapper": wrapper}]
    assert (manifest["observation"]["layout"]["forecast_steps"] == 0) == bool(features)
    assert manifest["action"]["size"] == 1 and not manifest["action"]["is_env_action"]
    assert manifest["observation"]["layout"]["static_names"][-13:] == [f"base_action_{k}" for k in range(13)]
    assert isinstance(make_controller(str(tmp_path / "export")), ResidualController)
    both = Both(make_controller(str(tmp_path / "run" / "model.zip")), make_controller(str(tmp_path / "export")))
    evaluate(both, days=2, reference=False)
    assert len(both.actions) == 48 and both.diff <= 1e-5


def test_a_one_dimensional_action_exports(tmp_path):
    """PPO on a battery-only residual: a (batch, 1) action, whose width ONNX's shape inference left symbolic."""
    conf = tmp_path / "residual_ppo.yml"
    conf.write_text(yaml.safe_dump({"Microgrid-v0": {
        "n_envs": 1, "n_timesteps": 16, "policy": "MlpPolicy", "n_steps": 16, "batch_size": 16, "n_epochs": 1,
        "env_wrapper": [{"sb3_microgrid.wrappers.ResidualWrapper": {"controller": "rule", "scale": 0.5, "battery_only": True}}],
    }}))  # fmt: skip
    training.train("ppo", conf, tmp_path / "run", save_freq=10**9, progress_bar=False)
    manifest = export_model(tmp_path / "run" / "model.zip", tmp_path / "export")
    assert manifest["onnx"]["outputs"] == [{"name": "action", "shape": ["batch", 1], "dtype": "float32"}]
    both = Both(make_controller(str(tmp_path / "run" / "model.zip")), make_controller(str(tmp_path / "export")))
    evaluate(both, days=1, reference=False)
    assert len(both.actions) == 24 and both.diff <= 1e-5


def test_evaluate_scores_an_export_on_its_own_site_by_default(ppo, tmp_path, capsys):
    path, campus = ppo
    tod = tmp_path / "tod"
    export_model(path, tod, scenario="campus_tod")
    assert main(["evaluate", "--controller", str(tod), "--days", "1", "--no-reference"]) == 0
    assert capsys.readouterr().out.startswith("scenario campus_tod,")
    assert main(["evaluate", "--controller", str(tod), "--scenario", "campus", "--days", "1", "--no-reference"]) == 0
    assert capsys.readouterr().out.startswith("scenario campus,")
    assert main(["evaluate", "--controller", str(tod), "--controller", str(campus), "--days", "1", "--no-reference"]) == 2
    assert "made for different sites (campus, campus_tod); name one with --scenario" in capsys.readouterr().err


def test_evaluate_scores_a_trained_model_on_its_training_files_scenario_by_default(tmp_path, capsys):
    """The run's ``env_kwargs`` scenario is where evaluate, plot and export put the model; a ToD run was scored on campus."""
    def run(name, **section):
        conf = tmp_path / f"{name}.yml"
        conf.write_text(yaml.safe_dump({"Microgrid-v0": {
            "n_envs": 1, "n_timesteps": 16, "policy": "MlpPolicy", "n_steps": 16, "batch_size": 16, "n_epochs": 1, **section,
        }}))  # fmt: skip
        training.train("ppo", conf, tmp_path / name, save_freq=10**9, progress_bar=False)
        return conf

    conf = run("run", env_kwargs={"scenario": "campus_tod"})
    model = str(tmp_path / "run" / "model.zip")
    assert main(["evaluate", "--controller", model, "--days", "1", "--no-reference"]) == 0
    assert capsys.readouterr().out.startswith("scenario campus_tod,")
    assert export_model(model, tmp_path / "export")["scenario"]["name"] == "campus_tod"
    assert main(["evaluate", "--controller", model, "--controller", str(tmp_path / "export"), "--days", "1", "--no-reference"]) == 0
    assert capsys.readouterr().out.startswith("scenario campus_tod,")
    (tmp_path / "run" / "config.yml").write_text(conf.read_text().replace("campus_tod", "no_such_site"))
    assert main(["evaluate", "--controller", model, "--days", "1", "--no-reference"]) == 2
    assert "the scenario" in (err := capsys.readouterr().err) and "no_such_site" in err and "--scenario" in err
    assert main(["evaluate", "--controller", model, "--scenario", "campus", "--days", "1", "--no-reference"]) == 0
    assert capsys.readouterr().out.startswith("scenario campus,")
    # a run whose file names no scenario trained on campus: beside the ToD run it is another site ...
    (tmp_path / "run" / "config.yml").write_text(conf.read_text())
    run("plain")
    run("rewarded", env_kwargs={"scenario": {"base": "campus", "reward": {"exogenous_baseline": True}}})
    assert main(["evaluate", "--controller", model, "--controller", str(tmp_path / "plain" / "model.zip"), "--days", "1", "--no-reference"]) == 2
    assert "made for different sites (campus, campus_tod)" in capsys.readouterr().err
    # ... and the same site as one trained on campus with other reward settings, which evaluation does not score
    assert main(["evaluate", "--controller", str(tmp_path / "plain" / "model.zip"), "--controller", str(tmp_path / "rewarded" / "model.zip"), "--days", "1", "--no-reference"]) == 0
    assert capsys.readouterr().out.startswith("scenario campus,")


# ---- the manifest -------------------------------------------------------------------------------------------------
def test_the_manifest_describes_the_policy(ppo, tmp_path):
    path, export = ppo
    (path.parent / "validation.json").write_text(json.dumps({"best": {"steps": 48.0, "gap_closed": 0.5}, "history": []}))
    evaluation = tmp_path / "test.json"
    evaluate(make_controller(str(path)), days=1, reference=False, source=path).to_json(evaluation)  # as the command line does
    try:
        manifest = export_model(path, tmp_path / "export", kpis=evaluation)
    finally:
        (path.parent / "validation.json").unlink()
    env, scenario = MicrogridEnv(), load_scenario("campus")
    assert manifest == json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["algorithm"] == "ppo" and manifest["training"]["num_timesteps"] == 96
    assert ObservationLayout.from_dict(manifest["observation"]["layout"]) == env.obs_layout and manifest["observation"]["size"] == 206
    assert manifest["action"]["size"] == 13 and manifest["action"]["is_env_action"] and manifest["env_wrappers"] == []
    entries = manifest["action"]["env"]["entries"]
    assert [e["name"] for e in entries] == ["battery", *(f"port{p}" for p in range(12))]
    assert entries[0]["kw"] == [-500.0, 0.0, 500.0] and entries[1]["kw"] == [0.0, 5.5, 11.0]
    assert manifest["scenario"] == {"name": "campus", "file": "scenario.yaml", "sha256": scenario_fingerprint(scenario)}
    assert Scenario.from_yaml(tmp_path / "export" / "scenario.yaml") == scenario
    assert manifest["kpis"]["validation"] == {"steps": 48.0, "gap_closed": 0.5}
    assert manifest["kpis"]["test"]["split"] == "test" and manifest["kpis"]["test"]["days"] == 1
    assert manifest["kpis"]["test"]["model_sha256"] == model_sha256(path) and manifest["kpis"]["test"]["scenario_fingerprint"] == manifest["scenario"]["sha256"]
    assert set(manifest["versions"]) == {"sb3_microgrid", "stable_baselines3", "sb3_contrib", "torch", "onnx", "python"}
    assert manifest["onnx"]["inputs"] == [{"name": "obs", "shape": ["batch", 206], "dtype": "float32"}]
    assert manifest["onnx"]["outputs"] == [{"name": "action", "shape": ["batch", 13], "dtype": "float32"}]
    assert manifest["check"]["max_abs_action_diff"] <= 1e-5
    assert manifest["kpis"]["test"]["cost_per_day"] > 0 and export_model(path, tmp_path / "again")["kpis"] == {"validation": None, "test": None}


def test_the_fingerprint_tells_scenarios_apart():
    campus = load_scenario("campus")
    assert scenario_fingerprint(campus) == scenario_fingerprint(load_scenario({"base": "campus"}))
    assert scenario_fingerprint(campus) != scenario_fingerprint(load_scenario("campus_tod"))
    assert scenario_fingerprint(campus) != scenario_fingerprint(campus.replace(battery__capacity_kwh=1501.0))


def test_the_action_layout_follows_v2g():
    layout = ActionLayout(charge_power_kw=400.0, discharge_power_kw=300.0, n_ports=2, port_power_kw=22.0, v2g=True)
    entries = layout.to_dict()["entries"]
    assert [e["name"] for e in entries] == ["battery", "port0", "port1"]
    assert entries[0]["kw"] == [-300.0, 0.0, 400.0] and entries[2]["kw"] == [-22.0, 0.0, 22.0]
    env = MicrogridEnv(scenario={"base": "campus", "ev": {"n_ports": 0}})
    assert env.action_layout.names == ("battery",) and env.action_space.shape == (1,)


# ---- the command line ---------------------------------------------------------------------------------------------
def test_export_and_evaluate_from_the_command_line(ppo, tmp_path, capsys):
    path, _ = ppo
    assert main(["export", f"{path}:ppo", "--out", str(tmp_path / "cli")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert json.loads((tmp_path / "cli" / "manifest.json").read_text())["algorithm"] == "ppo"
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--controller", str(tmp_path / "cli"), "--days", "1", "--no-reference", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["summary"]["cost_per_day"] > 0


def test_the_export_help_says_what_the_code_does(capsys):
    """The help said the default scenario was the run's env_kwargs one (the site run.json records comes first) and
    that actions were clipped (a squashed actor's are unscaled)."""
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: the site the run's run.json records, written by sb3-microgrid adapt and by train with a scenario file, else the run's env_kwargs scenario, else campus" in text
    assert "a squashed actor's (SAC, TQC, ...) unscaled to the action space, any other clipped to it" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.zip"], "no model file at missing.zip"),
        (["{bad}"], "is not a saved Stable-Baselines3 model"),
        (["{model}", "--out", "{model}"], "is a file, not a folder"),
        (["{model}", "--scenario", "nowhere"], "scenario"),
        (["{model}", "--scenario", "{small}"], "another observation than scenario"),
        (["{model}", "--vecnormalize", "missing.pkl"], "no VecNormalize statistics at missing.pkl"),
        (["{model}", "--kpis", "{bad}"], "is not the --json output of sb3-microgrid evaluate"),
        (["{model}", "--kpis", "{validation_kpis}"], "need the 'test' split"),
        # another site's, run's or controller's KPIs were recorded as this model's (test_kpis_of_another_run_or_site_...)
        (["{model}", "--kpis", "{other_site_kpis}"], "scores another scenario than the one exported: summary.scenario_fingerprint is"),
        (["{model}", "--kpis", "{model_kpis}", "--scenario", "campus_tod"], "scores another scenario than the one exported: summary.scenario_fingerprint is"),
        (["{model}", "--kpis", "{other_model_kpis}"], "scores another model file than"),
        (["{model}", "--kpis", "{rule_kpis}"], "scores controller 'rule', not a saved model (summary.model_sha256 is null)"),
        (["{model}", "--kpis", "{older_kpis}"], "records no summary.model_sha256 or summary.scenario_fingerprint (written by an older sb3-microgrid evaluate)"),
        (["{model}", "--kpis", "{no_site_kpis}"], "records no summary.scenario_fingerprint"),
        (["{model}:nope"], "unknown algorithm 'nope'"),
    ],
)
def test_bad_inputs_exit_2_naming_the_problem(ppo, tmp_path, capsys, args, message):
    path, _ = ppo
    bad = tmp_path / "bad.zip"
    bad.write_text("not a zip")
    small = tmp_path / "small.yaml"
    small.write_text("base: campus\nev: {n_ports: 4}\n")
    names = {"model": path, "bad": bad, "small": small}
    campus = {"controller": "model", "scenario": "campus", "split": "test", "cost_per_day": 1.0}
    model, site = {"model_sha256": model_sha256(path)}, {"scenario_fingerprint": scenario_fingerprint(load_scenario("campus"))}
    # a scenario built on campus keeps its name
    bigger = {"scenario_fingerprint": scenario_fingerprint(load_scenario({"base": "campus", "battery": {"capacity_kwh": 1000}}))}
    for name, summary in (
        ("validation_kpis", {"split": "validation"}),
        ("model_kpis", {**campus, **model, **site}),
        ("other_site_kpis", {**campus, **model, **bigger}),
        ("other_model_kpis", {**campus, "model_sha256": "0" * 64, **site}),  # another run's model.zip
        ("rule_kpis", {**campus, "controller": "rule", "model_sha256": None, **site}),
        ("older_kpis", campus),
        ("no_site_kpis", {**campus, **model}),
    ):
        names[name] = tmp_path / f"{name}.json"
        names[name].write_text(json.dumps({"controller": summary.get("controller"), "summary": summary}))
    argv = ["export", *(a.format(**names) for a in args)]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sb3-microgrid export: error:") and message in err and "Traceback" not in err


def test_kpis_of_another_run_or_site_are_refused_and_the_export_left_alone(ppo, tmp_path):
    """The check compared the model file's stem and the scenario's name: every run saves model.zip, and a scenario built
    on a preset keeps the preset's name, so another run's or another site's KPIs were recorded as this policy's."""
    path, _ = ppo
    other = train("ppo", tmp_path / "other_run", steps=48)  # another run, also model.zip
    assert other.name == path.name and model_sha256(other) != model_sha256(path)
    bigger = load_scenario({"base": "campus", "battery": {"capacity_kwh": 1000}})
    assert bigger.name == "campus"
    kpis = {}
    for name, model, scenario in (("other_run", other, "campus"), ("other_site", path, bigger), ("this", path, "campus")):
        kpis[name] = tmp_path / f"{name}.json"
        evaluate(model, scenario=scenario, days=1, reference=False).to_json(kpis[name])
    out, before = _previous_export(ppo, tmp_path)
    with pytest.raises(ExportError, match=re.escape(f"{kpis['other_run']} scores another model file than {path}: summary.model_sha256 is")):
        export_model(path, out, kpis=kpis["other_run"])
    with pytest.raises(ExportError, match=re.escape(f"{kpis['other_site']} scores another scenario than the one exported: summary.scenario_fingerprint")):
        export_model(path, out, kpis=kpis["other_site"])
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    assert export_model(path, out, kpis=kpis["this"])["kpis"]["test"]["model_sha256"] == model_sha256(path)


def test_evaluate_json_from_the_command_line_is_taken_by_export(ppo, tmp_path):
    path, _ = ppo
    kpis = tmp_path / "eval.json"
    assert main(["evaluate", "--controller", str(path), "--days", "1", "--no-reference", "--json", str(kpis)]) == 0
    assert json.loads(kpis.read_text())["summary"]["model_sha256"] == model_sha256(path)
    assert main(["export", str(path), "--out", str(tmp_path / "out"), "--kpis", str(kpis)]) == 0


def _previous_export(ppo, tmp_path):
    """A copy of the module's export, to export into again, and its files."""
    out = tmp_path / "out"
    shutil.copytree(ppo[1], out)
    return out, {f.name: f.read_bytes() for f in out.iterdir()}


def _deep(file):
    file.write_text("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize(
    "name, write, message",
    [
        ("eval.json", lambda f: f.write_text('{"summary": {"split": "test", "gap_closed": NaN, "cost_per_day": 1.0}}'), "NaN is not a JSON value"),
        ("eval.json", _deep, "maximum recursion depth exceeded"),
        ("validation.json", lambda f: f.write_text('{"best": {"steps": 48, "gap_closed": Infinity}}'), "Infinity is not a JSON value"),
        ("validation.json", _deep, "maximum recursion depth exceeded"),
    ],
    ids=["NaN KPI", "deep KPIs", "infinite validation KPI", "deep validation record"],
)
def test_a_bad_kpi_file_is_named_and_leaves_the_previous_export(ppo, tmp_path, capsys, name, write, message):
    """NaN passed the KPI readers and failed the manifest's strict JSON, after the graph and scenario were written
    beside the previous manifest: the folder was no export any more (its scenario no longer the manifest's)."""
    run = tmp_path / "run"
    shutil.copytree(ppo[0].parent, run)
    write(run / name)
    out, before = _previous_export(ppo, tmp_path)
    kpis = ["--kpis", str(run / name)] if name == "eval.json" else []
    assert main(["export", f"{run / 'model.zip'}:ppo", "--out", str(out), "--scenario", "campus_tod", *kpis]) == 2
    err = capsys.readouterr().err
    assert f"{run / name} is not" in err and message in err and "Traceback" not in err
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before


def test_a_failed_check_leaves_the_previous_export(ppo, tmp_path, monkeypatch):
    """The new files are checked in a folder of their own and replace the previous export only once they pass: a
    failure leaves neither a manifest of files that failed nor a mix of two exports."""
    out, before = _previous_export(ppo, tmp_path)

    def fail(*args):
        raise ExportError("the exported graph's actions differ")

    monkeypatch.setattr(onnx_export, "_check_graph", fail)
    with pytest.raises(ExportError, match="differ"):
        export_model(ppo[0], out, scenario="campus_tod")
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    with pytest.raises(ExportError, match="differ"):
        export_model(ppo[0], tmp_path / "new")
    assert list((tmp_path / "new").iterdir()) == []
    monkeypatch.undo()
    assert export_model(ppo[0], out, scenario="campus_tod")["scenario"]["name"] == "campus_tod"
    assert sorted(f.name for f in out.iterdir()) == sorted(before)


def test_a_normalised_run_without_its_statistics_is_refused(ppo, tmp_path):
    path, _ = ppo
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.zip").write_bytes(path.read_bytes())
    write_run_json(tmp_path / "run", "ppo")
    (tmp_path / "run" / "config.yml").write_text(yaml.safe_dump({"Microgrid-v0": {"normalize": True}}))
    with pytest.raises(ExportError, match="no VecNormalize statistics were found"):
        export_model(tmp_path / "run" / "model.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_env_wrappers_that_hide_the_layout_are_refused(ppo, tmp_path):
    path, _ = ppo
    (tmp_path / "run").mkdir()
    for name in ("model.zip", "model_vecnormalize.pkl"):
        (tmp_path / "run" / name).write_bytes((path.parent / name).read_bytes())
    write_run_json(tmp_path / "run", "ppo", 96, ["model.zip", "model_vecnormalize.pkl"])
    (tmp_path / "run" / "config.yml").write_text(yaml.safe_dump({"Microgrid-v0": {"env_wrapper": ["gymnasium.wrappers.FlattenObservation"]}}))
    with pytest.raises(ExportError, match="observation without an ObservationLayout"):
        export_model(tmp_path / "run" / "model.zip", tmp_path / "out")


def test_a_goal_env_model_is_refused(tmp_path):
    env = gym.make("MicrogridGoal-v0", budget_range=((-3.0, 3.0), (-3.0, 3.0))).unwrapped
    SAC("MultiInputPolicy", DummyVecEnv([lambda: env]), buffer_size=100, policy_kwargs={"net_arch": [8]}, device="cpu").save(tmp_path / "her.zip")
    with pytest.raises(ExportError, match="only flat Box observations"):
        export_model(tmp_path / "her.zip", tmp_path / "out")


# ---- the runtime --------------------------------------------------------------------------------------------------
def test_a_bad_observation_is_a_named_error(ppo):
    policy = OnnxPolicy(ppo[1])
    for obs in (np.zeros(205), np.zeros((2, 207)), np.zeros((1, 1, 206)), np.zeros(())):
        with pytest.raises(ObservationShapeError, match=r"shape \(206,\) or \(n, 206\)"):
            policy.act(obs)
    with pytest.raises(ObservationShapeError, match="real numbers"):
        policy.act(np.array(["x"] * 206))
    # NaN, inf, and a float64 that the float32 cast turns into inf: named by index, never a NaN action
    nan_at_3 = np.zeros(206)
    nan_at_3[3] = np.nan
    with pytest.raises(ObservationShapeError, match=r"finite numbers within float32's range .*; not at index 3$"):
        policy.act(nan_at_3)
    with pytest.raises(ObservationShapeError, match=r"not at \(row, index\) \(1, 205\)$"):
        policy.act(np.vstack([np.zeros(206), np.r_[np.zeros(205), 1e300]]))
    with pytest.raises(ObservationShapeError, match=r"not at index 0, 1, 2, 3, 4 and 201 more$"):
        policy.act(np.full(206, -np.inf))


def test_a_controller_for_another_layout_is_refused_at_reset(ppo):
    env = MicrogridEnv(scenario={"base": "campus", "ev": {"n_ports": 4}})
    obs, _ = env.reset(seed=0)
    with pytest.raises(LayoutMismatchError, match="another observation layout"):
        OnnxController(ppo[1]).reset(env, obs)
    # Another scenario of the same layout (a ToD tariff) is evaluated, as with the model's zip (docs/deploy.md).
    env = MicrogridEnv(scenario="campus_tod")
    OnnxController(ppo[1]).reset(env, env.reset(seed=0)[0])


def _float64_graph(folder, manifest) -> None:
    """A graph of the manifest's names and shapes whose input and output are float64: it loads, and every act fails."""
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["obs", "w"], ["action"])], "float64",
        [onnx.helper.make_tensor_value_info("obs", onnx.TensorProto.DOUBLE, ["batch", 206])],
        [onnx.helper.make_tensor_value_info("action", onnx.TensorProto.DOUBLE, ["batch", 13])],
        [onnx.numpy_helper.from_array(np.zeros((206, 13)), "w")],
    )  # fmt: skip
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), folder / "policy.onnx")


def test_a_folder_that_is_not_an_export_is_refused(ppo, tmp_path, capsys):
    def broken(edit):
        folder = tmp_path / f"broken{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        for name in ("manifest.json", "policy.onnx", "scenario.yaml"):
            (folder / name).write_bytes((ppo[1] / name).read_bytes())
        manifest = json.loads((folder / "manifest.json").read_text())
        edit(folder, manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))
        return folder

    layout = lambda **steps: lambda f, m: m["observation"]["layout"].update(steps)  # noqa: E731
    cases = [
        ("no export folder at", tmp_path / "nowhere"),
        ("no manifest.json", tmp_path),
        ("expected an object with format 1", broken(lambda f, m: m.update(format=2))),
        ("expected an object with format 1, got format True", broken(lambda f, m: m.update(format=True))),
        ("missing or malformed field observation.layout", broken(lambda f, m: m.pop("observation"))),
        ("is not readable JSON: Infinity is not a JSON value", broken(layout(history_steps=float("inf")))),
        ("observation.layout: layout field 'history_steps' must be an integer in [0, 1000], got -1", broken(layout(history_steps=-1, forecast_steps=33))),
        ("observation.layout: layout field 'window_names' must be a list of strings", broken(layout(window_names="pvwle"))),
        ("onnx.outputs must be a list of objects with a string name", broken(lambda f, m: m["onnx"]["outputs"][0].update(name=1))),
        ("onnx.inputs must be a list of objects", broken(lambda f, m: m["onnx"].update(inputs={"name": "obs"}))),
        ("missing or malformed field action.is_env_action", broken(lambda f, m: m["action"].pop("is_env_action"))),
        ("action.is_env_action must be true or false, got 1", broken(lambda f, m: m["action"].update(is_env_action=1))),
        ("missing or malformed field scenario.file", broken(lambda f, m: m.pop("scenario"))),
        ("scenario.file must name a file", broken(lambda f, m: m["scenario"].update(file=str(ppo[1] / "scenario.yaml")))),
        ("scenario.file must name a file", broken(lambda f, m: m["scenario"].update(file=["scenario.yaml"]))),
        ("scenario.sha256 must be a string", broken(lambda f, m: m["scenario"].update(sha256=None))),
        ("onnx.file must name a file", broken(lambda f, m: (f / "policy.onnx").unlink())),
        ("onnx.file must name a file", broken(lambda f, m: m["onnx"].update(file="../policy.onnx"))),
        ("not a graph onnxruntime can load", broken(lambda f, m: (f / "policy.onnx").write_bytes(b"junk"))),
        ("the layout's size", broken(lambda f, m: m["onnx"]["inputs"][0].update(shape=["batch", 205]))),
        ("declares", broken(lambda f, m: (m["observation"]["layout"].update(history_steps=7), m["onnx"]["inputs"][0].update(shape=["batch", 201])))),
        ("onnx.outputs must be a list of objects with a string name, a shape and dtype 'float32'", broken(lambda f, m: m["onnx"]["outputs"][0].update(dtype="float64"))),
        ("onnx.inputs must be a list of objects with a string name, a shape and dtype 'float32'", broken(lambda f, m: m["onnx"]["inputs"][0].pop("dtype"))),
        ("has inputs and outputs {'obs': {'shape': ['batch', 206], 'type': 'tensor(double)'}", broken(_float64_graph)),
        ("declares {'obs': {'shape': ['batch', 206], 'type': 'tensor(float)'}", broken(_float64_graph)),
    ]
    deep = broken(lambda f, m: None)
    (deep / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    cases.append((f"{deep / 'manifest.json'} is not readable JSON: maximum recursion depth exceeded", deep))
    for message, folder in cases:
        with pytest.raises(ManifestError, match=re.escape(message)):
            OnnxPolicy(folder)
    assert main(["evaluate", "--controller", str(deep), "--days", "1", "--no-reference"]) == 2
    assert "maximum recursion depth exceeded" in capsys.readouterr().err
    with pytest.raises(ValueError, match="controller folder: its base controller or algorithm and statistics are in its files"):
        make_controller(str(ppo[1]), vecnormalize="stats.pkl")


def test_the_runtime_imports_neither_torch_nor_stable_baselines3():
    code = "import sys; import sb3_microgrid.export.onnx_policy; print(sorted(m for m in ('torch', 'stable_baselines3', 'sb3_contrib') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@pytest.mark.xfail(strict=True, reason="importing sb3_microgrid registers its gymnasium envs")
def test_the_runtime_imports_no_gymnasium():
    code = "import sys; import sb3_microgrid.export.onnx_policy; print('gymnasium' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_export_takes_a_site_preset_by_name(tmp_path):
    """`--scenario clinic_200kw` is the preset as adapt builds it (the site interface), for a model of that interface."""
    from sb3_microgrid.adaptation import resolve_site

    site = resolve_site("clinic_200kw")
    PPO("MlpPolicy", MicrogridEnv(site), n_steps=16, batch_size=16, seed=0, device="cpu").save(tmp_path / "model.zip")
    assert main(["export", str(tmp_path / "model.zip"), "--scenario", "clinic_200kw", "--out", str(tmp_path / "out")]) == 0
    assert load_scenario(tmp_path / "out" / "scenario.yaml") == site
