"""Reading the pickles inside SB3's files without running the code a pickle may carry.

A model zip keeps its non-JSON attributes (policy class, spaces, schedules, ...) as cloudpickle payloads,
``VecNormalize`` statistics and replay buffers are pickle files, and unpickling any of them can call any
function it names. Here they are read with Python's own unpickler, restricted to what SB3's own files need:
numpy arrays and scalars of plain number or object dtypes, PCG64 random generators, ``collections.deque`` / ``OrderedDict``,
``torch.device``, tensors, torch's activation and optimizer classes, and classes of Stable-Baselines3, sb3-contrib,
this package and ``gymnasium.spaces`` that are policies, features extractors, spaces, buffers, action noise,
schedules or normalisation statistics. Anything else (a function, ``os.system``, a class defined by value, as
cloudpickle writes lambdas and closures, a class of any other module, a structured dtype named by the pickle, a dtype
state other than its own, another bit generator) is refused with :class:`UnsafePickleError` naming it, before it is called; no module
is imported.

Names are not enough where compiled code trusts an object's fields, so numpy's and torch's reconstruction helpers
resolve to checked stand-ins (:attr:`_Unpickler.substitutes`): dtypes, arrays and seed sequences are made afresh from
their checked state at BUILD, never handed out half-made; tensors lie within their storage; random generators are
made only around PCG64; instances made without their constructor are only of Python classes; and BUILD takes only
an attribute dictionary of data, never on a class, a function, an enum member or another compiled object (a class's
own ``__setstate__`` still runs on it). The names SB3's ``load`` then follows in the zip (``.pth`` members,
``pytorch_variables.pth`` keys, data keys) are checked too (:func:`read_model`, :meth:`SavedModel.check_for`).

For prediction, attributes only training uses (the learning-rate and clip schedules, the last observation,
episode statistics) that name something else are replaced by inert values instead: a model trained with
rl_zoo3's ``lin_3e-4`` (a closure) still loads to act. A model loaded to train on (resume, ``adapt``) gets the error.
"""

from __future__ import annotations

import base64
import copyreg
import enum
import functools
import io
import json
import pickle
import sys
import types
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import torch._utils as torch_utils
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.save_util import json_to_data
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule
from stable_baselines3.common.utils import LinearSchedule as SB3LinearSchedule
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from stable_baselines3.her import HerReplayBuffer

#: Functions and classes a pickle may name that are resolved as they are; the reconstruction helpers numpy and torch
#: name are resolved to the checked stand-ins of :attr:`_Unpickler.substitutes` instead.
ALLOWED_GLOBALS = frozenset(
    f"{prefix}.{name}"
    for prefix, names in {
        "numpy.random._pcg64": ("PCG64", "PCG64DXSM"),
        "numpy.random.bit_generator": ("SeedSequence",),
        "numpy.random._generator": ("Generator",),
        "collections": ("deque", "OrderedDict"),
        "stable_baselines3.her.goal_selection_strategy": ("GoalSelectionStrategy",),
        "stable_baselines3.common.type_aliases": ("TrainFreq", "TrainFrequencyUnit"),
        "torch": ("device",),
        "builtins": ("object",),
    }.items()
    for name in names
)
#: Modules (and their submodules) that a pickle may name classes from, when the class derives from one of
#: :func:`_safe_bases` (or is a torch activation). Names are looked up in modules already imported only: importing
#: can run code (``torch.utils.model_dump.__main__`` calls ``sys.exit`` at import) or write files.
TRUSTED_MODULES = ("stable_baselines3", "sb3_contrib", "sb3_microgrid", "gymnasium.spaces", "torch.optim", "torch.nn.modules.activation")


@functools.cache
def _safe_bases() -> tuple[type, ...]:
    """The kinds of class an SB3 file holds (imported late: this package's modules import this one). Also imports
    every module of this package that defines such a class: names are resolved from imported modules only."""
    from .. import algos, exploration, policies  # noqa: F401 - imported for their classes
    from ..buffers.sum_tree import SumTree
    from ..envs.layout import ObservationLayout
    from ..schedules import ScaledSchedule, WarmupSchedule

    schedules = (ConstantSchedule, FloatSchedule, SB3LinearSchedule, ScaledSchedule, WarmupSchedule)
    return (BasePolicy, BaseFeaturesExtractor, gym.Space, BaseBuffer, ActionNoise, RunningMeanStd, VecNormalize, ObservationLayout, SumTree, th.optim.Optimizer, *schedules)


