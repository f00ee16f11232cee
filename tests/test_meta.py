"""One policy across sites: the multi-site VecEnv, Reptile around PPO, pooled training's env and ``sb3-microgrid adapt``."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, ProgressBarCallback
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize
from torch.nn.utils import parameters_to_vector

from sb3_microgrid.adaptation import adapt, multi_site_env, save_run, site_interface
from sb3_microgrid.algos import identify
from sb3_microgrid.cli import main
from sb3_microgrid.envs import MicrogridVecEnv
from sb3_microgrid.envs.multi_site import MultiSiteVecEnv, SiteInterfaceError
from sb3_microgrid.reptile import Reptile
from sb3_microgrid.sites import HeldOutSiteError, SITE_PRESETS, preset_site, sample_sites, training_sites
from sb3_microgrid.evaluation import evaluate
from sb3_microgrid.validation import ValidationCallback

SITES = [site_interface(s) for s in training_sites(3, 0)]
#: Reptile small enough for a test: an inner PPO update is 24 steps of 2 microgrids, one minibatch, two epochs.
TINY = dict(n_steps=24, batch_size=48, n_epochs=2, gamma=1.0, seed=0, device="cpu", policy_kwargs={"net_arch": [16]})
#: Env steps of one inner PPO update (n_steps x 2 microgrids per site).
UPDATE = 48


def flat(model: PPO) -> th.Tensor:
    return parameters_to_vector(model.policy.parameters()).detach().clone()


def reptile(sites=SITES[:2], **kwargs) -> Reptile:
    env = VecNormalize(VecMonitor(MultiSiteVecEnv(sites, 2, seed=0)), gamma=1.0)
    return Reptile("MlpPolicy", env, **{**TINY, "inner_updates": 2, **kwargs})


def spy_inner_loops(model: Reptile, monkeypatch) -> list[tuple[th.Tensor, str, th.Tensor, int]]:
    """Record each inner loop's start weights, site, solution and the optimizer's step count at its end."""
    calls = []
    original = model._inner_loop

    def spy(theta, site, callback):
        solution = original(theta, site, callback)
        steps = max(int(state["step"]) for state in model.policy.optimizer.state.values())
        calls.append((theta.clone(), site.name, solution, steps))
        return solution

    monkeypatch.setattr(model, "_inner_loop", spy)
    return calls


# ---- MultiSiteVecEnv ----------------------------------------------------------------------------------------------
def test_multi_site_env_is_its_sites_side_by_side():
    env = MultiSiteVecEnv(SITES[:2], 2, seed=7)
    alone = [MicrogridVecEnv(2, scenario=site, seed=7 + 2 * i) for i, site in enumerate(SITES[:2])]
    assert env.num_envs == 4 and env.observation_space == alone[0].observation_space and env.action_space.shape == (2,)
    np.testing.assert_array_equal(env.reset(), np.concatenate([e.reset() for e in alone]))
    actions = np.random.default_rng(0).uniform(-1, 1, size=(24, 4, 2)).astype(np.float32)
    for action in actions:  # a whole day: every microgrid ends and resets together
        obs, rewards, dones, infos = env.step(action)
        parts = [e.step(action[2 * i : 2 * i + 2]) for i, e in enumerate(alone)]
        np.testing.assert_array_equal(obs, np.concatenate([p[0] for p in parts]))
        np.testing.assert_array_equal(rewards, np.concatenate([p[1] for p in parts]))
    assert dones.all() and all("terminal_observation" in info for info in infos)
    assert [s.name for s in env.get_attr("scenario")] == [SITES[0].name] * 2 + [SITES[1].name] * 2
    assert [d.ev_count for d in env.env_method("set_difficulty", ev_count=1, indices=[3])] == [1]
    env.reset()  # a difficulty applies at the next reset, to the microgrid named only
    assert [d.ev_count for d in env.get_attr("difficulty")] == [None, None, None, 1]


@pytest.mark.parametrize("shape", [(3, 2), (7, 2), (4, 3), (4,), ()])
def test_a_bad_action_or_day_leaves_every_site_where_it_was(shape):
    """Each site checked only its own slice: a short action stepped the first site and then raised, leaving the
    sites a step apart, and a bad day for a later site had already reset the earlier ones."""
    env = MultiSiteVecEnv(SITES[:2], 2, seed=7)
    env.reset()
    env.step(np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=re.escape(f"actions must have shape (4, 2), got shape {shape}")):
        env.step(np.zeros(shape, dtype=np.float32))
    assert [site.core.t for site in env.site_envs] == [1, 1]
    with pytest.raises(ValueError, match=re.escape("actions must have shape (4, 2): setting an array element")):
        env.step([[0.0, 0.0]] * 3 + [[0.0]])  # ragged
    dates = [site.core.episode_dates() for site in env.site_envs]
    env.set_options([{"day": "2016-03-01"}] * 3 + [{"day": "2099-01-01"}])
    with pytest.raises(ValueError, match="2099-01-01 is not a start day"):
        env.reset()
    assert [site.core.t for site in env.site_envs] == [1, 1]
    assert [site.core.episode_dates() for site in env.site_envs] == dates


def test_multi_site_env_refuses_sites_of_different_interfaces_naming_them():
    ports = sample_sites(3, 0)  # the per-port interface: actions of 1 + n_ports entries
    with pytest.raises(SiteInterfaceError) as err:
        MultiSiteVecEnv(ports[1:3], 1)
    message = str(err.value)
    for site in ports[1:3]:
        assert f"{site.name!r}: observation" in message and f"action {1 + site.ev.n_ports}" in message
    assert "ev.dispatch: aggregate" in message and "observation.site_context: true" in message
    with pytest.raises(ValueError, match="each site once"):
        MultiSiteVecEnv([SITES[0], SITES[0]], 1)


def test_multi_site_env_refreshes_reset_infos_at_automatic_resets_and_checks_its_inputs():
    env = MultiSiteVecEnv(SITES[:2], 2, seed=7)
    env.reset()
    first = [info["date"] for info in env.reset_infos]
    for _ in range(24):  # a day: every site ends and starts a new episode
        _, _, dones, _ = env.step(np.zeros((4, 2), dtype=np.float32))
    assert dones.all()
    assert env.reset_infos == [info for site in env.site_envs for info in site.reset_infos]
    assert [info["date"] for info in env.reset_infos] != first  # the new episodes' days, as DummyVecEnv reports them
    with pytest.raises(ValueError, match="a list of 4 dicts .* got a list of 1"):
        env.set_options([{"day": "2016-03-01"}])  # would have gone to the first site's first microgrid only
    env.set_options({"day": "2016-03-01"})
    env.reset()
    assert [info["date"] for info in env.reset_infos] == ["2016-03-01"] * 4
    with pytest.raises(TypeError, match="a list of sites"):
        MultiSiteVecEnv(SITES[0].name, 1)  # a name is one site, not a list of one-letter ones
    assert MultiSiteVecEnv(SITES[:2], np.int64(2)).num_envs == 4  # as MicrogridVecEnv takes numpy integers
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="n_envs_per_site must be an integer >= 1"):
            MultiSiteVecEnv(SITES[:2], bad)
    assert env.env_is_wrapped(VecMonitor, indices=[0, 3]) == [False, False]


# ---- Reptile ------------------------------------------------------------------------------------------------------
def test_one_outer_update_moves_the_weights_epsilon_of_the_way_to_the_inner_solution(monkeypatch):
    model = reptile(meta_step_size=0.25)
    assert model.rollout_buffer.n_envs == 2 and model.env.num_envs == 4  # the buffer holds one site's microgrids
    calls = spy_inner_loops(model, monkeypatch)
    theta = flat(model)
    model.learn(2 * UPDATE)
    (start, _, solution, _), = calls
    assert th.equal(start, theta)
    assert (solution - theta).norm() > 1e-3  # the inner loop trained
    th.testing.assert_close(flat(model), theta + 0.25 * (solution - theta), rtol=0, atol=1e-7)


def test_a_batch_of_sites_moves_the_weights_toward_the_mean_of_their_solutions_each_from_theta(monkeypatch):
    model = reptile(meta_batch_size=2, meta_step_size=0.5)
    calls = spy_inner_loops(model, monkeypatch)
    collected, collect = [], model.collect_rollouts
    monkeypatch.setattr(model, "collect_rollouts", lambda *args, **kwargs: collected.append(flat(model)) or collect(*args, **kwargs))
    theta = flat(model)
    model.learn(2 * 2 * UPDATE)
    assert sorted(name for _, name, _, _ in calls) == sorted(s.name for s in SITES[:2])
    # each site's first rollout acts with theta, not with the previous site's solution
    assert len(collected) == 4 and th.equal(collected[0], theta) and th.equal(collected[2], theta) and not th.equal(collected[1], theta)
    # with fresh optimizer moments: each loop's Adam counts its own 2 updates x 2 epochs x 1 minibatch only
    assert [steps for _, _, _, steps in calls] == [4, 4]
    first, second = (solution for _, _, solution, _ in calls)
    assert (first - second).norm() > 1e-3  # two sites, two solutions
    th.testing.assert_close(flat(model), theta + 0.5 * ((first + second) / 2 - theta), rtol=0, atol=1e-7)
    assert len(model.policy.optimizer.state) == 0  # the saved model holds no site's moments


def test_an_annealed_meta_step_size_follows_the_progress_at_the_start_of_each_update(monkeypatch):
    model = reptile(meta_step_size=LinearSchedule(1.0, 0.0, 1.0))
    calls = spy_inner_loops(model, monkeypatch)
    model.learn(2 * 2 * UPDATE)  # two outer updates, starting at progress remaining 1 and 0.5 (the paper's code)
    (theta, _, solution, _), (second_theta, _, second_solution, _) = calls
    th.testing.assert_close(second_theta, solution, rtol=0, atol=1e-7)  # epsilon 1
    assert (second_solution - second_theta).norm() > 1e-3
    # epsilon 0.5, not the 0 of the progress after its rollouts: the last update's inner loops are not thrown away
    th.testing.assert_close(flat(model), second_theta + 0.5 * (second_solution - second_theta), rtol=0, atol=1e-7)


def test_meta_step_sizes_out_of_range_are_refused_naming_the_range():
    with pytest.raises(ValueError, match=r"meta_step_size must be a number in \(0, 1\]"):
        reptile(meta_step_size=1.5)
    with pytest.raises(ValueError, match=r"meta_step_size schedule returned 2.0 at progress remaining 1; it must return values in \[0, 1\]"):
        reptile(meta_step_size=lambda progress: 2.0)
    model = reptile(meta_step_size=lambda progress: 1.0 if progress == 1 else -0.5)  # found when it is used
    theta = flat(model)
    model.learn(2 * UPDATE)
    with pytest.raises(ValueError, match=r"returned -0.5 at progress remaining 0.5"):
        model.learn(2 * UPDATE, reset_num_timesteps=False)
    assert model._n_meta_updates == 1 and not th.equal(flat(model), theta)
    with pytest.raises(ValueError, match=r"meta_batch_size must be an integer in \[1, 2\]"):
        reptile(meta_batch_size=3)  # two sites


def test_a_site_revisited_acts_on_its_last_observation_normalised_with_the_current_statistics(monkeypatch):
    model = reptile(meta_batch_size=2, inner_updates=1)
    seen, collect = [], model.collect_rollouts

    def spy(env, *args, **kwargs):
        seen.append((model._last_obs.copy(), env.normalize_obs(env.get_original_obs())))
        return collect(env, *args, **kwargs)

    monkeypatch.setattr(model, "collect_rollouts", spy)
    model.learn(2 * 2 * UPDATE)  # each site visited twice, the other site's visit moving the shared statistics between
    assert len(seen) == 4
    for used, current in seen:
        np.testing.assert_allclose(used, current, rtol=0, atol=1e-6)


def test_reward_statistics_are_per_site_and_observation_statistics_shared():
    model = reptile(sites=SITES, meta_batch_size=3)
    model.learn(3 * 2 * UPDATE)
    stats = model.site_return_rms
    assert sorted(stats) == sorted(s.name for s in SITES)
    assert len({float(r.var) for r in stats.values()}) == 3 and all(r.count == pytest.approx(1e-4 + 2 * 24 * 2) for r in stats.values())
    outer = model.get_vec_normalize_env()
    assert all(site.env.obs_rms is outer.obs_rms for site in model._sites)
    assert outer.obs_rms.count > 3 * 2 * UPDATE  # every site's observations
    combined = sum(r.count for r in stats.values())
    assert outer.ret_rms.count == pytest.approx(combined + 1e-4)  # what fine-tuning starts from


def test_callbacks_see_the_meta_weights_at_rollout_start_and_a_stop_restores_them():
    class Record(BaseCallback):
        def __init__(self, stop_at: int | None = None):
            super().__init__()
            self.starts, self.ends, self.stop_at = [], [], stop_at

        def _on_rollout_start(self):
            self.starts.append(flat(self.model))

        def _on_rollout_end(self):
            self.ends.append(flat(self.model))

        def _on_step(self):
            return self.stop_at is None or self.num_timesteps < self.stop_at

    model = reptile()
    record = Record()
    model.learn(3 * 2 * UPDATE, callback=record)
    assert len(record.starts) == len(record.ends) == 3  # one rollout per outer update
    assert all(th.equal(end, start) for end, start in zip(record.ends, record.starts[1:]))
    stopped = reptile()
    theta = flat(stopped)
    stopped.learn(2 * UPDATE, callback=Record(stop_at=UPDATE + 10))  # stops in the second inner update
    th.testing.assert_close(flat(stopped), theta, rtol=0, atol=0)
    assert len(stopped.policy.optimizer.state) == 0  # nor does it keep the site's Adam moments


def test_the_progress_bar_counts_env_steps(monkeypatch):
    counted = []

    def record(self):
        counted.append((self.pbar.n, self.pbar.total, self.model.num_timesteps))
        self.pbar.close()

    monkeypatch.setattr(ProgressBarCallback, "_on_training_end", record)
    model = reptile()  # two sites of two microgrids: an inner step is 2 env steps, not the env's 4
    model.learn(2 * UPDATE, progress_bar=True)
    model.learn(2 * UPDATE, progress_bar=True, reset_num_timesteps=False, callback=lambda locals_, globals_: True)  # a functional callback too
    assert counted == [(2 * UPDATE, 2 * UPDATE, 2 * UPDATE), (2 * UPDATE, 2 * UPDATE, 4 * UPDATE)]


def test_set_env_refuses_other_microgrids_per_site_and_keeps_its_env():
    model = reptile()
    env = model.env
    with pytest.raises(ValueError, match="holds 2 microgrids per site, the env has 4"):
        model.set_env(VecNormalize(VecMonitor(MultiSiteVecEnv(SITES[:1], 4, seed=0)), gamma=1.0))
    assert model.env is env
    with pytest.warns(UserWarning, match="does not divide the rollout buffer of one site .* truncated mini-batch of 16"):
        reptile(batch_size=32)  # 24 steps x 2 microgrids per site; PPO's check sees 24 x 4 = 96, a multiple of 32


def test_held_out_sites_are_refused_through_the_api():
    held_out = site_interface(preset_site("clinic_200kw"))
    model = reptile(sites=[SITES[0], held_out])
    theta = flat(model)
    with pytest.raises(HeldOutSiteError, match="clinic_200kw"):
        model.learn(2 * UPDATE)
    assert model.num_timesteps == 0 and th.equal(flat(model), theta)
    with pytest.raises(HeldOutSiteError, match="factory"):
        multi_site_env([SITES[0], preset_site("factory")], 1, seed=0)


def test_save_and_load_give_the_same_predictions_and_ppo_fine_tunes_the_policy(tmp_path):
    model = reptile()
    model.learn(2 * 2 * UPDATE)
    path = save_run(tmp_path / "meta", model, seed=0)
    assert identify(path) == ["reptile"]
    obs = model.get_vec_normalize_env().normalize_obs(MultiSiteVecEnv(SITES[:2], 2, seed=3).reset())
    expected = model.predict(obs, deterministic=True)[0]
    loaded = Reptile.load(path, env=model.get_env(), device="cpu")
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)
    assert loaded._n_meta_updates == 2 and sorted(loaded.site_return_rms) == sorted(model.site_return_rms)
    loaded.learn(2 * UPDATE, reset_num_timesteps=False)  # meta-training continues
    assert loaded._n_meta_updates == 3
    ppo = PPO.load(path, env=VecMonitor(MicrogridVecEnv(8, scenario=SITES[2], seed=0)), device="cpu")
    np.testing.assert_array_equal(ppo.predict(obs, deterministic=True)[0], expected)
    ppo.learn(UPDATE)
    assert ppo.num_timesteps >= UPDATE


# ---- sb3-microgrid adapt ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def meta_run(tmp_path_factory):
    model = reptile()
    model.learn(2 * UPDATE)
    return save_run(tmp_path_factory.mktemp("meta"), model, seed=0)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_adapt_writes_a_model_that_evaluate_scores_on_the_site(meta_run, tmp_path, capsys):
    out = tmp_path / "office"
    assert main(["adapt", "--model", str(meta_run), "--site", "office_park", "--timesteps", "90", "--out", str(out), "--n-envs", "2"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["algo"] == "ppo" and record["site"] == "office_park" and record["num_timesteps"] == 2 * UPDATE
    assert record["scenario"]["ev"]["dispatch"] == "aggregate" and set(record["files"]) == {"model.zip", "model_vecnormalize.pkl"}
    capsys.readouterr()
    evaluation = tmp_path / "eval.json"
    assert main(["evaluate", "--controller", str(out / "model.zip"), "--split", "validation", "--days", "1", "--json", str(evaluation)]) == 0
    assert "WARNING" not in capsys.readouterr().err
    summary = json.loads(evaluation.read_text())["summary"]
    assert summary["scenario"] == "office_park" and summary["days"] == 1 and summary["gap_closed"] is not None


def test_adapt_with_no_steps_is_the_model_zero_shot(meta_run, tmp_path):
    out = tmp_path / "zero"
    assert main(["adapt", "--model", str(meta_run), "--site", "campus_windy", "--timesteps", "0", "--out", str(out)]) == 0
    meta, adapted = Reptile.load(meta_run, device="cpu"), PPO.load(out / "model.zip", device="cpu")
    obs = np.random.default_rng(0).normal(size=(5, meta.observation_space.shape[0])).astype(np.float32)
    np.testing.assert_array_equal(adapted.predict(obs, deterministic=True)[0], meta.predict(obs, deterministic=True)[0])
    windy = MicrogridVecEnv(1, scenario=site_interface(preset_site("campus_windy")))
    site, trained = (VecNormalize.load(str(folder / "model_vecnormalize.pkl"), windy) for folder in (out, meta_run.parent))
    np.testing.assert_array_equal(site.obs_rms.mean, trained.obs_rms.mean)
    np.testing.assert_array_equal(site.obs_rms.var, trained.obs_rms.var)


def test_adapt_refuses_bad_inputs_before_training(meta_run, tmp_path, capsys):
    argv = ["adapt", "--model", str(meta_run), "--out", str(tmp_path / "x")]
    assert main([*argv, "--site", "mars_base", "--timesteps", "10"]) == 2
    err = one_line_error(capsys)
    assert "mars_base" in err and all(name in err for name in SITE_PRESETS)
    assert main([*argv, "--site", "factory", "--timesteps", "40000001"]) == 2
    assert "timesteps = 40000001 is outside the allowed range [0, 40000000]" in one_line_error(capsys)
    campus = tmp_path / "campus.zip"
    PPO("MlpPolicy", MicrogridVecEnv(1), device="cpu").save(campus)
    assert main(["adapt", "--model", str(campus), "--site", "factory", "--timesteps", "10", "--out", str(tmp_path / "y")]) == 2
    assert "models trained across sites" in one_line_error(capsys)
    # the same with its VecNormalize statistics beside it: refused by name before they meet the site's observation
    normalised = tmp_path / "normalised"
    normalised.mkdir()
    PPO("MlpPolicy", MicrogridVecEnv(1), device="cpu").save(normalised / "model.zip")
    VecNormalize(MicrogridVecEnv(1)).save(str(normalised / "model_vecnormalize.pkl"))
    assert main(["adapt", "--model", str(normalised / "model.zip"), "--site", "factory", "--timesteps", "10", "--out", str(tmp_path / "z")]) == 2
    assert "models trained across sites" in one_line_error(capsys)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "model.zip").write_bytes(b"")
    assert main([*argv, "--site", "factory", "--timesteps", "10"]) == 2
    assert "already holds a model or another run's files (model.zip)" in one_line_error(capsys)
    assert not (tmp_path / "y").exists()


def test_adapt_refuses_a_bad_seed_an_output_file_and_save_run_an_unregistered_class_before_writing(meta_run, tmp_path, monkeypatch, capsys):
    with pytest.raises(ValueError, match=r"seed = -1 is outside the allowed range \[0, 4294967295\]"):
        adapt(meta_run, "factory", 0, tmp_path / "a", seed=-1)
    (tmp_path / "file").write_text("")
    monkeypatch.setattr("sb3_microgrid.adaptation.fine_tuning_model", lambda *args: pytest.fail("trained before refusing"))
    assert main(["adapt", "--model", str(meta_run), "--site", "factory", "--timesteps", "48", "--out", str(tmp_path / "file")]) == 2
    assert "exists and is not a folder" in one_line_error(capsys)

    class Unregistered(PPO):
        pass

    with pytest.raises(ValueError, match="not Unregistered"):
        save_run(tmp_path / "b", Unregistered("MlpPolicy", MicrogridVecEnv(1), n_steps=8, batch_size=8, device="cpu"))
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("held", ["pooled.zip", "run.json", "manifest.json", "forecast_corrector.json", "model_vecnormalize.pkl", "validation.json"])
def test_adapt_refuses_a_folder_holding_another_model_or_run_before_any_work(meta_run, tmp_path, monkeypatch, capsys, held):
    """Only model.zip was refused: adapting zoo/pooled.zip into zoo wrote a run.json that made evaluate score the
    original pooled.zip on the site, and an export or forecast-corrector folder took a model beside it."""
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / held).write_bytes(meta_run.read_bytes() if held.endswith(".zip") else b"{}")
    monkeypatch.setattr("sb3_microgrid.adaptation.load", lambda *args, **kwargs: pytest.fail("loaded the model before refusing"))
    model = zoo / "pooled.zip" if held == "pooled.zip" else meta_run
    assert main(["adapt", "--model", str(model), "--site", "clinic_200kw", "--timesteps", "0", "--out", str(zoo)]) == 2
    assert f"{zoo} already holds a model or another run's files ({held})" in one_line_error(capsys)
    assert [f.name for f in zoo.iterdir()] == [held]


def test_adapt_creates_and_checks_the_output_folder_before_training(meta_run, tmp_path, monkeypatch, capsys):
    """A folder under a file, or one that cannot be written, was found only when the model was saved after training."""
    monkeypatch.setattr("sb3_microgrid.adaptation.fine_tuning_model", lambda *args: pytest.fail("trained before refusing"))
    (tmp_path / "afile").write_text("")
    argv = ["adapt", "--model", str(meta_run), "--site", "factory", "--timesteps", "48"]
    assert main([*argv, "--out", str(tmp_path / "afile" / "x" / "y")]) == 2
    assert f"is under {tmp_path / 'afile'}, which is not a folder" in one_line_error(capsys)
    out, real = tmp_path / "locked", tempfile.TemporaryFile

    def denied(*args, dir=None, **kwargs):  # as a read-only folder does (root writes to any)
        if dir is not None and Path(dir) == out:
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", denied)
    assert main([*argv, "--out", str(out)]) == 2
    assert f"cannot write {out}: Permission denied" in one_line_error(capsys)


def test_adapt_refuses_statistics_that_do_not_fit_the_site_naming_the_file(meta_run, tmp_path, capsys):
    """A per-site run's statistics beside a pooled model gave an AssertionError traceback from VecNormalize."""
    pooled = tmp_path / "pooled"
    pooled.mkdir()
    (pooled / "model.zip").write_bytes(meta_run.read_bytes())
    VecNormalize(MicrogridVecEnv(1)).save(str(pooled / "model_vecnormalize.pkl"))  # campus, per EV port
    out = tmp_path / "out"
    assert main(["adapt", "--model", str(pooled / "model.zip"), "--site", "factory", "--timesteps", "48", "--out", str(out)]) == 2
    err = one_line_error(capsys)
    assert f"cannot use VecNormalize statistics {pooled / 'model_vecnormalize.pkl'}" in err and "another observation layout" in err
    assert not out.exists()


