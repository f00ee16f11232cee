"""The aggregate EV interface (``ev.dispatch: aggregate``): one fleet entry in the action, shared out to the cars
least laxity first, and a fixed-size summary of the fleet in the observation, whatever the number of ports.

Laxity is the slack of a car: hours until it leaves minus hours of charging at the port's full power it still
needs. A car at laxity 0 must charge at full power from now on to leave full. Compiled with numba: the env's step
and observation call these per microgrid, and so does the site controller (:mod:`sb3_microgrid.deploy`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .supervisor import boxed

#: Hours by which the EV observation features are divided to keep them near [0, 1].
EV_HOURS_SCALE = 24.0
#: Laxity bounds (h) of the cumulative energy shares ``ev_laxity_<h>h``.
LAXITY_THRESHOLDS_H = (1.0, 3.0, 6.0)
#: Names of the fleet features, in the order :func:`fleet_features` writes them (docs/environment.md, section 4).
FLEET_FEATURES = (
    "ev_connected",
    "ev_need_h",
    *(f"ev_laxity_{h:g}h" for h in LAXITY_THRESHOLDS_H),
    "ev_min_laxity_h",
    "ev_max_charge",
    "ev_max_discharge",
)
#: Energy (kWh) a car may still want and count as full: what float rounding of its last step leaves.
NEGLIGIBLE_KWH = 1e-6


@njit(cache=True)
def laxity_hours(hours_left: float, wanted_kwh: float, port_kw: float, charger_efficiency: float) -> float:
    """Hours until the car leaves minus the hours of full port power it still needs (bus side ``port_kw``).

    :param hours_left: hours until the car leaves
    :param wanted_kwh: energy the car still wants (car side)
    :param port_kw: port power limit (bus side, kW); positive, as the scenario requires
    :param charger_efficiency: energy into the car / energy from the bus; positive
    """
    return hours_left - wanted_kwh / (port_kw * charger_efficiency)


@njit(cache=True)
def _fill(target: float, limit: np.ndarray, order: np.ndarray, sign: float, ev_want: np.ndarray) -> None:
    """Give ``limit[p]`` to each port in ``order`` until ``target`` (kW) is given; ``ev_want = sign * given``.

    :param target: power to share out (kW, >= 0)
    :param limit: (P,) the most each port may be given (kW)
    :param order: port indices, the first served first
    :param sign: +1 for charging, -1 for V2G (``limit`` is then ``-ev_lo``)
    :param ev_want: (P,) receives the requests of the ports served; the others keep their value (0)
    """
    left = target
    for p in order:
        if left <= 0.0:
            break
        given = min(limit[p], left)
        ev_want[p] = sign * given
        left -= given


@njit(cache=True)
def fleet_requests(raw: float, ev_lo: np.ndarray, ev_hi: np.ndarray, laxity: np.ndarray, v2g: bool, ev_want: np.ndarray) -> bool:
    """The port powers (bus side, kW) a fleet entry asks for: the aggregate counterpart of
    :func:`~.supervisor.port_requests`, before the supervisor's projection.

    Charging (``a >= 0`` with V2G, any ``a`` without): a fraction ``a`` (V2G) or ``(a + 1) / 2`` of the power the
    connected cars can take now (``sum(ev_hi)``), given to the cars in order of least laxity first, each up to its
    own bound; ``a = +1`` is every car at its bound. With V2G, ``a < 0`` takes the fraction ``-a`` of what the cars
    can give back (``-sum(ev_lo)``) from the cars with the most laxity first. Ties go to the lower port.

    :param raw: the raw fleet entry of the action (NaN is 0, values outside [-1, 1] are clipped)
    :param ev_lo: (P,) lowest feasible port power (:func:`~.supervisor.port_range`)
    :param ev_hi: (P,) highest feasible port power
    :param laxity: (P,) laxity of each port's car in hours (:func:`laxity_hours`; any value at a free port)
    :param v2g: whether the fleet entry ranges over discharging too
    :param ev_want: (P,) receives the requests
    :return: whether ``raw`` was outside the box (NaN included)
    """
    a = boxed(raw)
    ev_want[:] = 0.0
    share = a if v2g else (a + 1.0) * 0.5
    if share >= 1.0:  # exactly the bounds: a sum taken apart again would leave the last car a rounding short
        ev_want[:] = ev_hi
    elif share <= -1.0:
        ev_want[:] = ev_lo
    elif share > 0.0:
        _fill(share * ev_hi.sum(), ev_hi, np.argsort(laxity, kind="mergesort"), 1.0, ev_want)
    elif share < 0.0:
        _fill(share * ev_lo.sum(), -ev_lo, np.argsort(-laxity, kind="mergesort"), -1.0, ev_want)
    return a != raw


@njit(cache=True)
def fleet_features(
    connected: np.ndarray,
    wanted_kwh: np.ndarray,
    laxity: np.ndarray,
    ev_lo: np.ndarray,
    ev_hi: np.ndarray,
    port_kw: float,
    charger_efficiency: float,
    window_h: float,
    out: np.ndarray,
) -> None:
    """Write the :data:`FLEET_FEATURES` of one microgrid into ``out``, normalised by the fleet's full power
    (``P x port_kw``) so that fleets of any size look alike. A site without ports reads as one whose ports are all
    free: zeros, and the least laxity at ``window_h``.

    :param connected: (P,) 1.0 where a car is at the port
    :param wanted_kwh: (P,) energy each car still wants (car side)
    :param laxity: (P,) laxity of each car (h)
    :param ev_lo: (P,) lowest feasible port power now (kW)
    :param ev_hi: (P,) highest feasible port power now (kW)
    :param port_kw: port power limit (kW)
    :param charger_efficiency: energy into the car / energy from the bus
    :param window_h: the least laxity's upper clip, and its value when no car wants energy (h)
    :param out: (len(FLEET_FEATURES),) receives the features
    """
    n_ports = connected.size
    fleet_kw = max(n_ports * port_kw, 1e-12)  # no ports: every sum below is 0
    n_cars, wanted, least = 0.0, 0.0, window_h
    below = np.zeros(len(LAXITY_THRESHOLDS_H))
    for p in range(n_ports):
        if connected[p] <= 0.0:
            continue
        n_cars += 1.0
        if wanted_kwh[p] <= NEGLIGIBLE_KWH:
            continue
        wanted += wanted_kwh[p]
        least = min(least, laxity[p])
        for k in range(below.size):
            if laxity[p] < LAXITY_THRESHOLDS_H[k]:
                below[k] += wanted_kwh[p]
    out[0] = n_cars / max(n_ports, 1)
    out[1] = wanted / (fleet_kw * charger_efficiency) / EV_HOURS_SCALE
    for k in range(below.size):
        out[2 + k] = below[k] / wanted if wanted > 0.0 else 0.0
    k = 2 + below.size
    out[k] = max(least, 0.0) / EV_HOURS_SCALE
    out[k + 1] = ev_hi.sum() / fleet_kw
    out[k + 2] = max(0.0 - ev_lo.sum(), 0.0) / fleet_kw  # 0.0 - x, not -x: all-zero bounds give 0.0, not -0.0
