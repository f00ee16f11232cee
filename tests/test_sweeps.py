"""Sweeps across processes and machines on rl_zoo3's optuna integration (docs/sweeps.md): worker processes
of ``sb3-microgrid-zoo train -optimize`` share one study through a journal file or a real PostgreSQL server
(slow), and ``sb3-microgrid-zoo best`` writes a trial as a file our safe loader reads."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import rl_zoo3
import torch
from optuna.trial import TrialState
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER

from sb3_microgrid.algos import ALGOS
from sb3_microgrid.hyperparams import load_hyperparams, parse_python
from sb3_microgrid.policies import ForecastAttentionExtractor
from sb3_microgrid.zoo import main, python_expr, register, study_storage, zoo_base

EXTRACTOR = (
    "features_extractor_class=get_class_by_name('sb3_microgrid.policies.ForecastAttentionExtractor'), "
    "features_extractor_kwargs=dict(embed_dim=8, n_heads=2, features_dim=16)"
)
#: Tiny trials: 48 steps (24 of them random warm-up), whatever the sampler picks for batch size and train_freq.
PER_SAC_CONF = f"""
Microgrid-v0:
  n_envs: 1
  n_timesteps: 48
  policy: 'MlpPolicy'
  learning_starts: 24
  buffer_size: 100
  policy_kwargs: "dict(log_std_init=-1.5, {EXTRACTOR})"
