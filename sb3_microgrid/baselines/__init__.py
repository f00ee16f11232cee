"""Controllers engineers already trust, and the perfect-foresight optimum, behind one interface.

``naive`` (today's operation), ``rule`` (self-consumption, time-of-use arbitrage, least-laxity EV
charging, peak shaving), ``mpc`` (receding-horizon LP on the agent's own noisy forecasts), ``planner``
(the same plan by compiled dynamic programming, no LP solver), ``optimal``
(the perfect-foresight LP, replayed through the env) and any saved SB3 model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..algos import ALGOS
from .base import Controller, battery_action, port_actions
from .lp import DispatchProblem, DispatchSchedule, solve_dispatch
from .mpc import MPCController
from .naive import NaiveController
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


def make_controller(name: str, trust_modules: Sequence[str] = (), **kwargs: Any) -> Controller:
    """A controller by name (``naive``, ``rule``, ``mpc``, ``optimal``, ...) or the path of a saved SB3
    model, optionally followed by ``:ALGO``, its registered algorithm name (``run/model.zip:twin_ppo``).

    :param name: controller name, ``.zip`` path or ``PATH.zip:ALGO``
    :param trust_modules: the user's own modules the run's ``env_wrapper`` entries may come from, as when
        it was trained (``--trust-module``)
    :param kwargs: passed to the controller's constructor
    """
    if name in CONTROLLERS:
        return CONTROLLERS[name](**kwargs)
    path, algo = model_spec(name)
    if algo is not None:
        if kwargs.get("algo") is not None:
            raise ValueError(f"{name!r} names its algorithm; do not also pass algo={kwargs['algo']!r}")
        kwargs["algo"] = algo
    if path.endswith(".zip") or Path(path).exists():
        return _with_run_wrappers(SB3Controller(path, **kwargs), path, trust_modules)
    raise ValueError(f"unknown controller {name!r}: use one of {sorted(CONTROLLERS)} or the path of a saved model (.zip[:ALGO])")


def _with_run_wrappers(controller: Controller, path: str, trust_modules: Sequence[str]) -> Controller:
    """The model as the controller of the env it was trained on: each ``env_wrapper`` of its run that
    knows how (a classmethod ``as_controller(policy, **wrapper_kwargs)``, e.g. ``ResidualWrapper``)
    turns the policy into a controller of the plain env, outermost wrapper first."""
    for cls, wrapper_kwargs in reversed(run_env_wrappers(path, trust_modules)):
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
    "NaiveController",
    "OptimalController",
    "PlannerController",
    "RuleController",
    "SB3Controller",
    "battery_action",
    "make_controller",
    "model_spec",
    "port_actions",
    "solve_dispatch",
]