def test_validation_of_a_multi_site_run_pools_the_validation_days_of_every_site():
    """Reptile's meta-weights are scored on every training site, not on the first alone: the row is the mean
    cost and unmet energy per site-day, the violations summed, and the gap of the pooled costs."""
    model = reptile()
    callback = ValidationCallback(days=1, eval_freq=10**9)
    model.learn(1, callback=callback)
    assert [s.name for s in callback._sites] == [s.name for s in SITES[:2]]
    # at the end the model holds the best row's weights: each site scores them again
    per_site = [evaluate(callback.controller(), scenario=s, split="validation", days=1).summary for s in SITES[:2]]
    assert per_site[0]["cost_per_day"] != per_site[1]["cost_per_day"]
    pooled = {key: np.mean([s[key] for s in per_site]) for key in ("cost_naive_per_day", "cost_optimal_per_day", "cost_per_day")}
    best = callback.best
    expected_gap = (pooled["cost_naive_per_day"] - best["cost_per_day"]) / (pooled["cost_naive_per_day"] - pooled["cost_optimal_per_day"])
    assert best["gap_closed"] == pytest.approx(expected_gap)
    assert best["cost_per_day"] == pytest.approx(pooled["cost_per_day"])
    assert best["safety_violations"] == sum(s["safety_violations"] for s in per_site)


