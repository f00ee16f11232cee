"""Read rl-baselines3-zoo hyperparameter files without ``eval`` and without running their code.

The zoo evaluates strings such as ``policy_kwargs: "dict(net_arch=[64, 64], activation_fn=nn.Tanh)"``
with Python's ``eval``, and imports and calls whatever ``callback``, ``env_wrapper`` and
``vec_env_wrapper`` name. Here the strings are parsed into a syntax tree and only a small grammar is
accepted: literals, lists, tuples, dicts, ``dict(key=value, ...)``, dotted class names (``nn.Tanh``,
``th.nn.ReLU``, ``sb3_microgrid.policies.ForecastAttentionExtractor``), the zoo's bare
``HerReplayBuffer`` and ``get_class_by_name('pkg.mod.Cls')``. A dotted name is accepted only

- as the value of a key of :data:`CLASS_KEYS`, and it must resolve to a subclass of that key's class
  (``callback`` -> ``BaseCallback``, ``activation_fn`` -> ``nn.Module``, ...);
- inside :data:`TRUSTED_MODULES` or a module the caller trusts (``--trust-module mypkg``), checked
  *before* anything is imported.

Every other value is checked too (ranges of common numbers, mappings, keys the algorithm and the
command line accept): anything wrong is a :class:`HyperparamsError` naming the file, the key and the rule.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th
import yaml
from gymnasium.envs.registration import registry
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import DictReplayBuffer, DictRolloutBuffer, ReplayBuffer, RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, NatureCNN
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnvWrapper, VecNormalize, VecTransposeImage

from .common.yaml_files import load_yaml
from .schedules import finite

#: Packages a file may name classes from without ``--trust-module`` (their submodules too).
TRUSTED_MODULES = ("sb3_microgrid", "stable_baselines3", "sb3_contrib", "gymnasium", "torch.nn", "torch.optim")
#: Modules that replace a trusted class in place when imported: rl_zoo3 swaps ``gymnasium.wrappers.TimeLimit``
#: for its own subclass, so once the zoo is loaded that trusted name is defined there.
PATCHING_MODULES = ("rl_zoo3.gym_patches",)
#: The class each key expects: a dotted name is allowed only as the value of one of these keys and
#: must resolve to a subclass of its class (``policy`` may also be an alias of the algorithm).
CLASS_KEYS: dict[str, type] = {
    "policy": BasePolicy,
    "callback": BaseCallback,
    "env_wrapper": gym.Wrapper,
    "vec_env_wrapper": VecEnvWrapper,
    "features_extractor_class": BaseFeaturesExtractor,
    "activation_fn": th.nn.Module,
    "optimizer_class": th.optim.Optimizer,
    "replay_buffer_class": ReplayBuffer,
    "rollout_buffer_class": RolloutBuffer,
}
#: Methods a class must implement to do its key's job: ``nn.Module`` and ``Optimizer`` are not marked abstract, but
#: ``activation_fn=nn.Module`` fails at the first forward pass and ``optimizer_class=th.optim.Optimizer`` at the first step.
REQUIRED_METHODS = {th.nn.Module: "forward", th.optim.Optimizer: "step"}
#: Classes of the right kind that SB3 still cannot use, and why (an optimizer whose ``step()`` needs a closure is
#: refused by its signature: SB3 calls ``optimizer.step()`` without one).
REFUSED_CLASSES = {th.optim.SparseAdam: "it takes sparse gradients only, and SB3's networks have dense ones"}
#: The observations of this package's envs, known from the section's env id before any env is built.
ENV_OBSERVATIONS = {"Microgrid-v0": "Box vector", "MicrogridGoal-v0": "Dict"}
#: Classes that work with one kind of observation only, and that kind: SB3 asserts it only once it builds the model.
#: The first entry a class is a subclass of decides: the Dict buffers before the plain ones they derive from.
OBSERVATION_CLASSES = {
    DictReplayBuffer: "Dict", DictRolloutBuffer: "Dict", CombinedExtractor: "Dict", NatureCNN: "image", VecTransposeImage: "image",
    ReplayBuffer: "Box vector", RolloutBuffer: "Box vector",
}  # fmt: skip
#: Module aliases the zoo's files use inside ``policy_kwargs`` strings.
ALIASES = {"nn": "torch.nn", "th": "torch", "torch": "torch"}
#: Bare class names the zoo's ``eval`` namespace provides (``replay_buffer_class: HerReplayBuffer``).
NAMES = {"HerReplayBuffer": "stable_baselines3.HerReplayBuffer"}
#: Keys the zoo handles itself; everything else goes to the algorithm's constructor.
ZOO_KEYS = (
    "n_envs", "n_timesteps", "policy", "normalize", "env_kwargs", "env_wrapper", "vec_env_wrapper", "callback",
    "noise_type", "noise_std",
)  # fmt: skip
NOISE_TYPES = ("normal", "ornstein-uhlenbeck")
#: Keys whose string values are parsed as Python expressions (the zoo evaluates them).
PYTHON_KEYS = ("policy_kwargs", "replay_buffer_class", "replay_buffer_kwargs", "rollout_buffer_class", "rollout_buffer_kwargs", "normalize")
#: Keys a file may not hold, and why: unsupported zoo keys, and constructor arguments ``train()`` sets itself.
REFUSED_KEYS = {
    "frame_stack": "not supported (the observation window already holds the history)",
    "monitor_kwargs": "not supported (the envs are monitored without options)",
    "seed": "set by the command line (--seed), not the file",
    "device": "set by the command line: training runs on the CPU",
    "tensorboard_log": "set by the command line: TensorBoard logs go to <run-dir>/tb",
    "verbose": "set by sb3-microgrid train, not the file",
    "env": "the env is the section's name and its env_kwargs",
    "action_noise": "use noise_type and noise_std",
    "_init_setup_model": "internal to SB3",
}
#: Constants allowed in a Python string (YAML's scalar types).
LITERALS = (str, int, float, bool, type(None))
#: Keys that may be the zoo's linear schedule ``lin_<start>`` (the zoo's own list, ARS's ``delta_std`` included).
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf", "delta_std")
#: Keys of a ``net_arch`` dict: actor and value function for on-policy (``ActorCriticPolicy``, a missing key is an
#: empty network), actor and Q-function for off-policy policies (SB3's ``get_actor_critic_arch`` needs both).
ON_POLICY_NET_ARCH_KEYS = ("pi", "vf")
OFF_POLICY_NET_ARCH_KEYS = ("pi", "qf")
#: Algorithm arguments to which infinity means something (DynaSAC: keep every imagined transition). Every other
#: number an algorithm gets, nested ones included, must be finite: NaN and inf train NaN weights or fail deep in torch.
INFINITE_KEYS = ("max_disagreement",)
#: Algorithms that normalise advantages per minibatch: a minibatch of one has no spread (PPO asserts, RecurrentPPO gives NaN).
MINIBATCH_ADVANTAGES = (PPO, RecurrentPPO)
#: ``env_kwargs`` a file may not hold, and why.
REFUSED_ENV_KWARGS = {
    "split": "training uses the train split only (validation and test days are held out for evaluation)",
    "seed": "set by the command line (--seed), not the file",
    "data": "loaded data is passed in code, not a file",
}


class HyperparamsError(ValueError):
    """A key, value or class in a hyperparameter file that cannot be used."""


@dataclass(frozen=True)
class Range:
    """The numbers a key allows.

    :param low: smallest allowed value
    :param high: largest allowed value
    :param low_open: ``low`` itself is excluded
    :param high_open: ``high`` itself is excluded
    :param integer: only whole numbers (returned as ``int``)
    :param optional: ``None`` is allowed too (SB3's "off")
    """

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    optional: bool = False

    def __str__(self) -> str:
        left = "(" if self.low_open or self.low == -math.inf else "["
        right = ")" if self.high_open or self.high == math.inf else "]"
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in {left}{self.low:g}, {self.high:g}{right}" + (" or null" if self.optional else "")

    def check(self, key: str, value: Any) -> Any:
        """``value`` if it lies in the range (an ``int`` for integer ranges), else an error naming ``key``."""
        if value is None and self.optional:
            return None
        try:
            number = finite(value, key)
        except (TypeError, ValueError) as err:
            raise HyperparamsError(f"{err}; allowed: {self}") from None
        inside = (self.low < number if self.low_open else self.low <= number) and (number < self.high if self.high_open else number <= self.high)
        if not inside or (self.integer and not number.is_integer()):
            raise HyperparamsError(f"{key}: {value!r} is out of range; allowed: {self}")
        return (value if isinstance(value, int) else int(number)) if self.integer else value  # an int as given: a float rounds above 2**53


#: The most envs a file may ask for: a typo (``n_envs: 80000``) should be an error naming the key, not a machine
#: out of memory or a rollout that never ends. Four times the largest vec env measured (docs/results.md: 1,024).
MAX_ENVS = 4096
#: The largest replay buffer a file may ask for: a typo (``buffer_size: 1e12``) should be an error naming the key,
#: not a MemoryError when SB3 allocates it. A hundred times the largest shipped buffer (hyperparams/: 1e6).
MAX_BUFFER_SIZE = 100_000_000
#: The largest ``vf_coef``/``ent_coef``: they weigh a loss term against the policy's (PPO's is of order 1, SAC's in
#: reward units). The zoo's files use at most 0.87 and 0.1; far above 100 the policy term is lost, and 1.0e+308
#: overflows the loss to inf.
MAX_LOSS_COEF = 100
#: The largest learning rate: the zoo's files use at most 0.03 (ARS); Adam moves each weight by about the rate every
#: step, so above 1 one update outweighs the weights themselves (and 1.0e+300 overflows torch's optimizer).
MAX_LEARNING_RATE = 1
#: Ranges of common numeric keys, wherever they appear (zoo keys, algorithm arguments and ``policy_kwargs``).
RANGES = {
    "n_envs": Range(1, MAX_ENVS, integer=True),
    "n_timesteps": Range(0, integer=True),
    "noise_std": Range(0),
    "learning_rate": Range(0, MAX_LEARNING_RATE, low_open=True),
    "gamma": Range(0, 1, low_open=True),
    "gae_lambda": Range(0, 1),
    "clip_range": Range(0, low_open=True),
    "clip_range_vf": Range(0, low_open=True, optional=True),
    "target_kl": Range(0, low_open=True, optional=True),
    "ent_coef": Range(0, MAX_LOSS_COEF),
    "vf_coef": Range(0, MAX_LOSS_COEF),
    "max_grad_norm": Range(0, low_open=True),
    "n_steps": Range(1, integer=True),
    "batch_size": Range(1, integer=True),
    "n_epochs": Range(1, integer=True),
    "buffer_size": Range(1, MAX_BUFFER_SIZE, integer=True),
    "learning_starts": Range(0, integer=True),
    "tau": Range(0, 1, low_open=True),
    "gradient_steps": Range(-1, integer=True),
    "policy_delay": Range(1, integer=True),
    "target_update_interval": Range(1, integer=True),
    "target_policy_noise": Range(0),
    "target_noise_clip": Range(0),
    "sde_sample_freq": Range(-1, integer=True),
    "n_delta": Range(1, integer=True),
    "n_top": Range(1, integer=True, optional=True),
    "n_eval_episodes": Range(1, integer=True),
    "delta_std": Range(0, low_open=True),
    "stats_window_size": Range(1, integer=True),  # episodes averaged in the logs: none would log NaN, < 0 fails in SB3
    "top_quantiles_to_drop_per_net": Range(0, integer=True),  # and < n_quantiles: _check_across_keys
    "n_quantiles": Range(1, integer=True),  # TQC's policy_kwargs
    "n_critics": Range(1, integer=True),  # policy_kwargs of SAC, TD3, TQC, CrossQ
    # TRPO: a shrinking factor of 2 grows the step at each failed line search, no critic update leaves V untrained
    "n_critic_updates": Range(1, integer=True),
    "line_search_shrinking_factor": Range(0, 1, low_open=True, high_open=True),
    "line_search_max_iter": Range(1, integer=True),
    "cg_max_steps": Range(1, integer=True),
    "cg_damping": Range(0),
    "sub_sampling_factor": Range(1, integer=True),
}
#: Ranges of ``env_wrapper``/``vec_env_wrapper``/``callback`` arguments (only names whose meaning is not in doubt).
ENTRY_RANGES = {"n_stack": Range(1, integer=True)}  # VecFrameStack: 0 frames is an observation of size 0
#: Ranges of ``normalize``'s ``VecNormalize`` arguments (its booleans are checked as booleans).
NORMALIZE_RANGES = {
    "clip_obs": Range(0, low_open=True),
    "clip_reward": Range(0, low_open=True),
    "epsilon": Range(0, low_open=True),
    "gamma": Range(0, 1),
}


def trusted_modules(extra: Sequence[str] = ()) -> tuple[str, ...]:
    """:data:`TRUSTED_MODULES` plus the caller's own modules (``--trust-module``), each checked to be a dotted name.

    :param extra: module names such as ``mypkg`` or ``mypkg.callbacks``; their submodules are trusted too
    """
    for name in extra:
        if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(".")):
            raise HyperparamsError(f"trust module: {name!r} is not a dotted module name such as mypkg or mypkg.sub")
    return tuple(dict.fromkeys((*TRUSTED_MODULES, *extra)))  # once each, as error messages list them


def resolve_class(dotted: str, where: str, slot: str | None, trusted: Sequence[str] = TRUSTED_MODULES) -> type:
    """The class at ``dotted``, checked against the key it is the value of before anything is imported.

    :param dotted: ``package.module.Name`` (nested classes allowed)
    :param where: the key's place in the file, for error messages (``policy_kwargs.activation_fn``)
    :param slot: the key it is the value of; must be one of :data:`CLASS_KEYS`
    :param trusted: modules it may come from (:func:`trusted_modules`)
    """
    if slot not in CLASS_KEYS:
        raise HyperparamsError(f"{where}: class name {dotted!r} not allowed here; only {sorted(CLASS_KEYS)} take a class")
    base = CLASS_KEYS[slot]
    parts = dotted.split(".")
    if len(parts) < 2 or not all(part.isidentifier() and not part.startswith("_") for part in parts):
        raise HyperparamsError(f"{where}: {dotted!r} is not a dotted class name such as package.module.Class")
    root = _trusted_root(dotted, trusted)
    if root is None:
        raise HyperparamsError(
            f"{where}: {dotted!r} is not in a trusted package {list(trusted)}; "
            "name your own package on the command line to allow it (sb3-microgrid: --trust-module PKG; sb3-microgrid-zoo: --gym-packages PKG)"
        )
    obj = _import(parts, len(root.split(".")), where)
    if not inspect.isclass(obj):
        raise HyperparamsError(f"{where}: {dotted!r} is not a class ({type(obj).__name__}); {slot} takes a subclass of {base.__name__}")
    if not issubclass(obj, base):
        raise HyperparamsError(f"{where}: {dotted!r} is not a subclass of {base.__name__}")
    if _trusted_root(obj.__module__, trusted) is None and obj.__module__ not in PATCHING_MODULES:  # re-exported from an untrusted package
        raise HyperparamsError(f"{where}: {dotted!r} is defined in {obj.__module__!r}, not in a trusted package {list(trusted)}")
    why = _unusable(obj)
    if why is not None:
        raise HyperparamsError(f"{where}: {dotted!r} cannot be used: {why}; {slot} takes a concrete subclass of {base.__name__}")
    return obj


def _unusable(cls: type) -> str | None:
    """Why ``cls``, of the kind its key expects, still cannot do the key's job (``None`` if it can).

    :param cls: the resolved class
    """
    if inspect.isabstract(cls):
        return f"it is abstract (no {', '.join(sorted(cls.__abstractmethods__))})"
    for base, method in REQUIRED_METHODS.items():
        if issubclass(cls, base) and getattr(cls, method) is getattr(base, method):
            return f"it is abstract (no {method}())"
    if issubclass(cls, th.optim.Optimizer):
        closure = inspect.signature(cls.step).parameters.get("closure")
        if closure is not None and closure.default is inspect.Parameter.empty:
            return "its step() needs a closure, and SB3 calls step() without one"
    return next((why for refused, why in REFUSED_CLASSES.items() if issubclass(cls, refused)), None)


def _trusted_root(dotted: str, trusted: Sequence[str]) -> str | None:
    """The longest trusted module ``dotted`` lies in, if any."""
    roots = [m for m in trusted if dotted == m or dotted.startswith(m + ".")]
    return max(roots, key=len, default=None)


def _import(parts: list[str], min_module_parts: int, where: str) -> Any:
    """Import the longest module prefix of ``parts`` (never shorter than the trusted root), then walk attributes.
    An attribute may not be a module: modules are reached by import only, so a trusted module's own imports
    (``sb3_microgrid.training.shutil``) cannot lead outside the trusted packages."""
    for split in range(len(parts) - 1, min_module_parts - 1, -1):
        module = ".".join(parts[:split])
        try:
            obj = importlib.import_module(module)
        except ImportError as err:
            if isinstance(err, ModuleNotFoundError) and err.name is not None and (module == err.name or module.startswith(err.name + ".")):
                continue  # this prefix is no module: try a shorter one
            raise HyperparamsError(f"{where}: importing {module!r} failed: {err}") from err
        for attr in parts[split:]:
            if not hasattr(obj, attr):
                break
            obj = getattr(obj, attr)
            if inspect.ismodule(obj):
                raise HyperparamsError(f"{where}: {'.'.join(parts)!r} reaches module {obj.__name__!r} through an attribute; name a class by its own module")
        else:
            return obj
        break
    raise HyperparamsError(f"{where}: cannot import {'.'.join(parts)!r}: no such module or attribute")


def parse_python(text: str, key: str = "value", trusted: Sequence[str] = TRUSTED_MODULES) -> Any:
    """Evaluate a zoo-style Python expression string with the safe grammar of this module.

    :param text: the expression, e.g. ``"dict(net_arch=[64, 64], activation_fn=nn.ReLU)"``
    :param key: the YAML key it came from: error messages name it, and it decides whether the whole
        expression may be a class (``replay_buffer_class: HerReplayBuffer``)
    :param trusted: modules classes may come from (:func:`trusted_modules`)
    """
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as err:
        raise HyperparamsError(f"{key}: cannot parse {text!r:.200}: {err.msg}") from None
    except (ValueError, MemoryError, RecursionError) as err:  # null bytes, nesting too deep for the parser
        raise HyperparamsError(f"{key}: cannot parse {text!r:.200}: {type(err).__name__} {err}") from None
    return _node(tree, key, key, _Context(text, tuple(trusted)))


@dataclass(frozen=True)
class _Context:
    text: str
    trusted: tuple[str, ...]


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _node(node: ast.AST, where: str, slot: str | None, ctx: _Context) -> Any:
    """The value of ``node``; ``slot`` is the key it is the value of (decides which class it may be)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, LITERALS):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) and isinstance(node.operand, ast.Constant):
        value = node.operand.value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_node(n, f"{where}[{i}]", None, ctx) for i, n in enumerate(node.elts)]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        keys = [k.value if isinstance(k, ast.Constant) and isinstance(k.value, str) else None for k in node.keys]
        return _mapping(list(zip(keys, node.values)), where, ctx)
    if isinstance(node, ast.Call):
        name = _dotted(node.func)
        if name == "dict" and not node.args:
            return _mapping([(kw.arg, kw.value) for kw in node.keywords], where, ctx)
        if name == "get_class_by_name" and len(node.args) == 1 and not node.keywords:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                return resolve_class(arg.value, where, slot, ctx.trusted)
        raise HyperparamsError(
            f"{where}: call {name or '?'}(...) is not allowed in {ctx.text!r:.200}; allowed: dict(key=value, ...), get_class_by_name('pkg.Cls')"
        )
    dotted = _dotted(node)
    if dotted in NAMES:
        return resolve_class(NAMES[dotted], where, slot, ctx.trusted)
    if dotted is not None and "." in dotted:
        head, _, rest = dotted.partition(".")
        return resolve_class(f"{ALIASES.get(head, head)}.{rest}", where, slot, ctx.trusted)
    raise HyperparamsError(f"{where}: {ast.unparse(node)!r:.200} is not allowed in {ctx.text!r:.200}; use literals, dict(...) and dotted class names")


