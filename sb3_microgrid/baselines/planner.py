"""A compiled planner: dynamic programming over the stored energy on the forecast window, with EVs
charged in their cheapest forecast steps, least laxity first.

It plans what :class:`~sb3_microgrid.baselines.MPCController` plans (the rest of the episode on the
observation's forecasts), but instead of one HiGHS LP per step (about 9 ms) it solves, per microgrid:

1. **EVs.** Each connected car, least laxity first, gets the energy it still wants spread over its
   cheapest forecast steps before it leaves (ties: the step with the lower net load), at most the port's
   power a step. That fixes the EV load of the window; cars never discharge.
2. **Battery.** A backward recursion over ``n_levels`` stored-energy levels between the episode's SoC
   bounds, for each candidate import cap of the day (``n_caps`` on a coarse grid, then ``n_caps`` more
   around the best of them): a step costs its energy (import at
   the price plus the carbon price, export at the export price up to the export limit), wear on the
   battery's throughput, and the demand rate on any import above the cap; the episode's end prices a
   shortfall against the starting energy at the dearest price seen (as MPC does) and credits a surplus at
   the env's surplus price. The cap whose plan plus the demand charge of raising the day's peak to it is
   cheapest wins. The first step starts from the exact stored energy, so the action is not quantised to
   the grid's first step.

It reads the forecasts and the day's peak from the observation, the battery and tariff from the
scenario, and from the env's core what the observation rounds or omits: the stored energy and capacity
and the EVs' energy still wanted and departure steps (rounded to float32, they would make requests just
past a limit, which the supervisor counts, and leave micro-kWh unmet), the episode's SoC bounds and the
published demand rate. One call plans N microgrids: :func:`plan` is the batched
entry point a ``VecEnv`` wrapper uses; :class:`PlannerController` is the controller for ``evaluate()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numba import njit

from ..common.arguments import checked_number
from ..envs import MicrogridEnv
from ..envs.layout import ObservationLayout
from ..scenario import Scenario
from .base import PORTS, battery_action, check_ports, port_actions

#: Upper bounds of ``n_levels`` and ``n_caps`` (:func:`checked_grid` gives the reasons).
MAX_LEVELS, MAX_CAPS = 1000, 100


@dataclass(frozen=True)
class PlannerInputs:
    """What :func:`plan` needs for N microgrids, in physical units.

    :param load_kw: (N, H) forecast load from the current step
    :param renewable_kw: (N, H) forecast PV + wind
    :param price: (N, H) forecast import price (Rs/kWh)
    :param emission: (N, H) forecast emission factor (kg/kWh)
    :param horizon: (N,) steps to plan (the rest of the episode, at most H)
    :param energy: (N,) stored energy now (kWh)
    :param e_min: (N,) lowest allowed stored energy (kWh)
    :param e_max: (N,) highest allowed stored energy (kWh)
    :param energy_ref: (N,) stored energy the episode's end is compared with (kWh)
    :param shortfall_price: (N,) Rs per kWh short of ``energy_ref`` at the end
    :param peak_kw: (N,) the day's peak import so far (kW)
    :param demand_rate: (N,) Rs per kVA of the day's peak
    :param ev_need_kwh: (N, P) energy each connected car still wants (0 at a free port)
    :param ev_left_steps: (N, P) steps until it leaves (0 at a free port)
    """

    load_kw: np.ndarray
    renewable_kw: np.ndarray
    price: np.ndarray
    emission: np.ndarray
    horizon: np.ndarray
    energy: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray
    energy_ref: np.ndarray
    shortfall_price: np.ndarray
    peak_kw: np.ndarray
    demand_rate: np.ndarray
    ev_need_kwh: np.ndarray
    ev_left_steps: np.ndarray


def planner_params(scenario: Scenario) -> np.ndarray:
    """The scenario's scalars :func:`plan` reads, in the order of :func:`_plan_all`'s unpacking."""
    b, g, ev = scenario.battery, scenario.grid, scenario.ev
    surplus = max(g.export_price_inr_per_kwh - b.wear_cost_inr_per_kwh, 0.0) * b.discharge_efficiency
    return np.array([
        scenario.step_hours, b.self_discharge_per_hour, b.charge_efficiency, b.discharge_efficiency,
        b.charge_power_kw, b.discharge_power_kw, b.wear_cost_inr_per_kwh, g.export_price_inr_per_kwh,
        g.export_limit_kw, g.import_limit_kw, g.power_factor, scenario.reward.carbon_price_inr_per_kg, surplus,
        ev.port_power_kw, ev.charger_efficiency,
    ])  # fmt: skip


def checked_grid(n_levels: Any, n_caps: Any) -> tuple[int, int]:
    """``n_levels`` and ``n_caps`` as Python ints, if each is an integer in its range.

    :param n_levels: stored-energy levels of the recursion, an integer in [2, 1000]: two are the SoC bounds,
        and 1000 put them a thousandth of the SoC window apart, finer than any forecast. A step's time grows
        with the square of the levels (a campus step: 4 ms at 81, 0.6 s at 1000, 3 s at 2000)
    :param n_caps: candidate import caps of the day per stage, an integer in [1, 100]: the fine stage spans
        two coarse spacings, so 100 resolve the cap to about 1/5000 of its range; the time grows linearly
    :raises ValueError: naming the argument and its range
    """
    return (
        checked_number("n_levels", n_levels, 2, MAX_LEVELS, integer=True),
        checked_number("n_caps", n_caps, 1, MAX_CAPS, integer=True),
    )


def plan(inputs: PlannerInputs, scenario: Scenario, n_levels: int = 81, n_caps: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Battery and port powers (kW, + charging) for the current step of N microgrids.

    :param inputs: forecasts and state (:class:`PlannerInputs`)
    :param scenario: battery, grid and EV parameters
    :param n_levels: stored-energy levels of the recursion, an integer in [2, 1000] (:func:`checked_grid`)
    :param n_caps: candidate import caps of the day, an integer in [1, 100] (:func:`checked_grid`)
    :return: battery power (N,) and port powers (N, P)
    """
    # Checked here too: a VecEnv wrapper calls plan() directly (a float n_levels would be a numba TypingError).
    n_levels, n_caps = checked_grid(n_levels, n_caps)
    x = inputs
    n, p = x.ev_need_kwh.shape
    battery = np.zeros(n)
    ports = np.zeros((n, p))
    _plan_all(
        *(np.ascontiguousarray(a, dtype=np.float64) for a in (x.load_kw, x.renewable_kw, x.price, x.emission)),
        np.ascontiguousarray(x.horizon, dtype=np.int64),
        *(np.ascontiguousarray(a, dtype=np.float64) for a in (x.energy, x.e_min, x.e_max, x.energy_ref, x.shortfall_price,
                                                              x.peak_kw, x.demand_rate, x.ev_need_kwh)),
        np.ascontiguousarray(x.ev_left_steps, dtype=np.int64),
        planner_params(scenario), n_levels, n_caps, battery, ports,
    )  # fmt: skip
    return battery, ports


