"""The controller interface every baseline and wrapped SB3 model implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..envs import MicrogridEnv


@runtime_checkable
class Controller(Protocol):
    """Decides one action per step of a :class:`~sb3_microgrid.envs.MicrogridEnv`.

    ``reset`` is called after every ``env.reset`` with the unwrapped env (controllers may read its
    scenario and the state the agent also observes); ``act`` gets each observation and returns an
    action in the env's action space.

    A controller may also say which EV interface (``ev.dispatch``) its actions are for in an attribute
    ``ev_dispatch``: the baselines act per port (``"ports"``) and are run on the ports twin of an aggregate
    env (:func:`env_for`), which has the same days, noise and physics. Without it, a controller acts in the
    env it is given.
    """

    name: str

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None: ...

    def act(self, obs: np.ndarray) -> np.ndarray: ...


#: The EV interface of the baselines' actions.
PORTS = "ports"


def env_for(controller: Controller, env: MicrogridEnv) -> MicrogridEnv:
    """The env ``controller`` acts in: ``env``, or its twin with the controller's ``ev_dispatch``
    (:meth:`~sb3_microgrid.envs.MicrogridEnv.with_dispatch`)."""
    dispatch = getattr(controller, "ev_dispatch", None)
    return env if dispatch is None else env.with_dispatch(dispatch)


def check_ports(env: MicrogridEnv, name: str) -> None:
    """Refuse an env whose action is not one entry per port, naming what to do instead.

    :raises ValueError: for ``ev.dispatch: aggregate``
    """
    if env.scenario.ev.dispatch != PORTS:
        raise ValueError(
            f"controller {name!r} acts per EV port; this env has ev.dispatch = {env.scenario.ev.dispatch!r}: run it on "
            "env.with_dispatch('ports'), the same days and noise (evaluate and run_day do)"
        )


def battery_action(power_kw: np.ndarray | float, env: MicrogridEnv) -> np.ndarray:
    """The action entry that asks for ``power_kw`` of battery power (+ charging, AC side)."""
    b = env.scenario.battery
    power = np.asarray(power_kw, dtype=np.float64)
    return np.where(power >= 0, power / max(b.charge_power_kw, 1e-12), power / max(b.discharge_power_kw, 1e-12))


def port_actions(power_kw: np.ndarray, env: MicrogridEnv) -> np.ndarray:
    """The action entries that ask for ``power_kw`` at each port (+ charging the car)."""
    ev = env.scenario.ev
    power = np.asarray(power_kw, dtype=np.float64) / ev.port_power_kw
    return power if ev.v2g else 2.0 * power - 1.0