def _trusted(module: str) -> bool:
    """Whether ``module`` lies under :data:`TRUSTED_MODULES` and no part of its name is private."""
    if any(part.startswith("_") for part in module.split(".")):
        return False
    return any(module == trusted or module.startswith(trusted + ".") for trusted in TRUSTED_MODULES)


#: The numpy scalar types a pickle may name (action noise keeps its dtype as one): concrete number types only.
_NUMBER_TYPES = frozenset(kind for kind in np.sctypeDict.values() if np.dtype(kind).kind in "biufc")
#: numpy's function that rebuilds a scalar, from the module numpy 2 (``_core``) or 1.26 (``core``) imported.
_SCALAR = (sys.modules.get("numpy._core.multiarray") or sys.modules["numpy.core.multiarray"]).scalar

#: The bit generators a pickled random generator may use (gymnasium's spaces use PCG64). Others are refused: the
#: Mersenne Twister accepts a state whose position makes its next draw read outside its buffer.
_BIT_GENERATORS = (np.random.PCG64, np.random.PCG64DXSM)


class UnsafePickleError(ValueError):
    """A pickle names something this module does not resolve."""


#: Attributes of a model's data that prediction does not use, and what replaces them when they name something refused.
PREDICTION_ONLY = {
    "learning_rate": 0.0,
    "lr_schedule": ConstantSchedule(0.0),
    "clip_range": 0.0,
    "clip_range_vf": None,
    "exploration_schedule": ConstantSchedule(0.0),
    "delta_std_schedule": ConstantSchedule(0.0),  # ARS, PairedARS
    "meta_step_size": 0.0,  # Reptile
    "meta_step_size_schedule": ConstantSchedule(0.0),
    "_last_obs": None,
    "_last_original_obs": None,
    "_last_episode_starts": None,
    "ep_info_buffer": None,
    "ep_success_buffer": None,
}


def _plain_dtype(name: Any, state: Any) -> np.dtype:
    """The dtype ``numpy.dtype(name)`` with the BUILD state ``state``, for the plain dtypes of numbers and of objects
    (HER keeps its infos in object arrays), in either byte order, and nothing structured. Any other state is refused:
    flags that say an object dtype holds no objects would let raw bytes be read as pointers. An object array then
    takes its items as a list, unpickled under the same rules, never as raw bytes."""
    dtype = np.dtype(name) if isinstance(name, str) else None
    if dtype is None or dtype.kind not in "biufcO" or dtype.fields is not None or dtype.subdtype is not None:
        raise UnsafePickleError(f"refused numpy dtype {name!r}: only plain number and object dtypes are loaded")
    for made in (dtype, dtype.newbyteorder("<"), dtype.newbyteorder(">")):
        if state == made.__reduce__()[2]:
            return made
    raise UnsafePickleError(f"refused numpy dtype {dtype} with the state {state!r}: only its own, in either byte order, is loaded")