"""
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def start_worker(algo: str, conf: Path, storage: str, folder: Path, max_total_trials: int, seed: int, *extra: str) -> subprocess.Popen:
    """One sweep worker: the launcher as a process of its own, tiny evaluations, no pruning (a study's
    outcome must not depend on which trial another worker finished first)."""
    cmd = [
        sys.executable, "-m", "sb3_microgrid.zoo", "train", "--algo", algo, "--env", "Microgrid-v0",
        "--gym-packages", "sb3_microgrid", "--num-threads", "1", "--conf-file", str(conf), "-f", str(folder / f"logs{seed}"),
        "-optimize", "--storage", storage, "--study-name", "sweep", "--max-total-trials", str(max_total_trials),
        "--n-evaluations", "1", "--eval-episodes", "1", "--pruner", "none", "--no-optim-plots",
        "--seed", str(seed), "--optimization-log-path", str(folder / "trials"), *extra,
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def run_sweep(storage: str, folder: Path, max_total_trials: int, jobs: tuple[int, ...] = (1, 1)) -> list[set[int]]:
    """Run one worker per entry of ``jobs`` (its ``--n-jobs``) at once on ``storage`` with ``PER_SAC_CONF``,
    each with its own seed; the trial numbers each worker finished."""
    conf = folder / "per_sac.yml"
    conf.write_text(PER_SAC_CONF)
    workers = [start_worker("per_sac", conf, storage, folder, max_total_trials, seed, "--n-jobs", str(n)) for seed, n in enumerate(jobs, 1)]
    finished = []
    for worker in workers:
        out, err = worker.communicate(timeout=900)
        assert worker.returncode == 0, err[-3000:]
        finished.append({int(n) for n in re.findall(r"Trial (\d+) finished", err)})  # optuna logs each trial its process tells
    return finished


def check_shared_study(storage: str, folder: Path, max_total_trials: int, finished_by: list[set[int]], concurrent: int) -> None:
    """The workers ran one study: every trial ran once, in one worker, with its own parameters; the total
    is ``max_total_trials``, or above it by at most one trial per other concurrent worker (docs/sweeps.md:
    the zoo counts trials, then starts one, so workers finishing at the same moment may each start one)."""
    study = optuna.load_study(study_name="sweep", storage=study_storage(storage))
    trials = study.get_trials(deepcopy=False)
    assert all(t.state in FINISHED for t in trials)  # none left running or waiting
    assert max_total_trials <= len(trials) <= max_total_trials + concurrent - 1
    numbers = sorted(t.number for t in trials)
    assert numbers == list(range(len(trials)))
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)  # each worker's sampler has its own seed
    assert sum(len(f) for f in finished_by) == len(trials) and set().union(*finished_by) == set(numbers)  # no trial twice
    assert sorted(int(p.name.split("_")[1]) for p in (folder / "trials").iterdir()) == numbers
    for path in (folder / "trials").glob("trial_*/best_model.zip"):  # each trial trained with the file's extractor
        model = ALGOS["per_sac"].load(path, device="cpu")
        assert isinstance(model.actor.features_extractor, ForecastAttentionExtractor)
        assert model.actor.log_std_init == -1.5


def test_two_workers_complete_one_study_on_a_journal_file(tmp_path):
    journal = str(tmp_path / "sweep.log")
    finished_by = run_sweep(journal, tmp_path, max_total_trials=4)
    check_shared_study(journal, tmp_path, 4, finished_by, concurrent=2)

    # the best trial into a file: the sweep's settings with the trial's on top, and the file loads
    out = tmp_path / "per_sac_tuned.yml"
    main(["best", "--algo", "per_sac", "--conf-file", str(tmp_path / "per_sac.yml"), "--storage", journal, "--study-name", "sweep", "--out", str(out)])
    best = optuna.load_study(study_name="sweep", storage=study_storage(journal)).best_trial
    hp = load_hyperparams(out, ALGOS["per_sac"], "Microgrid-v0")
    assert hp.algo_kwargs["gamma"] == pytest.approx(1 - best.params["one_minus_gamma"])
    assert hp.algo_kwargs["batch_size"] == 2 ** best.params["batch_size_pow"]
    assert hp.algo_kwargs["policy_kwargs"]["features_extractor_class"] is ForecastAttentionExtractor
    assert hp.algo_kwargs["policy_kwargs"]["log_std_init"] == -1.5
    assert hp.n_timesteps == 48 and hp.algo_kwargs["learning_starts"] == 24


#: A tiny file for each algorithm the launcher adds, with the extractor where the policy takes one.
TINY = {
    "ppo": "n_timesteps: 64\n  policy: 'MlpPolicy'\n  policy_kwargs: \"dict(log_std_init=-1.5, {extractor})\"",
    "sac": "n_timesteps: 48\n  policy: 'MlpPolicy'\n  learning_starts: 24\n  buffer_size: 100\n  policy_kwargs: \"dict(log_std_init=-1.5, {extractor})\"",
    "td3": "n_timesteps: 48\n  policy: 'MlpPolicy'\n  learning_starts: 24\n  buffer_size: 100\n  policy_kwargs: \"dict({extractor})\"",
    "ars": "n_timesteps: 96\n  n_envs: 2\n  policy: 'LinearPolicy'\n  n_eval_episodes: 1",
}
DYNA = "\n  model_train_freq: 24\n  rollout_batch_size: 16\n  model_buffer_size: 100\n  model_train_samples: 100\n  world_model_kwargs: {ensemble_size: 2, net_arch: [16]}\n  model_fit_kwargs: {max_epochs: 1}"


@pytest.mark.slow
@pytest.mark.parametrize("algo", [name for name in ALGOS if name not in rl_zoo3.ALGOS])  # those the launcher adds
def test_each_added_algorithm_runs_a_trial_of_a_shared_study(tmp_path, algo):
    kind = zoo_base(ALGOS[algo])
    conf = tmp_path / f"{algo}.yml"
    conf.write_text("Microgrid-v0:\n  " + TINY[kind].format(extractor=EXTRACTOR) + (DYNA if algo == "dyna_sac" else "") + "\n")
    journal = str(tmp_path / "sweep.log")
    worker = start_worker(algo, conf, journal, tmp_path, 1, 0, "--sampler", "random")
    _, err = worker.communicate(timeout=900)
    assert worker.returncode == 0, err[-3000:]
    [trial] = optuna.load_study(study_name="sweep", storage=study_storage(journal)).trials
    assert trial.state == TrialState.COMPLETE
    model = ALGOS[algo].load(tmp_path / "trials" / "trial_0" / "best_model.zip", device="cpu")
    assert any(isinstance(m, ForecastAttentionExtractor) for m in model.policy.modules()) == (kind != "ars")


# ---- a real PostgreSQL server (slow) ---------------------------------------------------------------------------------


def postgres_bin() -> Path | None:
    """The folder of the PostgreSQL server programs (initdb, pg_ctl, createdb): Debian's newest, else PATH's."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    found = [p.parent for p in debian] + [Path(p).resolve().parent for p in filter(None, [shutil.which("initdb")])]
    return next((d for d in reversed(found) if all((d / name).is_file() for name in ("initdb", "pg_ctl", "createdb"))), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of its own on a free localhost port, with an empty database; its URL.

    initdb refuses to run as root: as root the server runs as the ``postgres`` user the Debian package creates.
    """
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server programs (initdb, pg_ctl, createdb) in /usr/lib/postgresql/*/bin or on PATH: `make postgres` installs them")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="sb3mg-postgres-"))  # outside pytest's root-only tmp folders
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no `postgres` user to run the server as (initdb refuses root)")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()

    def run(*cmd: str | Path, user: list[str] = as_user) -> None:
        done = subprocess.run([*user, *map(str, cmd)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{cmd[0]} failed: {done.stderr[-2000:]}"

    try:
        run(bindir / "initdb", "-D", data, "-U", "sweeps", "-A", "trust", "--no-sync")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(bindir / "pg_ctl", "-D", data, "-l", folder / "server.log", "-o", options, "-w", "start")
        try:
            run(bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "sweeps", "optuna", user=[])
            yield f"postgresql+psycopg2://sweeps@127.0.0.1:{port}/optuna"
        finally:
            run(bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder)


@pytest.mark.slow
def test_workers_complete_one_study_on_a_real_postgresql_server(tmp_path, postgres_url):
    # three trials at a time: one worker with one job, one with two (--n-jobs runs trials in threads)
    finished_by = run_sweep(postgres_url, tmp_path, max_total_trials=5, jobs=(1, 2))
    check_shared_study(postgres_url, tmp_path, 5, finished_by, concurrent=3)


# ---- best: a trial into a hyperparams/ file ---------------------------------------------------------------------------


def make_study(journal: Path, algo: str, conf: Path, fixed: list[dict], values: list[float]) -> optuna.Study:
    """A study as the zoo leaves it, without training: each trial sampled by the launcher's sampler for
    ``algo`` (parameters in ``fixed`` imposed), told its value, the zoo's command line recorded."""
    register(["--env", "Microgrid-v0", "--conf-file", str(conf)])
    study = optuna.create_study(study_name="sweep", storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))), direction="maximize")
    study.set_user_attr("command", f"python -m sb3_microgrid.zoo train --algo {algo} --env Microgrid-v0 -optimize")
    for params, value in zip(fixed, values):
        study.enqueue_trial(params)
        trial = study.ask()
        HYPERPARAMS_SAMPLER[algo](trial, 13, 1, {"using_her_replay_buffer": False, "her_kwargs": {}})
        study.tell(trial, value)
    return study