def test_adapt_writes_the_weights_and_statistics_of_the_best_validation_score(meta_run, tmp_path, monkeypatch):
    real, scored = ValidationCallback._summary, []

    def rigged(self, controller):  # the real cost, the policy's second score (after the first 96 steps) made the best by far
        summary = dict(real(self, controller))
        if controller.name == "validation":  # not the naive and optimal references
            scored.append(None)
            summary["cost_per_day"] -= 1e6 if len(scored) == 2 else 0.0
        return summary

    monkeypatch.setattr(ValidationCallback, "_summary", rigged)
    snapshots, score = [], ValidationCallback._score

    def spy(self):  # what each score saw: the policy's weights and the observation statistics
        snapshots.append((self.num_timesteps, {k: v.clone() for k, v in self.model.policy.state_dict().items()},
                          self.model.get_vec_normalize_env().obs_rms.mean.copy()))  # fmt: skip
        score(self)

    monkeypatch.setattr(ValidationCallback, "_score", spy)
    out = tmp_path / "office"
    adapt(meta_run, "office_park", 4 * 2 * UPDATE, out, n_envs=2, eval_days=2, eval_freq=2 * UPDATE)
    record = json.loads((out / "run.json").read_text())
    history = json.loads((out / "validation.json").read_text())["history"]
    assert [row["steps"] for row in history] == [0, 96, 192, 288, 384] == [steps for steps, _, _ in snapshots]
    best = min(range(len(history)), key=lambda i: history[i]["cost_per_day"])
    assert best == 1 and record["num_timesteps"] == 384
    assert record["validation"] == {
        "days": 2, "eval_freq": 96, "selected_steps": 96, "selected_gap_closed": history[1]["gap_closed"],
        "selected_cost_per_day": history[1]["cost_per_day"], "scores": 5,
    }  # fmt: skip
    saved = PPO.load(out / "model.zip", device="cpu").policy.state_dict()
    _, chosen, chosen_mean = snapshots[best]
    _, last, last_mean = snapshots[-1]
    assert all(th.equal(saved[k], chosen[k]) for k in chosen) and not all(th.equal(saved[k], last[k]) for k in last)
    statistics = VecNormalize.load(str(out / "model_vecnormalize.pkl"), MicrogridVecEnv(1, scenario=site_interface(preset_site("office_park"))))
    np.testing.assert_array_equal(statistics.obs_rms.mean, chosen_mean)
    assert not np.array_equal(statistics.obs_rms.mean, last_mean)