def _array_from_bytes(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's ``_frombuffer`` (how protocol 5 pickles an array), over bytes only: over an array it would make a view
    that outlives the array's memory."""
    if type(buffer) not in (bytes, bytearray) or not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("refused numpy _frombuffer: only numbers read from bytes are loaded")
    return np.frombuffer(buffer, dtype).reshape(shape, order=order)


def _bit_generator(kind: Any = None) -> np.random.BitGenerator:
    """``numpy.random._pickle.__bit_generator_ctor``, for :data:`_BIT_GENERATORS` only (its default is MT19937)."""
    for generator in _BIT_GENERATORS:
        if kind is generator or kind == generator.__name__:
            return generator()
    raise UnsafePickleError(f"refused bit generator {kind!r}: only {[g.__name__ for g in _BIT_GENERATORS]} are loaded")


def _generator(bit_generator: Any = None) -> np.random.Generator:
    """``numpy.random._pickle.__generator_ctor``, around a bit generator of :data:`_BIT_GENERATORS` (or its name)."""
    if type(bit_generator) not in _BIT_GENERATORS:
        bit_generator = _bit_generator(bit_generator)
    return np.random.Generator(bit_generator)


def _storage_from_bytes(payload: bytes) -> Any:
    """``torch.storage._load_from_bytes``, with which a pickled tensor rebuilds its storage, but reading the
    storage with torch's weights-only unpickler (the original reads it with the unrestricted one)."""
    storage = th.load(io.BytesIO(payload), weights_only=True)
    if not isinstance(storage, (th.UntypedStorage, th.TypedStorage)):
        raise UnsafePickleError(f"refused a tensor storage that holds a {type(storage).__name__}")
    return storage


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, backward_hooks: Any, metadata: Any = None) -> th.Tensor:
    """``torch._utils._rebuild_tensor_v2`` for a tensor that lies within its storage (torch would grow the storage
    and read uninitialised memory) and has no backward hooks (they would be called on every backward pass)."""
    if not isinstance(storage, th.TypedStorage) or backward_hooks or metadata:
        raise UnsafePickleError("refused a tensor that has no storage of its own, backward hooks or metadata")
    numbers = (offset, *size, *stride) if isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride) else None
    if numbers is None or not all(type(n) is int and n >= 0 for n in numbers):
        raise UnsafePickleError(f"refused a tensor of offset {offset!r}, size {size!r} and stride {stride!r}")
    extent = offset + sum((n - 1) * step for n, step in zip(size, stride)) + 1 if all(size) else 0
    if extent > storage._size():  # size() warns that TypedStorage is deprecated
        raise UnsafePickleError(f"refused a tensor that reaches element {extent} of a storage of {storage._size()}")
    return torch_utils._rebuild_tensor_v2(storage, offset, size, stride, bool(requires_grad), OrderedDict())


def _parameter(data: Any, requires_grad: Any, backward_hooks: Any) -> th.nn.Parameter:
    """``torch._utils._rebuild_parameter`` without backward hooks (which would be called on every backward pass)."""
    if not isinstance(data, th.Tensor) or backward_hooks:
        raise UnsafePickleError("refused a parameter that is not a tensor or has backward hooks")
    return th.nn.Parameter(data, bool(requires_grad))


def _plain_class(cls: Any) -> type:
    """``cls``, if an instance may be made without calling its constructor (NEWOBJ and the like): a class of a trusted
    module whose ``__new__`` is ``object``'s or written in Python, but no optimizer or torch module (SB3's files hold
    their classes only). A compiled class made so (numpy's bit generators) is left uninitialised, and its methods
    then read and write through null or stale pointers."""
    plain = cls.__new__ is object.__new__ or isinstance(cls.__new__, types.FunctionType) if isinstance(cls, type) else False
    if plain and _trusted(cls.__module__) and not issubclass(cls, (th.optim.Optimizer, th.nn.Module)):
        return cls
    raise UnsafePickleError(f"refused an instance of {cls!r} made without its constructor: only classes of trusted packages written in Python are")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocols 0 and 1), for :func:`_plain_class` classes on ``object`` only."""
    if base is not object:
        raise UnsafePickleError(f"refused copyreg._reconstructor on base {base!r}")
    return copyreg._reconstructor(_plain_class(cls), object, state)


class _ArrayClass:
    """What ``numpy.ndarray`` resolves to: a name to pass to numpy's ``_reconstruct`` only. Called with a shape, an
    object dtype and bytes, ``numpy.ndarray`` itself would take the bytes as object pointers."""

    __slots__ = ()  # shared by every load: nothing may be set on it

    def __call__(self, *args: Any) -> None:
        raise UnsafePickleError("refused numpy.ndarray called directly: arrays are loaded through numpy's _reconstruct")

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _ArrayClass()


class _Unbuilt:
    """What ``numpy.dtype``, numpy's ``_reconstruct`` and Cython's ``__pyx_unpickle_SeedSequence`` stand for until
    their BUILD: an inert placeholder, replaced then, on the stack and in the memo, by an object made afresh from the
    checked state. A copy of it kept elsewhere before the BUILD (by DUP, or in a container) stays inert. numpy's own
    pair hands out a real, empty array first and sets its memory at BUILD, which frees the memory that any view taken
    in between (``numpy.float64(array)`` is one) still points to.

    :param build: makes the object from the BUILD state
    """

    __slots__ = ("build", "memo_keys")

    def __init__(self, build: Any) -> None:
        self.build = build
        self.memo_keys: list[int] = []


def _new_array(state: Any) -> np.ndarray:
    """A new array from ``ndarray.__reduce__``'s state (numpy checks it against the dtype and the size)."""
    array = np.ndarray((0,), np.int8)
    array.__setstate__(state)
    return array


