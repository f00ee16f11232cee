"""The physics of N microgrids stepped together with numpy: the one core behind every env face.

All N episodes have the same length and are reset together, so the step counter is shared.
Order within a step: safety supervisor -> battery -> EVs -> grid -> costs and emissions -> aging ->
departures; then at a day boundary the battery's health is re-evaluated and the day's demand peak
restarts; then arrivals of the next step and the observation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..data import MicrogridData
from ..scenario import Difficulty, Scenario
from .degradation import HalfCycleCounter, capacity_loss, soc_stress, stress_for_soh
from .episode import Episode, build_episode, lead_factor, noise_shape
from .layout import ObservationLayout
from .site import TIME_FEATURES, WINDOW_SERIES, SiteArrays, build_site, episode_starts
from .supervisor import project

COST_COMPONENTS = ("energy", "demand", "degradation", "ev", "carbon", "unserved", "terminal")
#: Keys of the per-step info (besides the ``cost_<component>`` ones), all floats.
STEP_KEYS = (
    "cost",
    *(f"cost_{c}" for c in COST_COMPONENTS),
    "emissions_kg",
    "grid_import_kwh",
    "grid_export_kwh",
    "safety_interventions",
    "safety_violations",
    "load_kwh",
    "renewable_kwh",
    "battery_kwh",
    "ev_kwh",
    "curtailed_kwh",
    "unserved_kwh",
    "unmet_ev_kwh",
    "soc",
)
#: Episode totals reported in ``info["episode_metrics"]`` at the end of an episode.
EPISODE_KEYS = (
    "total_cost",
    "emissions_kg",
    "safety_violations",
    "safety_interventions",
    "battery_degradation",
    "unmet_ev_kwh",
    "curtailed_kwh",
    "unserved_kwh",
    "grid_import_kwh",
    "grid_export_kwh",
)
_SUMMED = {
    "total_cost": "cost",
    "emissions_kg": "emissions_kg",
    "safety_violations": "safety_violations",
    "safety_interventions": "safety_interventions",
    "unmet_ev_kwh": "unmet_ev_kwh",
    "curtailed_kwh": "curtailed_kwh",
    "unserved_kwh": "unserved_kwh",
    "grid_import_kwh": "grid_import_kwh",
    "grid_export_kwh": "grid_export_kwh",
}
#: Tolerance of the violation check (kW or kWh): float rounding, not slack.
VIOLATION_TOLERANCE = 1e-6
#: Hours by which the EV features are divided to keep them near [0, 1].
EV_HOURS_SCALE = 24.0


def observation_layout(scenario: Scenario) -> ObservationLayout:
    """The observation layout of a scenario."""
    ports = range(scenario.ev.n_ports)
    static = (
        *TIME_FEATURES,
        "time_left",
        "soc",
        "soh",
        "day_peak",
        *(f"ev{p}_connected" for p in ports),
        *(f"ev{p}_need_h" for p in ports),
        *(f"ev{p}_left_h" for p in ports),
    )
    f = scenario.forecast
    return ObservationLayout(static_names=static, window_names=WINDOW_SERIES, history_steps=f.history_steps, forecast_steps=f.forecast_steps)


class MicrogridCore:
    """State and vectorized step of N microgrids.

    :param scenario: the scenario
    :param n_envs: number of microgrids N
    :param split: ``"train"``, ``"validation"``, ``"test"`` or ``"all"``: the days episodes start on
    :param data: data to use instead of the scenario's own source
    """

    def __init__(self, scenario: Scenario, n_envs: int, split: str = "train", data: MicrogridData | None = None) -> None:
        self.scenario = scenario
        self.n = n_envs
        self.split = split
        self.site: SiteArrays = build_site(scenario, data)
        self.starts = episode_starts(self.site, split, scenario.horizon_days)
        self.layout = observation_layout(scenario)
        self.difficulty: list[Difficulty] = [scenario.difficulty] * n_envs
        self._pending: list[Difficulty | None] = [None] * n_envs
        self._lead = lead_factor(scenario)[None, :, None]
        self._window_rows = self.layout.window_shape[0]
        bat = scenario.battery
        self._stress0 = stress_for_soh(bat.initial_soh, bat.degradation)
        n, p = n_envs, scenario.ev.n_ports
        self.energy = np.zeros(n)
        self.capacity = np.full(n, bat.capacity_kwh * bat.initial_soh)
        self.soh = np.full(n, bat.initial_soh)
        self.stress = np.full(n, self._stress0)
        self.cycles = HalfCycleCounter(n, bat.degradation)
        self.calendar_acc = np.zeros(n)
        self.peak_kva = np.zeros(n)
        self.connected = np.zeros((n, p), dtype=bool)
        self.remaining = np.zeros((n, p))
        self.delivered = np.zeros((n, p))
        self.deadline = np.zeros((n, p), dtype=np.int64)
        self.ev_zero = np.zeros((n, p))
        self.t = 0
        self.episode: Episode | None = None
        self.totals = {k: np.zeros(n) for k in _SUMMED}

    # ---- difficulty ---------------------------------------------------------------------------
    def set_difficulty(self, index: int, **params: float | int | None) -> Difficulty:
        """Validate new difficulty parameters of microgrid ``index``; they apply at its next reset."""
        unknown = sorted(set(params) - set(Difficulty.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown difficulty parameter(s) {unknown}; allowed: {sorted(Difficulty.__dataclass_fields__)}")
        base = self._pending[index] or self.difficulty[index]
        merged = Difficulty(**{**{k: getattr(base, k) for k in Difficulty.__dataclass_fields__}, **params})
        lo = merged.soc_min if merged.soc_min is not None else self.scenario.battery.soc_min
        hi = merged.soc_max if merged.soc_max is not None else self.scenario.battery.soc_max
        if lo >= hi:
            raise ValueError(f"Difficulty soc_min ({lo}) must be < soc_max ({hi})")
        self._pending[index] = merged
        return merged

    # ---- reset --------------------------------------------------------------------------------
    def day_index(self, day: str | pd.Timestamp) -> int:
        """Index of a date among the episode start days of this core's split."""
        stamp = pd.Timestamp(day).normalize()
        hits = np.flatnonzero(self.site.dates[self.starts] == stamp)
        if hits.size == 0:
            first, last = self.site.dates[self.starts[[0, -1]]]
            raise ValueError(f"day {stamp.date()} is not a start day of split {self.split!r} ({first.date()} .. {last.date()})")
        return int(self.starts[hits[0]])

    def reset(self, rngs: Sequence[np.random.Generator], days: Sequence[str | pd.Timestamp | None] | None = None) -> np.ndarray:
        """Start new episodes for all N microgrids; return the first observations (N, obs_dim).

        :param rngs: one generator per microgrid (the day draw and the forecast noise)
        :param days: optional start date per microgrid (``None`` entries draw at random)
        """
        shape = noise_shape(self.scenario)
        start = np.empty(self.n, dtype=np.int64)
        noise = np.empty((self.n, *shape))
        for i, rng in enumerate(rngs):
            day = None if days is None else days[i]
            start[i] = self.starts[rng.integers(self.starts.size)] if day is None else self.day_index(day)
            noise[i] = rng.standard_normal(shape)
            if self._pending[i] is not None:
                self.difficulty[i], self._pending[i] = self._pending[i], None
        ep = build_episode(self.site, self.scenario, start, self.difficulty, noise)
        self.episode = ep
        bat = self.scenario.battery
        self.soh[:] = bat.initial_soh
        self.stress[:] = self._stress0
        self.capacity[:] = bat.capacity_kwh * bat.initial_soh
        soc = np.clip(bat.initial_soc, ep.soc_min, ep.soc_max)
        self.energy = soc * self.capacity
        self.start_energy = self.energy.copy()
        self.cycles.reset(soc)
        self.calendar_acc[:] = 0.0
        self.peak_kva[:] = 0.0
        self.connected[:] = False
        self.remaining[:] = 0.0
        self.delivered[:] = 0.0
        self.deadline[:] = 0
        for v in self.totals.values():
            v[:] = 0.0
        self.t = 0
        self._arrive(0)
        return self.observe()

    def _arrive(self, t: int) -> None:
        energy = self.episode.arrival_energy[:, t]
        arriving = energy > 0
        if arriving.any():
            self.connected |= arriving
            self.remaining = np.where(arriving, energy, self.remaining)
            self.delivered = np.where(arriving, 0.0, self.delivered)
            self.deadline = np.where(arriving, self.episode.arrival_deadline[:, t], self.deadline)

    # ---- observation -------------------------------------------------------------------------
    def observe(self) -> np.ndarray:
        ep, t, sc = self.episode, self.t, self.scenario
        p = sc.ev.n_ports
        obs = np.empty((self.n, self.layout.size), dtype=np.float32)
        nt = len(TIME_FEATURES)
        obs[:, :nt] = ep.time_features[:, min(t, ep.n_steps - 1)]
        obs[:, nt] = 1.0 - t / ep.n_steps
        obs[:, nt + 1] = self.energy / self.capacity
        obs[:, nt + 2] = self.soh
        obs[:, nt + 3] = self.peak_kva * (sc.grid.power_factor / sc.grid.import_limit_kw)
        k = nt + 4
        obs[:, k : k + p] = self.connected
        obs[:, k + p : k + 2 * p] = self.remaining * (1.0 / (sc.ev.port_power_kw * sc.ev.charger_efficiency * EV_HOURS_SCALE))
        hours_left = (self.deadline - t) * (sc.step_hours / EV_HOURS_SCALE)
        obs[:, k + 2 * p : k + 3 * p] = np.where(self.connected, hours_left, 0.0)
        rows = slice(t, t + self._window_rows)
        window = ep.window_mean[:, rows] + ep.window_error[:, rows] * self._lead
        obs[:, self.layout.window] = np.maximum(window, 0.0).reshape(self.n, -1)
        return obs

    # ---- step --------------------------------------------------------------------------------
    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, dict[str, np.ndarray]]:
        """Advance all N microgrids by one step.

        :param action: (N, 1 + P) actions in [-1, 1] (anything else is projected by the supervisor)
        :return: observations (N, obs_dim), rewards (N,), whether the episodes ended, and per-step
            info arrays keyed by :data:`STEP_KEYS`
        """
        sc, ep, t = self.scenario, self.episode, self.t
        bat, ev, grid, rw = sc.battery, sc.ev, sc.grid, sc.reward
        dt = sc.step_hours
        action = np.asarray(action, dtype=np.float64).reshape(self.n, 1 + ev.n_ports)

        # Feasible battery range after self-discharge, within the SoC bounds.
        kept = self.energy * (1.0 - bat.self_discharge_per_hour * dt)
        deficit = ep.soc_min * self.capacity - kept
        bat_lo = np.maximum(
            -bat.discharge_power_kw, np.where(deficit > 0, deficit / (bat.charge_efficiency * dt), deficit * bat.discharge_efficiency / dt)
        )
        bat_hi = np.maximum(np.minimum(bat.charge_power_kw, (ep.soc_max * self.capacity - kept) / (bat.charge_efficiency * dt)), bat_lo)
        ev_hi = np.where(self.connected, np.minimum(ev.port_power_kw, self.remaining / (ev.charger_efficiency * dt)), 0.0)
        ev_lo = (
            np.where(self.connected, -np.minimum(ev.port_power_kw, self.delivered * ev.charger_efficiency / dt), 0.0) if ev.v2g else self.ev_zero
        )
        load, renewable = ep.load_kw[:, t], ep.pv_kw[:, t] + ep.wind_kw[:, t]
        pr = project(
            action,
            battery_lo=bat_lo,
            battery_hi=bat_hi,
            charge_kw=bat.charge_power_kw,
            discharge_kw=bat.discharge_power_kw,
            ev_lo=ev_lo,
            ev_hi=ev_hi,
            connected=self.connected,
            port_kw=ev.port_power_kw,
            v2g=ev.v2g,
            load_kw=load,
            renewable_kw=renewable,
            import_limit_kw=grid.import_limit_kw,
            export_limit_kw=grid.export_limit_kw,
        )
        p_bat, p_ev = pr.battery_kw, pr.ev_kw

        # Physics.
        charge, discharge = np.maximum(p_bat, 0.0), np.maximum(-p_bat, 0.0)
        self.energy = kept + (bat.charge_efficiency * charge - discharge / bat.discharge_efficiency) * dt
        ev_stored = np.where(p_ev >= 0, p_ev * ev.charger_efficiency, p_ev / ev.charger_efficiency) * dt
        self.remaining = self.remaining - ev_stored
        self.delivered = self.delivered + ev_stored
        ev_kw = p_ev.sum(axis=1)
        net = load - pr.unserved_kw - (renewable - pr.curtailed_kw) + p_bat + ev_kw
        import_kw, export_kw = np.maximum(net, 0.0), np.maximum(-net, 0.0)

        tol = VIOLATION_TOLERANCE
        violations = (
            (self.energy < ep.soc_min * self.capacity - tol).astype(float)
            + (self.energy > ep.soc_max * self.capacity + tol)
            + (p_bat > bat.charge_power_kw + tol)
            + (p_bat < -bat.discharge_power_kw - tol)
            + (np.abs(p_ev) > ev.port_power_kw + tol).any(axis=1)
            + ((p_ev != 0) & ~self.connected).any(axis=1)
            + (self.remaining < -tol).any(axis=1)
            + (import_kw > grid.import_limit_kw + tol)
            + (export_kw > grid.export_limit_kw + tol)
        )

        # Costs (Rs) and emissions.
        import_kwh, export_kwh = import_kw * dt, export_kw * dt
        emissions = import_kwh * ep.emission[:, t]
        kva = import_kw / grid.power_factor
        demand = np.maximum(kva - self.peak_kva, 0.0) * ep.demand_rate[:, t]
        self.peak_kva = np.maximum(self.peak_kva, kva)
        leaving = self.connected & (self.deadline == t + 1)
        unmet = np.where(leaving, np.maximum(self.remaining, 0.0), 0.0).sum(axis=1)
        costs = {
            "energy": import_kwh * ep.import_price[:, t] - export_kwh * grid.export_price_inr_per_kwh,
            "demand": demand,
            "degradation": (charge + discharge) * (dt * bat.wear_cost_inr_per_kwh),
            "ev": unmet * ev.unmet_penalty_inr_per_kwh,
            "carbon": emissions * rw.carbon_price_inr_per_kg,
            "unserved": pr.unserved_kw * (dt * rw.unserved_penalty_inr_per_kwh),
            "terminal": np.zeros(self.n),
        }
        if leaving.any():
            self.connected = self.connected & ~leaving
            self.remaining = np.where(leaving, 0.0, self.remaining)

        # Aging: closed half cycles now, calendar aging summed and applied at the day boundary.
        soc = self.energy / self.capacity
        self.stress = self.stress + self.cycles.update(soc)
        self.calendar_acc = self.calendar_acc + soc_stress(soc, bat.degradation)
        self.t = t = t + 1
        if t % sc.steps_per_day == 0:
            self._end_of_day(soc)
        done = t == ep.n_steps
        if done:
            gain = self.energy - self.start_energy
            costs["terminal"] = np.maximum(-gain, 0.0) * ep.shortfall_price - np.maximum(gain, 0.0) * ep.surplus_price
        else:
            self._arrive(t)

        total = sum(costs.values())
        weighted = sum(getattr(rw, f"weight_{k}") * v for k, v in costs.items())
        reward = -weighted / rw.scale_inr
        info = {
            "cost": total,
            **{f"cost_{k}": v for k, v in costs.items()},
            "emissions_kg": emissions,
            "grid_import_kwh": import_kwh,
            "grid_export_kwh": export_kwh,
            "safety_interventions": pr.intervened.astype(float),
            "safety_violations": violations,
            "load_kwh": load * dt,
            "renewable_kwh": (renewable - pr.curtailed_kw) * dt,
            "battery_kwh": p_bat * dt,
            "ev_kwh": ev_kw * dt,
            "curtailed_kwh": pr.curtailed_kw * dt,
            "unserved_kwh": pr.unserved_kw * dt,
            "unmet_ev_kwh": unmet,
            "soc": self.energy / self.capacity,
        }
        for key, source in _SUMMED.items():
            self.totals[key] += info[source]
        return self.observe(), reward, done, info

    def _end_of_day(self, soc: np.ndarray) -> None:
        """Close the open half cycle, add calendar aging, re-evaluate capacity, restart the day's peak."""
        deg = self.scenario.battery.degradation
        seconds = self.scenario.step_hours * 3600.0
        self.stress = self.stress + self.cycles.close(soc) + deg.k_time * seconds * self.calendar_acc
        self.calendar_acc[:] = 0.0
        self.soh = 1.0 - capacity_loss(self.stress, deg)
        self.capacity = self.scenario.battery.capacity_kwh * self.soh
        # Capacity fade can leave the stored energy above the new maximum: that energy is lost.
        self.energy = np.minimum(self.energy, self.episode.soc_max * self.capacity)
        self.peak_kva[:] = 0.0

    def episode_metrics(self) -> dict[str, np.ndarray]:
        """Totals of the current episode, per microgrid."""
        out = {k: self.totals[k].copy() for k in _SUMMED}
        out["battery_degradation"] = self.scenario.battery.initial_soh - self.soh
        return {k: out[k] for k in EPISODE_KEYS}
