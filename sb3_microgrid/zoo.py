"""Launcher for rl-baselines3-zoo with this package's algorithms, and the best trial of a sweep as a YAML file.

The zoo fixes its ``--algo`` choices before any package loads, so it cannot select an algorithm of
ours. As the zoo documents for SBX, this launcher adds ours to ``rl_zoo3.ALGOS`` (with the ``-optimize``
sampler and converter of the zoo algorithm each one extends) and then calls the zoo's own ``train`` or
``enjoy``. The zoo's ``-optimize`` replaces ``policy_kwargs`` with the sampler's and would drop a custom
features extractor (zoo issue #431): the samplers here keep every ``policy_kwargs`` entry of the file
that the sampler does not choose.

Sweeps over several processes or machines are the zoo's own: ``-optimize --storage URL --study-name S``
shares one optuna study (docs/sweeps.md). ``best`` writes a trial's settings as a zoo-format file.

The zoo runs code from the files it reads: it ``eval``s strings of the hyperparameter file (``normalize``,
``policy_kwargs``, ``monitor_kwargs``, ...), imports whatever ``policy``, ``callback`` and the wrappers name,
executes a ``.py`` ``--conf-file`` and reads a run's saved ``config.yml`` and ``args.yml`` with PyYAML's
unsafe loader; ``train --storage URL --study-name S --trial-id N`` puts a study's trial on top of the file,
through a converter that passes any parameter through. Before the zoo sees a command line, :func:`check_inputs`
reads those inputs with this package's safe reader (:func:`sb3_microgrid.hyperparams.load_hyperparams`) and
refuses, naming the file and the field, anything that would run code or import from a package that is not
trusted. The zoo then reads a private copy of the ``--conf-file`` that was checked, not the path again, so a
file changed or a symlink re-pointed after the check is not what it trains with.

Usage::

    sb3-microgrid-zoo train --algo twin_ppo --env Microgrid-v0 --gym-packages sb3_microgrid --conf-file hyperparams/twin_ppo.yml
    sb3-microgrid-zoo enjoy --algo twin_ppo --env Microgrid-v0 --gym-packages sb3_microgrid -f logs/
    sb3-microgrid-zoo best --algo twin_ppo --conf-file hyperparams/twin_ppo.yml --storage sweep.log --study-name S --out hyperparams/twin_ppo_tuned.yml
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import inspect
import io
import keyword
import os
import random
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch as th
import yaml

from .algos import ALGOS
from .common.yaml_files import SavedRunLoader, load_yaml
from .hyperparams import HyperparamsError, _read_section, load_hyperparams, parse_python, resolve_section, trusted_modules

if TYPE_CHECKING:
    import optuna


def zoo_arguments(command: str, argv: list[str]) -> argparse.Namespace:
    """The options of a zoo command line that say which files the zoo reads, parsed as the zoo's own parser
    parses them (rl_zoo3 2.9): its defaults, the last of a repeated option wins and an option may be abbreviated
    (``--conf`` is ``--conf-file``). The zoo's other options are left to the zoo.

    :param command: ``train`` (``--algo``, ``--env``, ``--conf-file``, ``--gym-packages``, the trial options
        ``--storage``, ``--study-name``, ``--trial-id``) or ``enjoy``
        (``--algo``, ``--env``, ``--gym-packages`` and the options that choose the run folder: ``-f``, ``--exp-id``,
        ``--load-*``)
    :param argv: the zoo's arguments
    """
    parser = argparse.ArgumentParser(prog=f"sb3-microgrid-zoo {command}", add_help=False)  # --help is the zoo's
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--gym-packages", nargs="+", default=[])
    if command == "enjoy":
        parser.add_argument("-f", "--folder", default="rl-trained-agents")
        parser.add_argument("--exp-id", type=int, default=0)
        parser.add_argument("--load-best", action="store_true")
        parser.add_argument("--load-checkpoint", type=int)
        parser.add_argument("--load-last-checkpoint", action="store_true")
    else:
        parser.add_argument("-conf", "--conf-file")
        parser.add_argument("--storage")
        parser.add_argument("--study-name")
        parser.add_argument("--trial-id", type=int)
    return parser.parse_known_args(argv)[0]


def _file_section(argv: list[str]) -> dict[str, Any]:
    """The ``--env`` section of ``--conf-file`` as YAML gives it (empty without a file).

    :param argv: the zoo's arguments
    """
    args = zoo_arguments("train", argv)
    if not args.conf_file or not Path(args.conf_file).exists():
        return {}
    return (load_yaml(Path(args.conf_file).read_text()) or {}).get(args.env) or {}


def file_policy_kwargs(argv: list[str]) -> dict[str, Any]:
    """The ``policy_kwargs`` of the ``--env`` section of ``--conf-file`` (parsed without eval; classes
    from the toolkit's trusted packages and ``--gym-packages``).

    :param argv: the zoo's arguments
    """
    kwargs = _file_section(argv).get("policy_kwargs", {})
    return parse_python(kwargs, "policy_kwargs", trusted_modules(zoo_arguments("train", argv).gym_packages)) if isinstance(kwargs, str) else dict(kwargs)


def keep_policy_kwargs(sample: Callable[..., dict[str, Any]], kept: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    """Wrap a zoo sampler or converter so that sampled ``policy_kwargs`` keep the file's other entries
    (the features extractor and its arguments, ``log_std_init``, ...); the sampler's own choices win.

    :param sample: the zoo's function (``inspect.unwrap`` gives it back)
    :param kept: the file's ``policy_kwargs``
    """

    @functools.wraps(sample)
    def wrapped(*args: Any, **kwargs: Any) -> dict[str, Any]:
        params = sample(*args, **kwargs)
        if "policy_kwargs" in params:  # a sampler without any (ARS) leaves the file's in place
            params["policy_kwargs"] = {**kept, **params["policy_kwargs"]}
        return params

    return wrapped


@functools.cache
def zoo_tuners() -> dict[type, str]:
    """The algorithms the zoo itself tunes (class -> name), read before :func:`register` adds ours."""
    import rl_zoo3
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER

    return {cls: name for name, cls in rl_zoo3.ALGOS.items() if name in HYPERPARAMS_SAMPLER and name in HYPERPARAMS_CONVERTER}


def zoo_base(cls: type) -> str | None:
    """The zoo algorithm whose sampler and converter serve ``cls``: the nearest class in its MRO that the
    zoo tunes (``twin_ppo`` -> ``ppo``, ``per_sac`` -> ``sac``, ``paired_ars`` -> ``ars``), or ``None``.

    :param cls: an algorithm class
    """
    tuners = zoo_tuners()
    return next((tuners[base] for base in cls.__mro__ if base in tuners), None)


def register(argv: list[str]) -> None:
    """Add our algorithms to the zoo's registries, with a sampler and a converter for every algorithm the
    zoo can tune, each keeping the file's ``policy_kwargs`` (:func:`keep_policy_kwargs`).

    :param argv: the zoo's arguments (``--env``, ``--conf-file`` and ``--gym-packages`` are read)
    """
    import rl_zoo3
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER

    zoo_tuners()  # before ours are added
    rl_zoo3.ALGOS.update({name: cls for name, cls in ALGOS.items() if name not in rl_zoo3.ALGOS})
    kept = file_policy_kwargs(argv)
    for name, cls in ALGOS.items():
        base = zoo_base(cls)
        if base is not None:  # unwrap: registering again must not keep an earlier file's settings
            HYPERPARAMS_SAMPLER[name] = keep_policy_kwargs(inspect.unwrap(HYPERPARAMS_SAMPLER[base]), kept)
            HYPERPARAMS_CONVERTER[name] = keep_policy_kwargs(inspect.unwrap(HYPERPARAMS_CONVERTER[base]), kept)


def study_storage(url: str) -> str | optuna.storages.BaseStorage:
    """The optuna storage ``--storage URL`` names, opened as the zoo opens it: a path ending in ``.log`` is a
    journal file (``JournalStorage`` on a ``JournalFileBackend``), anything else a database URL.

    :param url: the ``--storage`` value
    :raises FileNotFoundError: for a journal file that does not exist (optuna would create an empty one)
    """
    import optuna

    if url.endswith(".log"):
        if not Path(url).is_file():
            raise FileNotFoundError(f"{url}: no such journal file")
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))
    return url


#: Tries at creating a database's tables (:func:`create_tables`); each loser of a race waits a little and looks again.
TABLE_CREATION_TRIES = 5


def create_tables(url: str) -> None:
    """Create optuna's tables in the database ``url`` (nothing if they exist), before the zoo opens it. Workers
    started together on a fresh database race to create them, and on PostgreSQL the loser fails on a duplicate type
    (``studydirection``) and exits; after a lost race the tables exist, so the next try only checks them.

    :param url: a database URL (``--storage``)
    :raises sqlalchemy.exc.SQLAlchemyError: if the tables still cannot be created after :data:`TABLE_CREATION_TRIES`
    """
    import optuna
    import sqlalchemy.exc

    for attempt in range(TABLE_CREATION_TRIES):
        try:
            optuna.storages.RDBStorage(url)
            return
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == TABLE_CREATION_TRIES - 1:
                raise
            time.sleep(random.uniform(0.1, 0.5))  # let the winner finish creating them


def python_expr(value: Any) -> str:
    """``value`` as a zoo-style Python expression that both the zoo's ``eval`` and :func:`parse_python` read
    back: dicts as ``dict(...)``, classes as ``nn.Name`` or ``get_class_by_name('module.Name')``.

    :param value: a YAML value or a class
    :raises ValueError: for a value that has no such expression (a function, an object)
    """
    if isinstance(value, dict):
        if all(isinstance(k, str) and k.isidentifier() and not keyword.iskeyword(k) for k in value):
            return "dict(" + ", ".join(f"{k}={python_expr(v)}" for k, v in value.items()) + ")"
        return "{" + ", ".join(f"{python_expr(k)}: {python_expr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(python_expr(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + "".join(f"{python_expr(v)}, " for v in value) + ")"
    if inspect.isclass(value):
        if getattr(th.nn, value.__name__, None) is value:
            return f"nn.{value.__name__}"
        return f"get_class_by_name({value.__module__ + '.' + value.__qualname__!r})"
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    raise ValueError(f"{value!r} cannot be written as a hyperparameter")


def write_trial(argv: list[str]) -> Path:
    """``sb3-microgrid-zoo best``: write one trial of a sweep as a zoo-format file that ``sb3-microgrid train``
    and the zoo both read: the ``--conf-file`` section with the trial's values on top, as the trial ran them
    (the zoo's converter, the file's ``policy_kwargs`` kept; a ``noise_type`` sampled as none leaves the file's
    action noise, as in the trial). The file is checked with :func:`sb3_microgrid.hyperparams.load_hyperparams`.

    :param argv: the command's arguments (``--help`` lists them)
    :return: the file written
    """
    import optuna

    parser = argparse.ArgumentParser(prog="sb3-microgrid-zoo best", description="Write a trial of a sweep as a zoo-format hyperparameter file.")
    parser.add_argument("--algo", required=True, choices=sorted(ALGOS), help="the algorithm the sweep tuned")
    parser.add_argument("--env", default="Microgrid-v0", help="the section to read and write")
    parser.add_argument("--conf-file", required=True, help="the file the sweep ran with (n_timesteps may be the full run's)")
    parser.add_argument("--storage", required=True, help="the sweep's --storage: a journal file (.log) or a database URL")
    parser.add_argument("--study-name", required=True)
    parser.add_argument("--trial", type=int, help="a complete trial's number (default: the best trial)")
    parser.add_argument("--out", required=True, type=Path, help="the file to write; never overwritten")
    parser.add_argument("--gym-packages", nargs="+", default=[], help="packages to import and trust, as for the zoo")
    args = parser.parse_args(argv)
    for package in args.gym_packages:  # the zoo imports them too: they register envs and define classes
        importlib.import_module(package)

    try:
        storage = study_storage(args.storage)
        study = optuna.load_study(study_name=args.study_name, storage=storage)
    except (FileNotFoundError, KeyError) as err:
        raise SystemExit(f"sb3-microgrid-zoo best: cannot open study {args.study_name!r} in {args.storage}: {err}") from None
    command = study.user_attrs.get("command")  # the zoo records each study's command line
    recorded = zoo_arguments("train", command.split()).algo if isinstance(command, str) else None
    if recorded not in (None, args.algo):
        raise SystemExit(f"sb3-microgrid-zoo best: study {args.study_name!r} tuned {recorded}, not {args.algo}")
    complete = {t.number: t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))}
    if not complete:
        raise SystemExit(f"sb3-microgrid-zoo best: study {args.study_name!r} has no complete trial")
    if args.trial is not None and args.trial not in complete:
        raise SystemExit(f"sb3-microgrid-zoo best: trial {args.trial} of {args.study_name!r} is not a complete trial; complete: {sorted(complete)}")
    trial = complete[args.trial] if args.trial is not None else study.best_trial

    try:  # the file first: register reads it too, and a file that is no YAML mapping is an error, not a traceback
        _, section = _read_section(args.conf_file, args.env)
    except HyperparamsError as err:
        raise SystemExit(f"sb3-microgrid-zoo best: {err}") from None
    register(["--env", args.env, "--conf-file", args.conf_file, *(["--gym-packages", *args.gym_packages] if args.gym_packages else [])])
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER

    try:
        values = _without_null_noise(HYPERPARAMS_CONVERTER[args.algo](dict(trial.params)))
        if "policy_kwargs" in values:
            values["policy_kwargs"] = python_expr(values["policy_kwargs"])
        text = yaml.safe_dump({args.env: {**section, **values}}, sort_keys=False)
    except (HyperparamsError, KeyError, TypeError, ValueError, yaml.YAMLError) as err:  # KeyError, TypeError: another algorithm's
        raise SystemExit(f"sb3-microgrid-zoo best: {type(err).__name__}: {err}") from None
    header = (
        f"# Trial {trial.number} (value {trial.value}) of study {args.study_name!r}, written by\n"
        f"# sb3-microgrid-zoo best: the settings of {args.conf_file!r} with the trial's values on top.\n"
    )
    with tempfile.TemporaryDirectory(prefix="sb3-microgrid-zoo-") as private:  # checked before --out exists
        draft = Path(private) / args.out.name
        draft.write_text(header + text)
        try:
            load_hyperparams(draft, ALGOS[args.algo], args.env, trust_modules=args.gym_packages)
        except HyperparamsError as err:
            message = str(err).replace(str(draft), str(args.out))
            raise SystemExit(f"sb3-microgrid-zoo best: the trial's settings do not load, nothing written: {message}") from None
    try:
        with open(args.out, "x") as file:
            file.write(header + text)
    except FileExistsError:
        raise SystemExit(f"sb3-microgrid-zoo best: {args.out} exists; choose another --out") from None
    print(f"trial {trial.number} (value {trial.value}) written to {args.out}")
    _warn_of_reward_gamma(section, values)
    return args.out


def _warn_of_reward_gamma(section: dict[str, Any], values: dict[str, Any]) -> None:
    """Say so when the trial's rewards were normalised with another gamma than the file written trains with: rl_zoo3
    builds a trial's ``VecNormalize`` with the file's gamma before it samples one, while training takes the file's
    ``gamma``, now the trial's, for both (:func:`sb3_microgrid.training.make_env`, as rl_zoo3 does).

    :param section: the ``--conf-file`` section the sweep ran with
    :param values: the trial's converted values
    """
    normalize = section.get("normalize", False)
    if isinstance(normalize, str):  # the zoo's Python string, which load_hyperparams has checked
        normalize = parse_python(normalize, "normalize")
    norm_reward = normalize.get("norm_reward", True) if isinstance(normalize, dict) else bool(normalize)
    from stable_baselines3.common.vec_env import VecNormalize

    ran = section.get("gamma", inspect.signature(VecNormalize).parameters["gamma"].default)  # rl_zoo3 passes none then
    written = values.get("gamma")
    if norm_reward and written is not None and ran != written:
        print(
            f"sb3-microgrid-zoo best: WARNING: the trial normalised rewards with the file's gamma ({ran}), "
            f"rl_zoo3's VecNormalize being built before gamma was sampled; the file written trains with the trial's gamma {written} "
            "for both, so its reward scale differs from the trial's",
            file=sys.stderr,
        )


def _without_null_noise(values: dict[str, Any]) -> dict[str, Any]:
    """A converted trial without ``noise_type`` and ``noise_std`` where the sampler chose no noise (``None``): the file's
    action noise, if any, stays, as it did in the trial.

    :param values: a zoo converter's output (changed in place)
    """
    if "noise_type" in values and values["noise_type"] is None:
        values.pop("noise_type")
        values.pop("noise_std", None)
    return values


def read_saved_run_file(path: Path) -> dict[str, Any]:
    """A zoo run's ``config.yml`` or ``args.yml``, read with :class:`SavedRunLoader`.

    :param path: the file
    :raises HyperparamsError: naming the file, for a Python tag other than the zoo's ``OrderedDict``, YAML that
        does not parse, or a file that is not a mapping of names to values
    """
    try:
        data = yaml.load(path.read_text(), Loader=SavedRunLoader)  # noqa: S506 - a SafeLoader subclass
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as err:
        raise HyperparamsError(f"{path}: not read, it is not plain YAML (the zoo would construct Python objects from it): {err}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise HyperparamsError(f"{path}: expected a mapping of names to values, got {data!r:.80}")
    return data


def check_inputs(command: str, argv: list[str], copy_dir: Path | None = None) -> Path | None:
    """Refuse, before the zoo runs, an input of a zoo command line that would make the zoo run code (module
    docstring). ``train``: ``--conf-file`` must be YAML whose ``--env`` section passes
    :func:`~sb3_microgrid.hyperparams.load_hyperparams` for ``--algo``, classes from the trusted packages and
    ``--gym-packages`` (without ``--conf-file`` the zoo reads its own, installed file); with ``--storage``,
    ``--study-name`` and ``--trial-id``, the trial the zoo would load, converted as the zoo converts it, on top of
    that section must pass the same checks. ``enjoy``: the run folder's ``config.yml`` and ``args.yml`` must be
    plain YAML (:class:`SavedRunLoader`), and ``config.yml`` must pass the same checks. The command line itself
    (``--hyperparams``, ``--env-kwargs``, model files) is the user's own.

    :param command: ``train`` or ``enjoy``
    :param argv: the zoo's arguments
    :param copy_dir: a private folder: the ``--conf-file`` bytes that were checked are written there, for the zoo
        to read instead of the path (``None``: a temporary folder, removed)
    :return: the checked copy of ``--conf-file`` in ``copy_dir`` (``None`` without ``--conf-file``, for ``enjoy``
        or without ``copy_dir``)
    :raises SystemExit: naming the file or option and the field
    """
    import rl_zoo3

    args = zoo_arguments(command, argv)
    classes = {**rl_zoo3.ALGOS, **ALGOS}
    if args.algo not in classes:
        raise SystemExit(f"sb3-microgrid-zoo {command}: --algo {args.algo!r} unknown; allowed: {sorted(classes)}")
    try:
        if command != "train":
            _check_saved_run(args, classes[args.algo])
            return None
        with contextlib.ExitStack() as stack:
            folder = copy_dir if copy_dir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sb3-microgrid-zoo-")))
            copy, section = _check_conf_file(args.conf_file, classes[args.algo], args.env, args.gym_packages, folder)
            _check_trial(args, classes[args.algo], section)
            return copy if copy_dir is not None else None
    except HyperparamsError as err:
        raise SystemExit(f"sb3-microgrid-zoo {command}: {err}") from None


def _read_once(path: str) -> bytes:
    """The bytes of a regular file, read through one open file (a FIFO or device is refused, not read).

    :param path: the file (symlinks followed)
    :raises HyperparamsError: naming ``--conf-file``
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
    except OSError as err:
        raise HyperparamsError(f"--conf-file {path}: cannot read it: {err}") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise HyperparamsError(f"--conf-file {path}: not a regular file")
        return file.read()


def _check_conf_file(conf: str | None, cls: type, env: str, gym_packages: list[str], folder: Path) -> tuple[Path | None, dict[str, Any]]:
    """Read ``--conf-file`` once into ``folder`` and check that copy: what the zoo will read is what was checked.

    :param conf: the ``--conf-file`` value, ``None`` if not given
    :param cls: the ``--algo`` class
    :param env: the ``--env`` id, the section read
    :param gym_packages: ``--gym-packages``, trusted besides the toolkit's packages
    :param folder: a private folder for the copy
    :return: the checked copy and its ``--env`` section as YAML gives it (``None`` and ``{}`` without ``conf``)
    :raises HyperparamsError: naming ``conf`` (not the copy) and the field
    """
    if conf is None:
        return None, {}
    if not conf.endswith((".yml", ".yaml")):  # the zoo execs a .py file and imports any other name as a module
        kind = "a Python file" if conf.endswith(".py") else "no YAML file (.yml, .yaml): the zoo would import it as a Python module"
        raise HyperparamsError(
            f"--conf-file {conf}: {kind}, which runs as code; sb3-microgrid-zoo reads hyperparameters from YAML only. "
            "If you trust the file, run the zoo directly: python -m rl_zoo3.train ..."
        )
    copy = folder / Path(conf).name
    copy.write_bytes(_read_once(conf))
    try:
        load_hyperparams(copy, cls, env, trust_modules=gym_packages)
        section = _read_section(copy, env)[1]
        _check_zoo_strings(section, f"{copy} [{env}]")
        return copy, section
    except HyperparamsError as err:
        raise HyperparamsError(str(err).replace(str(copy), conf)) from None


def _check_trial(args: argparse.Namespace, cls: type, section: dict[str, Any]) -> None:
    """The trial ``train --storage --study-name --trial-id`` makes the zoo load, checked on top of the file's section.

    rl_zoo3 2.9 loads ``study.trials[trial_id].params`` when all three are given (``--trial-id 0`` is falsy: none),
    passes them through the algorithm's converter, which keeps any parameter it does not convert, and updates the
    file's section with the result before it evaluates ``normalize`` and ``policy_kwargs`` strings and imports
    ``policy``, ``callback`` and wrapper names. A study is a file or a database anyone who can write to it shapes,
    so its parameters are checked as a file's are.

    :param args: the zoo's options (:func:`zoo_arguments`)
    :param cls: the ``--algo`` class
    :param section: the ``--env`` section of the checked ``--conf-file`` (``{}`` without one)
    :raises HyperparamsError: naming the options and the field
    """
    if not (args.storage and args.study_name and args.trial_id):  # as ExperimentManager.read_hyperparameters decides
        return
    import optuna
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER

    where = f"--storage {args.storage} --study-name {args.study_name} --trial-id {args.trial_id}"
    try:
        study = optuna.load_study(study_name=args.study_name, storage=study_storage(args.storage))
        params = dict(study.trials[args.trial_id].params)
    except (FileNotFoundError, KeyError, IndexError, ValueError) as err:
        raise HyperparamsError(f"{where}: cannot load the trial: {type(err).__name__}: {err}") from None
    base = zoo_base(cls)
    if base is None:
        raise HyperparamsError(f"{where}: the zoo has no converter of trial parameters for {cls.__name__}")
    try:  # the zoo's own converter; the launcher's wrapper (keep_policy_kwargs) only adds the file's checked entries
        values = _without_null_noise(inspect.unwrap(HYPERPARAMS_CONVERTER[base])(params))
    except (KeyError, TypeError, ValueError) as err:
        raise HyperparamsError(f"{where}: parameters {sorted(params)} are not a {base} trial's: {type(err).__name__}: {err}") from None
    resolve_section({**section, **values}, cls, args.env, args.gym_packages, source=where)
    _check_zoo_strings(values, where)


#: Keys ``sb3-microgrid train`` parses from a string but rl_zoo3 2.9 passes on as the string itself (it evaluates
#: only ``policy_kwargs``, ``replay_buffer_class``, ``replay_buffer_kwargs``): the algorithm fails later with
#: ``TypeError: 'str' object is not callable``. With the YAML form each takes instead (none for a class).
ZOO_UNEVALUATED_KEYS = {
    "rollout_buffer_class": "the zoo cannot name a class here; use sb3-microgrid train",
    "rollout_buffer_kwargs": "write it as a YAML mapping, {key: value}",
}


def _check_zoo_strings(section: dict[str, Any], where: str) -> None:
    """Refuse the string forms of :data:`ZOO_UNEVALUATED_KEYS`, so the zoo and ``sb3-microgrid train`` agree.

    :param section: the settings the zoo will read
    :param where: where they come from, for error messages
    :raises HyperparamsError: naming ``where`` and the key
    """
    for key, instead in ZOO_UNEVALUATED_KEYS.items():
        if isinstance(section.get(key), str):
            raise HyperparamsError(f"{where}: {key}: rl_zoo3 does not evaluate this string (it fails with 'str' object is not callable); {instead}")


def _check_saved_run(args: argparse.Namespace, cls: type) -> None:
    """The run folder the zoo's ``enjoy`` would read, found as it finds it, and its saved settings checked.

    :param args: the zoo's options (:func:`zoo_arguments` for ``enjoy``)
    :param cls: the ``--algo`` class
    :raises HyperparamsError: naming the file and the field
    """
    from huggingface_sb3 import EnvironmentName
    from rl_zoo3.utils import get_model_path

    try:
        env_name = EnvironmentName(args.env)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints the run it picks; the zoo prints it again
            _, _, log_path = get_model_path(args.exp_id, args.folder, args.algo, env_name, args.load_best, args.load_checkpoint, args.load_last_checkpoint)
    except (AssertionError, ValueError) as err:  # for a folder named rl-trained-agents the zoo would download one
        hub = "; sb3-microgrid-zoo does not download agents from the hub" if "rl-trained-agents" in args.folder else ""
        raise HyperparamsError(f"{err}{hub}") from None
    folder = Path(log_path) / env_name
    if (folder / "args.yml").is_file():
        read_saved_run_file(folder / "args.yml")
    if (folder / "config.yml").is_file():
        resolve_section(read_saved_run_file(folder / "config.yml"), cls, env_name.gym_id, args.gym_packages, source=str(folder / "config.yml"))


def main(argv: list[str] | None = None) -> None:
    """``sb3-microgrid-zoo train|enjoy [zoo arguments]`` or ``sb3-microgrid-zoo best [arguments]``.

    :param argv: the command line without the program name (default: ``sys.argv[1:]``)
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("train", "enjoy", "best"):
        raise SystemExit("usage: sb3-microgrid-zoo train|enjoy [rl_zoo3 arguments] | best [--help]")
    command, rest = argv[0], argv[1:]
    if command == "best":
        write_trial(rest)
        return
    with tempfile.TemporaryDirectory(prefix="sb3-microgrid-zoo-") as private:
        copy = check_inputs(command, rest, Path(private))
        checked = rest if copy is None else [*rest, "--conf-file", str(copy)]  # the last --conf-file wins
        register(checked)
        sys.argv = [f"rl_zoo3.{command}", *rest]  # the user's --conf-file: the run's args.yml records it
        if command == "train":
            from rl_zoo3.train import train

            parsed = zoo_arguments("train", rest)
            if parsed.storage and not parsed.storage.endswith(".log"):
                create_tables(parsed.storage)
            with _zoo_reads_copy(parsed.conf_file, copy), _evaluation_env_as_trained():
                train()
        else:
            from rl_zoo3.enjoy import enjoy

            enjoy()


@contextlib.contextmanager
def _zoo_reads_copy(conf: str | None, copy: Path | None) -> Iterator[None]:
    """Within the block, the zoo reads its hyperparameters from ``copy`` (the checked bytes of ``conf``), not from
    ``conf`` again: ``ExperimentManager.read_hyperparameters`` opens ``self.config``, set from ``--conf-file``.

    :param conf: the ``--conf-file`` the zoo was given
    :param copy: the checked copy (:func:`check_inputs`); ``None``: nothing changes
    """
    if copy is None:
        yield
        return
    from rl_zoo3.exp_manager import ExperimentManager

    read = ExperimentManager.read_hyperparameters

    @functools.wraps(read)
    def read_checked(self: ExperimentManager) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.config != conf:  # the zoo parsed another --conf-file than the launcher: never read an unchecked file
            raise SystemExit(f"sb3-microgrid-zoo: the zoo reads --conf-file {self.config}, the launcher checked {conf}")
        self.config = str(copy)
        try:
            return read(self)
        finally:
            self.config = conf

    ExperimentManager.read_hyperparameters = read_checked  # type: ignore[method-assign]
    try:
        yield
    finally:
        ExperimentManager.read_hyperparameters = read  # type: ignore[method-assign]


@contextlib.contextmanager
def _evaluation_env_as_trained() -> Iterator[None]:
    """Within the block, the zoo's evaluation env (``--eval-freq``, ``-optimize`` trials) takes the training env's
    final arguments (the file's ``env_kwargs``, with ``--hyperparams env_kwargs:...`` or ``--env-kwargs`` over
    them) unless ``--eval-env-kwargs`` was given. rl_zoo3 2.9 means it to, but copies them before it reads the
    file and ``--hyperparams``, so it would score another scenario than the one trained on."""
    from rl_zoo3.exp_manager import ExperimentManager

    preprocess = ExperimentManager._preprocess_hyperparams

    @functools.wraps(preprocess)
    def preprocess_then_copy(self: ExperimentManager, *args: Any, **kwargs: Any) -> Any:
        result = preprocess(self, *args, **kwargs)  # sets env_kwargs from the hyperparameters read
        if self._eval_env_kwargs_args is None:
            self.eval_env_kwargs = self.env_kwargs
        return result

    ExperimentManager._preprocess_hyperparams = preprocess_then_copy  # type: ignore[method-assign]
    try:
        yield
    finally:
        ExperimentManager._preprocess_hyperparams = preprocess  # type: ignore[method-assign]


if __name__ == "__main__":
    main()