def _new_seed_sequence(state: Any) -> np.random.SeedSequence:
    """A ``SeedSequence`` from its constructor, given the fields Cython pickles; its pool must be what they make."""
    try:
        entropy, n_children_spawned, pool, pool_size, spawn_key = state
        made = np.random.SeedSequence(entropy, spawn_key=spawn_key, pool_size=pool_size, n_children_spawned=n_children_spawned)
    except (TypeError, ValueError) as err:
        raise UnsafePickleError(f"refused a SeedSequence state: {err}") from None
    if not (isinstance(pool, np.ndarray) and np.array_equal(pool, made.pool)):
        raise UnsafePickleError("refused a SeedSequence whose pool is not the one its entropy makes")
    return made


class _Memo(dict):
    """The unpickler's memo, noting where each :class:`_Unbuilt` is kept so that BUILD can replace it there."""

    def __setitem__(self, key: int, value: Any) -> None:
        if isinstance(value, _Unbuilt):
            value.memo_keys.append(key)
        super().__setitem__(key, value)


#: Objects BUILD may not change: shared ones (a class, a function, an enum member) would change for the whole process.
_SHARED = (type, enum.Enum, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def _hides_member(cls: type, key: str) -> bool:
    """Whether an instance attribute ``key`` would hide a method or property of ``cls`` (code, not data)."""
    found = getattr(cls, key, None)
    return callable(found) or isinstance(found, property)


def _check_state(inst: Any, state: Any) -> None:
    """Refuse a BUILD state that would do more than set an object's data: anything but an attribute dictionary
    (exactly a ``dict`` or an ``OrderedDict``: anything with ``items()`` would do for pickle, and a class's own
    ``__setstate__`` may take a list of pairs), a non-empty slot state (``setattr`` on anything, ``__class__``
    included, which swaps the class and skips its checks), a dunder key, or a key that hides a method or property of
    the class (``Optimizer.__setstate__`` calls its ``profile_hook_step`` on the class's ``step``)."""
    if type(state) is tuple and len(state) == 2:
        if type(state[1]) is not dict or state[1]:
            raise UnsafePickleError(f"refused a slot state for {type(inst).__qualname__}: only attribute dictionaries are loaded")
        state = state[0]
    if state is None:
        return
    if type(state) not in (dict, OrderedDict):
        raise UnsafePickleError(f"refused a {type(state).__qualname__} as the state of {type(inst).__qualname__}: only attribute dictionaries are loaded")
    for key in state:
        if not isinstance(key, str) or key.startswith("__") or _hides_member(type(inst), key):
            raise UnsafePickleError(f"refused the attribute {key!r} for {type(inst).__qualname__}: it is not data")


class _Unpickler(pickle._Unpickler):
    """Python's own (pure-Python) unpickler, so that BUILD and the making of objects can be checked as well as the
    names a pickle resolves."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file)
        self.memo = _Memo()
        self.unbuilt: set[_Unbuilt] = set()

    def _unbuilt(self, build: Any) -> _Unbuilt:
        placeholder = _Unbuilt(build)
        self.unbuilt.add(placeholder)
        return placeholder

    def _empty_array(self, cls: Any, shape: Any, typecode: Any) -> _Unbuilt:
        """numpy's ``_reconstruct(ndarray, (0,), b"b")``: an array whose BUILD follows."""
        if cls is not _NDARRAY:
            raise UnsafePickleError(f"refused numpy _reconstruct of {cls!r}: only plain arrays are loaded")
        return self._unbuilt(_new_array)

    def _dtype(self, name: Any, *flags: Any) -> _Unbuilt:
        """``numpy.dtype(name, align, copy)``: a dtype whose BUILD follows (:func:`_plain_dtype`). A dtype is never
        handed out before: numpy shares one object per built-in dtype, and BUILD would change it for the process."""
        return self._unbuilt(functools.partial(_plain_dtype, name))

    def _seed_sequence(self, cls: Any, checksum: Any, state: Any) -> _Unbuilt:
        """Cython's ``__pyx_unpickle_SeedSequence(SeedSequence, checksum, None)``: a seed sequence whose BUILD follows."""
        if cls is not np.random.SeedSequence or state is not None:
            raise UnsafePickleError(f"refused __pyx_unpickle_SeedSequence of {cls!r}")
        return self._unbuilt(_new_seed_sequence)

    #: Names resolved to checked stand-ins, and the method name of those that need the unpickler.
    substitutes = {
        "numpy.dtype": "_dtype",
        "numpy.ndarray": _NDARRAY,
        "numpy.core.multiarray.scalar": _SCALAR,
        "numpy._core.multiarray.scalar": _SCALAR,
        "numpy.core.multiarray._reconstruct": "_empty_array",
        "numpy._core.multiarray._reconstruct": "_empty_array",
        "numpy.core.numeric._frombuffer": _array_from_bytes,
        "numpy._core.numeric._frombuffer": _array_from_bytes,
        "numpy.random._pickle.__bit_generator_ctor": _bit_generator,
        "numpy.random._pickle.__generator_ctor": _generator,
        "numpy.random.bit_generator.__pyx_unpickle_SeedSequence": "_seed_sequence",
        "torch.storage._load_from_bytes": _storage_from_bytes,
        "torch._utils._rebuild_tensor_v2": _tensor,
        "torch._utils._rebuild_parameter": _parameter,
        "copyreg._reconstructor": _reconstructor,
    }

    def find_class(self, module: str, name: str) -> Any:
        """Resolve ``module.name`` if it is allowed (module docstring), else raise :class:`UnsafePickleError`;
        never imports a module."""
        full = f"{module}.{name}"
        if full in self.substitutes:
            found = self.substitutes[full]
            return getattr(self, found) if isinstance(found, str) else found
        if full in ALLOWED_GLOBALS and hasattr(sys.modules.get(module), name):
            return getattr(sys.modules[module], name)
        if module == "numpy" and isinstance(vars(np).get(name), type) and vars(np)[name] in _NUMBER_TYPES:
            return vars(np)[name]  # a number type (np.float32 ...), as action noise keeps its dtype
        if _trusted(module) and name.isidentifier() and not name.startswith("_"):
            bases = _safe_bases()  # first, as it imports this package's modules that define such classes
            found = getattr(sys.modules.get(module), "__dict__", {}).get(name)
            if isinstance(found, type) and _trusted(found.__module__):
                activation = module == "torch.nn.modules.activation" and issubclass(found, th.nn.Module) and found.__module__ == module
                if activation or issubclass(found, bases):
                    return found
        raise UnsafePickleError(f"refused {full}: only arrays, spaces, schedules, policies, buffers and statistics of trusted packages are loaded")

    def load_newobj(self) -> None:
        """NEWOBJ, for :func:`_plain_class` classes only."""
        _plain_class(self.stack[-2])
        super().load_newobj()

    def load_newobj_ex(self) -> None:
        """NEWOBJ_EX, for :func:`_plain_class` classes only."""
        _plain_class(self.stack[-3])
        super().load_newobj_ex()

    def _instantiate(self, klass: Any, args: list) -> None:
        """INST and OBJ (protocols 0 and 1), for :func:`_plain_class` classes only."""
        super()._instantiate(_plain_class(klass), args)

    def load_build(self) -> None:
        """BUILD: makes each :class:`_Unbuilt` once; on a bit generator only :data:`_BIT_GENERATORS`, whose state
        setters check the state; refuses shared objects (:data:`_SHARED`), any other numpy or torch object, and a state
        that is not data (:func:`_check_state`)."""
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, _Unbuilt):
            if inst not in self.unbuilt:
                raise UnsafePickleError("refused a second BUILD of a numpy dtype, array or seed sequence")
            self.unbuilt.discard(inst)
            made = inst.build(state)
            self.stack.pop()
            self.stack[-1] = made
            for key in inst.memo_keys:
                if self.memo.get(key) is inst:
                    self.memo[key] = made
            return
        kind = type(inst)
        compiled = kind.__module__.partition(".")[0] in ("numpy", "torch") and not _trusted(kind.__module__)
        if isinstance(inst, _SHARED) or (compiled and kind not in (*_BIT_GENERATORS, np.random.Generator)):
            raise UnsafePickleError(f"refused BUILD on {kind.__module__}.{kind.__qualname__}")
        if not compiled:
            _check_state(inst, state)
        super().load_build()

    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build

    def load(self) -> Any:
        """Unpickle, refusing a pickle that leaves a dtype, an array or a seed sequence unbuilt."""
        result = super().load()
        if self.unbuilt:
            raise UnsafePickleError("refused a numpy dtype, array or seed sequence without its state")
        return result


