"""The safety supervisor: every action is projected onto what is feasible now, before the physics.

Order of the projection (each stage only as far as needed):

1. Non-finite entries become 0 (NaN) or the box edge (±inf); the action is clipped to [-1, 1].
2. Battery power is clipped to its power limits and to what keeps the SoC inside
   ``[soc_min, soc_max]`` after self-discharge and efficiencies.
3. Each port's power is clipped to the port limit, to zero when no EV is connected, to the energy the
   EV still wants, and (with V2G) to the energy it has received in this session.
4. Grid import above the contracted limit: battery charging is reduced (down to its most negative
   feasible power), then EV charging pro rata; what remains is load shed (``unserved``).
5. Grid export above its limit: PV and wind are curtailed first (no action change), then battery and
   V2G discharge is reduced.

A change of the requested powers by more than ``TOLERANCE_KW`` counts as one intervention for that
step; a request at a port with no EV is ignored rather than counted. Because every stage ends inside its limits, no hard limit can be broken afterwards; the core
still checks and counts violations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOLERANCE_KW = 1e-6


@dataclass
class Projection:
    """Feasible set-points of one step for N microgrids."""

    battery_kw: np.ndarray  # (N,) AC power, + charging
    ev_kw: np.ndarray  # (N, P) AC power per port, + charging
    curtailed_kw: np.ndarray  # (N,) PV + wind not used
    unserved_kw: np.ndarray  # (N,) load shed
    intervened: np.ndarray  # (N,) bool


def project(
    action: np.ndarray,
    *,
    battery_lo: np.ndarray,
    battery_hi: np.ndarray,
    charge_kw: float,
    discharge_kw: float,
    ev_lo: np.ndarray,
    ev_hi: np.ndarray,
    connected: np.ndarray,
    port_kw: float,
    v2g: bool,
    load_kw: np.ndarray,
    renewable_kw: np.ndarray,
    import_limit_kw: float,
    export_limit_kw: float,
) -> Projection:
    """Project raw actions onto the feasible set.

    :param action: (N, 1 + P) raw actions; column 0 is the battery, then one column per port
    :param battery_lo: (N,) most negative feasible battery power now (kW; may be > 0 when
        self-discharge would take the SoC below its minimum)
    :param battery_hi: (N,) most positive feasible battery power now (kW)
    :param charge_kw: battery charging power limit, the scale of action +1
    :param discharge_kw: battery discharging power limit, the scale of action -1
    :param ev_lo: (N, P) lowest feasible port power (0, or negative with V2G)
    :param ev_hi: (N, P) highest feasible port power
    :param connected: (N, P) whether an EV is at the port (requests at empty ports are ignored, not
        counted as interventions)
    :param port_kw: port power limit, the scale of the port actions
    :param v2g: whether port actions below 0 mean discharging the car
    :param load_kw: (N,) building load
    :param renewable_kw: (N,) available PV + wind
    :param import_limit_kw: contracted import limit
    :param export_limit_kw: export limit
    """
    boxed = np.clip(np.nan_to_num(action, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    invalid = (boxed != action).any(axis=1)  # NaN compares unequal to everything
    a_bat = boxed[:, 0]
    want_bat = a_bat * np.where(a_bat >= 0, charge_kw, discharge_kw)
    want_ev = boxed[:, 1:] * port_kw if v2g else (boxed[:, 1:] + 1.0) * (0.5 * port_kw)
    bat = np.clip(want_bat, battery_lo, battery_hi)
    ev = np.clip(want_ev, ev_lo, ev_hi)

    net = load_kw - renewable_kw + bat + ev.sum(axis=1)
    excess_import = net - import_limit_kw
    unserved = np.zeros_like(net)
    if (excess_import > 0).any():
        over = np.maximum(excess_import, 0.0)
        cut_bat = np.minimum(over, bat - battery_lo)
        bat = bat - cut_bat
        over = over - cut_bat
        ev_room = ev - ev_lo
        room = ev_room.sum(axis=1)
        share = np.where(room > 0, np.minimum(over / np.maximum(room, 1e-12), 1.0), 0.0)
        ev = ev - ev_room * share[:, None]
        unserved = np.maximum(over - room * share, 0.0)
        net = load_kw - unserved - renewable_kw + bat + ev.sum(axis=1)

    excess_export = -net - export_limit_kw
    curtailed = np.zeros_like(net)
    if (excess_export > 0).any():
        over = np.maximum(excess_export, 0.0)
        curtailed = np.minimum(over, renewable_kw)
        over = over - curtailed
        raise_bat = np.minimum(over, np.maximum(battery_hi - bat, 0.0))
        bat = bat + raise_bat
        over = over - raise_bat
        ev_room = np.maximum(ev_hi - ev, 0.0)
        room = ev_room.sum(axis=1)
        share = np.where(room > 0, np.minimum(over / np.maximum(room, 1e-12), 1.0), 0.0)
        ev = ev + ev_room * share[:, None]

    changed = invalid | (np.abs(bat - want_bat) > TOLERANCE_KW) | ((np.abs(ev - want_ev) > TOLERANCE_KW) & connected).any(axis=1)
    return Projection(battery_kw=bat, ev_kw=ev, curtailed_kw=curtailed, unserved_kw=unserved, intervened=changed)
