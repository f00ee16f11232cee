"""The compiled step of N microgrids: supervisor, physics, costs, aging, EV arrivals, observation.

numba compiles the per-microgrid logic into one loop over N. With numpy array operations a step is
about 150 small calls, each costing about a microsecond of call overhead at N = 1, several times
the whole budget of a single env step; compiled, the same logic costs microseconds at N = 1 and scales
linearly with N. The scenario's scalars travel in one float array whose positions are the ``P_*``
constants below; per-microgrid scalar state lives in the columns ``S_*`` of one ``(N, n)`` array.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
from numba import njit
from numba.core.caching import FunctionCache, IndexDataCacheFile

from ..scenario import Scenario
from . import degradation, dispatch, supervisor
from .degradation import capacity_loss, half_cycle_stress, soc_stress, track_turning_point
from .dispatch import EV_HOURS_SCALE, FLEET_FEATURES, fleet_features, fleet_requests, laxity_hours
from .supervisor import battery_range, kept_energy, port_range, port_requests, project_requests

#: Source files compiled into :func:`step` and :func:`observe`: the stamp of their disk caches covers all of them.
STEP_SOURCES = (Path(__file__), Path(supervisor.__file__), Path(degradation.__file__), Path(dispatch.__file__))


def sources_stamp(paths: tuple[Path, ...]) -> str:
    """SHA-256 of the contents of ``paths`` (in order)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


class _StepCache(FunctionCache):
    """numba's disk cache, stamped with the source of every module compiled into the step.

    numba stamps a cache with the function's own file only, so after an edit or a package upgrade that
    changed supervisor.py or degradation.py but not kernel.py it would load the old compiled step.
    Location, numba version and signature checks stay numba's own.
    """

    def __init__(self, py_func: Callable) -> None:
        super().__init__(py_func)
        self._cache_file = IndexDataCacheFile(self._cache_path, self._impl.filename_base, sources_stamp(STEP_SOURCES))


def _njit_step_cached(func: Callable) -> Callable:
    dispatcher = njit(func)
    if hasattr(dispatcher, "py_func"):  # not under NUMBA_DISABLE_JIT
        dispatcher._cache = _StepCache(func)  # what Dispatcher.enable_caching() does, with the wider stamp
    return dispatcher

# ---- scenario parameters (positions in the parameter vector) ----------------------------------------
(
    P_DT,
    P_SELF_DISCHARGE,
    P_ETA_C,
    P_ETA_D,
    P_CHARGE_KW,
    P_DISCHARGE_KW,
    P_CAPACITY_KWH,
    P_WEAR,
    P_PORT_KW,
    P_ETA_EV,
    P_V2G,
    P_UNMET_PENALTY,
    P_IMPORT_LIMIT,
    P_EXPORT_LIMIT,
    P_EXPORT_PRICE,
    P_POWER_FACTOR,
    P_CARBON_PRICE,
    P_UNSERVED_PENALTY,
    P_W_ENERGY,
    P_W_DEMAND,
    P_W_DEGRADATION,
    P_W_EV,
    P_W_CARBON,
    P_W_UNSERVED,
    P_W_TERMINAL,
    P_REWARD_SCALE,
    P_EXOGENOUS_BASELINE,
    P_ALPHA_SEI,
    P_BETA_SEI,
    P_K_DELTA1,
    P_K_DELTA2,
    P_K_DELTA3,
    P_K_SIGMA,
    P_SIGMA_REF,
    P_K_TIME,
    P_HYSTERESIS,
    P_STEPS_PER_DAY,
    P_EV_HOURS_SCALE,
    P_VIOLATION_TOL,
    P_AGGREGATE,
    P_WINDOW_HOURS,
) = range(41)
N_PARAMS = 41

# ---- per-microgrid scalar state (columns) -----------------------------------------------------------
(S_ENERGY, S_CAPACITY, S_SOH, S_STRESS, S_LAST_TURN, S_EXTREME, S_DIRECTION, S_CALENDAR, S_PEAK_KVA, S_START_ENERGY) = range(10)
N_STATE = 10

# ---- per-step outputs (columns of the info array; names in core.STEP_KEYS) --------------------------
(
    I_COST,
    I_ENERGY,
    I_DEMAND,
    I_DEGRADATION,
    I_EV,
    I_CARBON,
    I_UNSERVED,
    I_TERMINAL,
    I_EMISSIONS,
    I_IMPORT,
    I_EXPORT,
    I_INTERVENTIONS,
    I_VIOLATIONS,
    I_LOAD,
    I_RENEWABLE,
    I_BATTERY,
    I_EV_KWH,
    I_CURTAILED,
    I_UNSERVED_KWH,
    I_UNMET,
    I_SOC,
) = range(21)
N_INFO = 21
#: Tolerance of the violation check (kW or kWh): float rounding, not slack.
VIOLATION_TOLERANCE = 1e-6
N_FLEET = len(FLEET_FEATURES)