def loads(payload: bytes) -> Any:
    """Unpickle ``payload``, resolving only what SB3's files need (module docstring).

    :raises UnsafePickleError: naming the first thing refused
    """
    return _Unpickler(io.BytesIO(payload)).load()


def load_file(path: str | Path, what: str, expected: type) -> Any:
    """The object pickled in ``path``, which must be an instance of ``expected``.

    :param what: what the file is, for errors
    :raises ValueError: naming the file, if it cannot be read, names something refused or holds something else
    """
    try:
        obj = loads(Path(path).read_bytes())
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{what} {path}: {err}") from None
    except Exception as err:  # noqa: BLE001 - a corrupt pickle fails in many ways; name the file
        raise ValueError(f"cannot read {what} {path}: {type(err).__name__}: {err}") from None
    if not isinstance(obj, expected):
        raise ValueError(f"{what} {path} holds a {type(obj).__name__}, not a {expected.__name__}")
    return obj


@dataclass(frozen=True)
class SavedModel:
    """A model zip read once: its bytes, its ``data`` with every pickled attribute read safely, and those
    attributes (SB3's ``custom_objects``, with which its loader unpickles nothing).

    :param content: the zip's bytes; :meth:`file` hands them to ``cls.load``, so the file is not read again
    :param data: the attributes, as ``stable_baselines3.common.save_util.json_to_data`` returns them
    :param objects: the attributes that were pickled
    """

    content: bytes
    data: dict[str, Any]
    objects: dict[str, Any]

    def file(self) -> io.BytesIO:
        """The zip as a file object for ``BaseAlgorithm.load``."""
        return io.BytesIO(self.content)

    def check_for(self, cls: type) -> None:
        """Refuse attributes that would replace a method or property of the algorithm ``cls``: SB3's ``load`` copies
        the data into the model's ``__dict__`` (a ``set_parameters`` there would leave the weights unloaded).

        :raises UnsafePickleError: naming the attribute
        """
        for key in self.data:
            if _hides_member(cls, key):
                raise UnsafePickleError(f"refused the attribute {key!r}: it would replace {cls.__name__}.{key}")


