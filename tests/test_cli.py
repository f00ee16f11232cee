"""The command line: evaluate (table, JSON), plot (PNG), and usage errors exiting with code 2."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sb3_microgrid.cli import main
from sb3_microgrid.evaluation import evaluate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_evaluate_writes_json_and_prints_table(tmp_path, capsys):
    out = tmp_path / "naive.json"
    assert main(["evaluate", "--controller", "naive", "--days", "2", "--no-reference", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["controller"] == "naive"
    days = result["days"]
    assert len(days) == 2 and all(d["date"].startswith("2024-") for d in days)
    assert result["summary"]["cost_per_day"] == pytest.approx(np.mean([d["cost"] for d in days]))
    assert {"emissions_kg_per_day", "safety_violations"} <= result["summary"].keys()
    table = capsys.readouterr().out
    assert "naive" in table and "cost (Rs/day)" in table and "gap closed" not in table


def test_evaluate_names_the_scenario_file_beside_the_name_it_inherits(tmp_path, capsys):
    mine = tmp_path / "my.yaml"
    mine.write_text("base: campus\nbattery: {capacity_kwh: 1500}\n")
    assert main(["evaluate", "--controller", "naive", "--days", "1", "--no-reference", "--scenario", str(mine)]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith(f"scenario campus (from {mine}), split test")
    assert main(["evaluate", "--controller", "naive", "--days", "1", "--no-reference", "--scenario", "campus"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("scenario campus, split test")


def test_evaluate_several_controllers_writes_a_list(tmp_path, capsys):
    out = tmp_path / "both.json"
    assert main(["evaluate", "--controller", "naive,optimal", "--days", "1", "--no-reference", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["controller"] for r in result] == ["naive", "optimal"]
    assert result[1]["summary"]["cost_per_day"] <= result[0]["summary"]["cost_per_day"]
    header = capsys.readouterr().out.splitlines()[1]
    assert "naive" in header and "optimal" in header


def test_the_table_gives_the_gap_closed_as_a_fraction_as_the_docs_do(capsys):
    assert main(["evaluate", "--controller", "naive,optimal", "--days", "1"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("gap closed"))
    assert row.split()[-2:] == ["0.000", "1.000"]


def test_unknown_controller_exits_2(capsys):
    assert main(["evaluate", "--controller", "nosuchthing", "--days", "1"]) == 2
    err = capsys.readouterr().err
    assert "nosuchthing" in err and len(err.strip().splitlines()) == 1


def test_day_outside_split_exits_2(tmp_path, capsys):
    assert main(["plot", "--controller", "naive", "--day", "2019-06-01", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "2019-06-01" in err and "test" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_argparse_errors_exit_2():
    with pytest.raises(SystemExit) as exc:
        main(["plot", "--controller", "naive", "--day", "June 1st", "--out", "x.png"])
    assert exc.value.code == 2


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
@pytest.mark.parametrize(
    "command",
    [["evaluate", "--controller", "naive", "--days", "1"], ["train", "--algo", "ppo"], ["fit-forecast", "--out", "x"],
     ["plot", "--controller", "naive", "--day", "2024-06-01", "--out", "x.png"]],
)  # fmt: skip
def test_a_seed_outside_numpys_range_is_refused_by_the_parser(command, seed, capsys):
    """A seed above 2**32 - 1 gave evaluate a ScenarioError traceback, and plot wrote its image anyway."""
    with pytest.raises(SystemExit) as exc:
        main([*command, f"--seed={seed}"])
    assert exc.value.code == 2 and "--seed" in (err := capsys.readouterr().err) and "[0, 4294967295]" in err


def test_evaluate_refuses_a_json_path_that_is_a_directory_before_running(tmp_path, capsys):
    """It failed with IsADirectoryError after the whole evaluation, losing the results."""
    assert main(["evaluate", "--controller", "optimal", "--days", "1", "--json", str(tmp_path)]) == 2
    assert f"{tmp_path} is a directory" in capsys.readouterr().err


def test_evaluate_checks_its_seed_and_days():
    with pytest.raises(ValueError, match=r"seed = -1 is outside the allowed range"):
        evaluate("naive", days=1, seed=-1, reference=False)
    with pytest.raises(ValueError, match="non-empty list of dates"):
        evaluate("naive", days=[], reference=False)
    with pytest.raises(ValueError, match=r"days must be in \[1, 366\] \(the start days of split 'test'\), got 367"):
        evaluate("naive", days=367, reference=False)  # scored the 366 there are, without a word


@pytest.mark.parametrize("controllers", [["naive"], ["naive", "optimal"]])
def test_plot_writes_png(tmp_path, controllers):
    out = tmp_path / "day.png"
    argv = ["plot", "--day", "2024-06-01", "--out", str(out)]
    for name in controllers:
        argv += ["--controller", name]
    assert main(argv) == 0
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000


# ---- saved models: every registered algorithm trains and evaluates with no --algo -----------------------------------
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize  # noqa: E402

from sb3_microgrid.algos import ALGOS  # noqa: E402
from sb3_microgrid.envs import MicrogridEnv  # noqa: E402

OFF_POLICY = {"ddpg", "sac", "td3", "dyna_sac", "per_sac", "per_td3", "crossq", "tqc"}
#: What each algorithm needs to train a few updates in 96 steps (4 days).
SETTINGS = {
    "a2c": {"n_steps": 8},
    "ppo": {"n_steps": 48, "batch_size": 48, "n_epochs": 1},
    "twin_ppo": {"n_steps": 48, "batch_size": 48, "n_epochs": 1},
    "trpo": {"n_steps": 48, "batch_size": 48},
    "ppo_lstm": {"policy": "MlpLstmPolicy", "n_steps": 48, "batch_size": 48, "n_epochs": 1, "policy_kwargs": {"net_arch": [16], "lstm_hidden_size": 8}},
    "ars": {"policy": "LinearPolicy", "n_delta": 2, "n_top": 1, "policy_kwargs": None},
    "paired_ars": {"policy": "LinearPolicy", "n_delta": 2, "n_top": 1, "policy_kwargs": None, "normalize": {"norm_obs": True, "norm_reward": False}},
    "dyna_sac": {"model_train_freq": 48, "rollout_batch_size": 32, "model_buffer_size": 1000, "model_train_samples": 100,
                 "model_fit_kwargs": {"max_epochs": 2}},  # fmt: skip
}
FAST = ["dyna_sac", "ppo", "ppo_lstm"]
#: Algorithms without a discount (their VecNormalize keeps its default gamma).
NO_GAMMA = {"ars", "paired_ars"}


def train_conf(tmp_path, algo: str) -> str:
    """A zoo-format file for ``algo`` on Microgrid-v0, normalised, with gamma 1 where the algorithm discounts."""
    section = {"n_envs": 1, "policy": "MlpPolicy", "normalize": True, "policy_kwargs": {"net_arch": [16]}}
    if algo not in NO_GAMMA:
        section["gamma"] = 1.0
    if algo in OFF_POLICY:
        section |= {"learning_starts": 48, "buffer_size": 1000, "batch_size": 32}
    section |= SETTINGS.get(algo, {})
    section = {k: v for k, v in section.items() if v is not None}
    path = tmp_path / f"{algo}.yml"
    path.write_text(json.dumps({"Microgrid-v0": section}))  # JSON is YAML
    return str(path)


def train_and_evaluate(tmp_path, algo: str) -> dict:
    run, out = tmp_path / "run", tmp_path / "eval.json"
    argv = ["train", "--algo", algo, "--conf", train_conf(tmp_path, algo), "--timesteps", "96", "--run-dir", str(run), "--save-freq", "96"]
    assert main(argv) == 0
    assert main(["evaluate", "--controller", str(run / "model.zip"), "--split", "train", "--days", "1", "--no-reference", "--json", str(out)]) == 0
    stats = VecNormalize.load(str(run / "model_vecnormalize.pkl"), DummyVecEnv([MicrogridEnv]))
    # VecNormalize discounts with the algorithm's gamma, as rl_zoo3 does (a bare VecNormalize uses 0.99)
    assert stats.gamma == (0.99 if algo in NO_GAMMA else 1.0)
    return json.loads(out.read_text())


@pytest.mark.parametrize("algo", FAST)
def test_a_trained_model_evaluates_without_algo(tmp_path, algo):
    from sb3_microgrid.baselines import SB3Controller

    result = train_and_evaluate(tmp_path, algo)
    assert result["summary"]["days"] == 1 and result["days"][0]["cost"] > 0
    assert type(SB3Controller(tmp_path / "run" / "model.zip").model) is ALGOS[algo]


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(set(ALGOS) - set(FAST)))
def test_every_registered_algorithm_trains_and_evaluates(tmp_path, algo):
    test_a_trained_model_evaluates_without_algo(tmp_path, algo)


@pytest.fixture(scope="module")
def ppo_zip(tmp_path_factory):
    from stable_baselines3 import PPO

    path = tmp_path_factory.mktemp("ppo") / "agent.zip"
    PPO("MlpPolicy", MicrogridEnv(), policy_kwargs={"net_arch": [8]}, device="cpu").save(path)
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_a_file_that_is_not_a_model_exits_2(tmp_path, capsys):
    bad = tmp_path / "notes.zip"
    bad.write_text("not a zip")
    assert main(["evaluate", "--controller", str(bad), "--days", "1", "--no-reference"]) == 2
    assert "not a saved Stable-Baselines3 model" in one_line_error(capsys)


def test_a_layout_mismatch_exits_2_before_running_anything(tmp_path, capsys, monkeypatch):
    from stable_baselines3 import PPO

    import sb3_microgrid.evaluation

    other = tmp_path / "other.zip"
    PPO("MlpPolicy", MicrogridEnv(scenario={"forecast": {"forecast_steps": 12}}), device="cpu").save(other)
    monkeypatch.setattr(sb3_microgrid.evaluation, "_run", lambda *a, **k: pytest.fail("a controller ran"))
    assert main(["evaluate", "--controller", f"naive,{other}", "--days", "1", "--no-reference"]) == 2
    assert "another observation layout" in one_line_error(capsys)


def test_plot_refuses_an_unknown_image_format_before_running_anything(tmp_path, capsys, monkeypatch):
    import sb3_microgrid.evaluation

    monkeypatch.setattr(sb3_microgrid.evaluation, "_play", lambda *a, **k: pytest.fail("a controller ran"))
    assert main(["plot", "--controller", "naive", "--day", "2024-06-01", "--out", str(tmp_path / "p.xyz")]) == 2
    err = one_line_error(capsys)
    assert "p.xyz" in err and ".png" in err


def test_algo_and_vecnormalize_belong_to_one_model(ppo_zip, tmp_path, capsys):
    argv = ["evaluate", "--days", "1", "--no-reference", "--split", "train"]
    assert main([*argv, "--controller", f"{ppo_zip},{ppo_zip}", "--algo", "a2c"]) == 2
    assert "--algo applies to exactly one saved model, got 2" in one_line_error(capsys)
    assert main([*argv, "--controller", f"naive,{ppo_zip}", "--algo", "nosuch"]) == 2
    assert "nosuch" in one_line_error(capsys)
    # PATH.zip:ALGO names each model's class
    assert main([*argv, "--controller", f"{ppo_zip}:a2c,{ppo_zip}:ppo"]) == 0
    assert main([*argv, "--controller", str(ppo_zip), "--vecnormalize", str(tmp_path / "missing.pkl")]) == 2
    assert "missing.pkl" in one_line_error(capsys)


def test_vecnormalize_option_and_missing_statistics_warning(ppo_zip, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.zip").write_bytes(ppo_zip.read_bytes())
    (run / "config.yml").write_text("Microgrid-v0:\n  normalize: true\n")
    argv = ["evaluate", "--controller", str(run / "model.zip"), "--days", "1", "--no-reference", "--split", "train"]
    assert main(argv) == 0
    assert "WARNING" in capsys.readouterr().err
    stats = tmp_path / "elsewhere.pkl"
    VecNormalize(DummyVecEnv([MicrogridEnv])).save(str(stats))
    assert main([*argv, "--vecnormalize", str(stats)]) == 0
    assert "WARNING" not in capsys.readouterr().err
    other = tmp_path / "other.pkl"
    VecNormalize(DummyVecEnv([lambda: MicrogridEnv(scenario={"forecast": {"forecast_steps": 12}})])).save(str(other))
    assert main([*argv, "--vecnormalize", str(other)]) == 2
    assert "other.pkl" in one_line_error(capsys)


def test_a_run_with_a_wrapper_of_the_users_own_evaluates_with_trust_module(tmp_path, monkeypatch):
    pkg = tmp_path / "mywrappers"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import gymnasium as gym\n\n\nclass Same(gym.Wrapper):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    conf = tmp_path / "conf.yml"
    conf.write_text("Microgrid-v0:\n  n_envs: 1\n  n_steps: 24\n  batch_size: 24\n  n_epochs: 1\n  env_wrapper: [mywrappers.Same]\n")
    run = tmp_path / "run"
    assert main(["train", "--algo", "ppo", "--conf", str(conf), "--run-dir", str(run), "--timesteps", "24", "--trust-module", "mywrappers"]) == 0
    evaluate = ["evaluate", "--controller", str(run / "model.zip"), "--days", "1", "--no-reference"]
    assert main(evaluate) == 2  # the run names a class of an untrusted module
    assert main([*evaluate, "--trust-module", "mywrappers"]) == 0


def test_building_the_parser_loads_no_training_stack():
    """Every command builds every subparser; `serve` must run without torch and SB3 (docs/deploy.md)."""
    import subprocess
    import sys

    code = "import sys; from sb3_microgrid.cli import build_parser; build_parser(); print(sorted(m for m in ('torch', 'stable_baselines3', 'sb3_contrib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_per_day_figures_of_multi_day_episodes_are_per_day():
    """A row is an episode: with horizon_days 3 the "Rs/day" figures were three days' costs."""
    one = evaluate("naive", scenario={"base": "campus", "horizon_days": 1}, split="validation", days=["2023-01-01", "2023-01-02", "2023-01-03"], reference=False)
    three = evaluate("naive", scenario={"base": "campus", "horizon_days": 3}, split="validation", days=["2023-01-01"], reference=False)
    assert three.days["cost"].iloc[0] == pytest.approx(one.days["cost"].sum(), rel=1e-3)  # the same three days, one episode
    assert three.summary["cost_per_day"] == pytest.approx(one.summary["cost_per_day"], rel=1e-3)


