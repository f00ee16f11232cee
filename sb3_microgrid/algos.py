"""The one algorithm registry (name -> class) of ``sb3-microgrid train``, the zoo launcher and evaluation,
and how a saved model's algorithm is found.

Names are rl_zoo3's where the zoo has the algorithm (``ppo_lstm`` is sb3-contrib's ``RecurrentPPO``), so
one name means one class at every front door.

A model zip does not record its algorithm class (``PPO.load`` on a subclass's zip silently gives a
``PPO``), so :func:`identify` finds it in this order:

1. the run record: ``run.json`` (``{"algo": name, ...}``, written by ``sb3-microgrid train`` beside
   ``model.zip`` and in each checkpoint set, see :mod:`sb3_microgrid.callbacks.checkpoint`) in the
   model's folder or its parent;
2. otherwise the zip's ``data``, which stores the policy class and the algorithm's saved attributes. A
   class is a candidate when the policy class is one of its policies (``policy_aliases``) or a subclass
   of one; candidates are ranked by how close that policy is, then by how few of their constructor
   parameters are missing from the saved attributes, then by how many are present, then subclasses
   before their bases;
3. :func:`load` tries the candidates in that order (all registered classes when the policy is none of
   theirs) and keeps the first that loads: a subclass whose set-up refuses the zip (``PerSAC`` on a
   ``SAC`` zip) gives way to the next.

DDPG saves exactly what TD3 saves (its own settings of TD3's parameters), and ARS what PairedARS saves:
without a run record or ``algo`` their zips load as ``td3`` and ``paired_ars``, which predict the same
actions (only training differs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sb3_contrib import ARS, TQC, TRPO, CrossQ, RecurrentPPO
from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3, HerReplayBuffer
from stable_baselines3.common.base_class import BaseAlgorithm

from .callbacks.checkpoint import PUBLISHING, RUN_JSON, CheckpointError, read_run_json
from .common.safe_pickle import SavedModel, read_model
from .dyna import DynaSAC
from .epsilon_sac import EpsilonSAC
from .epsilon_td3 import EpsilonTD3
from .paired_ars import PairedARS
from .hyperparams import HyperparamsError, constructor_parameters
from .per_sac import PerSAC
from .per_td3 import PerTD3
from .reptile import Reptile
from .twin_ppo import TwinValuePPO

#: Every algorithm this package trains and evaluates.
ALGOS: dict[str, type[BaseAlgorithm]] = {
    "a2c": A2C,
    "ddpg": DDPG,
    "ppo": PPO,
    "sac": SAC,
    "td3": TD3,
    "twin_ppo": TwinValuePPO,
    "dyna_sac": DynaSAC,
    "per_sac": PerSAC,
    "per_td3": PerTD3,
    "epsilon_sac": EpsilonSAC,
    "epsilon_td3": EpsilonTD3,
    "ars": ARS,
    "paired_ars": PairedARS,
    "crossq": CrossQ,
    "ppo_lstm": RecurrentPPO,
    "tqc": TQC,
    "trpo": TRPO,
    "reptile": Reptile,
}


def algorithm(name: str) -> type[BaseAlgorithm]:
    """The algorithm class registered under ``name``.

    :raises HyperparamsError: (a ``ValueError``) for an unknown name, listing the known ones
    """
    if name not in ALGOS:
        raise HyperparamsError(f"unknown algorithm {name!r}; allowed: {sorted(ALGOS)}")
    return ALGOS[name]


def run_record(path: str | Path) -> dict[str, Any] | None:
    """The run record of a model: ``run.json`` in the model's folder, else in its parent, else ``None``.

    :raises ValueError: if the record is malformed, or says its run was killed while writing its final model
        (which may then be of another step than its statistics)
    """
    folder = Path(path).parent
    for directory in (folder, folder.parent):
        if (directory / RUN_JSON).is_file():
            try:
                record = read_run_json(directory)
            except CheckpointError as err:
                raise ValueError(str(err)) from None
            if record.get(PUBLISHING):
                raise ValueError(
                    f"{directory} was left while its final model was being written: resume the run (sb3-microgrid train "
                    "--resume) or load a complete set under its checkpoints/"
                )
            return record
    return None


def saved_data(path: str | Path) -> dict[str, Any]:
    """The ``data`` of a model zip (attributes and classes as SB3 saves them, the pickled ones read safely:
    :func:`~sb3_microgrid.common.safe_pickle.read_model`).

    :raises ValueError: if ``path`` is not a model saved by SB3 (:class:`~sb3_microgrid.common.safe_pickle.UnsafePickleError`
        if it names something refused)
    """
    return _checked(read_model(path, prediction=True), path).data


def _checked(saved: SavedModel, path: str | Path) -> SavedModel:
    if not isinstance(saved.data, dict) or "policy_class" not in saved.data:
        raise ValueError(f"{path} is not a saved Stable-Baselines3 model (no policy class in its data)")
    return saved


def candidates(data: dict[str, Any]) -> list[str]:
    """Registered names that could have saved ``data``, most likely first (module docstring, step 2);
    all of them when the saved policy class is none of theirs."""
    policy = data.get("policy_class")
    ranked = []
    for name, cls in ALGOS.items():
        mro = policy.__mro__ if isinstance(policy, type) else ()
        distance = min((mro.index(base) for base in cls.policy_aliases.values() if base in mro), default=None)
        if distance is None:
            continue
        params = constructor_parameters(cls)
        saved = {p for p in params if p in data or f"_{p}" in data}  # SB3 keeps some as private attributes
        ranked.append(((distance, len(params - saved), -len(saved), -len(cls.__mro__)), name))
    return [name for _, name in sorted(ranked)] or list(ALGOS)


def identify(path: str | Path, data: dict[str, Any] | None = None) -> list[str]:
    """The registered names to try for a model, in order: the run record's alone if there is one,
    else :func:`candidates` of the zip's data.

    :param data: the zip's data if already read (:func:`saved_data`)
    :raises ValueError: if the run record names an unknown algorithm, or ``path`` is not a model
    """
    record = run_record(path)
    if record is not None:
        if record["algo"] not in ALGOS:
            raise ValueError(f"the {RUN_JSON} of {path} names algorithm {record['algo']!r}, which is not one of {sorted(ALGOS)}")
        return [record["algo"]]
    return candidates(saved_data(path) if data is None else data)


def load(path: str | Path, algo: str | type[BaseAlgorithm] | None = None, device: str = "cpu", prediction: bool = True) -> BaseAlgorithm:
    """Load a model with its own algorithm class (:func:`identify`, unless ``algo`` says it), reading the file
    once and its pickled attributes safely (:func:`~sb3_microgrid.common.safe_pickle.read_model`).

    A model trained with ``HerReplayBuffer`` loads with a plain replay buffer: SB3 builds a HER buffer
    only with the training env, and predicting needs no buffer.

    :param path: the model's ``.zip``
    :param algo: a registered name or an algorithm class; ``None`` to identify it
    :param device: torch device
    :param prediction: the model is loaded to act: attributes only training reads that name something refused are
        replaced by inert values; ``False`` (to train on) refuses them
    :raises ValueError: if the model cannot be loaded with any of the classes tried, naming them
    """
    saved = _checked(read_model(path, prediction), path)
    if algo is None:
        classes = [ALGOS[name] for name in identify(path, saved.data)]
    else:
        classes = [algorithm(algo) if isinstance(algo, str) else algo]
    custom = dict(saved.objects)
    buffer_class = saved.data.get("replay_buffer_class")
    if isinstance(buffer_class, type) and issubclass(buffer_class, HerReplayBuffer):
        custom |= {"replay_buffer_class": None, "replay_buffer_kwargs": {}}
    errors = []
    for cls in classes:
        saved.check_for(cls)
        try:
            return cls.load(saved.file(), device=device, custom_objects=custom)
        except Exception as err:  # noqa: BLE001 - a class that refuses the zip gives way to the next
            errors.append(f"{cls.__name__}: {type(err).__name__}: {err}")
    raise ValueError(f"cannot load {path} as " + "; as ".join(errors))