#: What SB3's ``load`` follows attribute by attribute in a zip, for every algorithm of the registry (their
#: ``_get_torch_save_params``): the modules and optimizers whose state it sets from ``<name>.pth``, and the tensors
#: whose ``.data`` it sets from ``pytorch_variables.pth`` (``tensors.pth`` in old zips). Any other name could reach a
#: class: ``log_ent_coef.__class__`` would set ``torch.Tensor.data`` for the whole process, ``policy_class`` would
#: give the policy class a ``data`` attribute.
TORCH_STATE_NAMES = frozenset({"policy", "policy.optimizer", "actor.optimizer", "critic.optimizer", "ent_coef_optimizer", "world_model", "world_model.optimizer"})
TORCH_VARIABLE_NAMES = frozenset({"log_ent_coef", "ent_coef_tensor"})
_VARIABLE_FILES = ("pytorch_variables.pth", "tensors.pth")


def _check_torch_names(archive: zipfile.ZipFile) -> None:
    """Refuse ``.pth`` members and tensor variables outside :data:`TORCH_STATE_NAMES` / :data:`TORCH_VARIABLE_NAMES`.

    :raises UnsafePickleError: naming the member or the variables
    """
    for member in archive.namelist():
        if member.endswith(".pth") and member not in _VARIABLE_FILES and member.removesuffix(".pth") not in TORCH_STATE_NAMES:
            raise UnsafePickleError(f"refused the member {member!r}: the state files loaded are {sorted(TORCH_STATE_NAMES)}")
    for member in set(_VARIABLE_FILES) & set(archive.namelist()):
        variables = th.load(io.BytesIO(archive.read(member)), weights_only=True)
        unknown = sorted(map(str, set(variables) - TORCH_VARIABLE_NAMES)) if isinstance(variables, dict) else [type(variables).__name__]
        if unknown:
            raise UnsafePickleError(f"refused {member} entries {unknown}: the tensor variables loaded are {sorted(TORCH_VARIABLE_NAMES)}")


