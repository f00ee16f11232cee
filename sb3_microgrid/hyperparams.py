"""Read rl-baselines3-zoo hyperparameter files without ``eval``.

The zoo evaluates strings such as ``policy_kwargs: "dict(net_arch=[64, 64], activation_fn=nn.Tanh)"``
with Python's ``eval``. Here the same strings are parsed into a syntax tree and only a small, safe
grammar is accepted: literals, lists, tuples, dicts, ``dict(key=value, ...)``, dotted names of classes
(``nn.Tanh``, ``th.nn.ReLU``, ``torch.nn.SiLU``, ``sb3_microgrid.policies.ForecastAttentionExtractor``),
the zoo's bare ``HerReplayBuffer`` and ``get_class_by_name('pkg.mod.Cls')``. Classes are resolved by
dotted import. Anything else is an error that names the key and the offending text.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: Module aliases the zoo's files use inside ``policy_kwargs`` strings.
ALIASES = {"nn": "torch.nn", "th": "torch", "torch": "torch"}
#: Bare class names the zoo's ``eval`` namespace provides (``replay_buffer_class: HerReplayBuffer``).
NAMES = {"HerReplayBuffer": "stable_baselines3.HerReplayBuffer"}
#: Keys the zoo handles itself; everything else goes to the algorithm's constructor.
ZOO_KEYS = (
    "n_envs", "n_timesteps", "policy", "normalize", "env_kwargs", "env_wrapper", "vec_env_wrapper", "callback",
    "frame_stack", "monitor_kwargs", "noise_type", "noise_std",
)  # fmt: skip
NOISE_TYPES = ("normal", "ornstein-uhlenbeck")
#: Keys whose string values the zoo evaluates.
PYTHON_KEYS = ("policy_kwargs", "replay_buffer_class", "replay_buffer_kwargs", "monitor_kwargs", "normalize")


class HyperparamsError(ValueError):
    """A key, value or class in a hyperparameter file that cannot be used."""


def import_object(dotted: str) -> Any:
    """The object at a dotted path, ``package.module.Name`` (nested attributes allowed)."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
            return obj
        except AttributeError:
            break
    raise HyperparamsError(f"cannot import {dotted!r}: no such module or attribute")


def parse_python(text: str, key: str = "value") -> Any:
    """Evaluate a zoo-style Python expression string with the safe grammar of this module.

    :param text: the expression, e.g. ``"dict(net_arch=[64, 64], activation_fn=nn.ReLU)"``
    :param key: the YAML key it came from, for error messages
    """
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as err:
        raise HyperparamsError(f"{key}: cannot parse {text!r}: {err.msg}") from None
    return _node(tree, key, text)


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _node(node: ast.AST, key: str, text: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) and isinstance(node.operand, ast.Constant):
        value = node.operand.value
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_node(n, key, text) for n in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        return {_node(k, key, text): _node(v, key, text) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call):
        name = _dotted(node.func)
        if name == "dict" and not node.args:
            return {kw.arg: _node(kw.value, key, text) for kw in node.keywords}
        if name == "get_class_by_name" and len(node.args) == 1 and not node.keywords and isinstance(node.args[0], ast.Constant):
            return import_object(str(node.args[0].value))
        raise HyperparamsError(f"{key}: call {name or '?'}(...) is not allowed in {text!r}; allowed: dict(...), get_class_by_name('pkg.Cls')")
    dotted = _dotted(node)
    if dotted in NAMES:
        return import_object(NAMES[dotted])
    if dotted is not None and "." in dotted:
        head, _, rest = dotted.partition(".")
        return import_object(f"{ALIASES.get(head, head)}.{rest}")
    raise HyperparamsError(f"{key}: {ast.unparse(node)!r} is not allowed in {text!r}; use literals, dict(...) and dotted class names")


def _entries(value: Any, key: str) -> list[tuple[Any, dict[str, Any]]]:
    """A zoo ``callback``/``env_wrapper`` value as ``[(class, kwargs), ...]`` (dotted paths imported)."""
    if value is None:
        return []
    out = []
    for entry in value if isinstance(value, list) else [value]:
        if isinstance(entry, dict):
            if len(entry) != 1:
                raise HyperparamsError(f"{key}: each entry is a dotted path or a one-key mapping {{path: kwargs}}, got {entry}")
            (path, kwargs), = entry.items()
        else:
            path, kwargs = entry, {}
        if not isinstance(path, str):
            raise HyperparamsError(f"{key}: expected a dotted class path, got {path!r}")
        out.append((import_object(path), dict(kwargs or {})))
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
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return names


def load_hyperparams(path: str | Path, algo_class: type, env_id: str | None = None) -> Hyperparams:
    """Read and check one env's section of a zoo-format YAML file for ``algo_class``.

    :param path: the YAML file
    :param algo_class: the algorithm the file is for (its constructor decides which keys are valid)
    :param env_id: the section to read; by default the file's only one
    :raises HyperparamsError: for an unknown key, algorithm argument, class or value, naming it
    """
    from stable_baselines3.common.utils import LinearSchedule

    raw = yaml.safe_load(Path(path).read_text()) or {}
    if env_id is None:
        if len(raw) != 1:
            raise HyperparamsError(f"{path}: holds sections {sorted(raw)}; say which env to train")
        env_id = next(iter(raw))
    if env_id not in raw:
        raise HyperparamsError(f"{path}: no section for env {env_id!r}; sections: {sorted(raw)}")
    section = dict(raw[env_id] or {})
    if "frame_stack" in section:
        raise HyperparamsError(f"{path}: frame_stack is not supported (the observation window already holds the history)")
    for key in PYTHON_KEYS:
        if isinstance(section.get(key), str):
            section[key] = parse_python(section[key], key)
    hp = Hyperparams(env_id=env_id)
    hp.n_envs = int(section.pop("n_envs", 1))
    hp.n_timesteps = int(float(section.pop("n_timesteps", 0)))
    hp.policy = section.pop("policy", "MlpPolicy")
    if isinstance(hp.policy, str) and "." in hp.policy:
        hp.policy = import_object(hp.policy)
    normalize = section.pop("normalize", False)
    hp.normalize = normalize if isinstance(normalize, dict) else ({} if normalize else None)
    hp.env_kwargs = dict(section.pop("env_kwargs", None) or {})
    hp.env_wrappers = _entries(section.pop("env_wrapper", None), "env_wrapper")
    hp.vec_env_wrappers = _entries(section.pop("vec_env_wrapper", None), "vec_env_wrapper")
    hp.callbacks = _entries(section.pop("callback", None), "callback")
    section.pop("monitor_kwargs", None)
    if "noise_type" in section:
        kind = section.pop("noise_type")
        if kind not in NOISE_TYPES:
            raise HyperparamsError(f"{path}: noise_type {kind!r} unknown; allowed: {list(NOISE_TYPES)}")
        hp.noise = (kind, float(section.pop("noise_std", 0.1)))
    for key in ("learning_rate", "clip_range", "clip_range_vf"):
        value = section.get(key)
        if isinstance(value, str) and value.startswith("lin_"):
            section[key] = LinearSchedule(float(value[len("lin_") :]), 0.0, 1.0)  # the zoo's lin_: to 0 over the run
    if isinstance(section.get("replay_buffer_class"), str):
        section["replay_buffer_class"] = import_object(section["replay_buffer_class"])
    allowed = constructor_parameters(algo_class) - {"self", "policy", "env"}
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise HyperparamsError(f"{path}: unknown key(s) {unknown} for {algo_class.__name__}; allowed: {sorted(allowed | set(ZOO_KEYS))}")
    hp.algo_kwargs = section
    return hp