@njit(cache=True)
def _schedule_evs(net: np.ndarray, price: np.ndarray, horizon: int, need: np.ndarray, left: np.ndarray, step_kwh: float, ev_load: np.ndarray, now: np.ndarray) -> None:
    """Spread each car's energy over its cheapest steps, least laxity first; add the energy stored in
    the cars at each step (kWh) to ``ev_load`` (H,) and write each port's stored energy now into ``now`` (P,)."""
    n_ports = need.shape[0]
    laxity = np.full(n_ports, np.inf)
    for q in range(n_ports):
        if need[q] > 0.0 and left[q] > 0:
            laxity[q] = left[q] - need[q] / step_kwh
    for q in np.argsort(laxity):
        if not np.isfinite(laxity[q]):
            break
        steps = min(left[q], horizon)
        # cheapest first; a tiny weight on the net load already there breaks ties toward emptier steps
        order = np.argsort(price[:steps] + 1e-6 * (net[:steps] + ev_load[:steps]))
        wanted = need[q]
        for s in order:
            if wanted <= 0.0:
                break
            energy = min(wanted, step_kwh)
            ev_load[s] += energy
            wanted -= energy
            if s == 0:
                now[q] = energy


@njit(cache=True)
def _step_cost(net_kw: float, p_bat: float, price: float, emission: float, cap: float, prm: np.ndarray, demand_kw_rate: float) -> float:
    dt, wear, export_price, export_limit, carbon = prm[0], prm[6], prm[7], prm[8], prm[11]
    grid = net_kw + p_bat
    cost = abs(p_bat) * dt * wear
    if grid >= 0.0:
        cost += grid * dt * (price + carbon * emission)
        if grid > cap:
            cost += (grid - cap) * demand_kw_rate
    else:
        cost -= min(-grid, export_limit) * dt * export_price
    return cost