TWIN_CONF = f"""
Microgrid-v0:
  n_envs: 8
  n_timesteps: !!float 1e6
  policy: 'MlpPolicy'
  target_kl: 0.05
  normalize: "{{'norm_obs': True, 'norm_reward': True}}"
  policy_kwargs: "dict(log_std_init=-1.5, value_aggregation='min', {EXTRACTOR})"
  callback:
    - sb3_microgrid.callbacks.MicrogridMetricsCallback
"""


def best(tmp_path: Path, algo: str, conf: Path, out: str, *extra: str) -> Path:
    main(["best", "--algo", algo, "--conf-file", str(conf), "--storage", str(tmp_path / "sweep.log"), "--study-name", "sweep", "--out", str(tmp_path / out), *extra])
    return tmp_path / out


def test_best_writes_the_trial_over_the_file_settings_and_it_loads(tmp_path):
    conf = tmp_path / "twin_ppo.yml"
    conf.write_text(TWIN_CONF)
    study = make_study(tmp_path / "sweep.log", "twin_ppo", conf, [{}, {"net_arch": "tiny", "activation_fn": "relu"}, {}], [1.0, 3.0, 2.0])
    path = best(tmp_path, "twin_ppo", conf, "tuned.yml")
    hp = load_hyperparams(path, ALGOS["twin_ppo"], "Microgrid-v0")
    expected = HYPERPARAMS_CONVERTER["twin_ppo"](study.trials[1].params)
    for key in ("n_steps", "batch_size", "gamma", "gae_lambda", "learning_rate", "ent_coef", "clip_range", "n_epochs", "max_grad_norm"):
        assert hp.algo_kwargs[key] == pytest.approx(expected[key]), key
    kwargs = hp.algo_kwargs["policy_kwargs"]
    assert kwargs["net_arch"] == {"pi": [64], "vf": [64]} and kwargs["activation_fn"].__name__ == "ReLU"  # the trial's
    assert kwargs["features_extractor_class"] is ForecastAttentionExtractor and kwargs["log_std_init"] == -1.5  # the file's
    assert kwargs["value_aggregation"] == "min"
    assert hp.n_envs == 8 and hp.n_timesteps == 1e6 and hp.algo_kwargs["target_kl"] == 0.05 and hp.normalize == {"norm_obs": True, "norm_reward": True}
    assert [cls.__name__ for cls, _ in hp.callbacks] == ["MicrogridMetricsCallback"]
    assert "# Trial 1 (value 3.0)" in path.read_text()

    assert load_hyperparams(best(tmp_path, "twin_ppo", conf, "trial2.yml", "--trial", "2"), ALGOS["twin_ppo"]).algo_kwargs["gamma"] == pytest.approx(
        HYPERPARAMS_CONVERTER["twin_ppo"](study.trials[2].params)["gamma"]
    )


