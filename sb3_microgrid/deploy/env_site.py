"""The env playing a site, for tests, benchmarks and replays: it reports measurements as a site would and
takes setpoints back as the equivalent action.

Not part of the site controller's runtime: it needs the simulator. The measurements are the env's own state
(stored energy, health, the day's peak, the cars), the true series of the past steps (history), the env's
forecasts as its observation shows them, and this step's true load, PV and wind (what the env's supervisor
sees).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..baselines.base import battery_action, port_actions
from ..envs import MicrogridEnv
from ..envs.time_features import TIME_FEATURES
from .observation import WINDOW_FIELDS
from .schema import BatteryReading, Decision, EVReading, Measurements, SeriesRow, SiteReading
from .site_state import step_time


class EnvSite:
    """A :class:`~sb3_microgrid.envs.MicrogridEnv` behind the site controller's schema.

    :param env: the env (unwrapped), reset to the episode to play
    """

    def __init__(self, env: MicrogridEnv) -> None:
        self.env = env

    def measurements(self, obs: np.ndarray) -> Measurements:
        """The request of the current step.

        :param obs: the env's current observation (its forecast rows are the site's forecasts)
        """
        env, core = self.env, self.env.core
        sc, ep, lay, site = env.scenario, core.episode, env.obs_layout, core.site
        t, h = core.t, lay.history_steps
        first_day, spd = ep.dates[0].to_pydatetime(), sc.steps_per_day
        capacity = {"pv": sc.pv.capacity_kwp, "wind": sc.wind.rated_kw}
        scale = dict(zip(lay.window_names, site.window_scale))
        unit = {name: capacity.get(name, 1.0) * scale[name] for name in lay.window_names}
        # History: the site's true series at the absolute steps before this one (the episode's price series,
        # which the site arrays do not hold, from the window's normalised truth).
        first = int(site.day_start[ep.start_day[0]]) + t - h
        price = ep.window_mean[0, t : t + h, lay.window_names.index("price")] * scale["price"]
        history = [
            SeriesRow(
                load_kw=float(site.load_kw[first + i]), pv_kw=float(site.pv_kw[first + i]), wind_kw=float(site.wind_kw[first + i]),
                price_inr_per_kwh=float(price[i]), emission_kg_per_kwh=float(site.emission[first + i]),
            )  # fmt: skip
            for i in range(h)
        ]
        rows = lay.windows(obs)[h:].astype(np.float64)
        forecast = [SeriesRow(**{WINDOW_FIELDS[name]: float(row[j] * unit[name]) for j, name in enumerate(lay.window_names)}) for row in rows]
        # The env's sums leave -1e-16 kWh where a car is full; a car reports 0.
        evs = [
            EVReading(
                charger=int(p), energy_wanted_kwh=max(float(core.remaining[0, p]), 0.0), energy_delivered_kwh=max(float(core.delivered[0, p]), 0.0),
                departure=step_time(first_day, int(core.deadline[0, p]), spd),
            )  # fmt: skip
            for p in np.flatnonzero(core.connected[0])
        ]
        tf = min(t, ep.n_steps - 1)
        return Measurements(
            timestamp=step_time(first_day, t, spd),
            horizon_start=first_day.date(),
            holiday=bool(ep.time_features[0, tf, TIME_FEATURES.index("holiday")]),
            battery=BatteryReading(soc=float(core.energy[0] / core.capacity[0]), soh=float(core.soh[0])),
            day_peak_import_kw=float(core.day_peak_kva[0] * sc.grid.power_factor),
            site=SiteReading(load_kw=float(ep.load_kw[0, tf]), pv_kw=float(ep.pv_kw[0, tf]), wind_kw=float(ep.wind_kw[0, tf])),
            evs=evs,
            history=history,
            forecast=forecast,
        )

    def action(self, decision: Decision) -> np.ndarray:
        """The env action that asks for ``decision``'s setpoints; with the aggregate EV interface, whose fleet entry
        cannot name each charger's setpoint, the decision's own action (the env's dispatch and supervisor give the
        same setpoints from the same state)."""
        if self.env.scenario.ev.dispatch == "aggregate":
            return np.asarray(decision.action, dtype=np.float64)
        return np.concatenate([np.atleast_1d(battery_action(decision.battery_kw, self.env)), port_actions(np.asarray(decision.charger_kw), self.env)])

    def play(self, day: str, seed: int, decide: Callable[[Measurements], Decision]) -> tuple[dict[str, float], list[Decision]]:
        """Run the episode from ``day``, reset with ``seed`` as :func:`~sb3_microgrid.evaluation.run_day` resets it,
        with ``decide`` as the site's controller.

        :return: the env's episode metrics and every decision
        """
        obs, _ = self.env.reset(seed=seed, options={"day": day})
        decisions, done = [], False
        while not done:
            decisions.append(decide(self.measurements(obs)))
            obs, _, done, _, info = self.env.step(self.action(decisions[-1]))
        return info["episode_metrics"], decisions
