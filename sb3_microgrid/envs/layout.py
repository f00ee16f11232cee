"""The observation's self-description, so no features extractor hard-codes indices."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..scenario import Scenario

#: Names of the site context features (``observation.site_context``), in order; ``envs.site.site_context`` gives
#: them (here, with the layouts, for the site controller, which does not import the simulator).
SITE_CONTEXT = (
    "site_battery_h",
    "site_battery_c_rate",
    "site_pv",
    "site_wind",
    "site_tod",
    "site_demand_charge",
    "site_import_limit",
    "site_export_limit",
    "site_ev_power",
    "site_v2g",
)


#: Most rows of history or forecast a layout read from a file may have (the scenario's bound on both).
MAX_WINDOW_STEPS = 1000


@dataclass(frozen=True)
class ObservationLayout:
    """Where each part of the flat observation vector lives.

    ``obs[static]`` is a vector of ``len(static_names)`` features. ``obs[window]`` reshaped to
    ``window_shape = (history_steps + forecast_steps, len(window_names))`` is the time-major window:
    row ``i`` is step ``t - history_steps + i`` (rows ``>= history_steps`` are forecasts, the current
    step first), column ``j`` is series ``window_names[j]``.
    """

    static_names: tuple[str, ...]
    window_names: tuple[str, ...]
    history_steps: int
    forecast_steps: int

    @property
    def n_static(self) -> int:
        return len(self.static_names)

    @property
    def window_shape(self) -> tuple[int, int]:
        return (self.history_steps + self.forecast_steps, len(self.window_names))

    @property
    def static(self) -> slice:
        return slice(0, self.n_static)

    @property
    def window(self) -> slice:
        rows, cols = self.window_shape
        return slice(self.n_static, self.n_static + rows * cols)

    @property
    def size(self) -> int:
        return self.window.stop

    def windows(self, obs: Any) -> Any:
        """The window of each observation, ``(..., H + F, S)``, as a view (numpy array or torch tensor).

        :param obs: observations ``(..., size)``
        """
        return obs[..., self.window].reshape(*obs.shape[:-1], *self.window_shape)

    def index(self, name: str) -> int:
        """Position of a static feature in the observation vector."""
        return self.static_names.index(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ObservationLayout":
        """The layout :meth:`to_dict` wrote, read from a file: checked, since a file may hold anything.

        :raises ValueError: naming the field, for a missing one, names that are not a list of strings, or a step
            count that is not an integer in [0, :data:`MAX_WINDOW_STEPS`]
        """
        if not isinstance(raw, dict):
            raise ValueError(f"an observation layout must be an object, got {type(raw).__name__}")
        fields = {}
        for name in ("static_names", "window_names"):
            names = raw.get(name)
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"layout field {name!r} must be a list of strings, got {names!r:.100}")
            fields[name] = tuple(names)
        for name in ("history_steps", "forecast_steps"):
            steps = raw.get(name)
            if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= MAX_WINDOW_STEPS:
                raise ValueError(f"layout field {name!r} must be an integer in [0, {MAX_WINDOW_STEPS}], got {steps!r:.100}")
            fields[name] = steps
        return cls(**fields)


def action_size(scenario: Scenario) -> int:
    """Entries of one microgrid's action: the battery, then one per EV port or one for the whole fleet."""
    return 2 if scenario.ev.dispatch == "aggregate" else 1 + scenario.ev.n_ports


@dataclass(frozen=True)
class ActionLayout:
    """What each entry of the action asks for, in kW before the safety supervisor (``docs/environment.md``,
    section 3). Every entry is in [-1, 1]; + is charging, of the battery or of a car.

    :param charge_power_kw: battery power at ``+1`` (AC side)
    :param discharge_power_kw: battery power at ``-1`` (AC side)
    :param n_ports: EV charging ports
    :param port_power_kw: the power limit of each port (bus side)
    :param v2g: ports may give power back (``-1`` is car to grid at full power; otherwise ``-1`` is 0 kW)
    :param dispatch: ``ports``: entries ``1 .. n_ports`` are the ports; ``aggregate``: entry 1 is the whole fleet,
        shared out to the cars least laxity first
    """

    charge_power_kw: float
    discharge_power_kw: float
    n_ports: int
    port_power_kw: float
    v2g: bool
    dispatch: str = "ports"

    @property
    def names(self) -> tuple[str, ...]:
        if self.dispatch == "aggregate":
            return ("battery", "ev")
        return ("battery", *(f"port{p}" for p in range(self.n_ports)))

    def to_dict(self) -> dict[str, Any]:
        """Each entry's name, meaning, unit and kW at -1, 0 and +1 (linear between -1 and 0 and between 0 and +1;
        for the fleet entry the most it can be: the share applies to what the connected cars can take or give)."""
        battery = {
            "name": "battery",
            "unit": "fraction of the battery's rated AC power",
            "meaning": "battery power, AC side: a * charge_power_kw if a >= 0 (charging), a * discharge_power_kw if a < 0 (discharging)",
            "kw": [-self.discharge_power_kw, 0.0, self.charge_power_kw],
        }
        if self.dispatch == "aggregate":
            fleet_kw = self.n_ports * self.port_power_kw
            if self.v2g:
                meaning = (
                    "fleet power, bus side: a >= 0 is the share a of what the connected cars can take this step, cars with the "
                    "least laxity first; a < 0 the share -a of what they can give back, cars with the most laxity first"
                )
                kw = [-fleet_kw, 0.0, fleet_kw]
            else:
                meaning = "fleet power, bus side: the share (a + 1) / 2 of what the connected cars can take this step, cars with the least laxity first; -1 is 0 kW"
                kw = [0.0, fleet_kw / 2, fleet_kw]
            ev = [{"name": "ev", "unit": "share of the power the connected cars can take (or give) now", "meaning": meaning, "kw": kw}]
        else:
            if self.v2g:
                meaning = "port power, bus side: a * port_power_kw; negative is car to grid, limited to the energy delivered to that car in its session"
                port_kw = [-self.port_power_kw, 0.0, self.port_power_kw]
            else:
                meaning = "port power, bus side: (a + 1) / 2 * port_power_kw; -1 is 0 kW, +1 full power"
                port_kw = [0.0, self.port_power_kw / 2, self.port_power_kw]
            ev = [{"name": name, "unit": "fraction of the port's power limit", "meaning": meaning, "kw": port_kw} for name in self.names[1:]]
        return {"low": -1.0, "high": 1.0, "kw_at": [-1.0, 0.0, 1.0], "entries": [battery, *ev], **asdict(self)}