def test_adapt_selection_options_from_the_command_line(meta_run, tmp_path, capsys):
    argv = ["adapt", "--model", str(meta_run), "--site", "campus_windy", "--timesteps", "0"]
    assert main([*argv, "--out", str(tmp_path / "x"), "--eval-freq", "96"]) == 2
    assert "eval_freq (96) applies only when selecting on validation days" in one_line_error(capsys)
    assert main([*argv, "--out", str(tmp_path / "x"), "--eval-days", "366"]) == 2
    assert "eval_days = 366 is outside the allowed range [0, 365]" in one_line_error(capsys)
    assert not (tmp_path / "x").exists()
    out = tmp_path / "zero"
    assert main([*argv, "--out", str(out), "--eval-days", "1"]) == 0  # zero-shot: scored once, written unchanged
    assert "the weights of step 0" in capsys.readouterr().out
    record = json.loads((out / "run.json").read_text())
    assert record["num_timesteps"] == 0 and record["validation"]["selected_steps"] == 0 and record["validation"]["scores"] == 1
    assert record["validation"]["eval_freq"] == 50_000  # ValidationCallback's default
    windy = MicrogridVecEnv(1, scenario=site_interface(preset_site("campus_windy")))
    site, trained = (VecNormalize.load(str(folder / "model_vecnormalize.pkl"), windy) for folder in (out, meta_run.parent))
    np.testing.assert_array_equal(site.obs_rms.mean, trained.obs_rms.mean)
    np.testing.assert_array_equal(site.obs_rms.var, trained.obs_rms.var)