@pytest.mark.parametrize(("argv", "message"), [(["--days", "0"], "--days: must be >= 1"), (["--timesteps", "0"], "--timesteps: must be >= 1"), (["--seed", "-1"], "--seed: must be in [0, 4294967295]")])
def test_the_demo_checks_its_arguments_before_training(argv, message):
    """--days 0 or --timesteps 0 failed with tracebacks after (or during) training."""
    demo = Path(__file__).resolve().parent.parent / "examples" / "demo.py"
    result = subprocess.run([sys.executable, str(demo), *argv], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr


def test_evaluation_seeds_share_no_noise_draw():
    """With seed + i, seed 1's day 0 was seed 0's day 1: five seeds shared 362 of 366 test-year draws."""
    from sb3_microgrid.evaluation import day_seed

    assert [day_seed(0, i) for i in range(3)] == [0, 1, 2]  # seed 0 as before
    seeds = {day_seed(s, i) for s in range(5) for i in range(366)}
    assert len(seeds) == 5 * 366
    one, two = (evaluate("mpc", days=2, seed=s, reference=False).days["cost"].to_numpy() for s in (0, 1))
    assert not np.any(np.isclose(one, two))  # same days, other noise


# ---- inputs refused before any work: outputs that are inputs or cannot be written, days the split lacks -----------------
def no_controller_runs(monkeypatch):
    import sb3_microgrid.evaluation

    monkeypatch.setattr(sb3_microgrid.evaluation, "_play", lambda *a, **k: pytest.fail("a controller ran"))


def test_an_output_that_is_one_of_the_inputs_is_refused_before_running(tmp_path, capsys, monkeypatch):
    """`evaluate --controller RUN/model.zip --json RUN/model.zip` wrote the JSON over the model it had scored."""
    no_controller_runs(monkeypatch)
    run, corrector, checkpoint = tmp_path / "run", tmp_path / "corrector", tmp_path / "run" / "checkpoints" / "100"
    checkpoint.mkdir(parents=True)
    corrector.mkdir()
    files = [run / "model.zip", run / "model_vecnormalize.pkl", run / "run.json", run / "config.yml", checkpoint / "model.zip",
             corrector / "forecast_corrector.json", tmp_path / "site.yaml"]  # fmt: skip
    for path in files:
        path.write_bytes(b"input " + path.name.encode())
    (tmp_path / "link.json").symlink_to(run / "model.zip")
    model = ["--controller", str(run / "model.zip")]
    cases = [
        (model, "--json", run / "model.zip"),
        (model, "--json", run / "model_vecnormalize.pkl"),
        (model, "--json", run / "run.json"),
        (model, "--json", tmp_path / "link.json"),  # a link to the model
        (["--controller", f"naive,{run / 'model.zip'}:ppo"], "--json", checkpoint / ".." / ".." / "config.yml"),
        (["--controller", str(checkpoint / "model.zip")], "--json", run / "run.json"),  # a checkpoint's run record
        (["--controller", str(corrector)], "--json", corrector / "forecast_corrector.json"),
        (["--controller", "naive", "--scenario", str(tmp_path / "site.yaml")], "--json", tmp_path / "site.yaml"),
        (model, "--out", run / "model.zip"),
        (["--controller", str(checkpoint / "model.zip")], "--json", checkpoint / "run.json"),  # a run record not there yet
    ]
    for controllers, option, out in cases:
        argv = ["evaluate", "--days", "1"] if option == "--json" else ["plot", "--day", "2024-06-01"]
        assert main([*argv, *controllers, option, str(out)]) == 2, out
        err = one_line_error(capsys)
        assert f"{option} {out} would overwrite" in err and "a file this command reads" in err
    assert all(path.read_bytes() == b"input " + path.name.encode() for path in files)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--days", "400"], "days must be in [1, 366] (the start days of split 'test'), got 400"),
        (["evaluate", "--split", "validation", "--days", "366"], "days must be in [1, 365] (the start days of split 'validation'), got 366"),
        (["evaluate", "--scenario", "{long}"], "split 'test' has 366 days, fewer than horizon_days = 400"),
        (["plot", "--scenario", "{long}", "--day", "2024-01-02", "--out", "{tmp}/x.png"], "split 'test' has 366 days, fewer than horizon_days = 400"),
    ],
)  # fmt: skip
def test_days_the_split_does_not_have_exit_2_before_running(argv, message, tmp_path, capsys, monkeypatch):
    """Each was a ValueError traceback (exit 1); horizon_days 400 is within the scenario's own range."""
    no_controller_runs(monkeypatch)
    long = tmp_path / "long.yaml"
    long.write_text("base: campus\nhorizon_days: 400\n")
    argv = [arg.format(long=long, tmp=tmp_path) for arg in argv]
    assert main([*argv, "--controller", "naive"]) == 2
    assert message in one_line_error(capsys)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc, a folder no one can create files in")