def test_best_warns_when_the_trial_normalised_rewards_with_another_gamma(tmp_path, capsys):
    """rl_zoo3 builds a trial's VecNormalize with the file's gamma before it samples one; the file written trains
    with the sampled gamma for both, so its rewards are scaled otherwise than the trial's."""
    conf = tmp_path / "twin_ppo.yml"
    conf.write_text(TWIN_CONF.replace("  target_kl: 0.05", "  target_kl: 0.05\n  gamma: 1.0"))
    study = make_study(tmp_path / "sweep.log", "twin_ppo", conf, [{}], [1.0])
    gamma = HYPERPARAMS_CONVERTER["twin_ppo"](study.trials[0].params)["gamma"]
    assert gamma != 1.0
    best(tmp_path, "twin_ppo", conf, "tuned.yml")
    err = capsys.readouterr().err
    assert "WARNING: the trial normalised rewards with the file's gamma (1.0)" in err and f"the trial's gamma {gamma}" in err
    conf.write_text(TWIN_CONF.replace("'norm_reward': True", "'norm_reward': False"))  # no reward statistics: nothing to say
    best(tmp_path, "twin_ppo", conf, "no_reward_norm.yml")
    assert "WARNING" not in capsys.readouterr().err


def test_best_keeps_the_file_action_noise_where_the_trial_sampled_none(tmp_path):
    # the zoo's TD3 sampler may sample noise_type None: the trial then ran with the file's action noise
    conf = tmp_path / "td3.yml"
    conf.write_text("Microgrid-v0:\n  n_timesteps: 1000\n  noise_type: 'normal'\n  noise_std: 0.1\n  policy_kwargs: \"dict(net_arch=[256, 256])\"\n")
    make_study(tmp_path / "sweep.log", "per_td3", conf, [{"noise_type": None}, {"noise_type": "ornstein-uhlenbeck", "noise_std": 0.3}], [2.0, 1.0])
    assert load_hyperparams(best(tmp_path, "per_td3", conf, "none.yml"), ALGOS["per_td3"]).noise == ("normal", 0.1)
    assert load_hyperparams(best(tmp_path, "per_td3", conf, "ou.yml", "--trial", "1"), ALGOS["per_td3"]).noise == ("ornstein-uhlenbeck", 0.3)