def pack_params(scenario: Scenario) -> np.ndarray:
    """The scenario's scalars in the order of the ``P_*`` positions."""
    b, d, ev, g, r = scenario.battery, scenario.battery.degradation, scenario.ev, scenario.grid, scenario.reward
    values = {
        P_DT: scenario.step_hours,
        P_SELF_DISCHARGE: b.self_discharge_per_hour,
        P_ETA_C: b.charge_efficiency,
        P_ETA_D: b.discharge_efficiency,
        P_CHARGE_KW: b.charge_power_kw,
        P_DISCHARGE_KW: b.discharge_power_kw,
        P_CAPACITY_KWH: b.capacity_kwh,
        P_WEAR: b.wear_cost_inr_per_kwh,
        P_PORT_KW: ev.port_power_kw,
        P_ETA_EV: ev.charger_efficiency,
        P_V2G: float(ev.v2g),
        P_UNMET_PENALTY: ev.unmet_penalty_inr_per_kwh,
        P_IMPORT_LIMIT: g.import_limit_kw,
        P_EXPORT_LIMIT: g.export_limit_kw,
        P_EXPORT_PRICE: g.export_price_inr_per_kwh,
        P_POWER_FACTOR: g.power_factor,
        P_CARBON_PRICE: r.carbon_price_inr_per_kg,
        P_UNSERVED_PENALTY: r.unserved_penalty_inr_per_kwh,
        P_W_ENERGY: r.weight_energy,
        P_W_DEMAND: r.weight_demand,
        P_W_DEGRADATION: r.weight_degradation,
        P_W_EV: r.weight_ev,
        P_W_CARBON: r.weight_carbon,
        P_W_UNSERVED: r.weight_unserved,
        P_W_TERMINAL: r.weight_terminal,
        P_REWARD_SCALE: r.scale_inr,
        P_EXOGENOUS_BASELINE: float(r.exogenous_baseline),
        P_ALPHA_SEI: d.alpha_sei,
        P_BETA_SEI: d.beta_sei,
        P_K_DELTA1: d.k_delta1,
        P_K_DELTA2: d.k_delta2,
        P_K_DELTA3: d.k_delta3,
        P_K_SIGMA: d.k_sigma,
        P_SIGMA_REF: d.sigma_ref,
        P_K_TIME: d.k_time,
        P_HYSTERESIS: d.cycle_hysteresis,
        P_STEPS_PER_DAY: scenario.steps_per_day,
        P_EV_HOURS_SCALE: EV_HOURS_SCALE,
        P_VIOLATION_TOL: VIOLATION_TOLERANCE,
        P_AGGREGATE: float(ev.dispatch == "aggregate"),
        P_WINDOW_HOURS: scenario.forecast.forecast_steps * scenario.step_hours,
    }
    out = np.empty(N_PARAMS)
    for k, v in values.items():
        out[k] = v
    return out


@njit(cache=True)
def _flag(condition: bool) -> float:
    return 1.0 if condition else 0.0


@njit(cache=True)
def arrive(t: int, arrival_energy: np.ndarray, arrival_deadline: np.ndarray, connected: np.ndarray, remaining: np.ndarray, delivered: np.ndarray, deadline: np.ndarray) -> None:
    """Connect the EVs that arrive at the start of step ``t``."""
    for i in range(connected.shape[0]):
        for p in range(connected.shape[1]):
            e = arrival_energy[i, t, p]
            if e > 0.0:
                connected[i, p] = 1.0
                remaining[i, p] = e
                delivered[i, p] = 0.0
                deadline[i, p] = arrival_deadline[i, t, p]


@njit(cache=True)
def _laxities(t: int, dt: float, deadline: np.ndarray, remaining: np.ndarray, port_kw: float, eta_ev: float, out: np.ndarray) -> None:
    """Write the laxity (h) of each port's car at the start of step ``t`` into ``out`` (any value at a free port)."""
    for p in range(out.size):
        out[p] = laxity_hours((deadline[p] - t) * dt, remaining[p], port_kw, eta_ev)


