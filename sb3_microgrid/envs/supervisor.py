"""The safety supervisor: every action is projected onto what is feasible now, before the physics.

Order of the projection (each stage only as far as needed):

1. A NaN entry becomes 0 and ±inf or any value outside [-1, 1] is clipped to the box.
2. Battery power is clipped to its power limits and to what keeps the SoC inside
   ``[soc_min, soc_max]`` after self-discharge and efficiencies.
3. Each port's power is clipped to the port limit, to zero when no EV is connected, to the energy the
   EV still wants, and (with V2G) to the energy it has received in this session.
4. Grid import above the contracted limit: battery charging is reduced (down to its most negative
   feasible power, i.e. discharging), then EV charging pro rata; what remains is load shed
   (``unserved``, priced by ``RewardConfig.unserved_penalty_inr_per_kwh``), at most the whole load. A forced
   charge against self-discharge that the import limit cannot carry even then is cut below the SoC window
   (counted as a violation), never met from load that does not exist.
5. Grid export above its limit: PV and wind are curtailed first (no change to the action), then
   battery power is raised (less discharge, up to charging) and then port power (less V2G
   discharge, up to charging), each within its feasible range.

The step counts one intervention when the supervisor changed the requested battery power or the
power of a port with an EV by more than :data:`TOLERANCE_KW`, or the action was outside the box; a
request at an empty port is ignored, not counted. Every stage ends inside its limits (but for that forced
charge), so no hard limit can be broken afterwards; the core still checks and counts violations.

The port entries become requested powers first (:func:`port_requests`; under the aggregate EV interface the
fleet dispatch of :mod:`.dispatch` makes them instead), then :func:`project_requests` runs stages 2-5 on them;
:func:`project` is both in one call for a per-port action.
"""

from __future__ import annotations

import numpy as np
from numba import njit

TOLERANCE_KW = 1e-6


@njit(cache=True)
def boxed(x: float) -> float:
    """A raw action entry inside [-1, 1]: NaN becomes 0, anything else is clipped."""
    if x != x:  # NaN
        return 0.0
    return min(max(x, -1.0), 1.0)


@njit(cache=True)
def _port_request(a: float, port_kw: float, v2g: bool) -> float:
    return a * port_kw if v2g else (a + 1.0) * 0.5 * port_kw


@njit(cache=True)
def kept_energy(energy_kwh: float, self_discharge_per_hour: float, step_hours: float) -> float:
    """The stored energy left after one step of self-discharge, before any charging or discharging."""
    return energy_kwh * (1.0 - self_discharge_per_hour * step_hours)


@njit(cache=True)
def battery_range(
    energy_kwh: float,
    capacity_kwh: float,
    soc_min: float,
    soc_max: float,
    self_discharge_per_hour: float,
    step_hours: float,
    charge_efficiency: float,
    discharge_efficiency: float,
    charge_kw: float,
    discharge_kw: float,
) -> tuple:
    """The battery powers (AC side, kW) feasible for one step from stored energy ``energy_kwh``: the power
    limits, and the SoC window ``[soc_min, soc_max]`` of ``capacity_kwh`` after self-discharge and efficiencies.

    :return: ``(battery_lo, battery_hi)``, the bounds :func:`project` takes; ``battery_lo > 0`` (must
        charge) when self-discharge would take the SoC below ``soc_min``
    """
    kept = kept_energy(energy_kwh, self_discharge_per_hour, step_hours)
    deficit = soc_min * capacity_kwh - kept
    lo = max(-discharge_kw, deficit / (charge_efficiency * step_hours) if deficit > 0.0 else deficit * discharge_efficiency / step_hours)
    hi = max(min(charge_kw, (soc_max * capacity_kwh - kept) / (charge_efficiency * step_hours)), lo)
    return lo, hi


@njit(cache=True)
def port_range(connected: bool, remaining_kwh: float, delivered_kwh: float, port_kw: float, charger_efficiency: float, step_hours: float, v2g: bool) -> tuple:
    """The powers (bus side, kW) feasible for one step at a port: 0 without an EV; at most the port limit and
    what the car still wants; with V2G at least minus what it has received in this session.

    :return: ``(ev_lo, ev_hi)``, one port's entries of the bounds :func:`project` takes
    """
    hi = min(port_kw, remaining_kwh / (charger_efficiency * step_hours)) if connected else 0.0
    lo = -min(port_kw, delivered_kwh * charger_efficiency / step_hours) if (connected and v2g) else 0.0
    return lo, hi


@njit(cache=True)
def port_requests(action: np.ndarray, port_kw: float, v2g: bool, ev_want: np.ndarray) -> bool:
    """The power (bus side, kW) each port entry of a raw action asks for, after stage 1 (NaN to 0, clip to the box).

    :param action: (1 + P,) raw action; entries ``1 ..`` are the ports
    :param port_kw: port power limit, the scale of the port actions
    :param v2g: port actions map [-1, 1] to [-port_kw, port_kw] if true, else to [0, port_kw]
    :param ev_want: (P,) receives the requests
    :return: whether an entry was outside the box (NaN included)
    """
    invalid = False
    for p in range(ev_want.size):
        raw = action[1 + p]
        a = boxed(raw)
        invalid = invalid or a != raw
        ev_want[p] = _port_request(a, port_kw, v2g)
    return invalid