@pytest.mark.parametrize("argv", [["evaluate", "--days", "1", "--json", "/proc/x.json"], ["plot", "--day", "2024-06-01", "--out", "/proc/x.png"]])
def test_an_output_that_cannot_be_written_exits_2_before_running(argv, capsys, monkeypatch):
    """Both ran the whole evaluation or day, then failed with a FileNotFoundError traceback."""
    no_controller_runs(monkeypatch)
    assert main([*argv, "--controller", "naive"]) == 2
    assert f"cannot write {argv[-2]} {argv[-1]}" in one_line_error(capsys)


def test_checking_an_output_leaves_no_file_and_keeps_an_existing_ones_content(tmp_path, capsys):
    new, old = tmp_path / "new.json", tmp_path / "old.json"
    old.write_text("earlier results")
    for out in (new, old):  # the run then fails on its controller
        assert main(["evaluate", "--controller", "nosuchthing", "--days", "1", "--json", str(out)]) == 2
        assert "nosuchthing" in one_line_error(capsys)
    assert not new.exists() and old.read_text() == "earlier results"


@pytest.mark.parametrize(
    ("days", "message"),
    [
        ("2024-01-03", "got the string '2024-01-03': pass a list of dates, ['2024-01-03']"),  # was read character by character
        (2.0, "got 2.0 (float)"),  # was a TypeError without the name days
        (True, "got True (bool)"),  # was taken as 1
        (np.int64(400), r"must be in [1, 366] (the start days of split 'test'), got 400"),
        (["2024-01-03", "2019-01-01"], "days[1]: day 2019-01-01 is not a start day of split 'test'"),  # failed after the first day ran
        (["2024-01-03", "soon"], "days[1]: day must be a date"),
    ],
)  # fmt: skip
def test_evaluate_names_days_and_what_it_accepts(days, message, monkeypatch):
    no_controller_runs(monkeypatch)
    with pytest.raises(ValueError) as err:
        evaluate("naive", days=days, reference=False)
    assert message in str(err.value)
    if not isinstance(days, (list, np.integer)):
        assert "days must be a whole number >= 1, a non-empty list of dates or None" in str(err.value)