@_njit_step_cached
def step(
    t: int,
    n_steps: int,
    action: np.ndarray,
    prm: np.ndarray,
    st: np.ndarray,
    connected: np.ndarray,
    remaining: np.ndarray,
    delivered: np.ndarray,
    deadline: np.ndarray,
    load: np.ndarray,
    pv: np.ndarray,
    wind: np.ndarray,
    price: np.ndarray,
    emission: np.ndarray,
    demand_rate: np.ndarray,
    arrival_energy: np.ndarray,
    arrival_deadline: np.ndarray,
    soc_min: np.ndarray,
    soc_max: np.ndarray,
    shortfall_price: np.ndarray,
    surplus_price: np.ndarray,
    info: np.ndarray,
    reward: np.ndarray,
    totals: np.ndarray,
) -> None:
    """Advance all N microgrids by step ``t``; write ``info`` (N, N_INFO) and ``reward`` (N,)."""
    n, n_ports = connected.shape
    dt = prm[P_DT]
    eta_c, eta_d, eta_ev = prm[P_ETA_C], prm[P_ETA_D], prm[P_ETA_EV]
    port_kw, v2g, tol = prm[P_PORT_KW], prm[P_V2G] > 0.0, prm[P_VIOLATION_TOL]
    aggregate = prm[P_AGGREGATE] > 0.0
    end_of_day = (t + 1) % int(prm[P_STEPS_PER_DAY]) == 0
    done = t + 1 == n_steps
    ev_lo = np.zeros(n_ports)
    ev_hi = np.zeros(n_ports)
    ev_want = np.zeros(n_ports)
    ev_kw = np.zeros(n_ports)
    laxity = np.zeros(n_ports)
    for i in range(n):
        # Feasible ranges now (the same functions the site controller calls).
        capacity = st[i, S_CAPACITY]
        e_min, e_max = soc_min[i] * capacity, soc_max[i] * capacity
        kept = kept_energy(st[i, S_ENERGY], prm[P_SELF_DISCHARGE], dt)
        bat_lo, bat_hi = battery_range(
            st[i, S_ENERGY], capacity, soc_min[i], soc_max[i], prm[P_SELF_DISCHARGE], dt, eta_c, eta_d, prm[P_CHARGE_KW], prm[P_DISCHARGE_KW]
        )
        for p in range(n_ports):
            ev_lo[p], ev_hi[p] = port_range(connected[i, p] > 0.0, remaining[i, p], delivered[i, p], port_kw, eta_ev, dt, v2g)
        # The EV entries become port requests; from there the supervisor is the same for both interfaces.
        if aggregate:
            _laxities(t, dt, deadline[i], remaining[i], port_kw, eta_ev, laxity)
            invalid = fleet_requests(action[i, 1], ev_lo, ev_hi, laxity, v2g, ev_want)
        else:
            invalid = port_requests(action[i], port_kw, v2g, ev_want)
        renewable = pv[i, t] + wind[i, t]
        p_bat, curtailed, unserved, intervened = project_requests(
            action[i, 0],
            ev_want,
            invalid,
            bat_lo,
            bat_hi,
            prm[P_CHARGE_KW],
            prm[P_DISCHARGE_KW],
            ev_lo,
            ev_hi,
            connected[i],
            load[i, t],
            renewable,
            prm[P_IMPORT_LIMIT],
            prm[P_EXPORT_LIMIT],
            ev_kw,
        )

        # Physics.
        charge, discharge = max(p_bat, 0.0), max(-p_bat, 0.0)
        energy = kept + (eta_c * charge - discharge / eta_d) * dt
        st[i, S_ENERGY] = energy
        ev_total = 0.0
        violations = 0.0
        unmet = 0.0
        for p in range(n_ports):
            stored = (ev_kw[p] * eta_ev if ev_kw[p] >= 0.0 else ev_kw[p] / eta_ev) * dt
            remaining[i, p] -= stored
            delivered[i, p] += stored
            ev_total += ev_kw[p]
            violations += _flag(abs(ev_kw[p]) > port_kw + tol)
            violations += _flag(ev_kw[p] != 0.0 and connected[i, p] == 0.0)
            violations += _flag(remaining[i, p] < -tol)
            if connected[i, p] > 0.0 and deadline[i, p] == t + 1:  # departs now
                unmet += max(remaining[i, p], 0.0)
                connected[i, p] = 0.0
                remaining[i, p] = 0.0
        net = load[i, t] - unserved - (renewable - curtailed) + p_bat + ev_total
        import_kw, export_kw = max(net, 0.0), max(-net, 0.0)
        violations += _flag(energy < e_min - tol) + _flag(energy > e_max + tol)
        violations += _flag(p_bat > prm[P_CHARGE_KW] + tol) + _flag(p_bat < -prm[P_DISCHARGE_KW] - tol)
        violations += _flag(import_kw > prm[P_IMPORT_LIMIT] + tol) + _flag(export_kw > prm[P_EXPORT_LIMIT] + tol)

        # Costs (Rs) and emissions.
        import_kwh, export_kwh = import_kw * dt, export_kw * dt
        emissions = import_kwh * emission[i, t]
        kva = import_kw / prm[P_POWER_FACTOR]
        c_energy = import_kwh * price[i, t] - export_kwh * prm[P_EXPORT_PRICE]
        c_demand = max(kva - st[i, S_PEAK_KVA], 0.0) * demand_rate[i, t]
        st[i, S_PEAK_KVA] = max(st[i, S_PEAK_KVA], kva)
        c_degradation = (charge + discharge) * dt * prm[P_WEAR]
        c_ev = unmet * prm[P_UNMET_PENALTY]
        c_carbon = emissions * prm[P_CARBON_PRICE]
        c_unserved = unserved * dt * prm[P_UNSERVED_PENALTY]

        # Aging: half cycles as they close, calendar aging applied at the day boundary.
        soc = energy / capacity
        depth, mean, st[i, S_LAST_TURN], st[i, S_EXTREME], st[i, S_DIRECTION] = track_turning_point(
            soc, st[i, S_LAST_TURN], st[i, S_EXTREME], st[i, S_DIRECTION], prm[P_HYSTERESIS]
        )
        k1, k2, k3, ks, sref = prm[P_K_DELTA1], prm[P_K_DELTA2], prm[P_K_DELTA3], prm[P_K_SIGMA], prm[P_SIGMA_REF]
        st[i, S_STRESS] += half_cycle_stress(depth, mean, k1, k2, k3, ks, sref)
        st[i, S_CALENDAR] += soc_stress(soc, ks, sref)
        if end_of_day:
            end = st[i, S_EXTREME] if st[i, S_DIRECTION] != 0.0 else soc
            st[i, S_STRESS] += half_cycle_stress(abs(end - st[i, S_LAST_TURN]), 0.5 * (end + st[i, S_LAST_TURN]), k1, k2, k3, ks, sref)
            st[i, S_STRESS] += prm[P_K_TIME] * dt * 3600.0 * st[i, S_CALENDAR]
            st[i, S_LAST_TURN], st[i, S_EXTREME], st[i, S_DIRECTION], st[i, S_CALENDAR] = soc, soc, 0.0, 0.0
            st[i, S_SOH] = 1.0 - capacity_loss(st[i, S_STRESS], prm[P_ALPHA_SEI], prm[P_BETA_SEI])
            st[i, S_CAPACITY] = prm[P_CAPACITY_KWH] * st[i, S_SOH]
            # Capacity fade can leave stored energy above the new maximum: that energy is lost.
            st[i, S_ENERGY] = min(energy, soc_max[i] * st[i, S_CAPACITY])
            st[i, S_PEAK_KVA] = 0.0
        c_terminal = 0.0
        if done:
            gain = st[i, S_ENERGY] - st[i, S_START_ENERGY]
            c_terminal = max(-gain, 0.0) * shortfall_price[i] - max(gain, 0.0) * surplus_price[i]

        row = info[i]
        row[I_ENERGY], row[I_DEMAND], row[I_DEGRADATION], row[I_EV] = c_energy, c_demand, c_degradation, c_ev
        row[I_CARBON], row[I_UNSERVED], row[I_TERMINAL] = c_carbon, c_unserved, c_terminal
        row[I_COST] = c_energy + c_demand + c_degradation + c_ev + c_carbon + c_unserved + c_terminal
        row[I_EMISSIONS], row[I_IMPORT], row[I_EXPORT] = emissions, import_kwh, export_kwh
        row[I_INTERVENTIONS], row[I_VIOLATIONS] = _flag(intervened), violations
        row[I_LOAD], row[I_RENEWABLE] = load[i, t] * dt, (renewable - curtailed) * dt
        row[I_BATTERY], row[I_EV_KWH], row[I_CURTAILED] = p_bat * dt, ev_total * dt, curtailed * dt
        row[I_UNSERVED_KWH], row[I_UNMET], row[I_SOC] = unserved * dt, unmet, st[i, S_ENERGY] / st[i, S_CAPACITY]
        weighted = (
            prm[P_W_ENERGY] * c_energy
            + prm[P_W_DEMAND] * c_demand
            + prm[P_W_DEGRADATION] * c_degradation
            + prm[P_W_EV] * c_ev
            + prm[P_W_CARBON] * c_carbon
            + prm[P_W_UNSERVED] * c_unserved
            + prm[P_W_TERMINAL] * c_terminal
        )
        if prm[P_EXOGENOUS_BASELINE] > 0.0:
            # The cost the uncontrolled net load alone would incur: fixed by the day's data, so removing
            # it leaves every policy's return shifted by the same amount and strips its variance.
            base_net = (load[i, t] - renewable) * dt
            base_import = max(base_net, 0.0)
            base_energy = base_import * price[i, t] - max(-base_net, 0.0) * prm[P_EXPORT_PRICE]
            base_carbon = base_import * emission[i, t] * prm[P_CARBON_PRICE]
            weighted -= prm[P_W_ENERGY] * base_energy + prm[P_W_CARBON] * base_carbon
        reward[i] = -weighted / prm[P_REWARD_SCALE]
        for k in range(totals.shape[1]):
            totals[i, k] += row[k]
    if not done:
        arrive(t + 1, arrival_energy, arrival_deadline, connected, remaining, delivered, deadline)


