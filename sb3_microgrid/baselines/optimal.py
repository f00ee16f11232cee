"""The perfect-foresight optimum: the dispatch LP over the whole episode on the true series,
replayed through the env step by step."""

from __future__ import annotations

import numpy as np

from ..envs import MicrogridEnv
from .base import PORTS, battery_action, check_ports, port_actions
from .lp import DispatchProblem, DispatchSchedule, solve_dispatch


def episode_sessions(env: MicrogridEnv) -> tuple[np.ndarray, ...]:
    """All EV sessions of the env's current episode: ports, arrival steps, departure steps, energy."""
    ep = env.core.episode
    steps, ports = np.nonzero(ep.arrival_energy[0] > 0)
    return ports, steps, ep.arrival_deadline[0, steps, ports], ep.arrival_energy[0, steps, ports]


def episode_problem(env: MicrogridEnv) -> DispatchProblem:
    """The LP of the env's current episode with perfect foresight (call right after ``reset``)."""
    core, sc = env.core, env.scenario
    ep = core.episode
    ports, start, end, energy = episode_sessions(env)
    capacity = core.capacity[0]
    return DispatchProblem(
        scenario=sc,
        load_kw=ep.load_kw[0],
        renewable_kw=ep.pv_kw[0] + ep.wind_kw[0],
        import_price=ep.import_price[0],
        emission=ep.emission[0],
        demand_rate=ep.demand_rate[0],
        day=np.arange(ep.n_steps) // sc.steps_per_day,
        peak_so_far=np.zeros(sc.horizon_days),
        energy0=float(core.energy[0]),
        e_min=float(ep.soc_min[0] * capacity),
        e_max=float(ep.soc_max[0] * capacity),
        session_port=ports,
        session_start=start,
        session_end=end,
        session_energy=energy,
        session_delivered=np.zeros(ports.size),
        energy_ref=float(core.start_energy[0]),
        shortfall_price=float(ep.shortfall_price[0]),
        surplus_price=float(ep.surplus_price[0]),
    )


class OptimalController:
    """Solves the episode's LP at reset with the true series and sessions, then replays it.

    The schedule assumes the battery keeps the capacity it has at reset for the whole episode; for
    multi-day horizons the env re-evaluates capacity at each midnight, and the replay may then be
    projected slightly by the supervisor.
    """

    name = "optimal"
    ev_dispatch = PORTS

    def __init__(self) -> None:
        self.schedule: DispatchSchedule | None = None

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        check_ports(env, self.name)
        self._env = env
        self.schedule = solve_dispatch(episode_problem(env))

    def act(self, obs: np.ndarray) -> np.ndarray:
        t = self._env.core.t
        return np.r_[battery_action(self.schedule.battery_kw[t], self._env), port_actions(self.schedule.ev_kw[t], self._env)]