@njit(cache=True)
def _plan_all(
    load: np.ndarray, renewable: np.ndarray, price: np.ndarray, emission: np.ndarray, horizon: np.ndarray,
    energy: np.ndarray, e_min: np.ndarray, e_max: np.ndarray, energy_ref: np.ndarray, shortfall_price: np.ndarray,
    peak_kw: np.ndarray, demand_rate: np.ndarray, ev_need: np.ndarray, ev_left: np.ndarray,
    prm: np.ndarray, n_levels: int, n_caps: int, battery_out: np.ndarray, ports_out: np.ndarray,
) -> None:  # fmt: skip
    dt, keep_rate, eta_c, eta_d = prm[0], prm[1], prm[2], prm[3]
    p_ch, p_dis, import_limit, pf, surplus = prm[4], prm[5], prm[9], prm[10], prm[12]
    port_kw, eta_ev = prm[13], prm[14]
    keep = 1.0 - keep_rate * dt
    n, width = load.shape
    for i in range(n):
        h = max(min(horizon[i], width), 1)
        net = load[i, :h] - renewable[i, :h]
        ev_load = np.zeros(h)
        now = np.zeros(ev_need.shape[1])
        _schedule_evs(net, price[i], h, ev_need[i], ev_left[i], port_kw * eta_ev * dt, ev_load, now)
        net = net + ev_load / (eta_ev * dt)
        for q in range(now.shape[0]):
            ports_out[i, q] = now[q] / (eta_ev * dt)
        lo, hi = e_min[i], max(e_max[i], e_min[i])
        levels = lo + (hi - lo) * np.arange(n_levels) / (n_levels - 1)
        terminal = np.empty(n_levels)
        for k in range(n_levels):
            gain = levels[k] - energy_ref[i]
            terminal[k] = -gain * shortfall_price[i] if gain < 0.0 else -gain * surplus
        base = peak_kw[i]
        top = min(max(base, net.max() + p_ch), import_limit)
        floor = min(max(base, net.max() - p_dis, 0.0), top)
        demand_kw_rate = demand_rate[i] / pf
        best_total, best_p = np.inf, 0.0
        value = np.empty(n_levels)
        nxt = np.empty(n_levels)
        # Beyond the first step a transition's power depends only on the level offset d = b - a
        # (self-discharge, 4e-5 of the energy an hour for the presets, is neglected there): the step's
        # cost is a vector over d, and the recursion a min-plus convolution.
        delta = (hi - lo) / (n_levels - 1)
        d_lo = -min(int(np.floor(p_dis * dt / eta_d / delta + 1e-9)), n_levels - 1) if delta > 0.0 else 0
        d_hi = min(int(np.floor(p_ch * eta_c * dt / delta + 1e-9)), n_levels - 1) if delta > 0.0 else 0
        n_d = d_hi - d_lo + 1
        power = np.empty(n_d)
        for k in range(n_d):
            change = (d_lo + k) * delta
            power[k] = change / (eta_c * dt) if change >= 0.0 else change * eta_d / dt
        energy_cost = np.empty((h, n_d))
        for t in range(h):
            for k in range(n_d):
                energy_cost[t, k] = _step_cost(net[t], power[k], price[i, t], emission[i, t], np.inf, prm, 0.0)
        # Caps on a coarse grid from the peak already paid for (free) up to the highest import a plan
        # could ask, then as many again between the best coarse cap's neighbours: the day's cost is
        # sharp in the cap, and a coarse grid alone loses most under a flat tariff.
        width_cap = (top - floor) / max(n_caps - 1, 1)
        best_cap = floor
        for stage in range(2):
            start = floor if stage == 0 else max(best_cap - width_cap, floor)
            stop = top if stage == 0 else min(best_cap + width_cap, top)
            for c in range(n_caps):
                cap = start if n_caps == 1 else start + (stop - start) * c / (n_caps - 1)
                total, p = _plan_cap(cap, h, net, price[i], emission[i], levels, terminal, energy[i] * keep, energy_cost, power,
                                     d_lo, prm, demand_kw_rate, max(cap - base, 0.0) * demand_kw_rate, value, nxt)
                if total < best_total:
                    best_total, best_p, best_cap = total, p, cap
        # No level reachable (stored energy outside the window): head for it at full power; the supervisor bounds it.
        battery_out[i] = best_p if np.isfinite(best_total) else (p_ch if energy[i] * keep < lo else -p_dis)


