"""Train from a zoo-format YAML file, with checkpoints that an interrupted run resumes from.

Files written under ``run_dir``:

- ``run.json``: the run's record, ``{"algo": <name in ALGOS>, "seed": <int>, "vec_env": <name>, "env": <the
  file's section>, "timesteps": <the run's total>, "save_freq": <steps between checkpoints>}`` from the start, with
  ``"scenario": {...}`` (the whole scenario) when the file names a scenario file or mapping; at the end also
  ``"num_timesteps": <int>`` and ``"files": {"model.zip": <bytes>, "model_vecnormalize.pkl": <bytes>}`` (the
  statistics only when the configuration normalises). ``algo`` is the class to load ``model.zip`` with; ``--resume``
  continues with the recorded algorithm, seed, vec env, section, total and save frequency (and refuses a scenario file
  that changed, or a total below the steps done), and evaluation reads the recorded scenario and section of
  ``config.yml``.
- ``config.yml``: a copy of the hyperparameter file; ``--resume`` requires the same file.
- ``checkpoints/<steps>/``: one complete checkpoint set per save, written atomically (a ``<steps>.tmp/``
  folder renamed when complete): ``model.zip`` (after the update of those steps),
  ``model_vecnormalize.pkl``, ``model_replay_buffer.pkl`` (off-policy; only the newest set keeps it),
  ``callbacks.json`` (what the callbacks adapted, which ``--resume`` loads back into them) and its own ``run.json`` as above, listing every file of the set with its size. See
  :mod:`sb3_microgrid.callbacks.checkpoint`.
- ``model.zip`` and ``model_vecnormalize.pkl``: the run's model and statistics at the end, a ``ValidationCallback``'s
  best when the file names one (the names
  ``SB3Controller`` and ``sb3-microgrid evaluate`` look for); ``tb/``: TensorBoard logs.
- ``validation.json`` and ``validation_best_*``: a ``ValidationCallback``'s scores and best weights, unless the
  file gives it another ``log_path``.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecMonitor, VecNormalize

from .callbacks.checkpoint import PUBLISHING, RUN_JSON, CheckpointError, CheckpointSetCallback, checkpoints, latest_checkpoint, load_checkpoint, publish_model, read_run_json, restore_callbacks, write_run_json
from .algos import ALGOS, algorithm
from .envs import MicrogridVecEnv
from .hyperparams import Hyperparams, HyperparamsError, load_hyperparams
from .scenario import PRESETS, load_scenario, to_dict
from .validation import ValidationCallback

#: ``run.json`` key of the run's total steps: ``--resume`` goes on to it unless given ``--timesteps``.
TOTAL = "timesteps"
#: ``run.json`` key of the steps between the run's checkpoints: ``--resume`` saves at it unless given ``--save-freq``.
SAVE_FREQ = "save_freq"
#: The steps between checkpoints of a new run, or of a resumed one whose ``run.json`` records none.
DEFAULT_SAVE_FREQ = 50_000
#: ``run.json`` key of the whole scenario of a run whose file names a scenario file or mapping (evaluation reads it).
SCENARIO = "scenario"
#: Vectorisations of the training env (:func:`make_env`), also the command line's choices.
VEC_ENVS = ("microgrid", "dummy", "subproc")
#: The settings a run records in its ``run.json`` besides the algorithm, with their defaults for a new run
#: (``env``, the file's section: its only one when not given).
RUN_SETTINGS = {"seed": 0, "vec_env": "microgrid", "env": None}


def make_env(hp: Hyperparams, seed: int, vec_env: str = "microgrid") -> VecEnv:
    """The training env of a hyperparameter section: ``MicrogridVecEnv`` for ``Microgrid-v0`` by
    default (one vectorized core), else SB3's ``DummyVecEnv``/``SubprocVecEnv`` of ``gym.make``.
    ``VecNormalize`` discounts its reward statistics with the file's ``gamma`` when it has one, as
    rl_zoo3 does (a bare ``VecNormalize`` uses 0.99 whatever the algorithm's)."""
    if vec_env not in VEC_ENVS:
        raise HyperparamsError(f"unknown vec_env {vec_env!r}; allowed: {list(VEC_ENVS)}")
    if vec_env == "microgrid" and hp.env_id == "Microgrid-v0" and not hp.env_wrappers:
        env: VecEnv = VecMonitor(MicrogridVecEnv(hp.n_envs, seed=seed, **hp.env_kwargs))
    else:
        env = make_vec_env(
            hp.env_id,
            n_envs=hp.n_envs,
            seed=seed,
            # SB3 asks for render_mode="rgb_array" unless told otherwise: ours render nothing, and gymnasium would warn once per env
            env_kwargs={"render_mode": None, **hp.env_kwargs} if hp.env_id in ("Microgrid-v0", "MicrogridGoal-v0") else hp.env_kwargs,
            vec_env_cls=SubprocVecEnv if vec_env == "subproc" else DummyVecEnv,
            wrapper_class=_chain(hp.env_wrappers),
        )
    for cls, kwargs in hp.vec_env_wrappers:
        env = cls(env, **kwargs)
    if hp.normalize is not None:
        gamma = {"gamma": hp.algo_kwargs["gamma"]} if "gamma" in hp.algo_kwargs else {}
        env = VecNormalize(env, **{**hp.normalize, **gamma})
    return env


def _chain(wrappers: list[tuple[Any, dict[str, Any]]]) -> Any:
    if not wrappers:
        return None

    def wrap(env: Any) -> Any:
        for cls, kwargs in wrappers:
            env = cls(env, **kwargs)
        return env

    return wrap


def last_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    """The newest complete checkpoint set ``(steps, folder)`` of a run, if any (newer incomplete sets
    are skipped with a warning; :func:`~sb3_microgrid.callbacks.checkpoint.latest_checkpoint`)."""
    return latest_checkpoint(run_dir / "checkpoints")


def build_model(cls: type[BaseAlgorithm], hp: Hyperparams, env: VecEnv, seed: int, **kwargs: Any) -> BaseAlgorithm:
    """A new model of ``cls`` with the file's settings (and its action noise) on ``env``, on the CPU.

    :param kwargs: further constructor arguments (``tensorboard_log``, ``verbose``, ...)
    """
    algo_kwargs = {**hp.algo_kwargs, **kwargs}
    if hp.noise is not None:
        kind, std = hp.noise
        n = env.action_space.shape[0]
        noise_cls = NormalActionNoise if kind == "normal" else OrnsteinUhlenbeckActionNoise
        algo_kwargs["action_noise"] = noise_cls(mean=np.zeros(n), sigma=std * np.ones(n))
    return cls(hp.policy, env, seed=seed, device="cpu", **algo_kwargs)


def train(
    algo: str,
    conf: str | Path,
    run_dir: str | Path,
    timesteps: int | None = None,
    seed: int | None = None,
    resume: bool = False,
    save_freq: int | None = None,
    vec_env: str | None = None,
    env_id: str | None = None,
    progress_bar: bool = True,
    verbose: int = 0,
    trust_modules: Sequence[str] = (),
) -> BaseAlgorithm:
    """Train ``algo`` with the settings of a zoo-format YAML file.

    :param algo: a name of :data:`sb3_microgrid.algos.ALGOS`
    :param conf: the YAML file (rl-baselines3-zoo format)
    :param run_dir: where checkpoints, the final model and TensorBoard logs go
    :param timesteps: total steps (default: the file's ``n_timesteps``, or the run's when resuming); when resuming, at
        least the steps of the checkpoint resumed from
    :param seed: seed of the envs and the algorithm (default: 0, or the run's when resuming)
    :param resume: continue from the newest complete checkpoint set in ``run_dir`` (its model,
        normalisation statistics and replay buffer), up to the same total; ``algo`` and ``conf`` must be
        the run's, and so must ``seed``, ``vec_env`` and ``env_id`` if given (the run's are used when they are not)
    :param save_freq: steps between checkpoints (summed over envs); default: the run's when resuming (its ``run.json``),
        else :data:`DEFAULT_SAVE_FREQ`. Given when resuming, it is recorded for later resumes, as ``timesteps`` is
    :param vec_env: ``microgrid`` (the vectorized core, the default for a new run), ``dummy`` or ``subproc``
    :param env_id: the YAML section to read (default: its only one)
    :param progress_bar: show SB3's progress bar
    :param verbose: SB3 verbosity
    :param trust_modules: the user's own modules the file may name classes from (``--trust-module``),
        besides :data:`sb3_microgrid.hyperparams.TRUSTED_MODULES`
    """
    torch.set_num_threads(1)  # small networks on few cores: one thread is several times faster
    cls = algorithm(algo)
    given = {"seed": seed, "vec_env": vec_env, "env": env_id}
    if Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise CheckpointError(f"the run folder {run_dir} is a file; choose a folder")
    if resume:  # refuse before reading or writing anything
        found, settings = _resumable(algo, conf, Path(run_dir), given)
    else:
        found, settings = None, _with_defaults(given)
    done, previous = found if found is not None else (0, None)
    seed, vec_env = settings["seed"], settings["vec_env"]
    hp = load_hyperparams(conf, cls, settings["env"], trust_modules)
    settings["env"] = hp.env_id  # the section read, so that a resumed run and evaluation read it again
    # a resumed run goes on to the total, and saves at the frequency, the run was started (or last resumed) with,
    # unless given others
    recorded_total, recorded_freq = settings.pop(TOTAL, None), settings.pop(SAVE_FREQ, None)
    total = int(_given_or_recorded(timesteps, recorded_total, hp.n_timesteps))
    if total <= 0:
        raise HyperparamsError(f"{conf}: n_timesteps must be > 0 (or pass timesteps)")
    # The run's own total may lie below its steps (the last rollout goes past it); another would be recorded as a total
    # the run has already passed.
    if total < done and total != recorded_total:
        what = f"--timesteps {total}" if timesteps is not None else f"the file's n_timesteps {total} ({RUN_JSON} records no total; pass --timesteps)"
        own = f" (left out, the run's own total {recorded_total})" if recorded_total is not None else ""
        raise CheckpointError(f"--resume: {what} is below the {done} steps of {previous}, the checkpoint resumed from: --timesteps must be >= {done}{own}")
    save_freq = int(_given_or_recorded(save_freq, recorded_freq, DEFAULT_SAVE_FREQ))
    settings[TOTAL], settings[SAVE_FREQ] = total, save_freq
    _record_scenario(hp, conf, settings)
    run_dir = Path(run_dir)
    save_path = run_dir / "checkpoints"
    if previous is None and not resume and (checkpoints(save_path) or (run_dir / "model.zip").exists()):
        raise CheckpointError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another run folder")
    # Build everything the file describes before writing anything: a value the constructors refuse is
    # named with its key, and leaves no half-made run folder behind.
    env = _built("env_kwargs / env_wrapper / vec_env_wrapper / normalize", conf, lambda: make_env(hp, seed, vec_env))
    if previous is None:
        model = _built("the algorithm's arguments", conf, lambda: build_model(cls, hp, env, seed, tensorboard_log=str(run_dir / "tb"), verbose=verbose))
    else:
        model = load_checkpoint(previous, cls, env, seed, tensorboard_log=str(run_dir / "tb"))
    callbacks: list[BaseCallback] = [_built(f"callback {cls_.__name__}", conf, lambda: cls_(**kwargs)) for cls_, kwargs in hp.callbacks]
    for callback in callbacks:
        if isinstance(callback, ValidationCallback) and callback.log_path is None:
            callback.log_path = str(run_dir)  # beside model.zip, where export and a resumed run look for validation.json
    if previous is not None:
        restore_callbacks(previous, callbacks)  # what they adapted: a noise scale, a curriculum level
    callbacks.append(CheckpointSetCallback(save_freq, save_path, algo, callbacks=callbacks))  # last: after other callbacks' rollout-start work
    if previous is None:
        save_path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(conf, run_dir / "config.yml")
        write_run_json(run_dir, algo, settings=settings)
    elif (recorded_total, recorded_freq) != (total, save_freq):  # a new total or frequency, for the resumes after this one
        record = read_run_json(run_dir)
        marked = {**settings, PUBLISHING: True} if record.get(PUBLISHING) else settings  # still unfinished, until published
        write_run_json(run_dir, algo, record.get("num_timesteps"), list(record["files"]) if "files" in record else None, marked)
    # The final set must hold the weights training reached (a resumed run goes on from them): the best goes back after.
    selecting = [callback for callback in callbacks if isinstance(callback, ValidationCallback) and callback.restore_best]
    for callback in selecting:
        callback.restore_at_end = False
    # Also with no steps left (a run killed while publishing), so that the callbacks take up their state.
    model.learn(max(total - model.num_timesteps, 0), callback=CallbackList(callbacks), progress_bar=progress_bar, reset_num_timesteps=previous is None, tb_log_name=algo)
    for callback in selecting:
        callback.restore()
    publish_model(model, run_dir, algo, settings)
    return model


def _record_scenario(hp: Hyperparams, conf: str | Path, settings: dict[str, Any]) -> None:
    """Put into ``settings`` (the run's record) the whole scenario the file's ``env_kwargs`` names, when it is a file
    or a mapping rather than a preset: a scenario file may change after the run started, and a relative path reads
    another file from another folder. A resumed run's recorded scenario must still be the file's.

    :raises CheckpointError: if a resumed run's scenario file now describes another scenario
    """
    spec = hp.env_kwargs.get("scenario")
    recorded = settings.pop(SCENARIO, None)
    if spec is None or (isinstance(spec, str) and spec in PRESETS):
        return
    scenario = _built("env_kwargs scenario", conf, lambda: load_scenario(spec))
    if recorded is not None and _built(f"the scenario {RUN_JSON} records", conf, lambda: load_scenario(recorded)) != scenario:
        raise CheckpointError(f"--resume: the scenario {spec!r} is not the one the run was trained on (its {RUN_JSON} records it whole): restore the file, or start a new run")
    settings[SCENARIO] = to_dict(scenario)


def _built(what: str, conf: str | Path, build: Callable[[], Any]) -> Any:
    """``build()``, with a ``ValueError``/``TypeError`` from a constructor (a scenario value out of range,
    an argument the class does not take) turned into a :class:`HyperparamsError` naming ``what`` and the file."""
    try:
        return build()
    except HyperparamsError:
        raise
    except (ValueError, TypeError) as err:
        raise HyperparamsError(f"{conf}: {what}: {type(err).__name__}: {err}") from None


def _given_or_recorded(given: int | None, recorded: int | None, default: int) -> int:
    """``given``, else the run's ``recorded`` value (``None`` for a new run or one recorded without it), else ``default``."""
    return given if given is not None else recorded if recorded is not None else default


def _with_defaults(given: dict[str, Any]) -> dict[str, Any]:
    """Each of :data:`RUN_SETTINGS` as given, its default where it is ``None``."""
    return {key: default if given[key] is None else given[key] for key, default in RUN_SETTINGS.items()}


def _resumable(algo: str, conf: str | Path, run_dir: Path, given: dict[str, Any]) -> tuple[tuple[int, Path] | None, dict[str, Any]]:
    """The newest complete checkpoint set ``(steps, folder)`` of the run in ``run_dir`` (``None``, with a warning, for a
    run killed before its first checkpoint) and the run's settings (:data:`RUN_SETTINGS`), once its record shows
    that ``algo``, ``conf`` and each setting given (not ``None``) are the run's: resuming with another seed, vec
    env or section would continue one run as another. A run recorded before its settings were takes the given ones
    (the defaults if none), with a warning."""
    if not (run_dir / RUN_JSON).exists():
        raise CheckpointError(f"--resume: {run_dir} has no {RUN_JSON}; not a run folder of sb3-microgrid train")
    record = read_run_json(run_dir)
    if record["algo"] != algo:
        raise CheckpointError(f"--resume: {run_dir} is a {record['algo']} run; it cannot be resumed as {algo} (pass --algo {record['algo']})")
    settings = _with_defaults(given)
    for key in RUN_SETTINGS.keys() & record.keys():
        option = "--" + key.replace("_", "-")
        if given[key] is not None and given[key] != record[key]:
            raise CheckpointError(f"--resume: {run_dir} was trained with {option} {record[key]}; it cannot be resumed with {option} {given[key]} (leave {option} out to resume with the run's)")
        settings[key] = record[key]
    for key in (TOTAL, SAVE_FREQ, SCENARIO):
        if key in record:
            settings[key] = record[key]
    # an unrecorded section is taken on faith only when named: without one, the file must have a single section
    unrecorded = [key for key in RUN_SETTINGS if key not in record and settings[key] is not None]
    if unrecorded:
        taken = ", ".join(f"{key} {settings[key]}" for key in unrecorded)
        warnings.warn(f"--resume: {run_dir / RUN_JSON} records no {' or '.join(unrecorded)} (written by an older version); resuming with {taken}", stacklevel=3)
    if Path(conf).read_bytes() != (run_dir / "config.yml").read_bytes():
        raise CheckpointError(f"--resume: {conf} differs from the run's {run_dir / 'config.yml'}; resume with the run's file")
    found = latest_checkpoint(run_dir / "checkpoints")
    if found is None:
        warnings.warn(f"--resume: no checkpoint in {run_dir / 'checkpoints'} yet; starting {run_dir} from the beginning", stacklevel=3)
        return None, settings
    saved = read_run_json(found[1])["algo"]  # a set copied from another run: a zip loads as a subclass or base without a word
    if saved != algo:
        raise CheckpointError(f"--resume: {found[1]} holds a {saved} model, but {run_dir} is a {algo} run; it cannot be resumed from that set")
    return found, settings