@_njit_step_cached
def observe(
    t: int,
    n_steps: int,
    prm: np.ndarray,
    st: np.ndarray,
    connected: np.ndarray,
    remaining: np.ndarray,
    delivered: np.ndarray,
    deadline: np.ndarray,
    time_features: np.ndarray,
    window_mean: np.ndarray,
    window_error: np.ndarray,
    history_steps: int,
    context: np.ndarray,
    obs: np.ndarray,
) -> None:
    """Write the observations of step ``t`` into ``obs`` (layout: core.observation_layout).

    The EV block is three features per port, or the fleet's :data:`~.dispatch.FLEET_FEATURES` under the aggregate
    interface; ``context`` (the site's constant description, possibly empty) follows it.

    ``window_mean`` (N, H + T + F, S) holds the true series from ``history_steps`` (H) steps before the episode,
    so the observation's row ``r`` at step ``t`` is its entry ``t + r``; ``window_error`` (N, T + 1, F, S) the
    error of the forecasts issued at each step, lead by lead (rows ``H + l``); history rows carry no error.
    """
    n, n_ports = connected.shape
    n_time = time_features.shape[2]
    n_series = window_mean.shape[2]
    rows = history_steps + window_error.shape[2]
    tf = min(t, n_steps - 1)
    port_kw, eta_ev, dt, v2g = prm[P_PORT_KW], prm[P_ETA_EV], prm[P_DT], prm[P_V2G] > 0.0
    need_scale = 1.0 / (port_kw * eta_ev * prm[P_EV_HOURS_SCALE])
    left_scale = dt / prm[P_EV_HOURS_SCALE]
    aggregate = prm[P_AGGREGATE] > 0.0
    ev_lo = np.zeros(n_ports)
    ev_hi = np.zeros(n_ports)
    laxity = np.zeros(n_ports)
    for i in range(n):
        out = obs[i]
        for k in range(n_time):
            out[k] = time_features[i, tf, k]
        k = n_time
        out[k] = 1.0 - t / n_steps
        out[k + 1] = st[i, S_ENERGY] / st[i, S_CAPACITY]
        out[k + 2] = st[i, S_SOH]
        out[k + 3] = st[i, S_PEAK_KVA] * prm[P_POWER_FACTOR] / prm[P_IMPORT_LIMIT]
        k += 4
        if aggregate:
            for p in range(n_ports):
                ev_lo[p], ev_hi[p] = port_range(connected[i, p] > 0.0, remaining[i, p], delivered[i, p], port_kw, eta_ev, dt, v2g)
            _laxities(t, dt, deadline[i], remaining[i], port_kw, eta_ev, laxity)
            fleet_features(connected[i], remaining[i], laxity, ev_lo, ev_hi, port_kw, eta_ev, prm[P_WINDOW_HOURS], out[k : k + N_FLEET])
            k += N_FLEET
        else:
            for p in range(n_ports):
                on = connected[i, p] > 0.0
                out[k + p] = connected[i, p]
                out[k + n_ports + p] = remaining[i, p] * need_scale
                out[k + 2 * n_ports + p] = (deadline[i, p] - t) * left_scale if on else 0.0
            k += 3 * n_ports
        for c in range(context.size):
            out[k + c] = context[c]
        k += context.size
        for r in range(rows):
            base = k + r * n_series
            for s in range(n_series):
                # History rows are measured (exact); row history_steps + l is the forecast of lead l.
                error = window_error[i, t, r - history_steps, s] if r >= history_steps else 0.0
                out[base + s] = max(window_mean[i, t + r, s] + error, 0.0)