@njit(cache=True)
def _plan_cap(
    cap: float, h: int, net: np.ndarray, price: np.ndarray, emission: np.ndarray, levels: np.ndarray, terminal: np.ndarray,
    kept: float, energy_cost: np.ndarray, power: np.ndarray, d_lo: int, prm: np.ndarray, demand_kw_rate: float,
    raise_cost: float, value: np.ndarray, nxt: np.ndarray,
) -> tuple[float, float]:  # fmt: skip
    """The cheapest plan whose import stays under ``cap`` (the excess priced at the demand rate), plus
    ``raise_cost``: its total and its first step's battery power."""
    dt, eta_c, eta_d, p_ch, p_dis = prm[0], prm[2], prm[3], prm[4], prm[5]
    n_levels, n_d = levels.size, power.size
    step = np.empty(n_d)
    nxt[:] = terminal
    for t in range(h - 1, 0, -1):
        for k in range(n_d):
            step[k] = energy_cost[t, k] + max(net[t] + power[k] - cap, 0.0) * demand_kw_rate
        for a in range(n_levels):
            best = np.inf
            for k in range(max(0, -d_lo - a), min(n_d, n_levels - a - d_lo)):
                v = step[k] + nxt[a + d_lo + k]
                if v < best:
                    best = v
            value[a] = best
        nxt[:] = value
    # The first step from the exact stored energy to each level it can reach.
    best_total, best_p = np.inf, 0.0
    for b in range(n_levels):
        d = levels[b] - kept
        p = d / (eta_c * dt) if d >= 0.0 else d * eta_d / dt
        if p > p_ch + 1e-9 or p < -p_dis - 1e-9:
            continue
        v = _step_cost(net[0], p, price[0], emission[0], cap, prm, demand_kw_rate) + (nxt[b] if h > 1 else terminal[b]) + raise_cost
        if v < best_total:
            best_total, best_p = v, p
    return best_total, best_p


@dataclass
class PlannerController:
    """The dynamic-programming planner (module docstring) on the observation's own forecasts.

    :param n_levels: stored-energy levels of the recursion, an integer in [2, 1000] (:func:`checked_grid`)
    :param n_caps: candidate import caps of the day, an integer in [1, 100] (:func:`checked_grid`)
    :param perfect_forecasts: plan on the episode's true series instead of the observation's forecasts
        (future EV arrivals stay unknown); an upper reference for the planner itself
    """

    n_levels: int = 81
    n_caps: int = 12
    perfect_forecasts: bool = False

    name: ClassVar[str] = "planner"
    ev_dispatch: ClassVar[str] = PORTS

    def __post_init__(self) -> None:
        # Checked here, not at the first step of an evaluation (or after minutes of planning at 10**6 levels).
        self.n_levels, self.n_caps = checked_grid(self.n_levels, self.n_caps)
        if not isinstance(self.perfect_forecasts, (bool, np.bool_)):  # "no" would be true
            raise ValueError(f"perfect_forecasts must be true or false, got {self.perfect_forecasts!r}")
        self.perfect_forecasts = bool(self.perfect_forecasts)

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        check_ports(env, self.name)
        self._env = env
        self._reader = ObservationReader(env.scenario, env.obs_layout, env.core.site.window_scale)
        self._reader.reset(obs[None])

    def act(self, obs: np.ndarray) -> np.ndarray:
        env = self._env
        core = env.core
        truth = None
        if self.perfect_forecasts:
            ep, t = core.episode, core.t
            truth = {
                "load": ep.load_kw[:, t:], "renewable": ep.pv_kw[:, t:] + ep.wind_kw[:, t:],
                "price": ep.import_price[:, t:], "emission": ep.emission[:, t:],
            }  # fmt: skip
        inputs = self._reader.inputs(obs[None], core, truth)
        battery, ports = plan(inputs, env.scenario, self.n_levels, self.n_caps)
        return np.clip(np.r_[battery_action(battery[0], env), port_actions(ports[0], env)], -1.0, 1.0)