def test_evaluate_asks_for_a_scenario_when_models_were_adapted_to_different_sites(meta_run, tmp_path, capsys):
    for site in ("factory", "college_small"):
        assert main(["adapt", "--model", str(meta_run), "--site", site, "--timesteps", "0", "--out", str(tmp_path / site)]) == 0
    capsys.readouterr()
    models = f"{tmp_path / 'factory' / 'model.zip'},{tmp_path / 'college_small' / 'model.zip'}"
    assert main(["evaluate", "--controller", models, "--days", "1", "--no-reference"]) == 2
    assert "college_small, factory" in one_line_error(capsys)
    factory = tmp_path / "factory.yaml"
    site_interface(preset_site("factory")).to_yaml(factory)
    assert main(["evaluate", "--controller", models, "--days", "1", "--no-reference", "--scenario", str(factory)]) == 0


def test_export_takes_the_site_from_the_adapted_run(meta_run, tmp_path):
    out = tmp_path / "factory"
    assert main(["adapt", "--model", str(meta_run), "--site", "factory", "--timesteps", "0", "--out", str(out)]) == 0
    assert main(["export", str(out / "model.zip"), "--out", str(tmp_path / "export")]) == 0
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["scenario"]["name"] == "factory"


def test_callbacks_that_act_between_a_rollout_and_its_update_refuse_reptile_and_the_metrics_run(monkeypatch):
    """One Reptile rollout spans every site's inner updates: parameter noise trained perturbed weights and then
    undid the meta-update, the KL monitor and value replay raised on a buffer the updates had flattened (so did
    the metrics callback, which every shipped file names)."""
    from sb3_microgrid.callbacks import AuxiliaryValueReplayCallback, KLMonitorCallback, MicrogridMetricsCallback
    from sb3_microgrid.exploration import ParameterNoiseCallback

    for callback in (ParameterNoiseCallback(), KLMonitorCallback(), AuxiliaryValueReplayCallback()):
        with pytest.raises(TypeError, match=f"{type(callback).__name__} cannot run under Reptile"):
            reptile().learn(2 * UPDATE, callback=callback)
    from stable_baselines3.common.logger import Logger

    recorded = {}
    monkeypatch.setattr(Logger, "record", lambda self, key, value, exclude=None: recorded.__setitem__(key, value))
    model = reptile()
    model.learn(2 * 2 * UPDATE, callback=[MicrogridMetricsCallback()])
    assert model._n_meta_updates == 2 and "microgrid/return_per_1k_steps" in recorded and "microgrid/value_mc_rmse" not in recorded
