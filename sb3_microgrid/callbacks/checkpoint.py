"""Checkpoints that an interrupted run resumes from without losing a rollout, a statistic or a transition.

A checkpoint is a *set*, one folder per step count ``<save_path>/<steps>/``:

- ``model.zip``: the model, saved after the update computed from those steps (with its clean weights while
  a ``ParameterNoiseCallback`` perturbs the actor);
- ``model_vecnormalize.pkl``: the ``VecNormalize`` statistics, when the env has them;
- ``model_replay_buffer.pkl``: the replay buffer, for off-policy algorithms (only the newest set keeps it);
- ``rnd.pt``: the ``RNDRewardWrapper``'s networks and statistics, when the env has one;
- ``callbacks.json``: what the run's callbacks have adapted (a parameter-noise scale, a curriculum level, a plateau's
  best value), when any of them keeps such state (:func:`stateful_callbacks`);
- ``run.json``: ``{"algo": <name>, "num_timesteps": <steps>, "files": {<file name>: <bytes>, ...}}``, the
  manifest, written last. A run folder's own ``run.json`` also records the run's ``seed`` and ``vec_env``
  (``sb3-microgrid train``), which a resumed run must share, and its ``timesteps`` and ``save_freq``, which it takes
  unless given others.

The set is written into ``<steps>.tmp/`` and renamed to ``<steps>/`` (``os.replace``), so a process killed
while writing leaves no folder that looks complete; the byte counts in ``run.json`` then catch a file
damaged later (a truncated copy). A set is complete when every file its manifest lists is there with its
size. Every file and the folder are fsynced before the rename (:func:`save_checkpoint`), so after a power cut the
newest visible set is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback, EventCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, unwrap_vec_wrapper

from ..common.files import write_atomically
from ..common.json_values import refuse_constant
from ..common.safe_pickle import load_replay_buffer, load_vecnormalize, read_model
from ..exploration.param_noise import unperturbed
from ..exploration.rnd import RNDRewardWrapper

MODEL = "model.zip"
VECNORMALIZE = "model_vecnormalize.pkl"
REPLAY_BUFFER = "model_replay_buffer.pkl"
CALLBACKS = "callbacks.json"
RND = "rnd.pt"
RUN_JSON = "run.json"
#: ``run.json`` key of a run folder whose final model is being written (:func:`publish_model`)
PUBLISHING = "publishing"


class CheckpointError(Exception):
    """No complete checkpoint to resume from, or a run record that does not fit the request."""


class CheckpointSetCallback(BaseCallback):
    """Save a complete checkpoint set (see the module docstring) every ``save_freq`` steps and at the end.

    SB3's ``CheckpointCallback`` saves in ``_on_step``, before the update of the rollout in progress: for
    PPO, ``model_4096_steps.zip`` is the model *before* the update of those 4,096 steps, and a resumed
    run repeats that rollout's steps without its update; for SAC the buffer misses the step's transition.
    This callback saves at the start of the next rollout instead, where the update of the steps counted
    (on-policy) or the gradient steps after them (off-policy) are done and every transition is stored,
    and once more at the end of ``learn()``. Put it last in a ``CallbackList``, so that the work other
    callbacks do at a rollout start is in the checkpoint.

    :param save_freq: steps (summed over envs) between checkpoints; a set is written at the first rollout
        boundary at or after each multiple of it
    :param save_path: folder of the sets
    :param algo: the algorithm's name, recorded in each set's ``run.json``
    :param verbose: 1 to print each set written
    :param callbacks: the run's other callbacks; the state of those that keep one (:func:`stateful_callbacks`)
        goes into each set, for :func:`restore_callbacks`
    """

    def __init__(self, save_freq: int, save_path: str | Path, algo: str, verbose: int = 0, callbacks: Sequence[BaseCallback] = ()) -> None:
        super().__init__(verbose)
        if save_freq < 1:
            raise ValueError(f"save_freq must be >= 1, got {save_freq}")
        self.save_freq = save_freq
        self.save_path = Path(save_path)
        self.algo = algo
        self.stateful = stateful_callbacks(callbacks)
        self._saved_at = 0
        self._next_save = save_freq

    def _on_training_start(self) -> None:
        if getattr(self.model, "optimize_memory_usage", False):
            warnings.warn(f"optimize_memory_usage=True: the checkpoints in {self.save_path} can be evaluated but not resumed (load_checkpoint)", stacklevel=2)
        # A resumed run starts from a saved set: nothing to save until the next multiple.
        self._saved_at = self.num_timesteps
        self._next_save = (self.num_timesteps // self.save_freq + 1) * self.save_freq

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self._next_save:
            self._save()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        if self.num_timesteps > self._saved_at:
            self._save()

    def _save(self) -> None:
        path = save_checkpoint(self.model, self.save_path / str(self.num_timesteps), self.algo, self.stateful)
        # A replay buffer can be hundreds of MB: keep only the newest, dropped once a newer set is complete.
        for _, other in checkpoints(self.save_path):
            if other != path:
                (other / REPLAY_BUFFER).unlink(missing_ok=True)
        self._saved_at = self.num_timesteps
        self._next_save = (self.num_timesteps // self.save_freq + 1) * self.save_freq
        if self.verbose >= 1:
            print(f"Saved checkpoint {path}")


def save_checkpoint(model: BaseAlgorithm, directory: Path, algo: str, callbacks: Sequence[BaseCallback] = ()) -> Path:
    """Write ``model``'s set into ``directory`` (replacing it), all files or none.

    :param model: the model; its ``VecNormalize`` statistics and (off-policy) replay buffer go with it
    :param directory: the set's folder, ``<save_path>/<steps>``
    :param algo: the algorithm's name for ``run.json``
    :param callbacks: callbacks whose ``state_dict()`` goes into ``callbacks.json`` (none: no file)
    :return: ``directory``
    """
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a process killed while writing
    tmp.mkdir(parents=True)
    # a rollout start's parameter noise is exploration, not training: resumed, it would stay in the weights
    with unperturbed(model.policy):
        model.save(tmp / MODEL)
    vec_normalize = model.get_vec_normalize_env()
    if vec_normalize is not None:
        vec_normalize.save(str(tmp / VECNORMALIZE))
    if isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:
        model.save_replay_buffer(tmp / REPLAY_BUFFER)
    rnd = unwrap_vec_wrapper(model.get_env(), RNDRewardWrapper)
    if rnd is not None:  # its predictor and statistics: rebuilt afresh, the bonus would jump back to novel
        rnd.save(tmp / RND)
    if callbacks:
        states = [{"callback": type(callback).__name__, "state": callback.state_dict()} for callback in callbacks]
        (tmp / CALLBACKS).write_text(json.dumps(states, allow_nan=False, indent=1))
    write_run_json(tmp, algo, model.num_timesteps, sorted(p.name for p in tmp.iterdir()))
    # On disk before the rename makes the set visible, and the rename on disk before the caller prunes
    # older sets: after a power cut the newest visible set is complete, or an older one still is.
    for path in tmp.iterdir():
        _fsync(path)
    _fsync(tmp)
    # os.replace cannot replace a non-empty folder: move an older set of the same step aside first.
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    _fsync(directory.parent)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's entries to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_run_json(
    directory: Path, algo: str, num_timesteps: int | None = None, files: list[str] | None = None, settings: dict[str, Any] | None = None
) -> None:
    """Write ``directory/run.json`` atomically: ``{"algo": algo}``, with the run's ``settings`` (``seed``,
    ``vec_env``, ``env``), ``num_timesteps`` and the byte count of each of ``files`` (names in ``directory``) when given."""
    record: dict[str, Any] = {"algo": algo, **(settings or {})}
    if num_timesteps is not None:
        record["num_timesteps"] = int(num_timesteps)
    if files is not None:
        record["files"] = {name: (directory / name).stat().st_size for name in files}
    write_atomically(directory / RUN_JSON, (json.dumps(record, indent=2) + "\n").encode())


def read_run_json(directory: Path) -> dict[str, Any]:
    """``directory/run.json``, checked: an object with a string ``algo`` (and, if present, ``files``
    mapping names to byte counts, an integer ``seed``, strings ``vec_env`` and ``env``, a total ``timesteps`` >= 1 and
    a ``save_freq`` >= 1).

    :raises CheckpointError: naming the file, if it is missing or malformed
    """
    path = directory / RUN_JSON
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no {path}") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not readable JSON: {err}") from None
    if not isinstance(record, dict) or not isinstance(record.get("algo"), str):
        raise CheckpointError(f"{path}: expected an object with a string 'algo', got {record!r}")
    files = record.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, int) for k, v in files.items()):
        raise CheckpointError(f"{path}: 'files' must map file names to byte counts, got {files!r}")
    for key, kind in (("seed", int), ("vec_env", str), ("env", str), ("timesteps", int), ("save_freq", int)):
        if key in record and (not isinstance(record[key], kind) or isinstance(record[key], bool)):
            raise CheckpointError(f"{path}: '{key}' must be {'an integer' if kind is int else 'a string'}, got {record[key]!r}")
    for key in ("timesteps", "save_freq"):  # a total of 0 trains nothing; a frequency of 0 would never advance
        if record.get(key, 1) < 1:
            raise CheckpointError(f"{path}: '{key}' must be >= 1, got {record[key]}")
    if record.get(PUBLISHING, False) is not False and record[PUBLISHING] is not True:
        raise CheckpointError(f"{path}: '{PUBLISHING}' must be true or absent, got {record[PUBLISHING]!r}")
    return record


def checkpoints(save_path: Path) -> list[tuple[int, Path]]:
    """The set folders ``(steps, path)`` under ``save_path``, newest first, complete or not."""
    if not save_path.is_dir():
        return []
    return sorted(((int(p.name), p) for p in save_path.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True)


def checkpoint_problem(directory: Path) -> str | None:
    """Why the set in ``directory`` cannot be resumed from, or ``None`` if it is complete."""
    try:
        record = read_run_json(directory)
    except CheckpointError as err:
        return str(err)
    files = record.get("files")
    if not files or MODEL not in files:
        return f"{directory / RUN_JSON} lists no {MODEL}"
    for name, size in files.items():
        path = directory / name
        if not path.is_file():
            pruned = " (only the newest checkpoint keeps its replay buffer)" if name == REPLAY_BUFFER else ""
            return f"{path} is missing{pruned}"
        if path.stat().st_size != size:
            return f"{path} has {path.stat().st_size} bytes, {RUN_JSON} says {size}: truncated or damaged"
    return None


def latest_checkpoint(save_path: Path) -> tuple[int, Path] | None:
    """The newest complete set ``(steps, path)`` under ``save_path``, or ``None`` if there is no set.
    Newer incomplete sets are skipped with a warning that names each one's problem.

    :raises CheckpointError: listing the problems, if there are sets and none is complete
    """
    problems = []
    for steps, path in checkpoints(save_path):
        problem = checkpoint_problem(path)
        if problem is None:
            if problems:
                warnings.warn(f"resuming from {path}, the newest complete checkpoint; skipped: {'; '.join(problems)}", stacklevel=2)
            return steps, path
        problems.append(problem)
    if problems:
        raise CheckpointError(f"no complete checkpoint in {save_path}: {'; '.join(problems)}")
    return None


def load_checkpoint(directory: Path, cls: type[BaseAlgorithm], env: VecEnv, seed: int, **kwargs: Any) -> BaseAlgorithm:
    """The model of a complete set on ``env``, with the set's normalisation statistics and replay buffer,
    ready for ``learn(..., reset_num_timesteps=False)``.

    :param directory: a complete set (see :func:`checkpoint_problem`)
    :param cls: the algorithm class (the zip does not record it)
    :param env: a new env with the run's settings; if it is a ``VecNormalize``, the set must hold statistics
    :param seed: the run's seed; the envs are reseeded with ``seed + steps`` so a resumed run does not
        replay the days its start saw
    :param kwargs: further ``cls.load`` arguments (``tensorboard_log``, ...)
    :raises CheckpointError: naming the file, if a file the env or algorithm needs is not in the set, if the set's
        ``rnd.pt`` does not fit the env's ``RNDRewardWrapper`` (or the env has none), or if
        the model uses SB3's ``optimize_memory_usage=True``: that replay buffer keeps a transition's next
        observation only as the observation of the next slot, and the resumed run writes the first observation
        of a new episode there, so the last transition saved mid-episode would get a wrong next observation
    """
    files = read_run_json(directory).get("files", {})
    if isinstance(env, VecNormalize) != (VECNORMALIZE in files):
        has = "has" if VECNORMALIZE in files else "has no"
        wants = "normalises" if isinstance(env, VecNormalize) else "does not normalise"
        raise CheckpointError(f"{directory} {has} {VECNORMALIZE} but the configuration {wants}: resume with the run's config.yml")
    if issubclass(cls, OffPolicyAlgorithm) and REPLAY_BUFFER not in files:
        raise CheckpointError(f"{directory} has no {REPLAY_BUFFER}: {cls.__name__} would resume with an empty buffer")
    if isinstance(env, VecNormalize):
        env = load_vecnormalize(directory / VECNORMALIZE, env.venv)
    rnd = unwrap_vec_wrapper(env, RNDRewardWrapper)
    if rnd is None and RND in files:
        raise CheckpointError(f"{directory} has {RND} but the configuration has no RNDRewardWrapper: resume with the run's config.yml")
    if rnd is not None and RND not in files:
        warnings.warn(f"{directory} holds no {RND} (written by an older version): the RNDRewardWrapper starts afresh", stacklevel=2)
    elif rnd is not None:
        try:
            rnd.load(directory / RND)
        except ValueError as err:
            raise CheckpointError(str(err)) from None
    # read once, every pickled attribute safely and none replaced: training goes on with them
    saved = read_model(directory / MODEL, prediction=False)
    saved.check_for(cls)
    model = cls.load(saved.file(), env=env, device="cpu", custom_objects=saved.objects | kwargs.pop("custom_objects", {}), **kwargs)
    if isinstance(model, OffPolicyAlgorithm):
        if model.optimize_memory_usage:
            raise CheckpointError(
                f"{directory}: {cls.__name__} with optimize_memory_usage=True cannot be resumed: its replay buffer stores each "
                "next observation in the next transition's slot, which the resumed run's first observation would overwrite "
                "(one wrong transition per env). Evaluate the checkpoint, or start a new run"
            )
        load_replay_buffer(model, directory / REPLAY_BUFFER)
    env.seed(seed + model.num_timesteps)
    _restart_episodes(model, env)
    return model


def _restart_episodes(model: BaseAlgorithm, env: VecEnv) -> None:
    """Start new episodes: the zip's last observation belongs to the killed process's envs. This is the
    reset ``learn()`` does at a fresh start, without counting its observations in the statistics a
    second time (so they count what an uninterrupted run counts)."""
    vec_normalize = model.get_vec_normalize_env()
    if vec_normalize is not None:
        training, vec_normalize.training = vec_normalize.training, False
    model._last_obs = env.reset()  # type: ignore[assignment]
    model._last_episode_starts = np.ones((env.num_envs,), dtype=bool)
    if vec_normalize is not None:
        vec_normalize.training = training
        model._last_original_obs = vec_normalize.get_original_obs()


def stateful_callbacks(callbacks: Sequence[BaseCallback]) -> list[BaseCallback]:
    """The callbacks among ``callbacks`` and those they hold (a ``CallbackList``'s, an event callback's such as
    an ``EvalCallback``'s ``callback_on_new_best`` and ``callback_after_eval``) that keep state a resumed run needs, in order: those
    with ``state_dict()`` (JSON values) and ``load_state_dict(state)``."""

    def walk(callback: BaseCallback) -> Iterator[BaseCallback]:
        if callable(getattr(callback, "state_dict", None)) and callable(getattr(callback, "load_state_dict", None)):
            yield callback
        children = list(callback.callbacks) if isinstance(callback, CallbackList) else []
        if isinstance(callback, EvalCallback) and callback.callback_on_new_best is not None:
            children.append(callback.callback_on_new_best)
        if isinstance(callback, EventCallback) and callback.callback is not None:  # an EvalCallback's callback_after_eval
            children.append(callback.callback)
        for child in children:
            yield from walk(child)

    return [found for callback in callbacks for found in walk(callback)]


def restore_callbacks(directory: Path, callbacks: Sequence[BaseCallback]) -> None:
    """Load into the run's ``callbacks`` the states a set's ``callbacks.json`` holds. A set of an older version,
    without the file, leaves them as built, with a warning.

    :param directory: a complete set
    :param callbacks: the run's callbacks, built from the same file as the set's
    :raises CheckpointError: naming the file, if it is not a list of ``{"callback": <class name>, "state": {...}}``
        matching the stateful callbacks in order, or if a callback refuses its state
    """
    stateful = stateful_callbacks(callbacks)
    path = directory / CALLBACKS
    if CALLBACKS not in read_run_json(directory).get("files", {}):
        if stateful:
            names = ", ".join(type(callback).__name__ for callback in stateful)
            warnings.warn(f"{directory} holds no {CALLBACKS} (written by an older version): {names} start(s) afresh", stacklevel=2)
        return
    try:
        states = json.loads(path.read_text(), parse_constant=refuse_constant)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CheckpointError(f"{path} is not readable JSON: {str(err)[:200]}") from None
    expected = [type(callback).__name__ for callback in stateful]
    if not isinstance(states, list) or not all(isinstance(entry, dict) and isinstance(entry.get("state"), dict) for entry in states):
        raise CheckpointError(f"{path}: expected a list of {{'callback': <class name>, 'state': {{...}}}} objects")
    found = [entry.get("callback") for entry in states]
    if found != expected:
        raise CheckpointError(f"{path} holds the states of {found}, the run's callbacks that keep state are {expected}: resume with the run's config.yml")
    for callback, entry in zip(stateful, states):
        try:
            callback.load_state_dict(entry["state"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: the state of {type(callback).__name__} is not valid: {err}") from None


def publish_model(model: BaseAlgorithm, destination: Path, algo: str, settings: dict[str, Any] | None = None) -> None:
    """Write ``model`` and its normalisation statistics (not its replay buffer) into ``destination`` as ``model.zip``
    and ``model_vecnormalize.pkl``, each file atomically and ``run.json`` last, with the run's ``settings``: the final
    model of a run (a ``ValidationCallback``'s choice when it put the best weights back)."""
    vec_normalize = model.get_vec_normalize_env()
    # Marked first: killed among the writes, the folder would hold a model and statistics of different steps.
    write_run_json(destination, algo, settings={**(settings or {}), PUBLISHING: True})
    tmp = destination / "model.tmp.zip"
    with unperturbed(model.policy):
        model.save(tmp)
    os.replace(tmp, destination / MODEL)
    names = [MODEL]
    if vec_normalize is not None:
        tmp = destination / (VECNORMALIZE + ".tmp")
        vec_normalize.save(str(tmp))
        os.replace(tmp, destination / VECNORMALIZE)
        names.append(VECNORMALIZE)
    write_run_json(destination, algo, model.num_timesteps, names, settings)