def read_model(path: str | Path, prediction: bool) -> SavedModel:
    """Read the model zip ``path`` once, its pickled attributes safely (:func:`model_objects`).

    :param prediction: as for :func:`model_objects`
    :raises UnsafePickleError: naming the file, the attribute and what it names
    :raises ValueError: if ``path`` is not a model zip
    """
    try:
        content = Path(path).read_bytes()
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            text = archive.read("data").decode()
            _check_torch_names(archive)
        objects = model_objects(text, prediction)
        data = json_to_data(text, custom_objects=objects)
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{path}: {err}") from None
    except (OSError, zipfile.BadZipFile, KeyError, UnicodeDecodeError, ValueError, RuntimeError, pickle.UnpicklingError) as err:
        # RuntimeError / UnpicklingError: torch's reader on a corrupt .pth
        raise ValueError(f"{path} is not a saved Stable-Baselines3 model ({err})") from None
    return SavedModel(content, data, objects)


def model_objects(text: str, prediction: bool) -> dict[str, Any]:
    """Every cloudpickled attribute of a model zip's ``data`` JSON, unpickled safely: SB3's ``custom_objects``,
    so that its own loader unpickles nothing.

    :param text: the zip's ``data`` file
    :param prediction: replace refused attributes of :data:`PREDICTION_ONLY` by inert values instead of refusing
    :raises UnsafePickleError: naming the attribute and what it names
    :raises ValueError: if ``text`` is not such JSON
    """
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the model's data is not a JSON object")
    objects = {}
    for key, item in data.items():
        if not (isinstance(item, dict) and ":serialized:" in item):
            continue
        try:
            objects[key] = loads(base64.b64decode(item[":serialized:"]))
        except UnsafePickleError as err:
            if not (prediction and key in PREDICTION_ONLY):
                raise UnsafePickleError(f"attribute {key!r}: {err}") from None
            objects[key] = PREDICTION_ONLY[key]
        except Exception as err:  # noqa: BLE001 - a corrupt pickle fails in many ways; name the attribute
            if not (prediction and key in PREDICTION_ONLY):
                raise ValueError(f"attribute {key!r} cannot be read: {type(err).__name__}: {err}") from None
            objects[key] = PREDICTION_ONLY[key]
    return objects


def load_vecnormalize(path: str | Path, venv: VecEnv) -> VecNormalize:
    """``VecNormalize.load`` without unpickling anything unsafe: the statistics in ``path`` around ``venv``.

    :raises UnsafePickleError: naming the file and what it names
    :raises ValueError: if the file is not readable ``VecNormalize`` statistics, or is of another observation layout
        than ``venv``'s (when both spaces carry one, as the microgrid envs' do)
    """
    normalizer = load_file(path, "VecNormalize statistics", VecNormalize)
    # set_venv checks the size only: statistics of another layout of the same size would scale the wrong entries
    saved, given = (getattr(space, "layout", None) for space in (normalizer.observation_space, venv.observation_space))
    if saved is not None and given is not None and saved != given:
        raise ValueError(f"{path} holds statistics of another observation layout ({saved}) than the env's ({given})")
    normalizer.set_venv(venv)
    return normalizer


def load_replay_buffer(model: OffPolicyAlgorithm, path: str | Path, truncate_last_traj: bool = True) -> None:
    """``model.load_replay_buffer(path)`` without unpickling anything unsafe (SB3's steps for buffers saved by
    SB3 2.1 or later).

    :param model: the algorithm whose buffer to replace
    :param path: the pickled buffer
    :param truncate_last_traj: for a ``HerReplayBuffer``, end its last trajectory (as SB3's argument)
    :raises UnsafePickleError: naming the file and what it names
    :raises ValueError: if the file is not a readable replay buffer
    """
    model.replay_buffer = load_file(path, "replay buffer", ReplayBuffer)
    if isinstance(model.replay_buffer, HerReplayBuffer):
        model.replay_buffer.set_env(model.env)
        if truncate_last_traj:
            model.replay_buffer.truncate_last_trajectory()
    model.replay_buffer.device = model.device
