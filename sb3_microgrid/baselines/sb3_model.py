"""A saved Stable-Baselines3 model (and its VecNormalize statistics) as a controller.

The statistics are not in the model zip. :func:`find_vecnormalize` looks where the tools that write
models put them, first match wins, for a model ``DIR/STEM.zip``:

1. ``DIR/STEM_vecnormalize.pkl``: ``sb3-microgrid train``'s ``model.zip`` + ``model_vecnormalize.pkl``;
2. ``DIR/PREFIX_vecnormalize_N_steps.pkl`` for ``DIR/PREFIX_N_steps.zip``: SB3's ``CheckpointCallback``
   (and rl_zoo3's checkpoints);
3. ``DIR/STEM/vecnormalize.pkl``: rl_zoo3's final model ``ENV.zip`` + ``ENV/vecnormalize.pkl``;
4. ``DIR/vecnormalize.pkl``;
5. ``DIR/*/vecnormalize.pkl`` when there is exactly one: rl_zoo3's ``best_model.zip``.

A model whose run is recorded as not normalised (below) takes none of them.

A model counts as trained with normalised observations (:func:`trained_with_normalization`) when the
first record found says so: a ``run.json`` listing its ``files`` (``sb3-microgrid train``'s final record
and checkpoint sets) lists ``model_vecnormalize.pkl``; else the run's configuration
(:func:`run_settings`) has ``normalize`` true or a mapping whose ``norm_obs`` is not false. Evaluating such a model with no
statistics found warns (:class:`NormalizationWarning`): it would act on unnormalised observations.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import yaml
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize

from ..algos import load, run_record
from ..callbacks.checkpoint import RUN_JSON, VECNORMALIZE, CheckpointError, read_run_json
from ..common.safe_pickle import UnsafePickleError, load_vecnormalize
from ..common.yaml_files import SavedRunLoader
from ..envs import MicrogridEnv
from ..hyperparams import HyperparamsError, parse_python, resolve_entries, trusted_modules

_CHECKPOINT = re.compile(r"^(?P<prefix>.*)_(?P<steps>\d+)_steps$")


class NormalizationWarning(UserWarning):
    """A model trained on normalised observations is evaluated without its statistics."""


def find_vecnormalize(path: str | Path) -> Path | None:
    """The ``VecNormalize`` statistics of the model at ``path`` (module docstring), or ``None``."""
    path = Path(path)
    folder, stem = path.parent, path.stem
    candidates = [folder / f"{stem}_vecnormalize.pkl"]
    if match := _CHECKPOINT.match(stem):
        candidates.append(folder / f"{match['prefix']}_vecnormalize_{match['steps']}_steps.pkl")
    candidates += [folder / stem / "vecnormalize.pkl", folder / "vecnormalize.pkl"]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None and len(nested := sorted(folder.glob("*/vecnormalize.pkl"))) == 1:
        found = nested[0]
    return found


def statistics_for(path: str | Path, vecnormalize: str | Path | None = None) -> tuple[Path | None, bool | None]:
    """The ``VecNormalize`` statistics to act with for the model at ``path``, and whether its run normalised
    observations (:func:`trained_with_normalization`): ``vecnormalize`` if given, else those found beside the
    model (:func:`find_vecnormalize`), none for a run recorded as unnormalised.

    :raises FileNotFoundError: if ``vecnormalize`` is given and is not a file
    """
    if vecnormalize is not None and not Path(vecnormalize).is_file():
        raise FileNotFoundError(f"no VecNormalize statistics at {vecnormalize}")
    normalised = trained_with_normalization(path)
    # A run recorded as unnormalised takes no statistics found by the looser rules of find_vecnormalize.
    stats = Path(vecnormalize) if vecnormalize is not None else None if normalised is False else find_vecnormalize(path)
    return stats, normalised


def statistics_of_model(stats: str | Path, venv: VecEnv, name: str) -> VecNormalize:
    """``venv`` normalised with the statistics file ``stats`` of the model ``name`` (``load_vecnormalize``, read safely).

    :raises ValueError: naming the file and the model, if the file cannot be used with ``venv`` (another run's
        statistics, of another observation)
    """
    try:
        return load_vecnormalize(stats, venv)
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{err} (for model {name!r})") from None
    except Exception as err:  # noqa: BLE001 - a pickle can fail in many ways; name the file
        raise ValueError(f"cannot use VecNormalize statistics {stats} for model {name!r}: {type(err).__name__}: {err}") from None


def load_statistics(stats: Path, env: gym.Env, name: str) -> VecNormalize:
    """The ``VecNormalize`` statistics file ``stats`` for acting on ``env`` (no updates, no reward scaling).

    :raises ValueError: naming the file and the model ``name``, if the file cannot be used with ``env``
    """
    normalizer = statistics_of_model(stats, DummyVecEnv([lambda: env]), name)
    normalizer.training = False
    normalizer.norm_reward = False
    return normalizer


def run_settings(path: str | Path) -> dict[str, Any] | None:
    """The hyperparameters the model at ``path`` was trained with, if a run configuration is found:
    ``config.yml`` in ``DIR/STEM/`` or the only one of ``DIR/*/`` (rl_zoo3's saved hyperparameters), in ``DIR``, its
    parent or grandparent (``sb3-microgrid train``'s copy of the hyperparameter file, read at the section the
    ``run.json`` beside it records, else at its only one).

    A folder beside the model with a ``run.json`` of its own is another run (``sb3-microgrid train`` puts its run
    folders in ``runs/``, where a model saved by hand may sit too), and is never read for this one.

    :raises ValueError: if the run record is malformed
    """
    folder, stem = Path(path).parent, Path(path).stem
    nested = [config for config in sorted(folder.glob("*/config.yml")) if not (config.parent / RUN_JSON).exists()]
    configs = [folder / stem / "config.yml"] if folder / stem / "config.yml" in nested else nested if len(nested) == 1 else []
    configs += [folder / "config.yml", folder.parent / "config.yml", folder.parent.parent / "config.yml"]
    for config in configs:
        if not config.is_file():
            continue
        try:
            content = yaml.load(config.read_text(), Loader=SavedRunLoader)  # noqa: S506 - a SafeLoader subclass
        except (yaml.YAMLError, ValueError, RecursionError):  # ValueError: not UTF-8, or an integer of over 4300 digits
            continue
        if not isinstance(content, dict):
            continue
        if "normalize" in content or "n_timesteps" in content:  # rl_zoo3's flat saved hyperparameters
            return content
        section = next(iter(content.values())) if len(content) == 1 else _recorded_section(config, content)
        if isinstance(section, dict):
            return section
    return None