class ObservationReader:
    """Turns N observations (and what the env's core publishes) into :class:`PlannerInputs`; remembers
    the dearest price seen in each episode, as MPC does.

    :param scenario: the scenario of the microgrids
    :param layout: their observation layout
    :param window_scale: divisor of each window series (``core.site.window_scale``)
    """

    def __init__(self, scenario: Scenario, layout: ObservationLayout, window_scale: np.ndarray) -> None:
        self.scenario, self.layout = scenario, layout
        unit = np.asarray(window_scale, dtype=np.float64).copy()
        names = layout.window_names
        unit[names.index("pv")] *= scenario.pv.capacity_kwp
        unit[names.index("wind")] *= scenario.wind.rated_kw
        self._unit = unit
        self._col = {name: j for j, name in enumerate(names)}
        self._time_left, self._day_peak = layout.index("time_left"), layout.index("day_peak")
        self.price_max = np.zeros(0)

    def window(self, obs: np.ndarray) -> np.ndarray:
        """(N, H + F, S) window in physical units (kW, Rs/kWh, kg/kWh)."""
        return self.layout.windows(obs).astype(np.float64) * self._unit

    def reset(self, obs: np.ndarray) -> None:
        """Start new episodes for the N microgrids of ``obs``: forget the dearest price seen."""
        self.price_max = np.zeros(obs.shape[0])

    def inputs(self, obs: np.ndarray, core, truth: dict[str, np.ndarray] | None = None) -> PlannerInputs:
        """The planner's inputs for N observations of ``core``'s microgrids.

        :param obs: (N, obs_dim) observations, unnormalised
        :param core: the env's :class:`~sb3_microgrid.envs.core.MicrogridCore` (episode SoC bounds, demand rate)
        :param truth: true series from the current step (``load``, ``renewable``, ``price``, ``emission``) to
            plan on instead of the forecasts
        """
        sc, lay = self.scenario, self.layout
        window = self.window(obs)
        fc = window[:, lay.history_steps :]
        col = self._col
        steps_left = np.rint(obs[:, self._time_left].astype(np.float64) * sc.episode_steps).astype(np.int64)
        self.price_max = np.maximum(self.price_max, window[:, :, col["price"]].max(axis=1))
        series = {
            "load": fc[:, :, col["load"]], "renewable": fc[:, :, col["pv"]] + fc[:, :, col["wind"]],
            "price": fc[:, :, col["price"]], "emission": fc[:, :, col["emission"]],
        }  # fmt: skip
        if truth is not None:
            width = fc.shape[1]
            series = {k: _pad(v[:, :width], width) for k, v in truth.items()}
        ep, t = core.episode, min(core.t, core.episode.n_steps - 1)
        capacity = core.capacity
        b = sc.battery
        return PlannerInputs(
            load_kw=series["load"],
            renewable_kw=series["renewable"],
            price=series["price"],
            emission=series["emission"],
            horizon=steps_left,
            energy=core.energy.copy(),
            e_min=ep.soc_min * capacity,
            e_max=ep.soc_max * capacity,
            energy_ref=core.start_energy.copy(),
            shortfall_price=(self.price_max + sc.reward.carbon_price_inr_per_kg * window[:, :, col["emission"]].max(axis=1) + b.wear_cost_inr_per_kwh)
            / b.charge_efficiency,
            peak_kw=obs[:, self._day_peak].astype(np.float64) * sc.grid.import_limit_kw,
            demand_rate=ep.demand_rate[:, t],
            # exact, from the core: the observation's float32 rounding would leave micro-kWh unmet
            ev_need_kwh=np.where(core.connected > 0, np.maximum(core.remaining, 0.0), 0.0),
            ev_left_steps=np.where(core.connected > 0, core.deadline - core.t, 0),
        )


def _pad(values: np.ndarray, width: int) -> np.ndarray:
    """Pad (N, w <= width) with its last column to (N, width): steps past the episode are not planned."""
    if values.shape[1] >= width:
        return values
    return np.concatenate([values, np.repeat(values[:, -1:], width - values.shape[1], axis=1)], axis=1)