def _mapping(items: list[tuple[str | None, ast.AST]], where: str, ctx: _Context) -> dict[str, Any]:
    """A dict from ``(key, node)`` pairs; a ``None`` key is ``**unpacking`` or a key that is not a string."""
    out: dict[str, Any] = {}
    for key, node in items:
        if key is None:
            raise HyperparamsError(f"{where}: keys must be strings (no ** unpacking) in {ctx.text!r:.200}")
        if key in out:
            raise HyperparamsError(f"{where}: key {key!r} given twice in {ctx.text!r:.200}")
        out[key] = _node(node, f"{where}.{key}", key, ctx)
    return out


def _kwargs(value: Any, where: str) -> dict[str, Any]:
    """``value`` as keyword arguments: a mapping whose keys are Python names (``None`` for none). Names, not any
    string: the zoo launcher passes ``env_kwargs`` on as ``name:expression`` arguments that the zoo evaluates,
    and a key holding ``:`` would move the rest of itself into the expression."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and k.isidentifier() for k in value):
        raise HyperparamsError(f"{where}: expected a mapping of argument names (Python identifiers) to values, got {value!r:.80}")
    return dict(value)


def _check_call(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any], where: str) -> None:
    """Fail now, naming ``where``, if ``cls(*args, **kwargs)`` would fail on its arguments later."""
    try:
        inspect.signature(cls).bind(*args, **kwargs)
    except TypeError as err:
        raise HyperparamsError(f"{where}: {cls.__name__}(...): {err}") from None


def resolve_entries(value: Any, key: str, trusted: Sequence[str] = TRUSTED_MODULES) -> list[tuple[type, dict[str, Any]]]:
    """A zoo ``callback``/``env_wrapper``/``vec_env_wrapper`` value as ``[(class, kwargs), ...]``."""
    if value is None:
        return []
    out = []
    for entry in value if isinstance(value, list) else [value]:
        if isinstance(entry, dict) and len(entry) == 1:
            ((path, kwargs),) = entry.items()
        elif isinstance(entry, str):
            path, kwargs = entry, None
        else:
            raise HyperparamsError(f"{key}: each entry is a dotted class name or a one-key mapping {{name: kwargs}}, got {entry!r}")
        if not isinstance(path, str):
            raise HyperparamsError(f"{key}: expected a dotted class name, got {path!r}")
        cls = resolve_class(path, key, key, trusted)
        kwargs = _kwargs(kwargs, f"{key}.{path}")
        for name in kwargs.keys() & ENTRY_RANGES.keys():
            kwargs[name] = ENTRY_RANGES[name].check(f"{key}.{path}.{name}", kwargs[name])
        _check_call(cls, () if key == "callback" else (None,), kwargs, f"{key}.{path}")  # wrappers take the env first
        out.append((cls, kwargs))
    return out


@dataclass
class Hyperparams:
    """One env's section of a zoo hyperparameter file, resolved."""

    env_id: str
    n_envs: int = 1
    n_timesteps: int = 0
    policy: Any = "MlpPolicy"
    normalize: dict[str, Any] | None = None  # VecNormalize kwargs, None for no normalisation
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    env_wrappers: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    vec_env_wrappers: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    callbacks: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    noise: tuple[str, float] | None = None  # the zoo's noise_type and noise_std (action noise for TD3/DDPG)
    algo_kwargs: dict[str, Any] = field(default_factory=dict)


