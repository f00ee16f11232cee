"""Controllers engineers already trust, and the perfect-foresight optimum, behind one interface.

``naive`` (today's operation), ``rule`` (self-consumption, time-of-use arbitrage, least-laxity EV
charging, peak shaving), ``mpc`` (receding-horizon LP on the agent's own noisy forecasts), ``optimal``
(the perfect-foresight LP, replayed through the env) and any saved SB3 model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Controller, battery_action, port_actions
from .lp import DispatchProblem, DispatchSchedule, solve_dispatch
from .mpc import MPCController
from .naive import NaiveController
from .optimal import OptimalController
from .rule import RuleController
from .sb3_model import SB3Controller

CONTROLLERS = {"naive": NaiveController, "rule": RuleController, "mpc": MPCController, "optimal": OptimalController}


def make_controller(name: str, **kwargs: Any) -> Controller:
    """A controller by name (``naive``, ``rule``, ``mpc``, ``optimal``) or the path of a saved SB3 model.

    :param name: controller name or ``.zip`` path
    :param kwargs: passed to the controller's constructor
    """
    if name in CONTROLLERS:
        return CONTROLLERS[name](**kwargs)
    if name.endswith(".zip") or Path(name).exists():
        return SB3Controller(name, **kwargs)
    raise ValueError(f"unknown controller {name!r}: use one of {sorted(CONTROLLERS)} or the path of a saved model (.zip)")


__all__ = [
    "CONTROLLERS",
    "Controller",
    "DispatchProblem",
    "DispatchSchedule",
    "MPCController",
    "NaiveController",
    "OptimalController",
    "RuleController",
    "SB3Controller",
    "battery_action",
    "make_controller",
    "port_actions",
    "solve_dispatch",
]
