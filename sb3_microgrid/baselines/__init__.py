"""Controllers engineers already trust, and the perfect-foresight optimum, behind one interface.

``naive`` (today's operation), ``rule`` (self-consumption, time-of-use arbitrage, least-laxity EV
charging, peak shaving), ``mpc`` (receding-horizon LP on the agent's own noisy forecasts), ``planner``
(the same plan by compiled dynamic programming, no LP solver), ``optimal``
(the perfect-foresight LP, replayed through the env), any saved SB3 model and its export (``sb3-microgrid export``),
and a baseline on learnt forecast corrections (``sb3-microgrid fit-forecast``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..algos import ALGOS
from ..export import MANIFEST, read_manifest
from ..hyperparams import HyperparamsError, resolve_entries, trusted_modules
from .base import Controller, battery_action, env_for, port_actions
from .lp import DispatchProblem, DispatchSchedule, solve_dispatch, solve_scenarios
from .mpc import MPCController
from .naive import NaiveController
from .onnx_model import LayoutMismatchError, OnnxController
from .optimal import OptimalController
from .planner import PlannerController
from .rule import RuleController
from .sb3_model import SB3Controller, run_env_wrappers

CONTROLLERS = {
    "naive": NaiveController,
    "rule": RuleController,
    "mpc": MPCController,
    "planner": PlannerController,
    "optimal": OptimalController,
}


def make_controller(name: str | os.PathLike[str], trust_modules: Sequence[str] = (), **kwargs: Any) -> Controller:
    """A controller by name (``naive``, ``rule``, ``mpc``, ``optimal``, ...), the path of a saved SB3
    model, optionally followed by ``:ALGO``, its registered algorithm name (``run/model.zip:twin_ppo``), or
    an export folder (with ``manifest.json``, :class:`OnnxController`), or a forecast-corrector folder (with
    ``forecast_corrector.json``, :class:`~sb3_microgrid.forecasting.CorrectedForecastController`).

    :param name: controller name, ``.zip`` path, ``PATH.zip:ALGO``, export folder or forecast-corrector folder; a
        path may be a string or an ``os.PathLike`` (``pathlib.Path``)
    :param trust_modules: the user's own modules the run's ``env_wrapper`` entries may come from, as when
        it was trained (``--trust-module``)
    :param kwargs: passed to the controller's constructor
    :raises ValueError: for an unknown name, or a keyword the named controller does not accept
    """
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str):
        raise ValueError(f"a controller is given by a name or a path (str or os.PathLike), got {name!r}")
    if name in CONTROLLERS:
        cls = CONTROLLERS[name]
        try:
            inspect.signature(cls).bind(**kwargs)
        except TypeError:  # the constructor's own message names neither the controller nor what it takes
            accepted = sorted(inspect.signature(cls).parameters)
            allowed = f"it accepts {accepted}" if accepted else "it accepts none"
            raise ValueError(f"controller {name!r} got the keywords {sorted(kwargs)}; {allowed}") from None
        return cls(**kwargs)
    from ..forecasting import CORRECTOR_FILE, CorrectedForecastController  # here: forecasting builds its base from this module

    corrector, export = (Path(name) / CORRECTOR_FILE).is_file(), (Path(name) / MANIFEST).is_file()
    if corrector or export:
        given = sorted(key for key, value in kwargs.items() if value is not None)
        if given:
            raise ValueError(f"{name} is a controller folder: its base controller or algorithm and statistics are in its files; do not pass {given}")
        if corrector and export:
            raise ValueError(f"{name} holds both {CORRECTOR_FILE} and {MANIFEST}: one controller per folder")
        if corrector:
            return CorrectedForecastController.load(name)
        return _with_wrappers(OnnxController(name), _manifest_wrappers(name, trust_modules))
    path, algo = model_spec(name)
    if algo is not None:
        if kwargs.get("algo") is not None:
            raise ValueError(f"{name!r} names its algorithm; do not also pass algo={kwargs['algo']!r}")
        kwargs["algo"] = algo
    if path.endswith(".zip") or Path(path).exists():
        return _with_wrappers(SB3Controller(path, **kwargs), run_env_wrappers(path, trust_modules))
    raise ValueError(
        f"unknown controller {name!r}: use one of {sorted(CONTROLLERS)}, the path of a saved model (.zip[:ALGO]), an export folder "
        f"(with {MANIFEST}) or a forecast-corrector folder (with {CORRECTOR_FILE})"
    )


def _manifest_wrappers(path: str, trust_modules: Sequence[str]) -> list[tuple[type, dict[str, Any]]]:
    """The ``env_wrappers`` an export's manifest records, resolved with the same checks as a run's ``env_wrapper``."""
    try:
        return resolve_entries(read_manifest(path)["env_wrappers"], "env_wrapper", trusted_modules(trust_modules))
    except (HyperparamsError, KeyError) as err:
        raise ValueError(f"the env_wrappers of {Path(path) / MANIFEST}: {err}") from None


def _with_wrappers(controller: Controller, wrappers: list[tuple[type, dict[str, Any]]]) -> Controller:
    """The policy as the controller of the env it was trained on: each of its run's ``env_wrapper`` entries
    that knows how (a classmethod ``as_controller(policy, **wrapper_kwargs)``, e.g. ``ResidualWrapper``)
    turns the policy into a controller of the plain env, outermost wrapper first."""
    for cls, wrapper_kwargs in reversed(wrappers):
        as_controller = getattr(cls, "as_controller", None)
        if as_controller is not None:
            controller = as_controller(controller, **wrapper_kwargs)
    return controller


def model_spec(name: str) -> tuple[str, str | None]:
    """``PATH.zip:ALGO`` as ``(PATH.zip, ALGO)`` when ``ALGO`` is a registered algorithm name and no
    file is called ``name`` itself; anything else as ``(name, None)``.

    :raises ValueError: for ``PATH.zip:ALGO`` with an unknown ``ALGO``
    """
    path, sep, algo = name.rpartition(":")
    if not sep or Path(name).exists():
        return name, None
    if algo in ALGOS:
        return path, algo
    if path.endswith(".zip"):
        raise ValueError(f"unknown algorithm {algo!r} in {name!r}; allowed: {sorted(ALGOS)}")
    return name, None


__all__ = [
    "CONTROLLERS",
    "Controller",
    "DispatchProblem",
    "DispatchSchedule",
    "MPCController",
    "LayoutMismatchError",
    "NaiveController",
    "OnnxController",
    "OptimalController",
    "PlannerController",
    "RuleController",
    "SB3Controller",
    "battery_action",
    "env_for",
    "make_controller",
    "model_spec",
    "port_actions",
    "solve_dispatch",
    "solve_scenarios",
]
