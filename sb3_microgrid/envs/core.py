"""The physics of N microgrids stepped together: the one core behind every env face.

All N episodes have the same length and are reset together, so the step counter is shared.
Order within a step: safety supervisor -> battery -> EVs (and departures) -> grid -> costs and
emissions -> aging; then at a day boundary the battery's health is re-evaluated and the day's demand peak
restarts; then arrivals of the next step and the observation. Episodes are built with numpy at reset
(:mod:`.episode`); the step itself is the compiled loop of :mod:`.kernel`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Sequence

import numpy as np
import pandas as pd

from ..data import MicrogridData
from ..scenario import WINDOW_SERIES, Difficulty, Scenario, ScenarioError
from . import kernel
from .degradation import stress_for_soh
from .dispatch import FLEET_FEATURES
from .episode import Episode, build_episode, noise_shape
from .layout import SITE_CONTEXT, ObservationLayout, action_size
from .site import SiteArrays, build_site, episode_starts, site_context
from .time_features import TIME_FEATURES

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
#: Keys ``reset(options=...)`` understands (both env faces).
RESET_OPTIONS = ("day",)


def reset_day(options: dict | None) -> str | pd.Timestamp | None:
    """The start day asked for by reset ``options`` (``None``: draw one).

    :raises ValueError: for options that are not a mapping or hold a key other than :data:`RESET_OPTIONS`
    """
    if options is None:
        return None
    if not isinstance(options, dict):
        raise ValueError(f"reset options must be a dict, got {type(options).__name__}")
    unknown = sorted(set(options) - set(RESET_OPTIONS))
    if unknown:
        raise ValueError(f"unknown reset option(s) {unknown}; allowed: {list(RESET_OPTIONS)}")
    return options.get("day")


def observation_layout(scenario: Scenario) -> ObservationLayout:
    """The observation layout of a scenario."""
    ports = range(scenario.ev.n_ports)
    if scenario.ev.dispatch == "aggregate":
        ev = FLEET_FEATURES
    else:
        ev = (*(f"ev{p}_connected" for p in ports), *(f"ev{p}_need_h" for p in ports), *(f"ev{p}_left_h" for p in ports))
    static = (*TIME_FEATURES, "time_left", "soc", "soh", "day_peak", *ev, *(SITE_CONTEXT if scenario.observation.site_context else ()))
    f = scenario.forecast
    return ObservationLayout(static_names=static, window_names=WINDOW_SERIES, history_steps=f.history_steps, forecast_steps=f.forecast_steps)


def _real(value: object, shape: tuple[int, ...]) -> float:
    if not isinstance(value, numbers.Real):  # a 0-d array or tensor of a number (list(tensor)): its scalar
        scalar = np.asarray(value)
        if scalar.shape == () and scalar.dtype.kind in "iuf":
            value = scalar[()]
    # bool is an int to Python, and numpy reads True as 1.0 in a list of floats: refused, as the docs say
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"action must be an array of real numbers of shape {shape}, got an entry {value!r}")
    try:
        return float(value)
    except OverflowError:  # an int beyond the float range: out of the box, for the supervisor to project
        return math.inf if value > 0 else -math.inf


def real_action(action: object, shape: tuple[int, ...]) -> np.ndarray:
    """``action`` as a float64 array, its entries checked to be real numbers (not its shape).

    Numbers only: numpy would parse strings, read booleans as 0/1 and drop the imaginary part of complex numbers.
    An array of a numeric dtype passes as it is; Python sequences and object arrays are checked entry by entry.

    :param action: the action as given to ``step``
    :param shape: the expected shape, for the error message
    :raises ValueError: for an entry that is not a real number, or a ragged sequence
    """
    try:
        array = np.asarray(action)
    except ValueError as err:  # a ragged list
        raise ValueError(f"action must be an array of real numbers of shape {shape}: {err}") from None
    if array.dtype.kind not in "iufO":
        raise ValueError(f"action must be an array of real numbers of shape {shape}, got dtype {array.dtype}")
    if array.dtype.kind == "O" or isinstance(action, (list, tuple)):
        entries = array if array.dtype.kind == "O" else np.asarray(action, dtype=object)
        # Python floats and ints numpy converted exactly (a list of them is the common case): no entry to check
        if array.dtype.kind == "O" or not set(map(type, entries.ravel())) <= {float, int}:
            array = np.array([_real(value, shape) for value in entries.ravel()]).reshape(entries.shape)
    return array.astype(np.float64, copy=False)


class MicrogridCore:
    """State and step of N microgrids.

    :param scenario: the scenario
    :param n_envs: number of microgrids N
    :param split: ``"train"``, ``"validation"``, ``"test"`` or ``"all"``: the days episodes start on
    :param data: data to use instead of the scenario's own source
    :param single: the gymnasium face: :meth:`step` takes one microgrid's action, shape ``(A,)`` (``n_envs``
        must be 1), instead of ``(N, A)``; ``A`` is :func:`action_size`
    """

    def __init__(
        self, scenario: Scenario, n_envs: int, split: str = "train", data: MicrogridData | None = None, single: bool = False
    ) -> None:
        if isinstance(n_envs, bool) or not isinstance(n_envs, (int, np.integer)) or n_envs < 1:
            raise ValueError(f"n_envs must be an integer >= 1, got {n_envs!r}")
        if single and n_envs != 1:
            raise ValueError(f"a single-microgrid core needs n_envs = 1, got {n_envs}")
        self.scenario = scenario
        self.n = n_envs
        self.split = split
        self.site: SiteArrays = build_site(scenario, data)
        self.starts = episode_starts(self.site, split, scenario.horizon_days)
        self.layout = observation_layout(scenario)
        self._obs_dim = self.layout.size
        self.difficulty: list[Difficulty] = [scenario.difficulty] * n_envs
        self._pending: list[Difficulty | None] = [None] * n_envs
        self._params = kernel.pack_params(scenario)
        self._stress0 = stress_for_soh(scenario.battery.initial_soh, scenario.battery.degradation)
        p = scenario.ev.n_ports
        #: The site's constant description in the observation (empty unless ``observation.site_context``).
        self.context = site_context(scenario, self.site) if scenario.observation.site_context else np.zeros(0)
        #: The action shape :meth:`step` accepts.
        self.action_shape = (action_size(scenario),) if single else (n_envs, action_size(scenario))
        self.state = np.zeros((n_envs, kernel.N_STATE))
        self.connected = np.zeros((n_envs, p))
        self.remaining = np.zeros((n_envs, p))
        self.delivered = np.zeros((n_envs, p))
        self.deadline = np.zeros((n_envs, p), dtype=np.int64)
        self.info = np.zeros((n_envs, kernel.N_INFO))
        self.reward = np.zeros(n_envs)
        self.totals = np.zeros((n_envs, kernel.N_INFO))
        self.t = 0
        self.episode: Episode | None = None

    @property
    def soh(self) -> np.ndarray:
        """State of health (capacity / nominal) per microgrid, re-evaluated at each midnight."""
        return self.state[:, kernel.S_SOH]

    @property
    def energy(self) -> np.ndarray:
        """Stored energy (kWh) per microgrid."""
        return self.state[:, kernel.S_ENERGY]

    @property
    def capacity(self) -> np.ndarray:
        """Usable capacity (kWh) per microgrid: nominal x state of health."""
        return self.state[:, kernel.S_CAPACITY]

    @property
    def start_energy(self) -> np.ndarray:
        """Stored energy (kWh) per microgrid at the start of the episode: the end-of-episode rule's reference."""
        return self.state[:, kernel.S_START_ENERGY]

    @property
    def day_peak_kva(self) -> np.ndarray:
        """Highest apparent import (kVA) so far today per microgrid: the demand charge is paid on what exceeds it."""
        return self.state[:, kernel.S_PEAK_KVA]

    @property
    def start_days(self) -> list[str]:
        """The days (``YYYY-MM-DD``, in order) an episode of this core's split can start on."""
        return np.datetime_as_string(self.site.dates[self.starts].values, unit="D").tolist()

    # ---- difficulty ---------------------------------------------------------------------------
    def set_difficulty(self, index: int, **params: float | int | None) -> Difficulty:
        """Validate new difficulty parameters of microgrid ``index``; they apply at its next reset."""
        allowed = sorted(f.name for f in dataclasses.fields(Difficulty))
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ScenarioError(f"unknown difficulty parameter(s) {unknown}; allowed: {allowed}")
        # numpy scalars (a curriculum's interpolation) as Python numbers: the range checks and YAML take those
        params = {key: value.item() if isinstance(value, np.generic) else value for key, value in params.items()}
        merged = dataclasses.replace(self._pending[index] or self.difficulty[index], **params)
        lo = merged.soc_min if merged.soc_min is not None else self.scenario.battery.soc_min
        hi = merged.soc_max if merged.soc_max is not None else self.scenario.battery.soc_max
        if lo >= hi:
            raise ScenarioError(f"Difficulty soc_min ({lo}) must be < soc_max ({hi}) (with the battery's own bounds for unset ones)")
        self.scenario.grid.check_export_price(merged.price_volatility)  # stretched ToD rates must stay above the export price
        self._pending[index] = merged
        return merged

    # ---- reset --------------------------------------------------------------------------------
    def day_index(self, day: str | pd.Timestamp) -> int:
        """Index of a date among the episode start days of this core's split."""
        try:
            stamp = pd.Timestamp(day)
        except (TypeError, ValueError) as err:
            raise ValueError(f"day must be a date such as '2016-03-01', got {day!r}") from err
        if pd.isna(stamp):  # "", "NaT" and NaN parse to NaT, which has no date
            raise ValueError(f"day must be a date such as '2016-03-01', got {day!r}")
        if stamp.tz is not None:  # the data's times are naive local times: an aware one would match no day
            raise ValueError(f"day must be a local date without a time zone, such as '2016-03-01', got {day!r}")
        stamp = stamp.normalize()
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
        # Every requested day is checked before any state changes, so a bad one leaves the core as it was.
        if len(rngs) != self.n or (days is not None and len(days) != self.n):
            raise ValueError(f"reset needs one generator and (if any) one day per microgrid ({self.n}), got {len(rngs)} and {None if days is None else len(days)}")
        chosen = [None] * self.n if days is None else [None if day is None else self.day_index(day) for day in days]
        shape = noise_shape(self.scenario)
        start = np.empty(self.n, dtype=np.int64)
        noise = np.empty((self.n, *shape))
        for i, rng in enumerate(rngs):
            # random() rather than integers(): the same uniform draw at a fraction of the call cost
            start[i] = self.starts[int(rng.random() * self.starts.size)] if chosen[i] is None else chosen[i]
            rng.standard_normal(out=noise[i])
            if self._pending[i] is not None:
                self.difficulty[i], self._pending[i] = self._pending[i], None
        # split "all" runs across the splits' ends, and its forecasts with it
        split_end = None if self.split == "all" else self.site.split_end[start]
        ep = build_episode(self.site, self.scenario, start, self.difficulty, noise, split_end)
        self.episode = ep
        bat = self.scenario.battery
        st = self.state
        st[:] = 0.0
        st[:, kernel.S_SOH] = bat.initial_soh
        st[:, kernel.S_STRESS] = self._stress0
        st[:, kernel.S_CAPACITY] = bat.capacity_kwh * bat.initial_soh
        soc = np.clip(bat.initial_soc, ep.soc_min, ep.soc_max)
        st[:, kernel.S_ENERGY] = soc * st[:, kernel.S_CAPACITY]
        st[:, kernel.S_START_ENERGY] = st[:, kernel.S_ENERGY]
        st[:, kernel.S_LAST_TURN] = soc
        st[:, kernel.S_EXTREME] = soc
        for array in (self.connected, self.remaining, self.delivered, self.deadline, self.totals):
            array[:] = 0
        self.t = 0
        kernel.arrive(0, ep.arrival_energy, ep.arrival_deadline, self.connected, self.remaining, self.delivered, self.deadline)
        return self.observe()

    def episode_dates(self) -> list[str]:
        """First day of each current episode, as ``YYYY-MM-DD``."""
        return np.datetime_as_string(self.episode.dates.values, unit="D").tolist()

    def observe(self) -> np.ndarray:
        """Observations (N, obs_dim) of the current step."""
        ep = self.episode
        obs = np.empty((self.n, self._obs_dim), dtype=np.float32)
        kernel.observe(
            self.t, ep.n_steps, self._params, self.state, self.connected, self.remaining, self.delivered, self.deadline,
            ep.time_features, ep.window_mean, ep.window_error, self.scenario.forecast.history_steps, self.context, obs,
        )  # fmt: skip
        return obs

    # ---- step --------------------------------------------------------------------------------
    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, np.ndarray]:
        """Advance all N microgrids by one step.

        :param action: actions in [-1, 1] of shape :attr:`action_shape` (values outside the box, NaN and
            inf are projected by the supervisor; a wrong shape raises ``ValueError``)
        :return: observations (N, obs_dim), rewards (N,), whether the episodes ended, and the step's
            info array (N, len(STEP_KEYS)) whose columns are named by :data:`STEP_KEYS`
        """
        ep = self.episode
        if ep is None or self.t >= ep.n_steps:
            raise RuntimeError("the episode has ended (or never started): call reset() before step()")
        action = real_action(action, self.action_shape)
        # The compiled step reads A entries per microgrid whatever it is given: check before it.
        if action.shape != self.action_shape:
            raise ValueError(f"action must have shape {self.action_shape}, got shape {action.shape}")
        action = np.ascontiguousarray(action).reshape(self.n, -1)
        kernel.step(
            self.t, ep.n_steps, action, self._params, self.state, self.connected, self.remaining, self.delivered,
            self.deadline, ep.load_kw, ep.pv_kw, ep.wind_kw, ep.import_price, ep.emission, ep.demand_rate,
            ep.arrival_energy, ep.arrival_deadline, ep.soc_min, ep.soc_max, ep.shortfall_price, ep.surplus_price,
            self.info, self.reward, self.totals,
        )  # fmt: skip
        self.t += 1
        return self.observe(), self.reward.copy(), self.t == ep.n_steps, self.info.copy()

    def episode_metrics(self) -> dict[str, np.ndarray]:
        """Totals of the current episode, per microgrid (keys :data:`EPISODE_KEYS`)."""
        column = {key: self.totals[:, STEP_KEYS.index(key)] for key in STEP_KEYS}
        out = {
            "total_cost": column["cost"],
            **{key: column[key] for key in EPISODE_KEYS if key in column},
            "battery_degradation": self.scenario.battery.initial_soh - self.soh,
        }
        return {key: np.array(out[key]) for key in EPISODE_KEYS}