@njit(cache=True)
def project(
    action: np.ndarray,
    battery_lo: float,
    battery_hi: float,
    charge_kw: float,
    discharge_kw: float,
    ev_lo: np.ndarray,
    ev_hi: np.ndarray,
    connected: np.ndarray,
    port_kw: float,
    v2g: bool,
    load_kw: float,
    renewable_kw: float,
    import_limit_kw: float,
    export_limit_kw: float,
    ev_out: np.ndarray,
) -> tuple:
    """Project one microgrid's raw action (one entry per port) onto the feasible set.

    :param action: (1 + P,) raw action; entry 0 is the battery (+1 full charge, -1 full discharge),
        then one entry per port
    :param port_kw: port power limit, the scale of the port actions
    :param v2g: port actions map [-1, 1] to [-port_kw, port_kw] if true, else to [0, port_kw]
    :return: ``(battery_kw, curtailed_kw, unserved_kw, intervened)``; the other parameters are those of
        :func:`project_requests`
    """
    ev_want = np.empty(ev_out.size)
    invalid = port_requests(action, port_kw, v2g, ev_want)
    return project_requests(
        action[0], ev_want, invalid, battery_lo, battery_hi, charge_kw, discharge_kw, ev_lo, ev_hi, connected,
        load_kw, renewable_kw, import_limit_kw, export_limit_kw, ev_out,
    )  # fmt: skip


@njit(cache=True)
def project_requests(
    battery_action: float,
    ev_want: np.ndarray,
    invalid: bool,
    battery_lo: float,
    battery_hi: float,
    charge_kw: float,
    discharge_kw: float,
    ev_lo: np.ndarray,
    ev_hi: np.ndarray,
    connected: np.ndarray,
    load_kw: float,
    renewable_kw: float,
    import_limit_kw: float,
    export_limit_kw: float,
    ev_out: np.ndarray,
) -> tuple:
    """Project a raw battery entry and the ports' requested powers onto the feasible set (stages 1-5).

    :param battery_action: raw battery entry (+1 full charge, -1 full discharge)
    :param ev_want: (P,) requested port powers (kW, bus side, + charging): :func:`port_requests` of a
        per-port action, or the fleet dispatch of an aggregate one (:mod:`.dispatch`)
    :param invalid: whether an EV entry of the raw action was outside the box (counts as an intervention)
    :param battery_lo: most negative feasible battery power now (kW; > 0 when self-discharge would
        take the SoC below its minimum)
    :param battery_hi: most positive feasible battery power now (kW)
    :param charge_kw: battery charging power limit, the scale of action +1
    :param discharge_kw: battery discharging power limit, the scale of action -1
    :param ev_lo: (P,) lowest feasible port power (0, or negative with V2G)
    :param ev_hi: (P,) highest feasible port power
    :param connected: (P,) 1.0 where an EV is at the port
    :param load_kw: building load
    :param renewable_kw: available PV + wind
    :param import_limit_kw: contracted import limit
    :param export_limit_kw: export limit
    :param ev_out: (P,) receives the feasible port powers (kW, + charging)
    :return: ``(battery_kw, curtailed_kw, unserved_kw, intervened)``
    """
    n_ports = ev_out.size
    a = boxed(battery_action)
    invalid = invalid or a != battery_action
    want_bat = a * (charge_kw if a >= 0.0 else discharge_kw)
    bat = min(max(want_bat, battery_lo), battery_hi)
    ev_total = 0.0
    for p in range(n_ports):
        ev_out[p] = min(max(ev_want[p], ev_lo[p]), ev_hi[p])
        ev_total += ev_out[p]

    unserved = 0.0
    over = load_kw - renewable_kw + bat + ev_total - import_limit_kw
    if over > 0.0:
        cut = min(over, bat - battery_lo)
        bat -= cut
        over -= cut
        room = 0.0
        for p in range(n_ports):
            room += ev_out[p] - ev_lo[p]
        if room > 0.0:
            share = min(over / room, 1.0)
            ev_total = 0.0
            for p in range(n_ports):
                ev_out[p] -= (ev_out[p] - ev_lo[p]) * share
                ev_total += ev_out[p]
            over -= room * share
        unserved = min(max(over, 0.0), load_kw)
        # Left only when a forced charge (battery_lo > 0) exceeds what the import limit carries with the whole load
        # shed: the battery takes less and falls below soc_min, a violation the kernel counts, rather than charging
        # from load that does not exist.
        bat -= max(over - unserved, 0.0)

    curtailed = 0.0
    over = -(load_kw - unserved - renewable_kw + bat + ev_total) - export_limit_kw
    if over > 0.0:
        curtailed = min(over, renewable_kw)
        over -= curtailed
        lift = min(over, max(battery_hi - bat, 0.0))
        bat += lift
        over -= lift
        room = 0.0
        for p in range(n_ports):
            room += max(ev_hi[p] - ev_out[p], 0.0)
        if over > 0.0 and room > 0.0:
            share = min(over / room, 1.0)
            for p in range(n_ports):
                ev_out[p] += max(ev_hi[p] - ev_out[p], 0.0) * share

    intervened = invalid or abs(bat - want_bat) > TOLERANCE_KW
    for p in range(n_ports):
        intervened = intervened or (connected[p] > 0.0 and abs(ev_out[p] - ev_want[p]) > TOLERANCE_KW)
    return bat, curtailed, unserved, intervened