def _recorded_section(config: Path, content: dict[str, Any]) -> Any:
    """The section of a ``config.yml`` of several sections that the ``run.json`` beside it records (``sb3-microgrid
    train`` writes both in the run folder; a checkpoint set's own ``run.json`` records no settings), else ``None``.

    :raises ValueError: if the record is malformed or names a section the file does not have
    """
    if not (config.parent / RUN_JSON).is_file():
        return None
    try:
        name = read_run_json(config.parent).get("env")
    except CheckpointError as err:
        raise ValueError(str(err)) from None
    if name is not None and name not in content:
        raise ValueError(f"{config.parent / RUN_JSON} records the section {name!r}, which {config} does not have (sections: {sorted(content)})")
    return None if name is None else content[name]


def recorded_scenario(path: str | Path) -> str | dict[str, Any] | None:
    """The site the model at ``path`` was made for, as its run records it: the whole ``scenario`` of the run's
    ``run.json`` (``sb3-microgrid adapt`` writes it, and ``sb3-microgrid train`` for a scenario file or mapping; for a
    checkpoint set, its run folder's), else the ``env_kwargs`` scenario of its hyperparameters (:func:`run_settings`),
    else ``None``.

    :raises ValueError: if the run record is malformed
    """
    record = run_record(path) or {}
    model = Path(path)
    if "scenario" not in record and model.parent.parent.name == "checkpoints" and (model.parents[2] / RUN_JSON).is_file():
        # a checkpoint set's own run.json records no settings: its run folder's does (sb3-microgrid train)
        try:
            record = read_run_json(model.parents[2])
        except CheckpointError as err:
            raise ValueError(str(err)) from None
    return record.get("scenario") or ((run_settings(path) or {}).get("env_kwargs") or {}).get("scenario")


def trained_with_normalization(path: str | Path) -> bool | None:
    """Whether the run of the model at ``path`` normalised observations (module docstring), ``None``
    when no run configuration says."""
    record = run_record(Path(path)) or {}
    if "files" in record:
        return VECNORMALIZE in record["files"]
    settings = run_settings(path)
    return None if settings is None else _normalizes_obs(settings.get("normalize", False))


def run_env_wrappers(path: str | Path, trust_modules: Sequence[str] = ()) -> list[tuple[type, dict[str, Any]]]:
    """The ``env_wrapper`` entries of the run of the model at ``path`` (:func:`run_settings`), resolved
    with the same checks as training (trusted packages, plus ``trust_modules``).

    :raises ValueError: if an entry cannot be resolved
    """
    settings = run_settings(path) or {}
    try:
        return resolve_entries(settings.get("env_wrapper"), "env_wrapper", trusted_modules(trust_modules))
    except HyperparamsError as err:
        raise ValueError(f"the run configuration of {path}: {err}") from None


