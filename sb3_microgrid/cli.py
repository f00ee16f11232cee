"""The ``sb3-microgrid`` command line: evaluate controllers on a split, plot the dispatch of a day, train, adapt a
model trained across sites to one site, export a saved model for a site.

Each subcommand is an ``_add_<name>(subparsers)`` function that declares its arguments and sets
``func`` to the function that runs it; :data:`COMMANDS` lists them. A bad argument found after parsing
(unknown controller, day outside the split, ...) prints one line and exits with code 2, as argparse does.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .scenario import SEED_MAX, Scenario, ScenarioError, load_scenario

if TYPE_CHECKING:
    from .baselines import Controller

SPLITS = ("train", "validation", "test", "all")

#: Rows of the KPI table: label, summary key, format.
KPI_ROWS = (
    ("cost (Rs/day)", "cost_per_day", "{:,.0f}"),
    ("emissions (kg CO2/day)", "emissions_kg_per_day", "{:,.0f}"),
    ("safety violations (total)", "safety_violations", "{:.0f}"),
    ("safety interventions (steps, total)", "safety_interventions", "{:.0f}"),
    ("unmet EV energy (kWh/day)", "unmet_ev_kwh_per_day", "{:.2f}"),
    ("curtailed (kWh/day)", "curtailed_kwh_per_day", "{:.1f}"),
    ("battery fade (SoH/day)", "battery_fade_per_day", "{:.2e}"),
)
REFERENCE_ROWS = (
    ("naive cost (Rs/day)", "cost_naive_per_day", "{:,.0f}"),
    ("optimal cost (Rs/day)", "cost_optimal_per_day", "{:,.0f}"),
    ("gap closed", "gap_closed", "{:.3f}"),  # a fraction of the gap, as every doc gives it
)

JSON_HELP = (
    "JSON written by --json: for one controller the object {label, controller, summary, days: [{date, cost, ...}]} "
    "(label: the table's column title); for several, a list of such objects in the order the controllers were given."
)


class UsageError(Exception):
    """A bad argument found after parsing (unknown controller, date outside the split, ...): exit code 2."""


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    :param argv: arguments without the program name (default: ``sys.argv[1:]``)
    :return: exit code (0 on success, 2 for a usage error; argparse's own errors exit 2)
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as err:
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    """The parser with one subparser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="sb3-microgrid", description="Evaluate and plot microgrid controllers.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """``--controller``, ``--algo``, ``--vecnormalize``, ``--scenario``, ``--split`` and ``--seed``, shared by
    evaluate and plot."""
    p.add_argument(
        "--controller", action="append", required=True, metavar="NAME",
        help="naive, rule, mpc, planner, optimal, a saved SB3 model, PATH.zip or PATH.zip:ALGO, an export folder DIR "
        "(sb3-microgrid export) or a forecast-corrector folder DIR (sb3-microgrid fit-forecast); "
        "repeat or separate with commas for several",
    )  # fmt: skip
    p.add_argument(
        "--algo", default=None,
        help="algorithm of the one saved model given (default: from its run.json, else identified from the zip); "
        "with several models, write PATH.zip:ALGO for each",
    )  # fmt: skip
    p.add_argument(
        "--vecnormalize", type=Path, default=None, metavar="PATH.pkl",
        help="VecNormalize statistics of the one saved model given (default: found beside it)",
    )  # fmt: skip
    p.add_argument(
        "--scenario", default=None,
        help="preset name (campus, campus_tod, or a site preset of adapt --site), or scenario YAML path (default: the site the controllers were made for: an export folder's "
        "scenario.yaml; for a saved model, the scenario its run.json records (`sb3-microgrid adapt`, and `train` for a scenario file), else its training "
        "file's env_kwargs scenario; else campus)",
    )  # fmt: skip
    _add_trust_module(p)
    p.add_argument("--split", default="test", choices=SPLITS, help="days to run on (default: test)")
    p.add_argument("--seed", type=seed_int, default=0, help="day i of the split is reset with seed * 2**20 + i (forecast noise; seeds share no draw; default: 0)")


def _add_trust_module(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-module", action="append", default=[], metavar="PKG",
        help="a module of your own that a saved model's run may name classes from (its env_wrapper), as given to train",
    )  # fmt: skip


# ---- evaluate ---------------------------------------------------------------------------------
def _add_evaluate(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score controllers on the days of a split and print a KPI table",
        description="Run each controller on the days of a split, scored by the env, and print a KPI table.", epilog=JSON_HELP,
    )
    _add_run_args(p)
    p.add_argument("--days", type=positive_int, default=None, metavar="N", help="only the first N days of the split (default: all)")
    p.add_argument("--no-reference", dest="reference", action="store_false", help="skip the naive and optimal references (and the gap closed)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="write the summary and per-day KPIs")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate

    if args.json is not None:
        _check_writable(args.json, "--json", args)
    scenario = _run_scenario(args)
    if args.json is not None:
        _refuse_inputs(args.json, "--json", _data_files(scenario))
    dates = _split_days(args.split, scenario, args.days)
    controllers = _controllers(args, scenario)
    # the names the controllers were made from (one label each, in order): a saved model's file is hashed for export --kpis
    results = {
        label: evaluate(controller, scenario=scenario, split=args.split, days=dates, seed=args.seed, reference=args.reference, source=name)
        for (label, controller), name in zip(controllers.items(), _controller_names(args))
    }
    first = next(iter(results.values())).summary
    # a file that derives from a preset keeps the preset's name unless it gives its own: say which file it was
    source = f" (from {args.scenario})" if args.scenario not in (None, first["scenario"]) else ""
    print(f"scenario {first['scenario']}{source}, split {first['split']}, {first['days']} days, seed {args.seed}")
    print(format_table({label: ev.summary for label, ev in results.items()}, args.reference))
    if args.json is not None:
        # the table's column title: every saved model is named "model" by its file, so the label tells them apart
        entries = [{"label": label, **ev.to_dict()} for label, ev in results.items()]
        args.json.write_text(json.dumps(entries[0] if len(entries) == 1 else entries, indent=2, allow_nan=False))
        print(f"wrote {args.json}")
    return 0


def format_table(summaries: dict[str, dict[str, Any]], reference: bool) -> str:
    """KPI rows against one column per controller.

    :param summaries: ``Evaluation.summary`` of each controller, by column title
    :param reference: add the naive and optimal costs and the gap closed
    """
    rows = KPI_ROWS + (REFERENCE_ROWS if reference else ())
    header = ["KPI", *summaries]
    body = [[label, *(_fmt(s.get(key), fmt) for s in summaries.values())] for label, key, fmt in rows]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join([cells[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))])

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, body)])


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return fmt.format(value)


# ---- plot -------------------------------------------------------------------------------------
def _add_plot(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plot", help="plot the dispatch of one day",
        description="Plot power flows, battery SoC and import price of one day; several controllers side by side.",
    )
    _add_run_args(p)
    p.add_argument(
        "--day", required=True, type=_date, metavar="YYYY-MM-DD",
        help="the episode's first day, a day of the split; reset with the seed evaluate gives it (from --seed and its position in the split)",
    )
    p.add_argument("--out", required=True, type=Path, metavar="PNG", help="image to write (format from the suffix)")
    p.set_defaults(func=_plot)


def _plot(args: argparse.Namespace) -> int:
    from .envs import MicrogridEnv
    from .evaluation import day_seed, run_day
    from .plotting import plot_dispatch

    _check_writable(args.out, "--out", args)
    _check_image_format(args.out)
    scenario = _run_scenario(args)  # its data files are .csv or .parquet, which _check_image_format refused
    dates = _split_days(args.split, scenario)
    if args.day not in dates:
        raise UsageError(f"day {args.day} is not a start day of split {args.split!r} ({dates[0]} .. {dates[-1]})")
    controllers = _controllers(args, scenario)
    env = MicrogridEnv(scenario=scenario, split=args.split)
    # the seed evaluate gives this day, so the plot shows the episode it scored
    seed = day_seed(args.seed, dates.index(args.day))
    traces = {label: run_day(controller, env, args.day, seed)[1] for label, controller in controllers.items()}
    out = plot_dispatch(traces, scenario, args.out, title=f"{scenario.name}, {args.day} ({args.split} split, reset seed {seed})")
    print(f"wrote {out}")
    return 0


# ---- shared -----------------------------------------------------------------------------------
def _scenario(name: str | dict[str, Any]) -> Scenario:
    """A scenario preset, a site preset (with the site interface, as ``adapt`` trains on it) or a YAML file."""
    from .sites import SITE_PRESETS

    try:
        if isinstance(name, str) and name in SITE_PRESETS:
            from .adaptation import resolve_site

            return resolve_site(name)
        return load_scenario(name)
    except ScenarioError as err:
        raise UsageError(str(err)) from None


def _controller_names(args: argparse.Namespace) -> list[str]:
    """The controllers of ``--controller``, repeated or separated with commas, in order."""
    return [name.strip() for value in args.controller for name in value.split(",") if name.strip()]


def _split_days(split: str, scenario: Scenario, days: int | None = None, option: str | None = None) -> list[str]:
    """The start days of ``split`` (the first ``days``), found before any controller runs (or fit): more days than the
    split has, or a scenario whose ``horizon_days`` is longer than the split, is a usage error, not a traceback.

    :param split: ``--split``, or the split a command scores on
    :param scenario: the scenario to run
    :param days: the number of days asked for, or ``None`` for every start day
    :param option: the option that gave ``days``, named in the error
    """
    from .evaluation import split_dates

    try:
        return split_dates(scenario, split, days)
    except ValueError as err:
        raise UsageError(f"{option}: {err}" if option else str(err)) from None


def _run_scenario(args: argparse.Namespace) -> Scenario:
    """``--scenario``, else the site the controllers given record (:func:`_recorded_site`; a saved model that records
    none was made for campus), else campus. Controllers made for different sites need ``--scenario``; sites that
    differ only in their reward settings (which evaluation does not score) are one site."""
    import dataclasses

    from .baselines import CONTROLLERS
    from .export import scenario_fingerprint
    from .scenario import RewardConfig

    if args.scenario is not None:
        return _scenario(args.scenario)
    recorded: dict[str, Scenario] = {}
    for name in _controller_names(args):
        if name in CONTROLLERS:
            continue
        try:
            site = _recorded_site(name)
        except ValueError as err:
            raise UsageError(str(err)) from None
        if site is not None:
            recorded.setdefault(scenario_fingerprint(dataclasses.replace(site, reward=RewardConfig())), site)
    if len(recorded) > 1:
        names = sorted(site.name for site in recorded.values())
        raise UsageError(f"the controllers were made for different sites ({', '.join(names)}); name one with --scenario")
    return next(iter(recorded.values()), None) or _scenario("campus")


def _recorded_site(name: str) -> Scenario | None:
    """The site a controller given by name records: an export folder's ``scenario.yaml`` (the site it was exported
    for), a forecast-corrector folder's fitted scenario (:func:`~sb3_microgrid.forecasting.fitted_scenario`; ``None``
    for a file of an older version), or for a saved model the scenario its run records (:func:`~sb3_microgrid.baselines.sb3_model.recorded_scenario`:
    ``run.json``, else the training file's ``env_kwargs``; campus if it records none); ``None`` for anything else.

    :raises ValueError: for a folder, record or recorded scenario that cannot be read
    """
    from .baselines import model_spec
    from .baselines.sb3_model import recorded_scenario
    from .export import MANIFEST, read_manifest
    from .forecasting import CORRECTOR_FILE, fitted_scenario

    if (Path(name) / MANIFEST).is_file():
        return load_scenario(Path(name) / read_manifest(name)["scenario"]["file"])
    if (Path(name) / CORRECTOR_FILE).is_file():
        return fitted_scenario(name)
    path = model_spec(name)[0]
    if not path.endswith(".zip"):
        return None
    spec = recorded_scenario(path) or "campus"  # a run that names no scenario trained on the default
    try:
        return load_scenario(spec)
    except ScenarioError as err:
        raise ValueError(f"the scenario {path}'s run records ({spec!r}): {err}; name one with --scenario") from None


def _controllers(args: argparse.Namespace, scenario: Scenario) -> dict[str, Controller]:
    """Build every controller of ``--controller`` and check each saved model against the scenario's env
    before running any, so a bad name, file or layout fails at once; titles made unique. ``--algo`` and
    ``--vecnormalize`` belong to a single saved model: with several, ``PATH.zip:ALGO`` names each one's."""
    from .baselines import CONTROLLERS, env_for, make_controller
    from .baselines.sb3_model import NormalizationWarning
    from .envs import MicrogridEnv

    names = _controller_names(args)
    if not names:
        raise UsageError("no controller given")
    models = [name for name in names if name not in CONTROLLERS]
    for option, value in (("--algo", args.algo), ("--vecnormalize", args.vecnormalize)):
        if value is not None and len(models) != 1:
            raise UsageError(f"{option} applies to exactly one saved model, got {len(models)}; for several, write PATH.zip:ALGO")
    controllers: dict[str, Controller] = {}
    for name in names:
        options = {} if name in CONTROLLERS else {"algo": args.algo, "vecnormalize": args.vecnormalize, "trust_modules": args.trust_module}
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                controller = make_controller(name, **options)
        except (ValueError, FileNotFoundError) as err:
            raise UsageError(str(err)) from None
        for warning in caught:  # ours as one line, others as Python shows them
            if issubclass(warning.category, NormalizationWarning):
                print(f"sb3-microgrid {args.command}: WARNING: {warning.message}", file=sys.stderr)
            else:
                warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
        label, k = name, 2
        while label in controllers:
            label, k = f"{name} ({k})", k + 1
        controllers[label] = controller
    # Saved models (plain, or under the controller their run's wrapper names) meet the env before anything runs.
    saved = {label: c for (label, c), name in zip(controllers.items(), names) if name not in CONTROLLERS}
    if saved:
        env = MicrogridEnv(scenario=scenario, split=args.split)
        for label, controller in saved.items():
            played = env_for(controller, env)  # a per-port base (a corrector's MPC) runs on an aggregate site's twin
            obs, _ = played.reset(seed=args.seed)
            try:
                controller.reset(played, obs)
            except ValueError as err:
                raise UsageError(f"{label}: {err}") from None
    return controllers


def _check_image_format(path: Path) -> None:
    """Fail before running any controller if matplotlib cannot write an image of ``path``'s suffix."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        raise UsageError(f"--out {path}: the suffix must be an image format matplotlib writes: {', '.join('.' + f for f in sorted(formats))}")


def _gap_text(gap: float | None, spec: str) -> str:
    """A gap closed as text; undefined (NaN, or ``null`` in a file) where naive and the optimum cost the same."""
    return "undefined (naive and the optimum cost the same)" if gap is None or math.isnan(gap) else format(gap, spec)


def _check_writable(path: Path, option: str, args: argparse.Namespace) -> None:
    """Fail before a long run, not after it, if ``path`` cannot be written or is a file the command reads
    (:func:`_input_files`), which writing it would lose.

    :param path: the output file
    :param option: its option, to name in the error (``--json``)
    :param args: the parsed arguments of evaluate or plot, whose input files ``path`` must not be
    """
    if not path.parent.is_dir():
        raise UsageError(f"no directory {path.parent} for {option} {path}")
    if path.is_dir():
        raise UsageError(f"{option} {path} is a directory; name a file in it")
    _refuse_inputs(path, option, _input_files(args))
    existed = os.path.lexists(path)
    try:
        with path.open("ab"):  # append: an existing file keeps its content until the work is done
            pass
    except OSError as err:  # a read-only or virtual folder (/proc), a file without write permission, ...
        raise UsageError(f"cannot write {option} {path}: {err.strerror or err}") from None
    if not existed:  # leave no empty file behind if the run fails
        path.unlink()


def _refuse_inputs(path: Path, option: str, inputs: list[Path]) -> None:
    """Refuse an output ``path`` that is one of ``inputs`` (resolved, so a symbolic link or another spelling of the
    input counts; ``samefile`` for a hard link).

    :param path: the output file
    :param option: its option, to name in the error (``--json``)
    :param inputs: the files the command reads
    """
    target = path.resolve()
    for read in inputs:
        if target == read.resolve() or (path.exists() and read.exists() and os.path.samefile(path, read)):
            raise UsageError(f"{option} {path} would overwrite {read}, a file this command reads; name another file")


def _data_files(scenario: Scenario) -> list[Path]:
    """The user's data files ``scenario`` reads (its series and sessions), known once the scenario is: checked after
    :func:`_check_writable`, which runs before anything is loaded."""
    return [Path(p) for p in (scenario.data.series_path, scenario.data.sessions_path) if p is not None]


def _input_files(args: argparse.Namespace) -> list[Path]:
    """The files evaluate and plot read, which their output must not replace: a ``--scenario`` file and
    ``--vecnormalize``; every file of a controller folder (an export, a forecast corrector); for a saved model, its zip,
    the statistics found beside it and the run records it may be read with (``run.json`` and ``config.yml`` in its
    folder, its ``STEM/`` and ``*/`` subfolders and the two folders above: ``algos.run_record``,
    ``sb3_model.run_settings``).

    :param args: the parsed arguments (``--controller``, ``--scenario``, ``--vecnormalize``)
    """
    from .baselines import CONTROLLERS, model_spec
    from .baselines.sb3_model import find_vecnormalize
    from .callbacks.checkpoint import RUN_JSON

    files = [Path(p) for p in (args.scenario, args.vecnormalize) if p is not None and Path(p).is_file()]
    for name in _controller_names(args):
        if name in CONTROLLERS:
            continue
        if Path(name).is_dir():
            files += [p for p in Path(name).iterdir() if p.is_file()]
            continue
        try:
            model = Path(model_spec(name)[0])
        except ValueError as err:  # PATH.zip:ALGO with an unknown ALGO
            raise UsageError(str(err)) from None
        folder = model.parent
        files += [model, *filter(None, [find_vecnormalize(model)]), *folder.glob("*/config.yml")]
        files += [d / record for d in (folder / model.stem, folder, folder.parent, folder.parent.parent) for record in (RUN_JSON, "config.yml")]
    return files


def _int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {f'in [{low}, {high}]' if high is not None else f'>= {low}'}, got {value}")
        return value

    return parse


#: argparse types, also for the examples' own command lines
positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)
seed_int = _int_at_least(0, SEED_MAX)


def _date(text: str) -> str:
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


# ---- export -----------------------------------------------------------------------------------
def _add_export(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export", help="write a saved model as an ONNX policy, its manifest and its scenario (docs/deploy.md)",
        description="Write DIR/policy.onnx (the deterministic policy, observation normalisation folded in, actions as predict "
        "returns them: a squashed actor's (SAC, TQC, ...) unscaled to the action space, any other clipped to it), DIR/manifest.json "
        "and DIR/scenario.yaml for a saved model.",
    )  # fmt: skip
    p.add_argument("model", metavar="MODEL.zip", help="a saved model, PATH.zip or PATH.zip:ALGO")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="export folder (created; its files of these names are replaced)")
    p.add_argument("--vecnormalize", type=Path, default=None, metavar="PATH.pkl", help="VecNormalize statistics (default: found beside the model)")
    p.add_argument(
        "--scenario", default=None,
        help="preset name (campus, campus_tod, or a site preset of adapt --site), or scenario YAML path (default: the site the run's run.json records, written by sb3-microgrid adapt "
        "and by train with a scenario file, else the run's env_kwargs scenario, else campus)",
    )  # fmt: skip
    p.add_argument(
        "--kpis", type=Path, default=None, metavar="EVAL.json",
        help="`sb3-microgrid evaluate --controller MODEL.zip --json` output of this model on the test split of the scenario exported, "
        "recorded as the manifest's test KPIs",
    )  # fmt: skip
    _add_trust_module(p)
    p.set_defaults(func=_export)


def _refuse_other_controller(out: Path, other: str) -> None:
    """Refuse an output folder that holds ``other``, another kind of controller's file: a controller folder holds
    one controller (``evaluate --controller FOLDER`` refuses both)."""
    if (out / other).is_file():
        raise UsageError(f"--out {out} holds {other}, another controller; a folder holds one controller: choose another folder")


def _export(args: argparse.Namespace) -> int:
    from .baselines import model_spec
    from .export.onnx_export import export_model
    from .forecasting import CORRECTOR_FILE

    _refuse_other_controller(args.out, CORRECTOR_FILE)
    try:
        path, algo = model_spec(args.model)
        scenario = None if args.scenario is None else _scenario(args.scenario)
        manifest = export_model(path, args.out, algo=algo, vecnormalize=args.vecnormalize, scenario=scenario,
                                trust_modules=args.trust_module, kpis=args.kpis)  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    except OSError as err:  # an output folder that cannot be created or written
        raise UsageError(f"cannot write {args.out}: {err}") from None
    print(f"wrote {args.out} ({manifest['algorithm']}, {manifest['training']['num_timesteps']} steps)")
    return 0


# ---- fit-forecast -----------------------------------------------------------------------------
def _add_fit_forecast(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "fit-forecast", help="learn a forecast-error corrector on the training years (docs/forecast_correction.md)",
        description="Fit how the last forecast revision predicts the current forecasts' errors (least squares on random "
        "training days), write DIR/forecast_corrector.json, and score BASE on the corrected forecasts on validation days. "
        "`sb3-microgrid evaluate --controller DIR` then runs it.",
    )  # fmt: skip
    p.add_argument("--scenario", default="campus", help="preset name (campus, campus_tod, or a site preset of adapt --site), or scenario YAML path (default: campus)")
    p.add_argument("--base", default="mpc", help="the baseline that plans on the corrected forecasts: mpc (default), planner or rule")
    p.add_argument("--days", type=positive_int, default=4096, metavar="N", help="training days to fit on, drawn with replacement and rounded up to a multiple of 64 (the microgrids stepped "
                   "together; default: 4096; the validation curve is flat from 256)")
    p.add_argument("--seed", type=seed_int, default=0, help="fit seed: the training-day draws and their forecast noise")
    p.add_argument("--validation-days", type=_non_negative_int, default=30, metavar="N", help="first N validation days to score on (0: skip; default: 30)")
    p.add_argument(
        "--scenarios", type=_non_negative_int, default=0, metavar="K",
        help="MPC plans on K forecast scenarios drawn from the corrector's residuals (0: on the corrected forecast alone; "
        "default: 0; 32 was chosen on validation days, docs/forecast_correction.md); needs --base mpc",
    )  # fmt: skip
    p.add_argument("--residual-days", type=_non_negative_int, default=256, metavar="N", help="with --scenarios, the training days whose residuals are kept (default: 256)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    p.set_defaults(func=_fit_forecast)


def _fit_forecast(args: argparse.Namespace) -> int:
    from .common.files import make_out_folder
    from .evaluation import evaluate
    from .export import MANIFEST
    from .forecasting import BASES, MAX_SCENARIOS, CorrectedForecastController, fit_corrector

    if args.base not in BASES:  # checked here, not by argparse, so that building the parser imports nothing heavy
        raise UsageError(f"--base must be one of {list(BASES)}, got {args.base!r}")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a folder")
    _refuse_other_controller(args.out, MANIFEST)
    if args.scenarios and args.base != "mpc":
        raise UsageError(f"--scenarios needs --base mpc (the scenario LP), got --base {args.base}")
    if args.scenarios > MAX_SCENARIOS:
        raise UsageError(f"--scenarios must be in [0, {MAX_SCENARIOS}], got {args.scenarios}")
    if args.scenarios and not 1 <= args.residual_days <= args.days:
        raise UsageError(f"--residual-days must be in [1, --days = {args.days}] with --scenarios, got {args.residual_days}")
    scenario = _scenario(args.scenario)
    if args.validation_days:  # checked before the fit, which it would otherwise follow by a traceback
        _split_days("validation", scenario, args.validation_days, "--validation-days")
    try:
        make_out_folder(args.out)  # before the fit, so that its result is not lost to a folder that cannot be written
    except ValueError as err:
        raise UsageError(str(err)) from None
    corrector = fit_corrector(scenario, days=args.days, seed=args.seed, residual_days=args.residual_days if args.scenarios else 0)
    info = corrector.fit_info
    print(f"fitted on {info['samples']} observations of {info['days']} training days (drawn with replacement) in {info['seconds']:.1f} s")
    if args.validation_days:
        controller = CorrectedForecastController(args.base, corrector, scenarios=args.scenarios)
        summary = evaluate(controller, scenario=scenario, split="validation", days=args.validation_days, seed=0).summary
        info["validation"] = {key: summary[key] for key in ("days", "gap_closed", "cost_per_day", "safety_violations", "unmet_ev_kwh_per_day")}
        print(f"validation, first {summary['days']} days: gap closed {_gap_text(summary['gap_closed'], '.3f')}, Rs {summary['cost_per_day']:,.0f}/day")
    try:
        path = corrector.save(args.out, args.base, args.scenarios)
    except OSError as err:
        raise UsageError(f"cannot write {args.out}: {err}") from None
    print(f"wrote {path}")
    return 0


#: Subcommands, each ``add(subparsers)``.
def _add_train(subparsers: Any) -> None:
    # Nothing here imports the training stack: every command builds this parser, and `serve` runs without torch.
    # The algorithm and vec_env are checked by training.train, with the allowed names in the error.
    p = subparsers.add_parser(
        "train", help="train an algorithm from a zoo-format YAML file",
        description="Train from an rl-baselines3-zoo hyperparameter file (read without eval), with checkpoints, "
        "resume, a progress bar and TensorBoard logs.",
    )  # fmt: skip
    p.add_argument("--algo", required=True, metavar="ALGO", help="a registered algorithm (sb3_microgrid.algos.ALGOS: ppo, sac, twin_ppo, tqc, ...)")
    p.add_argument("--conf", required=True, type=Path, metavar="FILE.yml", help="zoo-format hyperparameter file")
    p.add_argument("--env", default=None, help="section of the file to read, also in the default --run-dir (default: its only one; with --resume, the run's)")
    p.add_argument("--timesteps", type=positive_int, default=None, metavar="N", help="total steps (default: the file's n_timesteps)")
    p.add_argument("--seed", type=seed_int, default=None, help="seed of the envs and the algorithm (default: 0; with --resume, the run's)")
    p.add_argument("--run-dir", type=Path, default=None, help="output folder (default: runs/<algo>_<section or file stem>_<seed>)")
    p.add_argument(
        "--resume", action="store_true",
        help="continue from the newest complete checkpoint in the run folder (same --algo and --conf as the run; --seed and --vec-env are "
        "the run's, and so are its total and --save-freq unless given)",
    )  # fmt: skip
    p.add_argument("--save-freq", type=positive_int, default=None, metavar="N", help="steps between checkpoints (default: 50000; with --resume, the run's)")
    p.add_argument("--vec-env", default=None, help="vectorisation: microgrid, dummy or subproc (default: microgrid; with --resume, the run's)")
    p.add_argument(
        "--trust-module", action="append", default=[], metavar="MODULE",
        help="let the file name classes from your own MODULE and its submodules (callbacks, wrappers, policies, ...); "
        "repeat for several. Without it only sb3_microgrid, stable_baselines3, sb3_contrib, gymnasium, torch.nn and "
        "torch.optim are allowed",
    )  # fmt: skip
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from .callbacks.checkpoint import CheckpointError
    from .hyperparams import HyperparamsError
    from .training import last_checkpoint, train

    if not args.conf.exists():
        raise UsageError(f"no hyperparameter file at {args.conf}")
    run_dir = args.run_dir or Path("runs") / f"{args.algo}_{args.env or args.conf.stem}_{args.seed or 0}"
    if args.resume and args.run_dir is None and not run_dir.exists():
        # the default folder carries the section and the seed, which --resume would otherwise take from the run it cannot find
        conf = args.conf.read_bytes()
        others = sorted(str(p.parent) for p in run_dir.parent.glob(f"{args.algo}_*/config.yml") if p.read_bytes() == conf)
        raise UsageError(f"no run at {run_dir} to resume: name the run's --run-dir, or its --env and --seed" + (f" (runs of this file: {', '.join(others)})" if others else ""))
    try:
        train(args.algo, args.conf, run_dir, timesteps=args.timesteps, seed=args.seed, resume=args.resume,
              save_freq=args.save_freq, vec_env=args.vec_env, env_id=args.env, trust_modules=args.trust_module)  # fmt: skip
    except (HyperparamsError, CheckpointError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    except KeyboardInterrupt:  # Ctrl-C: a line saying what is kept and how to go on, not a traceback from inside SB3
        found = last_checkpoint(run_dir)
        kept = f"the newest complete checkpoint is {found[1]} ({found[0]:,} steps)" if found else "no checkpoint was complete yet"
        print(f"sb3-microgrid train: interrupted; {kept}; go on with the same command and --resume", file=sys.stderr)
        return 130  # the shell's code for a process ended by SIGINT
    print(f"wrote {run_dir / 'model.zip'}")
    return 0


# ---- adapt ------------------------------------------------------------------------------------
def _add_adapt(subparsers: Any) -> None:
    # Like train, nothing here imports the training stack; the site, the model and the step range are checked by
    # adaptation.adapt, with the allowed values in the error.
    p = subparsers.add_parser(
        "adapt", help="fine-tune a pooled or meta-learned model on one site's training years (docs/meta_learning.md)",
        description="Fine-tune a model trained across sites (PPO or Reptile) on a site's training years with PPO and write "
        "DIR/model.zip, its VecNormalize statistics and DIR/run.json, which records the site: `sb3-microgrid evaluate "
        "--controller DIR/model.zip` then scores it on that site. By default the last weights are written; with "
        "--eval-days D the policy is scored on the site's first D validation days (2023) before training, every "
        "--eval-freq steps (after the update that reaches them) and at the end, and the best-scoring weights and their "
        "VecNormalize statistics are written instead, the step chosen and its gap closed recorded in run.json and every "
        "score in DIR/validation.json.",
    )  # fmt: skip
    p.add_argument("--model", required=True, metavar="MODEL.zip", help="the model to adapt (statistics found beside it)")
    p.add_argument("--site", required=True, metavar="NAME", help="a site preset (sb3_microgrid.sites.SITE_PRESETS) or a scenario YAML file")
    p.add_argument(
        "--timesteps", required=True, type=_non_negative_int, metavar="N",
        help="fine-tuning env steps, in whole PPO rollouts (0: the model as it is, zero-shot, for the site)",
    )  # fmt: skip
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="run folder to write (must not hold a model, an export, a corrector or another run's files; checked and created before training)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the envs and of PPO (default: 0)")
    p.add_argument("--n-envs", type=positive_int, default=8, metavar="K", help="microgrids stepped together (default: 8, as hyperparams/ppo.yml)")
    p.add_argument(
        "--eval-days", type=_non_negative_int, default=0, metavar="D",
        help="select the weights on the site's first D validation days, D at most the validation split's days (365 for "
        "one-day episodes); default: 0, no selection, the last weights are written",
    )  # fmt: skip
    p.add_argument(
        "--eval-freq", type=positive_int, default=None, metavar="N",
        help="env steps between validation scores, at most 40,000,000 (default: 50,000); needs --eval-days",
    )  # fmt: skip
    p.set_defaults(func=_adapt)


def _adapt(args: argparse.Namespace) -> int:
    from .adaptation import adapt

    try:
        model = adapt(args.model, args.site, args.timesteps, args.out, seed=args.seed, n_envs=args.n_envs, progress_bar=True,
                      eval_days=args.eval_days, eval_freq=args.eval_freq)  # fmt: skip
    except (ScenarioError, ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    except OSError as err:
        raise UsageError(f"cannot write {args.out}: {err}") from None
    selected = ""
    if args.eval_days:
        chosen = json.loads((args.out / "run.json").read_text())["validation"]
        selected = f", the weights of step {chosen['selected_steps']:,} (gap closed {_gap_text(chosen['selected_gap_closed'], '.3f')} on {args.eval_days} validation days)"
    print(f"wrote {args.out / 'model.zip'} ({model.num_timesteps:,} steps on {args.site}{selected}); score it with "
          f"sb3-microgrid evaluate --controller {args.out / 'model.zip'}")  # fmt: skip
    return 0


# ---- serve ------------------------------------------------------------------------------------
def _add_serve(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve", help="serve an export folder's policy over HTTP: POST /decide, GET /health, GET /manifest (docs/deploy.md)",
        description="Serve the site controller of an export folder: measurements in (POST /decide, JSON), setpoints in kW "
        "out, after the env's safety supervisor; bad measurements get the fallback with the problem named.",
    )  # fmt: skip
    p.add_argument("dir", type=Path, metavar="DIR", help="export folder (sb3-microgrid export)")
    p.add_argument("--port", required=True, type=_port, help="TCP port")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0: every interface)")
    clock = p.add_mutually_exclusive_group()
    clock.add_argument(
        "--max-age", type=_positive_float, default=None, metavar="SECONDS",
        help="how far a request's timestamp may lie from the server's clock (default: one step of the scenario)",
    )  # fmt: skip
    clock.add_argument("--replay", action="store_true", help="the requests replay a recorded or simulated day: no staleness check")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from .deploy.serve import serve
    from .export import ManifestError

    try:
        serve(args.dir, host=args.host, port=args.port, max_age_s=args.max_age, replay=args.replay)
    except ManifestError as err:
        raise UsageError(str(err)) from None
    return 0


def _port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port in [1, 65535], got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


COMMANDS: tuple[Callable[[Any], None], ...] = (_add_evaluate, _add_plot, _add_train, _add_adapt, _add_fit_forecast, _add_export, _add_serve)

if __name__ == "__main__":
    sys.exit(main())