def test_evaluate_takes_numpy_integers_as_a_number_of_days():
    """np.int64(3) gave TypeError: object of type 'numpy.int64' has no len()."""
    assert list(evaluate("naive", days=np.int64(2), reference=False).days.index) == ["2024-01-01", "2024-01-02"]


def test_evaluate_names_a_site_preset_as_adapt_does(tmp_path):
    """Baselines on a held-out site needed a YAML file of it; its name now does, with adapt's site interface."""
    from sb3_microgrid.adaptation import resolve_site

    out = tmp_path / "eval.json"
    assert main(["evaluate", "--controller", "naive", "--scenario", "clinic_200kw", "--days", "1", "--no-reference", "--json", str(out)]) == 0
    summary = json.loads(out.read_text())["summary"]
    assert summary["scenario"] == resolve_site("clinic_200kw").name == "clinic_200kw"
    assert summary["cost_per_day"] == pytest.approx(evaluate("naive", resolve_site("clinic_200kw"), days=1, reference=False).summary["cost_per_day"])


def test_an_output_that_is_the_scenarios_data_file_is_refused_before_running(tmp_path, capsys, monkeypatch):
    """The user's series named by the scenario is read too: `--json series.csv` wrote the results over it."""
    from sb3_microgrid.envs.site import scenario_data
    from sb3_microgrid.scenario import load_scenario

    no_controller_runs(monkeypatch)
    series = tmp_path / "series.csv"
    scenario_data(load_scenario("campus")).series.to_csv(series)
    (tmp_path / "site.yaml").write_text(f"base: campus\ndata:\n  series_path: {series}\n")
    before = series.read_bytes()
    for out in (series, tmp_path / "." / "series.csv"):
        assert main(["evaluate", "--days", "1", "--json", str(out), "--controller", "naive", "--scenario", str(tmp_path / "site.yaml")]) == 2
        assert f"would overwrite {series}, a file this command reads" in one_line_error(capsys)
    assert series.read_bytes() == before


def test_evaluate_json_labels_each_controller_as_the_table_does(ppo_zip, tmp_path):
    """Every saved model is named "model" by its file: the JSON entries told them apart by their order only."""
    out = tmp_path / "e.json"
    assert main(["evaluate", "--controller", f"naive,{ppo_zip},{ppo_zip}", "--days", "1", "--no-reference", "--json", str(out)]) == 0
    entries = json.loads(out.read_text())
    assert [e["label"] for e in entries] == ["naive", str(ppo_zip), f"{ppo_zip} (2)"]
    assert main(["evaluate", "--controller", "rule", "--days", "1", "--no-reference", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["label"] == "rule"


def test_ctrl_c_during_train_is_one_line_naming_the_checkpoint_to_resume_from(tmp_path, capsys, monkeypatch):
    import sb3_microgrid.training

    def interrupted(algo, conf, run_dir, **kwargs):
        (Path(run_dir) / "checkpoints").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(sb3_microgrid.training, "train", interrupted)
    conf = Path(__file__).parents[1] / "hyperparams" / "ppo.yml"
    assert main(["train", "--algo", "ppo", "--conf", str(conf), "--run-dir", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted; no checkpoint was complete yet; go on with the same command and --resume" in err
