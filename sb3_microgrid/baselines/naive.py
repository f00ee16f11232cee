"""Today's operation: the battery idles and every EV charges at full power from arrival."""

from __future__ import annotations

import numpy as np

from ..envs import MicrogridEnv
from .base import PORTS, check_ports, port_actions


class NaiveController:
    """Battery idle, every connected EV at full port power until it is full or leaves; the supervisor
    curtails only what the export limit forces."""

    name = "naive"
    ev_dispatch = PORTS

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        check_ports(env, self.name)
        ports = env.scenario.ev.n_ports
        self._action = np.r_[0.0, port_actions(np.full(ports, env.scenario.ev.port_power_kw), env)]

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self._action
