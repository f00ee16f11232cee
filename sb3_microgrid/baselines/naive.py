"""Today's operation: the battery idles and every EV charges at full power from arrival."""

from __future__ import annotations

import numpy as np

from ..envs import MicrogridEnv
from ..scenario import Scenario
from .base import PORTS, check_ports


def naive_action(scenario: Scenario) -> np.ndarray:
    """Naive's constant action under the per-port EV interface: the battery idle, every port at its full power
    (+1 in both port encodings, with or without V2G).

    :param scenario: the site (its ``ev.n_ports``)
    """
    return np.r_[0.0, np.ones(scenario.ev.n_ports)]


class NaiveController:
    """Battery idle, every connected EV at full port power until it is full or leaves; the supervisor
    curtails only what the export limit forces."""

    name = "naive"
    ev_dispatch = PORTS

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        check_ports(env, self.name)
        self._action = naive_action(env.scenario)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self._action
