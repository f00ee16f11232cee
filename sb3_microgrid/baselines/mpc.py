"""Model predictive control: the dispatch LP re-solved every step over the forecast window the agent
observes, applying only the first step."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..envs import MicrogridEnv
from .base import PORTS, battery_action, check_ports, port_actions
from .lp import DispatchProblem, DispatchSchedule, solve_dispatch, solve_scenarios


class MPCController:
    """Receding-horizon LP on the observation's own forecasts (the same noisy window the agent sees).

    Per step it plans over ``min(forecast_steps, steps left in the episode)`` steps with the
    forecast PV, wind, load, import price and emission factor, the present SoC, the EVs now connected
    (energy still wanted, deadline; future arrivals are unknown to it, as to the agent) and the peak
    the day has already paid for. When the episode ends inside the window it applies the
    end-of-horizon rule with the dearest import price seen or forecast so far.
    """

    name = "mpc"
    ev_dispatch = PORTS

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        check_ports(env, self.name)
        self._env = env
        self._price_max = 0.0

    def window(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """The whole window (history rows first, then forecasts from the current step), in physical units."""
        env, layout = self._env, self._env.obs_layout
        window = layout.windows(obs).astype(np.float64)
        scale = env.core.site.window_scale
        col = {name: window[:, j] * scale[j] for j, name in enumerate(layout.window_names)}
        col["pv"] = col["pv"] * env.scenario.pv.capacity_kwp
        col["wind"] = col["wind"] * env.scenario.wind.rated_kw
        return col

    def act(self, obs: np.ndarray) -> np.ndarray:
        plan = solve_dispatch(self.problem(obs))
        return self.action(plan)

    def act_scenarios(self, obs: np.ndarray, scenarios: np.ndarray) -> np.ndarray:
        """The first step of one plan for several forecasts (:func:`~.lp.solve_scenarios`).

        :param obs: the observation of this step (its forecasts set the dearest price seen so far)
        :param scenarios: (K, obs size) the same observation with other forecast rows, one per scenario
        :return: the env action
        """
        base = self.problem(obs)
        horizon = base.load_kw.size
        return self.action(solve_scenarios([replace(base, **self.forecasts(self.window(s), horizon)) for s in scenarios]))

    def forecasts(self, window: dict[str, np.ndarray], horizon: int) -> dict[str, np.ndarray]:
        """The forecast series of an observation's window as :class:`~.lp.DispatchProblem` fields.

        :param window: the window in physical units (:meth:`window`)
        :param horizon: steps to plan over, from the current one
        """
        rows = slice(self._env.obs_layout.history_steps, self._env.obs_layout.history_steps + horizon)
        return {
            "load_kw": window["load"][rows], "renewable_kw": window["pv"][rows] + window["wind"][rows],
            "import_price": window["price"][rows], "emission": window["emission"][rows],
        }  # fmt: skip

    def action(self, plan: DispatchSchedule) -> np.ndarray:
        """The env action of a plan's first step.

        :param plan: the LP's plan from the current step
        """
        return np.r_[battery_action(plan.battery_kw[0], self._env), port_actions(plan.ev_kw[0], self._env)]

    def problem(self, obs: np.ndarray) -> DispatchProblem:
        """The LP of this step on an observation's forecasts, with the dearest price seen so far (which it updates).

        :param obs: the observation of this step
        """
        env = self._env
        core, sc = env.core, env.scenario
        ep, t = core.episode, core.t
        window = self.window(obs)
        h = env.obs_layout.history_steps
        horizon = min(window["load"].size - h, ep.n_steps - t)
        # with the carbon price, as the env's end-of-horizon price has it
        dear = window["price"] + sc.reward.carbon_price_inr_per_kg * window["emission"]
        self._price_max = max(self._price_max, float(dear[h : h + horizon].max()), float(dear[:h].max(initial=0.0)))
        spd = sc.steps_per_day
        day = (t + np.arange(horizon)) // spd - t // spd
        peak_so_far = np.zeros(int(day.max()) + 1)
        peak_so_far[0] = core.day_peak_kva[0]
        connected = np.flatnonzero(core.connected[0] > 0)
        capacity = core.capacity[0]
        return DispatchProblem(
            scenario=sc,
            **self.forecasts(window, horizon),
            # the demand tariff is published, not forecast
            demand_rate=ep.demand_rate[0, t : t + horizon],
            day=day,
            peak_so_far=peak_so_far,
            energy0=float(core.energy[0]),
            e_min=float(ep.soc_min[0] * capacity),
            e_max=float(ep.soc_max[0] * capacity),
            session_port=connected,
            session_start=np.zeros(connected.size, dtype=np.int64),
            session_end=core.deadline[0, connected] - t,
            session_energy=np.maximum(core.remaining[0, connected], 0.0),
            session_delivered=np.maximum(core.delivered[0, connected], 0.0),
            energy_ref=float(core.start_energy[0]),
            shortfall_price=(self._price_max + sc.battery.wear_cost_inr_per_kwh) / sc.battery.charge_efficiency,
            surplus_price=float(ep.surplus_price[0]),
        )