def _normalizes_obs(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value = parse_python(value, "normalize")
        except HyperparamsError:
            return True  # a normalize setting we cannot read is still a normalize setting
    if isinstance(value, dict):
        return bool(value.get("norm_obs", True))
    return bool(value)


class SB3Controller:
    """Acts with ``model.predict(obs, deterministic=True)`` on observations normalised with the
    statistics saved at training time. A recurrent policy (``RecurrentPPO``) carries its hidden state
    from step to step of an episode and starts afresh at each :meth:`reset`.

    :param path: the model's ``.zip``
    :param algo: its registered algorithm name (:data:`sb3_microgrid.algos.ALGOS`) or class; ``None``
        identifies it from the run record or the zip (:func:`sb3_microgrid.algos.identify`)
    :param vecnormalize: the ``VecNormalize`` statistics file; ``None`` looks for it
        (:func:`find_vecnormalize`) and, if none is found, passes observations as they are, with a
        :class:`NormalizationWarning` when the run normalised them
    :param deterministic: act with the policy's mean action
    :raises FileNotFoundError: if the model or the given statistics file does not exist
    :raises ValueError: if ``path`` is not a model that the algorithm(s) tried can load
    """

    def __init__(self, path: str | Path, algo: str | type[BaseAlgorithm] | None = None, vecnormalize: str | Path | None = None, deterministic: bool = True) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no model file at {path}")
        if algo is not None and not isinstance(algo, str) and not (isinstance(algo, type) and issubclass(algo, BaseAlgorithm)):
            raise TypeError(f"algo must be a registered name (sb3_microgrid.algos.ALGOS), an algorithm class or None, got {algo!r}")
        if vecnormalize is not None and not isinstance(vecnormalize, (str, os.PathLike)):
            raise TypeError(f"vecnormalize must be a path or None, got {vecnormalize!r}")
        stats, normalised = statistics_for(path, vecnormalize)
        if stats is None and normalised:
            warnings.warn(
                f"{path} was trained on normalised observations but no VecNormalize statistics were found beside it: "
                "it will act on raw observations; pass the statistics file (--vecnormalize)",
                NormalizationWarning,
                stacklevel=2,
            )
        self._setup(load(path, algo), path.stem, stats, None, deterministic)

    @classmethod
    def from_model(cls, model: BaseAlgorithm, normalizer: VecNormalize | None = None, name: str = "model", deterministic: bool = True) -> "SB3Controller":
        """Wrap a model in memory (e.g. during training) and the ``VecNormalize`` it trains with;
        ``normalize_obs`` only reads the running statistics, so evaluating does not change them."""
        controller = cls.__new__(cls)
        controller._setup(model, name, None, normalizer, deterministic)
        return controller

    def _setup(self, model: BaseAlgorithm, name: str, stats: Path | None, normalizer: VecNormalize | None, deterministic: bool) -> None:
        if not isinstance(deterministic, (bool, np.bool_)):  # "no" acted deterministically, None sampled
            raise TypeError(f"deterministic must be true or false, got {deterministic!r}")
        self.model, self.name, self.deterministic = model, name, bool(deterministic)
        self._stats_path, self._normalizer = stats, normalizer
        self._state: Any = None
        self._episode_start = np.ones(1, dtype=bool)

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        """Check the model fits ``env`` (and load the statistics for it); start a new episode.

        :raises ValueError: if the model observes something else than ``env`` gives, or the statistics
            file cannot be used with ``env``
        """
        space = self.model.observation_space
        if isinstance(space, spaces.Dict) != isinstance(env.observation_space, spaces.Dict):
            raise ValueError(f"model {self.name!r} observes {space}, but this env gives {env.observation_space}")
        flat = space["observation"] if isinstance(space, spaces.Dict) else space
        # Box equality ignores the layout: two scenarios with different windows can have the same size.
        trained = getattr(flat, "layout", None)
        if trained is not None and trained != env.obs_layout:
            raise ValueError(f"model {self.name!r} was trained on another observation layout than this scenario's ({trained} vs {env.obs_layout})")
        if self._stats_path is not None and self._normalizer is None:
            self._normalizer = load_statistics(self._stats_path, env, self.name)
        self._state = None
        self._episode_start = np.ones(1, dtype=bool)

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self._normalizer is not None:
            obs = self._normalizer.normalize_obs(obs)
        action, self._state = self.model.predict(obs, state=self._state, episode_start=self._episode_start, deterministic=self.deterministic)
        self._episode_start = np.zeros(1, dtype=bool)
        return np.asarray(action, dtype=np.float64)