def constructor_parameters(cls: type) -> set[str]:
    """Names ``cls(...)`` accepts: a mixin's ``__init__(..., **kwargs)`` passes the rest on, so the
    parameters of the next ``__init__`` along the MRO count too."""
    return set(_constructor_signature(cls))


def _constructor_signature(cls: type) -> dict[str, inspect.Parameter]:
    """The named parameters of :func:`constructor_parameters`, the first found along the MRO for each name."""
    params: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()
        for p in parameters:
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                params.setdefault(p.name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return params


def load_hyperparams(path: str | Path, algo_class: type, env_id: str | None = None, trust_modules: Sequence[str] = ()) -> Hyperparams:
    """Read and check one env's section of a zoo-format YAML file for ``algo_class``.

    :param path: the YAML file
    :param algo_class: the algorithm the file is for (its constructor decides which keys are valid)
    :param env_id: the section to read; by default the file's only one
    :param trust_modules: the user's own modules classes may come from, besides :data:`TRUSTED_MODULES`
    :raises HyperparamsError: for an unknown or refused key, a value of the wrong type or out of range,
        or a class that is untrusted or not what its key expects; the message names the file and the key
    """
    trusted_modules(trust_modules)  # a bad --trust-module before the file
    env_id, section = _read_section(path, env_id)
    return resolve_section(section, algo_class, env_id, trust_modules, source=str(path))


def resolve_section(section: Any, algo_class: type, env_id: str, trust_modules: Sequence[str] = (), source: str = "settings") -> Hyperparams:
    """Check and resolve one env's settings already read from YAML, as :func:`load_hyperparams` does for a file's
    section (the zoo launcher checks a zoo run's saved ``config.yml`` with it).

    :param section: the settings, a mapping of setting names to values (not changed)
    :param algo_class: the algorithm they are for
    :param env_id: the env they are for
    :param trust_modules: the user's own modules classes may come from
    :param source: where they come from, for error messages (a file name)
    :raises HyperparamsError: as :func:`load_hyperparams`, naming ``source``, the env and the key
    """
    trusted = trusted_modules(trust_modules)
    try:
        return _resolve(env_id, _settings(section), algo_class, trusted)
    except HyperparamsError as err:
        raise HyperparamsError(f"{source} [{env_id}]: {err}") from None


def _settings(section: Any) -> dict[str, Any]:
    """A copy of a section's settings (``None``: none), once it is a mapping with string keys."""
    section = {} if section is None else section
    if not isinstance(section, dict) or not all(isinstance(k, str) for k in section):
        raise HyperparamsError(f"expected a mapping of setting names to values, got {section!r:.80}")
    return dict(section)


def _read_section(path: str | Path, env_id: str | None) -> tuple[str, dict[str, Any]]:
    """The env id and settings of one section; a file that is no mapping of sections is an error."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = load_yaml(fh)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError, ValueError) as err:  # ValueError: an int of over 4300 digits
        raise HyperparamsError(f"{path}: cannot read a YAML file: {err}") from None
    if not isinstance(raw, dict) or not raw or not all(isinstance(k, str) for k in raw):
        raise HyperparamsError(f"{path}: expected a mapping from env ids to their settings (Microgrid-v0: {{...}}), got {raw!r:.80}")
    if env_id is None:
        if len(raw) != 1:
            raise HyperparamsError(f"{path}: holds sections {sorted(raw)}; say which env to train")
        env_id = next(iter(raw))
    if env_id not in raw:
        raise HyperparamsError(f"{path}: no section for env {env_id!r}; sections: {sorted(raw)}")
    if ":" in env_id:  # gymnasium.make("module:Env-v0") imports the module first
        raise HyperparamsError(f"{path}: section {env_id!r}: an env id may not name a module (module:Env-v0 imports it); use a registered id")
    if env_id not in registry:
        known = sorted(name for name in registry if name.startswith("Microgrid"))
        raise HyperparamsError(f"{path}: section {env_id!r} is not a registered gymnasium env id; this package registers {known}")
    try:
        return env_id, _settings(raw[env_id])
    except HyperparamsError as err:
        raise HyperparamsError(f"{path} [{env_id}]: {err}") from None


def _resolve(env_id: str, section: dict[str, Any], algo_class: type, trusted: tuple[str, ...]) -> Hyperparams:
    """Check every key and value of a section (refused and unknown keys first, then values) and resolve its classes."""
    for key, why in REFUSED_KEYS.items():
        if key in section:
            raise HyperparamsError(f"{key}: {why}")
    params = _constructor_signature(algo_class)
    allowed = params.keys() - {"self", "policy", "env"} - REFUSED_KEYS.keys()
    unknown = sorted(section.keys() - allowed - set(ZOO_KEYS))
    if unknown:
        raise HyperparamsError(f"unknown key(s) {unknown} for {algo_class.__name__}; allowed: {sorted(allowed | set(ZOO_KEYS))}")
    for key in PYTHON_KEYS:
        if isinstance(section.get(key), str):
            section[key] = parse_python(section[key], key, trusted)
    for key, value in section.items():
        if key in RANGES and not (key in SCHEDULE_KEYS and isinstance(value, str)) and not _auto_ent_coef(key, value, params):
            section[key] = RANGES[key].check(key, value)
        elif key.endswith("_kwargs"):
            section[key] = _kwargs(value, key)
        elif key in params and isinstance(params[key].default, bool) and not isinstance(value, bool):
            raise HyperparamsError(f"{key}: expected true or false, got {value!r}")
        if key not in ZOO_KEYS:
            _check_finite(key, section[key])

    hp = Hyperparams(env_id=env_id)
    hp.n_envs = section.pop("n_envs", 1)
    hp.n_timesteps = section.pop("n_timesteps", 0)
    hp.policy = _policy(section.pop("policy", "MlpPolicy"), algo_class, trusted)
    if "policy_kwargs" in section:
        _check_policy_kwargs(section["policy_kwargs"], _policy_class(hp, algo_class))
    hp.normalize = _normalize(section.pop("normalize", False))
    hp.env_kwargs = section.pop("env_kwargs", {})
    for key, why in REFUSED_ENV_KWARGS.items():
        if key in hp.env_kwargs:
            raise HyperparamsError(f"env_kwargs.{key}: {why}")
    hp.env_wrappers = resolve_entries(section.pop("env_wrapper", None), "env_wrapper", trusted)
    hp.vec_env_wrappers = resolve_entries(section.pop("vec_env_wrapper", None), "vec_env_wrapper", trusted)
    hp.callbacks = resolve_entries(section.pop("callback", None), "callback", trusted)
    if "noise_type" in section or "noise_std" in section:
        kind = section.pop("noise_type", None)
        if kind not in NOISE_TYPES:
            raise HyperparamsError(f"noise_type: {kind!r} unknown; allowed: {list(NOISE_TYPES)}")
        if "action_noise" not in params:
            raise HyperparamsError(f"noise_type: {algo_class.__name__} takes no action noise")
        hp.noise = (kind, float(section.pop("noise_std", 0.1)))
    for key in SCHEDULE_KEYS:
        if isinstance(section.get(key), str):
            section[key] = _linear_schedule(key, section[key])
    for key in ("replay_buffer_class", "rollout_buffer_class"):
        if not isinstance(section.get(key), (type, type(None))):
            raise HyperparamsError(f"{key}: expected a class name, got {section[key]!r}")
    if "train_freq" in section:
        section["train_freq"] = _train_freq(section["train_freq"])
    if section.get("n_top") is not None and "n_delta" in params:  # ARS ranks the best n_top of its n_delta directions
        n_delta = section.get("n_delta", params["n_delta"].default)
        if section["n_top"] > n_delta:
            raise HyperparamsError(f"n_top: {section['n_top']} is out of range; allowed: an integer in [1, n_delta = {n_delta}]")
    hp.algo_kwargs = section
    _check_across_keys(hp, algo_class, params)
    _check_observations(hp, algo_class)
    return hp


def _check_finite(where: str, value: Any) -> None:
    """Every number in an algorithm argument, nested in lists and mappings too, finite (:data:`INFINITE_KEYS` may be inf).

    :param where: the key's place in the file, for error messages (``policy_kwargs.log_std_init``)
    :param value: the argument
    """
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(f"{where}.{key}", item)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite(f"{where}[{i}]", item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and not (value == math.inf and where in INFINITE_KEYS):
        Range().check(where, value)


def _check_across_keys(hp: Hyperparams, algo_class: type, params: dict[str, inspect.Parameter]) -> None:
    """Rules between keys that SB3 checks only when it builds or trains the model (an ``AssertionError``, or NaN).

    :param hp: the section, resolved
    :param algo_class: the algorithm it is for
    :param params: the algorithm's constructor parameters (their defaults stand for keys the file leaves out)
    """
    kwargs = hp.algo_kwargs

    def setting(key: str) -> Any:
        return kwargs.get(key, params[key].default)

    if "normalize_advantage" in params and setting("normalize_advantage"):  # the advantages of one step have no spread
        if setting("n_steps") * hp.n_envs < 2:
            raise HyperparamsError(f"n_steps: {setting('n_steps')} is out of range with n_envs = {hp.n_envs}; allowed: n_steps * n_envs >= 2 (normalize_advantage is true)")
        if issubclass(algo_class, MINIBATCH_ADVANTAGES) and setting("batch_size") < 2:
            raise HyperparamsError(f"batch_size: {setting('batch_size')} is out of range; allowed: an integer in [2, inf) (normalize_advantage is true)")
    normalize_gamma = (hp.normalize or {}).get("gamma")
    if normalize_gamma is not None and "gamma" in kwargs and normalize_gamma != kwargs["gamma"]:
        # VecNormalize takes the algorithm's gamma, as rl_zoo3 does: the file's other value would be replaced silently
        raise HyperparamsError(
            f"normalize.gamma: {normalize_gamma} differs from gamma: {kwargs['gamma']}, which VecNormalize discounts its reward "
            "statistics with (as rl_zoo3 does); allowed: the same value, or leave normalize.gamma out"
        )
    train_freq = kwargs.get("train_freq")
    if isinstance(train_freq, tuple) and train_freq[1] == "episode" and hp.n_envs > 1:  # SB3 counts episodes of one env only
        raise HyperparamsError(f"train_freq: [{train_freq[0]}, episode] needs n_envs = 1, got n_envs = {hp.n_envs}; use [n, step]")
    if "top_quantiles_to_drop_per_net" in params:  # TQC keeps n_quantiles - top_quantiles_to_drop_per_net per critic
        n_quantiles = (kwargs.get("policy_kwargs") or {}).get("n_quantiles", _default(_policy_class(hp, algo_class), "n_quantiles"))
        if n_quantiles is not None and setting("top_quantiles_to_drop_per_net") >= n_quantiles:
            raise HyperparamsError(
                f"top_quantiles_to_drop_per_net: {setting('top_quantiles_to_drop_per_net')} is out of range; "
                f"allowed: an integer in [0, n_quantiles = {n_quantiles})"
            )


def _check_observations(hp: Hyperparams, algo_class: type) -> None:
    """Classes that need another kind of observation than the env's (:data:`OBSERVATION_CLASSES`), refused before
    anything is built: the env's kind is known for this package's envs, unless wrappers may change it.

    :param hp: the section, resolved
    :param algo_class: the algorithm it is for
    """
    observes = ENV_OBSERVATIONS.get(hp.env_id)
    if observes is None or hp.env_wrappers:
        return
    if hp.vec_env_wrappers:  # the first sees the env's observations; what the rest and the model see, it decides
        used = {"vec_env_wrapper": hp.vec_env_wrappers[0][0]}
    else:
        used = _observing_classes(hp, algo_class)
    for where, cls in used.items():
        needs = next((needs for kind, needs in OBSERVATION_CLASSES.items() if isinstance(cls, type) and issubclass(cls, kind)), None)
        if needs is not None and needs != observes:
            raise HyperparamsError(f"{where}: {cls.__name__} needs {needs} observations, but {hp.env_id} observes a {observes}")


def _observing_classes(hp: Hyperparams, algo_class: type) -> dict[str, Any]:
    """The classes of a section that read the env's observations, by the key (or the policy) that names them."""
    policy_class = _policy_class(hp, algo_class)
    where, extractor = "policy_kwargs.features_extractor_class", (hp.algo_kwargs.get("policy_kwargs") or {}).get("features_extractor_class")
    if extractor is None:  # the policy's own (NatureCNN for CnnPolicy, CombinedExtractor for MultiInputPolicy)
        where, extractor = f"policy: {policy_class.__name__}'s features extractor", _default(policy_class, "features_extractor_class")
    return {where: extractor, "replay_buffer_class": hp.algo_kwargs.get("replay_buffer_class"), "rollout_buffer_class": hp.algo_kwargs.get("rollout_buffer_class")}


def _policy_class(hp: Hyperparams, algo_class: type) -> type:
    """The policy class of a resolved section (its alias looked up)."""
    return algo_class.policy_aliases.get(hp.policy, hp.policy)


def _default(cls: type, name: str) -> Any:
    """The default of ``cls``'s constructor argument ``name`` (``None`` if it takes none)."""
    param = _constructor_signature(cls).get(name)
    return None if param is None else param.default


def _auto_ent_coef(key: str, value: Any, params: dict[str, inspect.Parameter]) -> bool:
    """SAC-like ``ent_coef: auto`` or ``auto_<initial value>``, where the algorithm's default is a string."""
    if key != "ent_coef" or not isinstance(value, str) or "ent_coef" not in params or not isinstance(params["ent_coef"].default, str):
        return False
    prefix, _, initial = value.partition("_")
    try:
        valid = prefix == "auto" and (value == "auto" or 0 < float(initial) <= MAX_LOSS_COEF)  # SB3 asserts a positive initial value
    except ValueError:
        valid = False
    if not valid:
        raise HyperparamsError(f"ent_coef: {value!r} is neither {RANGES['ent_coef']} nor auto / auto_<initial value in (0, {MAX_LOSS_COEF}]>")
    return True


def _linear_schedule(key: str, value: str) -> LinearSchedule:
    """The zoo's ``lin_<start>``: linear from ``start`` to 0 over the whole run (SB3's schedule, as the zoo's)."""
    prefix, _, start = value.partition("_")
    try:
        number = float(start) if prefix == "lin" else None
    except ValueError:
        number = None
    if number is None:
        raise HyperparamsError(f"{key}: expected a number or lin_<start>, got {value!r} (YAML reads 3e-4 as a string: write 3.0e-4)")
    return LinearSchedule(RANGES[key].check(key, number), 0.0, 1.0)


def _train_freq(value: Any) -> int | tuple[int, str]:
    """``train_freq``: steps, or ``[n, step|episode]`` (SB3 needs a tuple, YAML gives a list)."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[1] in ("step", "episode"):
        return (Range(1, integer=True).check("train_freq", value[0]), value[1])
    if isinstance(value, (list, tuple)):
        raise HyperparamsError(f"train_freq: expected n or [n, step|episode], got {value!r}")
    return Range(1, integer=True).check("train_freq", value)


def _policy(value: Any, algo_class: type, trusted: Sequence[str]) -> str | type:
    """An alias the algorithm knows (``MlpPolicy``) or a dotted subclass of one of its policies (``ActorCriticPolicy``)."""
    if isinstance(value, str) and "." not in value:
        if value not in algo_class.policy_aliases:
            raise HyperparamsError(
                f"policy: {value!r} is not a policy of {algo_class.__name__}; allowed: {sorted(algo_class.policy_aliases)} "
                "or a dotted BasePolicy subclass"
            )
        return value
    if not isinstance(value, str):
        raise HyperparamsError(f"policy: expected a policy name, got {value!r}")
    cls = resolve_class(value, "policy", "policy", trusted)
    policies = set(algo_class.policy_aliases.values())  # e.g. ActorCriticPolicy and its Cnn and MultiInput subclasses
    if not issubclass(cls, tuple(policies)):
        bases = sorted(p.__name__ for p in policies if not any(p is not q and issubclass(p, q) for q in policies))
        raise HyperparamsError(f"policy: {value!r} is not a policy of {algo_class.__name__}; allowed: its aliases or a subclass of {' or '.join(bases)}")
    return cls


def _check_policy_kwargs(kwargs: dict[str, Any], policy_class: type) -> None:
    """Keys the policy's constructor takes; classes where it takes classes; ranges (:data:`RANGES`); ``net_arch`` layer sizes."""
    allowed = constructor_parameters(policy_class) - {"self", "observation_space", "action_space", "lr_schedule"}
    unknown = sorted(kwargs.keys() - allowed)
    if unknown:
        raise HyperparamsError(f"policy_kwargs: unknown key(s) {unknown} for {policy_class.__name__}; allowed: {sorted(allowed)}")
    for key in kwargs.keys() & CLASS_KEYS.keys():
        if not isinstance(kwargs[key], type):  # a YAML mapping holds no classes: only the string form names one
            raise HyperparamsError(f"policy_kwargs.{key}: expected a class, got {kwargs[key]!r}; write policy_kwargs as a string, \"dict({key}=...)\"")
    for key in kwargs.keys() & RANGES.keys():
        kwargs[key] = RANGES[key].check(f"policy_kwargs.{key}", kwargs[key])
    if "net_arch" in kwargs:
        _check_net_arch(kwargs["net_arch"], policy_class)


def _check_net_arch(arch: Any, policy_class: type) -> None:
    """``net_arch``: a list of layer sizes, or a dict of them with the keys the policy reads (SB3 ignores others)."""
    if issubclass(policy_class, ActorCriticPolicy):
        allowed, required = ON_POLICY_NET_ARCH_KEYS, ()
    elif "dict" in str(_constructor_signature(policy_class)["net_arch"].annotation):  # SAC, TD3, TQC, CrossQ
        allowed = required = OFF_POLICY_NET_ARCH_KEYS
    else:  # DQN, ARS: a list only
        allowed = required = ()
    if isinstance(arch, dict):
        layers = arch.values() if allowed and set(required) <= arch.keys() <= set(allowed) else [None]
    else:
        layers = [arch]
    if not all(isinstance(sizes, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes) for sizes in layers):
        form = f" or dict({', '.join(f'{k}=[...]' for k in allowed)})" if allowed else ""
        need = " (both keys needed)" if required else ""
        raise HyperparamsError(f"policy_kwargs.net_arch: expected a list of layer sizes >= 1{form}{need} for {policy_class.__name__}, got {arch!r}")


def _normalize(value: Any) -> dict[str, Any] | None:
    """``normalize``: true, false or ``VecNormalize`` keyword arguments."""
    if isinstance(value, bool):
        return {} if value else None
    if not isinstance(value, dict):
        raise HyperparamsError(f"normalize: expected true, false or a mapping of VecNormalize arguments, got {value!r}")
    kwargs = _kwargs(value, "normalize")
    _check_call(VecNormalize, (None,), kwargs, "normalize")
    params = _constructor_signature(VecNormalize)
    for key, number in kwargs.items():
        if key in NORMALIZE_RANGES:
            kwargs[key] = NORMALIZE_RANGES[key].check(f"normalize.{key}", number)
        elif isinstance(params[key].default, bool) and not isinstance(number, bool):
            raise HyperparamsError(f"normalize.{key}: expected true or false, got {number!r}")
    return kwargs
