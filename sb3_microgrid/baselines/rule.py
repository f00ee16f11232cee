"""What an energy engineer would program without an optimiser: least-laxity EV charging,
self-consumption, time-of-use arbitrage and peak shaving, ending the episode with the charge it began with.

Each step reads the observation's forecast window (current step first, de-normalised to kW and Rs/kWh)
and the present state, then decides in this order:

1. EVs. A car whose laxity (hours to departure minus hours still needed at full power) is at most
   ``must_charge_laxity_steps`` steps charges at full power. The others, least laxity first, share the
   import headroom under the peak cap in a cheap step and only the renewable surplus otherwise. Cars are
   never discharged (V2G stays unused).
2. Battery. Store renewable surplus. In a cheap step refill from the grid under the peak cap: up to
   ``target_soc`` when arbitrage pays, otherwise back to the starting energy. In a dear step, when
   arbitrage pays, cover the load with the energy not kept back for dearer steps before the next cheap one.
3. End of the episode. The env charges a final shortfall against the starting energy at the episode's
   dearest price and credits a surplus at little more than the export price (docs/environment.md,
   section 8). Once the end is in the forecast window the battery never discharges below the starting
   energy minus what the remaining cheap steps can refill, buys back under the cap what the cheaper steps
   before the end cannot, and spends the energy above the starting level that no dearer step ahead needs.
4. Peak shaving. Discharge to hold the import at the peak cap, ``max(peak target, the day's peak so far)``:
   the demand charge is paid on each increase of the day's peak, so importing up to it again is free.

"Cheap" and "dear" rank the step's forecast price in the window: at or below its ``cheap_quantile``, at
or above its ``dear_quantile``. Arbitrage pays when a kWh bought at the cheap price and sold back at the
dear one after both conversion losses earns more than the wear of the round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..common.arguments import checked_number
from ..envs import MicrogridEnv
from ..envs.kernel import EV_HOURS_SCALE
from ..scenario import GridConfig
from .base import PORTS, battery_action, check_ports, port_actions

#: The largest ``grid.import_limit_kw`` a scenario allows: a higher peak target would mean nothing.
MAX_PEAK_TARGET_KW = GridConfig.__dataclass_fields__["import_limit_kw"].metadata["range"][1]


@dataclass
class RuleController:
    """Transparent rule-based dispatch (the module docstring gives the rules and their order).

    :param cheap_quantile: in [0, 1]; a step is cheap when its forecast price is at or below this quantile
        of the forecast window's prices (steps after the episode's end included: the window rolls on)
    :param dear_quantile: in [``cheap_quantile``, 1]; a step is dear when its forecast price is at or above
        this quantile
    :param target_soc: in [0, 1]; state of charge that arbitrage fills the battery to in cheap steps, held
        within the episode's SoC bounds; ``None``: the battery's ``soc_max``
    :param peak_target_kw: in [0, 1e7]; grid import (kW) the battery holds the site under (1e7 is the
        largest import limit a scenario allows; a target at the site's own limit is no cap); ``None``:
        ``peak_factor`` times the day's highest forecast net load (load minus PV and wind) seen so far,
        restarted at midnight. Scaling the peak rather than the mean adapts to days whose peak-to-mean
        ratio differs (sunny days, weekends). It needs a window of a day (the presets' 24 h) to see the
        day's peak before the cheap hours: with a shorter one, give ``peak_target_kw``
    :param peak_factor: in [0, 2]; fraction of the day's forecast peak kept as the target. The cap limits
        both the shaving and the midday refill; 0.9 shaves the top tenth of the peak and still leaves room
        to refill for arbitrage (lower factors save demand charge but lose more arbitrage than they save).
        0 holds the import at the day's peak so far; above 1 the cap only lets the refill and the EVs raise
        the day's peak (for a low demand rate), by up to the peak itself at 2; for no cap at all give a
        ``peak_target_kw`` at the import limit
    :param must_charge_laxity_steps: in [1, 10**6] (laxity is continuous: 1.5 steps is a threshold too); EVs
        with at most this many steps of laxity charge at full power. One step is the least that still finishes every car: laxity falls by one step
        per step waited, so with less a car can miss its last chance. Any value above the longest stay in
        steps charges every car at full power on arrival, as ``naive`` does; 10**6 steps outlasts any stay
    """

    cheap_quantile: float = 0.3
    dear_quantile: float = 0.7
    target_soc: float | None = None
    peak_target_kw: float | None = None
    peak_factor: float = 0.9
    must_charge_laxity_steps: float = 1.0

    name: ClassVar[str] = "rule"
    ev_dispatch: ClassVar[str] = PORTS

    def __post_init__(self) -> None:
        # Checked here: a NaN or out-of-range value would otherwise surface as unmet EV energy, supervisor
        # interventions or a silent clip many steps into an episode.
        self.cheap_quantile = checked_number("cheap_quantile", self.cheap_quantile, 0.0, 1.0)
        self.dear_quantile = checked_number("dear_quantile", self.dear_quantile, 0.0, 1.0)
        if self.cheap_quantile > self.dear_quantile:
            raise ValueError(f"need 0 <= cheap_quantile <= dear_quantile <= 1, got {self.cheap_quantile}, {self.dear_quantile}")
        if self.target_soc is not None:
            self.target_soc = checked_number("target_soc", self.target_soc, 0.0, 1.0)
        if self.peak_target_kw is not None:
            self.peak_target_kw = checked_number("peak_target_kw", self.peak_target_kw, 0.0, MAX_PEAK_TARGET_KW)
        self.peak_factor = checked_number("peak_factor", self.peak_factor, 0.0, 2.0)
        self.must_charge_laxity_steps = checked_number("must_charge_laxity_steps", self.must_charge_laxity_steps, 1, 10**6)

    def reset(self, env: MicrogridEnv, obs: np.ndarray) -> None:
        """Read the scenario and the observation layout, and record the episode's starting energy.

        :param env: the unwrapped env, just reset
        :param obs: its first observation
        """
        check_ports(env, self.name)
        sc, lay = env.scenario, env.obs_layout
        self._env, self._core, self._lay = env, env.core, lay
        columns = {name: i for i, name in enumerate(lay.window_names)}
        self._pv, self._wind, self._load, self._price = (columns[k] for k in ("pv", "wind", "load", "price"))
        # Multiplier that turns each window column into kW (or Rs/kWh for the price).
        self._unit = np.ones(len(lay.window_names))
        self._unit[self._pv] = sc.pv.capacity_kwp
        self._unit[self._wind] = sc.wind.rated_kw
        self._unit[[self._load, self._price]] = env.core.site.window_scale[[self._load, self._price]]
        ports = range(sc.ev.n_ports)
        self._connected = np.array([lay.index(f"ev{p}_connected") for p in ports], dtype=np.int64)
        self._need = np.array([lay.index(f"ev{p}_need_h") for p in ports], dtype=np.int64)
        self._left = np.array([lay.index(f"ev{p}_left_h") for p in ports], dtype=np.int64)
        self._time_left, self._day_peak = lay.index("time_left"), lay.index("day_peak")
        b = sc.battery
        self._round_trip = b.charge_efficiency * b.discharge_efficiency
        # Wear is paid on the kWh bought and again on the kWh sold back.
        self._round_trip_wear = b.wear_cost_inr_per_kwh * (1.0 + self._round_trip)
        self._start_energy = float(env.core.energy[0])
        self._peak_target = self.peak_target_kw

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The action for the current step.

        :param obs: the env's observation
        :return: ``[battery, port_0, ..., port_{P-1}]`` in [-1, 1]
        """
        sc = self._env.scenario
        steps_left = round(float(obs[self._time_left]) * sc.episode_steps)
        window = self._lay.windows(obs)[self._lay.history_steps :] * self._unit
        price = window[:, self._price]
        net = window[:, self._load] - window[:, self._pv] - window[:, self._wind]  # before battery and EVs
        cheap = price <= np.quantile(price, self.cheap_quantile)
        dear = price >= np.quantile(price, self.dear_quantile)
        cap = self._peak_cap(obs, net, steps_left)
        ev_kw = self._ev_power(obs, net[0], bool(cheap[0]), cap)
        p_bat = self._battery_power(net, price, cheap, dear, net[0] + ev_kw.sum(), cap, steps_left)
        action = np.r_[battery_action(p_bat, self._env), port_actions(ev_kw, self._env)]
        # float64: float32 rounding of a request at a limit would count as a supervisor intervention
        return np.clip(action, -1.0, 1.0)

    def _peak_cap(self, obs: np.ndarray, net: np.ndarray, steps_left: int) -> float:
        """Import (kW) not to exceed now: the peak target (updating the derived one), or the day's peak
        so far if that is already higher.

        :param obs: the observation (day's peak)
        :param net: forecast load minus renewables over the window (kW), now first
        :param steps_left: steps to the episode's end, this one included
        """
        sc = self._env.scenario
        if self.peak_target_kw is None:
            step_of_day = (sc.episode_steps - steps_left) % sc.steps_per_day
            today = net[: sc.steps_per_day - step_of_day]
            # A window shorter than a day reveals the day's peak bit by bit: keep the highest seen.
            seen = 0.0 if step_of_day == 0 else self._peak_target
            self._peak_target = max(seen, self.peak_factor * float(today.max()))
        return max(self._peak_target, float(obs[self._day_peak]) * sc.grid.import_limit_kw)

    def _ev_power(self, obs: np.ndarray, net_now: float, cheap_now: bool, cap: float) -> np.ndarray:
        """Bus-side power (kW) per port: least laxity first.

        :param obs: the observation (EV features)
        :param net_now: forecast load minus renewables now (kW)
        :param cheap_now: whether this step is cheap
        :param cap: import not to exceed (kW)
        """
        ev, dt = self._env.scenario.ev, self._env.scenario.step_hours
        on = obs[self._connected] > 0.5
        need_h, left_h = obs[self._need] * EV_HOURS_SCALE, obs[self._left] * EV_HOURS_SCALE
        full_kw = np.where(on, ev.port_power_kw * np.clip(need_h / dt, 0.0, 1.0), 0.0)  # at most what fills the car
        laxity = left_h - need_h
        must = on & (laxity <= self.must_charge_laxity_steps * dt)
        power = np.where(must, full_kw, 0.0)
        # The other cars share the headroom under the cap in a cheap step, only the renewable surplus otherwise.
        headroom = max((cap if cheap_now else 0.0) - net_now - power.sum(), 0.0)
        optional = on & ~must
        order = np.argsort(np.where(optional, laxity, np.inf), kind="stable")
        wanted = np.where(optional, full_kw, 0.0)[order]
        # Each car gets what is left of the headroom after the cars with less laxity.
        power[order] += np.clip(headroom - (np.cumsum(wanted) - wanted), 0.0, wanted)
        return power

    def _battery_power(
        self, net: np.ndarray, price: np.ndarray, cheap: np.ndarray, dear: np.ndarray, site: float, cap: float, steps_left: int
    ) -> float:
        """AC battery power (kW, + charging).

        :param net: forecast load minus renewables over the window (kW), now first
        :param price: forecast import price over the window (Rs/kWh)
        :param cheap: which window steps are cheap
        :param dear: which window steps are dear
        :param site: import now before the battery, EVs included (kW; negative: renewable surplus)
        :param cap: import not to exceed (kW)
        :param steps_left: steps to the episode's end, this one included
        """
        sc, core = self._env.scenario, self._core
        b, dt = sc.battery, sc.step_hours
        capacity = float(core.capacity[0])
        e_min, e_max = float(core.episode.soc_min[0]) * capacity, float(core.episode.soc_max[0]) * capacity
        start = float(np.clip(self._start_energy, e_min, e_max))  # capacity fade can lower e_max below it
        kept = float(core.energy[0]) * (1.0 - b.self_discharge_per_hour * dt)
        rows = np.arange(len(net))
        future = (rows >= 1) & (rows < steps_left)  # steps after the episode's end cost nothing

        def room_kw(level: float) -> float:
            return float(np.clip((level - kept) / (b.charge_efficiency * dt), 0.0, b.charge_power_kw))

        def spare_kw(level: float) -> float:
            return float(np.clip((kept - level) * b.discharge_efficiency / dt, 0.0, b.discharge_power_kw))

        def reserve(steps: np.ndarray) -> float:
            """Stored energy that covers the net load of those steps dearer than now."""
            covered = np.clip(net[steps & (price > price[0])], 0.0, b.discharge_power_kw)
            return float(covered.sum()) * dt / b.discharge_efficiency

        floor, excess_kw, buy_back_kw = e_min, 0.0, 0.0
        if steps_left <= len(net):  # the end is in view
            refill = np.clip(cap - net, 0.0, b.charge_power_kw) * (b.charge_efficiency * dt)  # kWh each step can store
            floor = max(start - float(refill[cheap & future].sum()), e_min)
            excess_kw = spare_kw(start + reserve(future))
            # Buy back now what the cheaper steps before the end cannot.
            buy_back_kw = min(room_kw(start - float(refill[future & (price < price[0])].sum())), max(cap - site, 0.0))

        cheap_price, dear_price = price[cheap].max(), price[dear].min()
        if site < 0.0:  # self-consumption
            p = min(-site, room_kw(e_max))
        elif excess_kw > 0.0:  # the end would credit it at about the export price only
            p = -min(site, excess_kw)
        elif cheap[0]:
            target = e_max if self.target_soc is None else float(np.clip(self.target_soc * capacity, e_min, e_max))
            p = min(room_kw(target if self._pays(price[0], dear_price) else start), max(cap - site, 0.0))
        elif dear[0] and self._pays(cheap_price, price[0]):
            # Keep enough for the dearer steps before the next chance to refill.
            p = -min(site, spare_kw(floor + reserve(future & (np.cumsum(cheap & future) == 0))))
        else:
            p = 0.0
        if buy_back_kw > 0.0:
            p = max(p, buy_back_kw)
        if site + p > cap:
            # Peak shaving may go below the floor: a kW off the day's peak saves the demand rate (Rs 12/kW a
            # day by default), more than buying back the energy that shaved it for a step usually costs.
            p = max(cap - site, -spare_kw(e_min))
        if kept < e_min:  # at the bottom of the window: make up the self-discharge, as the supervisor would
            p = max(p, room_kw(e_min))
        return p

    def _pays(self, buy: float, sell: float) -> bool:
        """Whether a kWh bought at ``buy`` and sold back at ``sell`` beats its losses and wear."""
        return sell * self._round_trip - buy > self._round_trip_wear