def test_best_refuses_what_it_cannot_write_and_leaves_files_alone(tmp_path):
    conf = tmp_path / "twin_ppo.yml"
    conf.write_text(TWIN_CONF)
    study = make_study(tmp_path / "sweep.log", "twin_ppo", conf, [{}], [1.0])
    study.ask()  # a trial still running
    cases = {
        ("--trial", "1"): "trial 1 .* is not a complete trial; complete: \\[0\\]",
        ("--trial", "7"): "trial 7 .* is not a complete trial",
        ("--study-name", "other"): "cannot open study 'other'",
        ("--storage", str(tmp_path / "missing.log")): "no such journal file",
        ("--algo", "per_sac"): "study 'sweep' tuned twin_ppo, not per_sac",
    }
    for extra, message in cases.items():
        with pytest.raises(SystemExit, match=message):
            best(tmp_path, "twin_ppo", conf, "out.yml", *extra)
    assert not (tmp_path / "out.yml").exists() and not (tmp_path / "missing.log").exists()
    (tmp_path / "out.yml").write_text("kept")
    with pytest.raises(SystemExit, match="exists"):
        best(tmp_path, "twin_ppo", conf, "out.yml")
    assert (tmp_path / "out.yml").read_text() == "kept"
    # a file whose settings our loader refuses is not left behind
    (tmp_path / "bad.yml").write_text(TWIN_CONF.replace("target_kl: 0.05", "target_kl: 0.05\n  seed: 3"))
    with pytest.raises(SystemExit, match="do not load, nothing written: .*seed"):
        best(tmp_path, "twin_ppo", tmp_path / "bad.yml", "bad_out.yml")
    assert not (tmp_path / "bad_out.yml").exists()


def test_python_expr_reads_back_through_the_safe_parser_and_the_zoo_eval():
    value = {
        "net_arch": {"pi": [64, 64], "vf": [64]}, "activation_fn": torch.nn.Tanh, "features_extractor_class": ForecastAttentionExtractor,
        "features_extractor_kwargs": {"embed_dim": 8}, "log_std_init": -1.5, "ortho_init": True, "tup": (1,), "none": None,
    }  # fmt: skip
    text = python_expr(value)
    assert text.startswith("dict(net_arch=dict(pi=[64, 64], vf=[64]), activation_fn=nn.Tanh, ")
    assert "get_class_by_name('sb3_microgrid.policies.attention.ForecastAttentionExtractor')" in text
    assert parse_python(text, "policy_kwargs") == value
    zoo_namespace = {"nn": torch.nn, "get_class_by_name": lambda name: ForecastAttentionExtractor}
    assert eval(text, zoo_namespace) == value  # what the zoo does with the string
    odd = {"a-b": 1, 2: "x", "lambda": 0}  # keys that are no keyword argument
    assert eval(python_expr(odd)) == odd
    with pytest.raises(ValueError, match="cannot be written"):
        python_expr({"f": print})


def test_a_worker_that_loses_the_race_to_create_the_tables_looks_again(monkeypatch):
    import sqlalchemy.exc

    from sb3_microgrid import zoo

    calls, refusals = [], []

    def storage(url):
        calls.append(url)
        if refusals:  # as PostgreSQL answers the second of two workers creating the tables at once
            raise sqlalchemy.exc.IntegrityError("CREATE TYPE studydirection", {}, Exception(refusals.pop()))

    monkeypatch.setattr(optuna.storages, "RDBStorage", storage)
    monkeypatch.setattr(zoo.time, "sleep", lambda seconds: None)
    refusals[:] = ["duplicate key"]
    zoo.create_tables("postgresql://db/sweeps")
    assert len(calls) == 2
    calls.clear()
    refusals[:] = ["duplicate key"] * zoo.TABLE_CREATION_TRIES
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        zoo.create_tables("postgresql://db/sweeps")
    assert len(calls) == zoo.TABLE_CREATION_TRIES
