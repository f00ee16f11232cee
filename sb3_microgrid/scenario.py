"""Typed, validated scenario of a microgrid: every physical and economic parameter lives here.

The environment, the vectorized core and the LP baselines all read their numbers from one
:class:`Scenario`, so they cannot disagree about the physics. Each field declares its allowed range
in its metadata; a value outside it raises :class:`ScenarioError` naming the field by its dotted path in a
scenario file (``battery.degradation.k_sigma``) and the allowed range.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Mapping

import yaml

from .common.yaml_files import load_yaml

INF = math.inf
# The series are hourly, so finer steps only interpolate them, while the site arrays grow with the steps:
# ten years at 5-minute steps hold about 150 MB per env process, at 1-minute steps about 720 MB.
MAX_STEPS_PER_HOUR = 12
# Bound on the aging stress one episode can add (see Scenario._check): SoH >= 0.5 * exp(-stress - ln 2) stays a
# positive double, so the capacity never reaches 0 (the SoC E / C divides by it); exp(-745) already rounds to 0.
MAX_EPISODE_STRESS = 700.0
# Bound on the arrays one microgrid's reset allocates (see Scenario.episode_bytes). The finest, longest episode with
# the default window (ten years at 5-minute steps, forecast_steps 24) needs about 2.1 GiB; beyond this a reset
# would exhaust the memory of an ordinary machine instead of failing with a message.
MAX_EPISODE_BYTES = 4 * 2**30
#: Names of the series in the observation window, in order (their forecast noise is drawn per series).
WINDOW_SERIES = ("pv", "wind", "load", "price", "emission")
# Load kinds and PV climates of the synthetic generator; their parameters are data/synthetic.py's
# LOAD_PROFILE_PARAMS and CLIMATE_PARAMS (named here too, so a scenario is checked without importing pandas).
LOAD_PROFILES = ("campus", "office", "hospital", "industry")
CLIMATES = ("pune", "jodhpur", "delhi", "chennai", "kolkata")


#: Fields of ``data`` that hold file paths (made absolute when a scenario is built).
DATA_PATHS = ("series_path", "sessions_path")

#: Values of ``ev.dispatch``.
EV_DISPATCH = ("ports", "aggregate")


class ScenarioError(ValueError):
    """An invalid scenario value, an unknown key or an unknown preset."""


def _f(default: Any, lo: float = -INF, hi: float = INF, *, lo_open: bool = False, doc: str = "") -> Any:
    """A dataclass field with an allowed range ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    return field(default=default, metadata={"range": (lo, hi, lo_open), "doc": doc})


#: Largest seed anywhere in the package: numpy's legacy seeding (SB3's ``set_random_seed``) takes [0, 2**32 - 1].
SEED_MAX = 2**32 - 1


def check_range(path: str, value: Any, lo: float, hi: float, lo_open: bool = False, integer: bool = False) -> None:
    """Raise :class:`ScenarioError` naming ``path`` and the range ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``) unless
    ``value`` is a finite number in it (an integer with ``integer``)."""
    # an infinite end is never in the range: an open bracket, as the docs write it
    allowed = f"{'(' if lo_open or lo == -INF else '['}{lo}, {hi}{')' if hi == INF else ']'}"
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise ScenarioError(f"{path} must be an integer in {allowed}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"{path} must be a number in {allowed}, got {value!r}")
    # an int is compared exactly (math.isfinite would overflow on a 400-digit one)
    if (isinstance(value, float) and not math.isfinite(value)) or value > hi or value < lo or (lo_open and value == lo):
        raise ScenarioError(f"{path} = {value!r} is outside the allowed range {allowed}")


class _Validated:
    """Range checks from field metadata, run after construction and after :func:`dataclasses.replace`."""

    #: Dotted path of the section in a scenario file; error messages name fields by it.
    _section: ClassVar[str] = ""

    @classmethod
    def _path(cls, name: str) -> str:
        return f"{cls._section}.{name}" if cls._section else name

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            # None is a value only where the field allows it (its default); a YAML key left blank is None
            if "range" in f.metadata and (value is not None or f.default is not None):
                check_range(self._path(f.name), value, *f.metadata["range"], integer=f.type in ("int", "int | None"))
            elif isinstance(f.default, bool) and not isinstance(value, bool):
                raise ScenarioError(f"{self._path(f.name)} must be true or false, got {value!r}")
        self._check()

    def _check(self) -> None:
        """Cross-field rules; subclasses override."""


@dataclass(frozen=True)
class DegradationConfig(_Validated):
    """Cycle + calendar aging of Xu et al., "Modeling of Lithium-Ion Battery Degradation for Cell Life
    Assessment", IEEE Trans. Smart Grid 9(2), 2018 (their LMO cell parameters), at a constant 25 °C.

    The ranges keep the model of ``envs/degradation.py`` meaningful: with ``k_delta1 > 0``, ``k_delta2 <= 0`` and
    ``k_delta1 + k_delta3 > 0`` the depth stress ``f_delta`` is positive and grows with depth on (0, 1];
    ``k_sigma >= 0`` makes a high SoC age faster; ``alpha_sei <= 0.5`` and ``beta_sei >= 1`` (SEI forms faster
    than linear aging) give ``0.5 exp(-f_d) <= SoH <= exp(-f_d)``. The upper bounds are plausibility limits far
    above published cells; :class:`Scenario` also bounds the stress of a whole episode.
    """

    _section: ClassVar[str] = "battery.degradation"

    alpha_sei: float = _f(5.75e-2, 0, 0.5, doc="share of capacity lost to SEI formation")
    beta_sei: float = _f(121.0, 1, 1e4, doc="SEI formation speed relative to linear aging")
    k_delta1: float = _f(1.40e5, 0, lo_open=True, doc="DoD stress coefficient 1")
    k_delta2: float = _f(-0.501, -5, 0, doc="DoD stress exponent")
    k_delta3: float = _f(-1.23e5, doc="DoD stress coefficient 3")
    k_sigma: float = _f(1.04, 0, 5, doc="SoC stress coefficient")
    sigma_ref: float = _f(0.5, 0, 1, doc="reference SoC")
    k_time: float = _f(4.14e-10, 0, 1e-8, doc="calendar aging per second (1e-8: about a quarter of the capacity a year)")
    cycle_hysteresis: float = _f(0.02, 0, 0.5, doc="SoC reversal smaller than this is not a turning point")

    def _check(self) -> None:
        # f_delta(1) = 1 / (k1 + k3) must be a positive, finite damage per full cycle.
        if self.k_delta1 + self.k_delta3 <= 0:
            raise ScenarioError(
                f"{self._path('k_delta1')} + k_delta3 = {self.k_delta1 + self.k_delta3!r} must be > 0 "
                "(the stress of a full cycle is 1 / (k_delta1 + k_delta3))"
            )

    def max_daily_stress(self, steps_per_day: int) -> float:
        """Upper bound on the stress ``f_d`` one day adds: every step and midnight close a full-depth half cycle
        at the worst SoC, and the calendar term runs at the worst SoC all day."""
        worst_soc_stress = math.exp(self.k_sigma * (1.0 - self.sigma_ref))  # k_sigma >= 0: SoC = 1 is worst
        half_cycles = (steps_per_day + 1) * 0.5 / (self.k_delta1 + self.k_delta3)
        return worst_soc_stress * (half_cycles + self.k_time * 86400.0)


@dataclass(frozen=True)
class BatteryConfig(_Validated):
    _section: ClassVar[str] = "battery"

    capacity_kwh: float = _f(1500.0, 0, 1e7, lo_open=True, doc="nominal energy capacity (kWh)")
    charge_power_kw: float = _f(500.0, 0, 1e7, doc="maximum AC charging power (kW)")
    discharge_power_kw: float = _f(500.0, 0, 1e7, doc="maximum AC discharging power (kW)")
    # at least 0.5 (lithium-ion cells: above 0.9): the end-of-horizon price divides by the charge efficiency
    charge_efficiency: float = _f(0.95, 0.5, 1, doc="AC to stored energy")
    discharge_efficiency: float = _f(0.95, 0.5, 1, doc="stored energy to AC")
    soc_min: float = _f(0.1, 0, 1, doc="lowest allowed state of charge (fraction of current capacity)")
    soc_max: float = _f(0.9, 0, 1, doc="highest allowed state of charge")
    initial_soc: float = _f(0.5, 0, 1, doc="SoC at reset, clipped into [soc_min, soc_max]")
    initial_soh: float = _f(1.0, 0.5, 1, doc="state of health at reset (capacity / nominal)")
    self_discharge_per_hour: float = _f(4e-5, 0, 0.01, doc="fraction of stored energy lost per hour")
    # The bounds keep the wear cost price / (2 cycle_life cycle_life_dod) at most 1e7 Rs/kWh, so costs stay finite.
    price_inr_per_kwh: float = _f(15000.0, 0, 1e6, doc="pack price used for the linear wear cost (Rs/kWh); packs cost about 1e4")
    cycle_life: float = _f(6000.0, 1, 1e5, doc="full cycles to end of life at cycle_life_dod (LFP cells: about 1e4)")
    cycle_life_dod: float = _f(0.8, 0.05, 1, doc="depth of discharge of the rated cycle life (datasheets rate it at 0.5-1)")
    degradation: DegradationConfig = field(default_factory=DegradationConfig)

    def _check(self) -> None:
        if self.soc_min >= self.soc_max:
            raise ScenarioError(
                f"battery.soc_min ({self.soc_min}) must be < soc_max ({self.soc_max}); allowed range 0 <= soc_min < soc_max <= 1"
            )
        # The supervisor holds the SoC at soc_min against self-discharge by charging; it must be able to.
        hourly_loss = self.self_discharge_per_hour * self.capacity_kwh
        if self.charge_power_kw * self.charge_efficiency < hourly_loss:
            raise ScenarioError(
                f"battery.charge_power_kw ({self.charge_power_kw}) x charge_efficiency must cover the self-discharge "
                f"of a full battery ({hourly_loss:.6g} kW); allowed range: charge_power_kw >= {hourly_loss / self.charge_efficiency:.6g}"
            )

    @property
    def wear_cost_inr_per_kwh(self) -> float:
        """Linear wear cost per kWh of AC throughput (charge plus discharge):
        price / (2 x cycle life x DoD)."""
        return self.price_inr_per_kwh / (2.0 * self.cycle_life * self.cycle_life_dod)


@dataclass(frozen=True)
class PVConfig(_Validated):
    _section: ClassVar[str] = "pv"

    capacity_kwp: float = _f(400.0, 0, 1e7, doc="installed rooftop PV (kWp)")


@dataclass(frozen=True)
class WindConfig(_Validated):
    """A generic turbine power curve: cubic between cut-in and rated speed, flat to cut-out."""

    _section: ClassVar[str] = "wind"

    rated_kw: float = _f(100.0, 0, 1e7, doc="rated power (kW)")
    cut_in_ms: float = _f(3.0, 0, 50, doc="cut-in wind speed (m/s)")
    rated_ms: float = _f(12.0, 0, 50, lo_open=True, doc="rated wind speed (m/s)")
    cut_out_ms: float = _f(25.0, 0, 80, lo_open=True, doc="cut-out wind speed (m/s)")

    def _check(self) -> None:
        if not self.cut_in_ms < self.rated_ms < self.cut_out_ms:
            raise ScenarioError("wind.cut_in_ms, rated_ms, cut_out_ms: need cut_in_ms < rated_ms < cut_out_ms")


@dataclass(frozen=True)
class GridConfig(_Validated):
    """Import tariff, export price, contracted limits and the demand charge.

    ``tariff = "exchange"``: import price = day-ahead exchange price (capped) + ``network_charge``.
    ``tariff = "tod"``: the regulated time-of-day tariff of India's Electricity (Rights of Consumers)
    Amendment Rules 2023: ``normal_rate`` times ``peak_multiplier`` in peak hours and
    ``solar_multiplier`` in the solar hours.
    """

    _section: ClassVar[str] = "grid"

    tariff: str = "exchange"
    network_charge_inr_per_kwh: float = _f(3.6, 0, 100, doc="wheeling, losses and duties on top of the exchange price")
    exchange_price_cap: float = _f(10.0, 0, 100, lo_open=True, doc="exchange price cap (Rs/kWh)")
    normal_rate_inr_per_kwh: float = _f(8.5, 0, 100, doc="ToD normal rate (Rs/kWh)")
    peak_multiplier: float = _f(1.2, 1.2, 5, doc="ToD peak rate / normal rate (rules: at least 1.2)")
    solar_multiplier: float = _f(0.8, 0, 0.8, doc="ToD solar-hours rate / normal rate (rules: at most 0.8)")
    peak_hours: tuple[int, int] = (17, 23)
    solar_hours: tuple[int, int] = (9, 17)
    export_price_inr_per_kwh: float = _f(3.0, 0, 100, doc="feed-in price (Rs/kWh)")
    # at least 1 kW: it divides the day-peak observation, which a limit of 1e-300 kW made infinite
    import_limit_kw: float = _f(1200.0, 1, 1e7, doc="contracted import limit (kW)")
    export_limit_kw: float = _f(300.0, 0, 1e7, doc="export limit (kW)")
    demand_charge_inr_per_kva_month: float = _f(350.0, 0, 1e5, doc="demand charge on the monthly peak (Rs/kVA/month)")
    power_factor: float = _f(0.95, 0.5, 1, doc="kVA = kW / power factor (utilities penalise a factor below about 0.9)")

    def _check(self) -> None:
        if self.tariff not in ("exchange", "tod"):
            raise ScenarioError(f"{self._path('tariff')} = {self.tariff!r}; allowed: 'exchange', 'tod'")
        for name in ("peak_hours", "solar_hours"):
            hours = getattr(self, name)
            pair = isinstance(hours, tuple) and len(hours) == 2
            if not (pair and all(isinstance(h, int) and not isinstance(h, bool) for h in hours) and 0 <= hours[0] < hours[1] <= 24):
                raise ScenarioError(f"{self._path(name)} = {hours!r}: need [start, end], whole hours with 0 <= start < end <= 24")
        if self.solar_hours[1] - self.solar_hours[0] > 8 and self.tariff == "tod":
            raise ScenarioError(f"{self._path('solar_hours')} may span at most 8 hours under the 2023 rules")
        if self.tariff == "tod":
            # normal_rate x peak_multiplier divides the price observation (envs/site.py): a zero rate would give 0 / 0
            _, hi, _ = self.__dataclass_fields__["normal_rate_inr_per_kwh"].metadata["range"]
            check_range(f"{self._path('normal_rate_inr_per_kwh')} (tariff 'tod')", self.normal_rate_inr_per_kwh, 0, hi, lo_open=True)

    def tod_factors(self) -> tuple[float, ...]:
        """ToD rate / ``normal_rate_inr_per_kwh`` in each hour of the day, 0 to 23 (peak wins where the windows overlap)."""

        def factor(hour: int) -> float:
            if self.peak_hours[0] <= hour < self.peak_hours[1]:
                return self.peak_multiplier
            return self.solar_multiplier if self.solar_hours[0] <= hour < self.solar_hours[1] else 1.0

        return tuple(factor(hour) for hour in range(24))

    def check_export_price(self, volatility: float) -> None:
        """Raise :class:`ScenarioError` unless the export price is at most the cheapest import price the tariff gives at
        this price volatility: otherwise buying to sell pays, and so does storing cheap imports for the end-of-horizon
        credit (docs/environment.md, section 8).

        :param volatility: the difficulty's ``price_volatility``, which stretches the ToD rates around their daily mean
        """
        export = self.export_price_inr_per_kwh
        if self.tariff == "exchange":
            # the stretched exchange price is clipped at 0 before the network charge is added
            cheapest, context, hint = self.network_charge_inr_per_kwh, "", ""
        else:
            rates = [self.normal_rate_inr_per_kwh * f for f in self.tod_factors()]
            lowest, spread = min(rates), sum(rates) / len(rates) - min(rates)
            # envs/episode.py: max(m + v (x - m), 0) at the lowest rate x, written so that v = 1 gives x exactly
            cheapest = max(lowest + (1.0 - volatility) * spread, 0.0)
            most = 1.0 + (lowest - export) / spread if spread > 0 else INF
            context = f" under tariff 'tod' at difficulty.price_volatility = {volatility}"
            hint = f", or difficulty.price_volatility in [0, {most:.6g}]" if most >= 0 else ""
        if export > cheapest:
            raise ScenarioError(
                f"{self._path('export_price_inr_per_kwh')} ({export}) must not exceed the lowest possible import price "
                f"({cheapest:.6g}){context}; allowed range [0, {cheapest:.6g}]{hint}"
            )


@dataclass(frozen=True)
class EVConfig(_Validated):
    _section: ClassVar[str] = "ev"

    n_ports: int = _f(12, 0, 1000, doc="charging ports")
    port_power_kw: float = _f(11.0, 0, 1000, lo_open=True, doc="power limit of each port (kW)")
    charger_efficiency: float = _f(0.95, 0, 1, lo_open=True, doc="energy into the car / energy from the bus")
    v2g: bool = False
    unmet_penalty_inr_per_kwh: float = _f(25.0, 0, 1e4, doc="penalty per kWh still missing at departure")
    #: the EV part of the action: one entry per port (``ports``), or one entry for the whole fleet that the
    #: physics shares out least laxity first (``aggregate``; docs/environment.md, section 3)
    dispatch: str = "ports"

    def _check(self) -> None:
        if self.dispatch not in EV_DISPATCH:
            raise ScenarioError(f"{self._path('dispatch')} = {self.dispatch!r}; allowed: {', '.join(map(repr, EV_DISPATCH))}")


@dataclass(frozen=True)
class ObservationConfig(_Validated):
    """Optional parts of the observation (docs/environment.md, section 4)."""

    _section: ClassVar[str] = "observation"

    #: append the site's constant description (battery hours, renewable and limit ratios, tariff), normalised so
    #: that sites of different size look alike
    site_context: bool = False


@dataclass(frozen=True)
class ForecastConfig(_Validated):
    """History and forecast window of the observation; forecast errors grow with lead time.

    The error of the forecast for target step ``tau`` issued ``l`` steps ahead is
    ``value * sigma * sqrt(1 / forecast_steps) * (u_0 + ... + u_l)[tau]``: each ``u_k`` is an AR(1)
    standard-normal path drawn at reset, so the error's variance grows linearly with the lead and a
    forecast revised one step closer drops one increment (docs/environment.md, section 4).
    """

    _section: ClassVar[str] = "forecast"

    history_steps: int = _f(8, 0, 1000, doc="past steps in the window")
    forecast_steps: int = _f(24, 1, 1000, doc="current and future steps in the window")
    load_noise: float = _f(0.05, 0, 2, doc="relative error of the load forecast at the longest lead")
    price_noise: float = _f(0.10, 0, 2, doc="relative error of the price forecast at the longest lead")
    emission_noise: float = _f(0.05, 0, 2, doc="relative error of the emission-factor forecast at the longest lead")
    error_autocorrelation: float = _f(0.8, 0, 1, lo_open=False, doc="AR(1) coefficient of each error path from one target step to the next")

    def _check(self) -> None:
        if self.error_autocorrelation >= 1:
            raise ScenarioError(f"{self._path('error_autocorrelation')} = {self.error_autocorrelation!r}; allowed range [0, 1)")


@dataclass(frozen=True)
class Difficulty(_Validated):
    """What a curriculum moves; applied at the next reset (see ``MicrogridEnv.set_difficulty``)."""

    _section: ClassVar[str] = "difficulty"

    renewable_noise: float = _f(0.2, 0, 2, doc="relative PV and wind forecast error at the longest lead")
    ev_count: int | None = _f(None, 0, 10000, doc="at most this many EV sessions a day (None: all)")
    price_volatility: float = _f(1.0, 0, 3, doc="scales the import price's deviation from its daily mean")
    soc_min: float | None = _f(None, 0, 1, doc="overrides BatteryConfig.soc_min")
    soc_max: float | None = _f(None, 0, 1, doc="overrides BatteryConfig.soc_max")
    ev_deadline_buffer: float = _f(0.0, 0, 24, doc="hours added to every EV's departure")

    def _check(self) -> None:
        if self.soc_min is not None and self.soc_max is not None and self.soc_min >= self.soc_max:
            raise ScenarioError(f"{self._path('soc_min')} ({self.soc_min}) must be < soc_max ({self.soc_max})")


@dataclass(frozen=True)
class RewardConfig(_Validated):
    """reward = -(sum_k weight_k * cost_k) / scale_inr, costs in rupees (see docs/environment.md)."""

    _section: ClassVar[str] = "reward"

    # at least a rupee: a smaller divisor would blow the costs up to an infinite reward
    scale_inr: float = _f(1000.0, 1, 1e9, doc="rupees per unit of reward")
    carbon_price_inr_per_kg: float = _f(0.0, 0, 1e4, doc="price on grid-import emissions (Rs/kg CO2)")
    unserved_penalty_inr_per_kwh: float = _f(200.0, 0, 1e6, doc="value of lost load when the supervisor must shed")
    weight_energy: float = _f(1.0, 0, 100)
    weight_demand: float = _f(1.0, 0, 100)
    weight_degradation: float = _f(1.0, 0, 100)
    weight_ev: float = _f(1.0, 0, 100)
    weight_carbon: float = _f(1.0, 0, 100)
    weight_unserved: float = _f(1.0, 0, 100)
    weight_terminal: float = _f(1.0, 0, 100)
    exogenous_baseline: bool = False  # subtract the uncontrolled net load's energy and carbon cost


@dataclass(frozen=True)
class DataConfig(_Validated):
    """Where the series come from: the synthetic generator (``series_path`` unset) or the user's files.

    A relative path in a scenario file is resolved against that file's folder (as ``base`` is), in a mapping or a
    :meth:`Scenario.replace` against the working folder, so a scenario built from either holds absolute paths.
    """

    _section: ClassVar[str] = "data"

    seed: int = _f(0, 0, SEED_MAX, doc="seed of the synthetic data and of sessions generated for the user's series")
    years: int = _f(10, 1, 100, doc="years of synthetic data")
    start_year: int = _f(2015, 1900, 2200)
    # at least 1 kW: the load observation and the site context divide by it, and 1e-200 kW made them infinite
    load_mean_kw: float = _f(316.0, 1, 1e7, doc="mean building load of the synthetic data (kW)")
    load_profile: str = "campus"  # load kind of the synthetic data, one of LOAD_PROFILES
    climate: str = "pune"  # PV, wind and cooling climate of the synthetic data, one of CLIMATES
    series_path: str | None = None
    sessions_path: str | None = None

    def _check(self) -> None:
        for name, allowed in (("load_profile", LOAD_PROFILES), ("climate", CLIMATES)):
            if getattr(self, name) not in allowed:
                raise ScenarioError(f"{self._path(name)} = {getattr(self, name)!r}; allowed: {', '.join(map(repr, allowed))}")
        for name in ("series_path", "sessions_path"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and value):
                raise ScenarioError(f"{self._path(name)} must be a file path or null, got {value!r}")
        if self.sessions_path is not None and self.series_path is None:
            raise ScenarioError(f"{self._path('sessions_path')} needs {self._path('series_path')}: sessions belong to a series")


@dataclass(frozen=True)
class Scenario(_Validated):
    """A whole microgrid: assets, tariff, EVs, forecasts, reward, difficulty and data source."""

    name: str = "campus"
    step_hours: float = _f(1.0, 0, 1, lo_open=True, doc=f"length of one step (h); 1/step_hours must be an integer <= {MAX_STEPS_PER_HOUR}")
    horizon_days: int = _f(1, 1, 3650, doc="days per episode")
    battery: BatteryConfig = field(default_factory=BatteryConfig)
    pv: PVConfig = field(default_factory=PVConfig)
    wind: WindConfig = field(default_factory=WindConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    ev: EVConfig = field(default_factory=EVConfig)
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    observation: ObservationConfig = field(default_factory=ObservationConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    difficulty: Difficulty = field(default_factory=Difficulty)
    data: DataConfig = field(default_factory=DataConfig)

    def _check(self) -> None:
        lo, hi = self.soc_bounds
        if lo >= hi:
            raise ScenarioError(f"difficulty/battery soc_min ({lo}) must be < soc_max ({hi})")
        if not isinstance(self.name, str) or not self.name or self.name != self.name.strip():
            raise ScenarioError(f"name must be a non-empty string without surrounding spaces, got {self.name!r}")
        self.grid.check_export_price(self.difficulty.price_volatility)
        per_hour = 1.0 / self.step_hours
        if abs(per_hour - round(per_hour)) > 1e-9 or round(per_hour) > MAX_STEPS_PER_HOUR:
            raise ScenarioError(
                f"step_hours = {self.step_hours}: 1 / step_hours must be an integer in [1, {MAX_STEPS_PER_HOUR}] "
                f"(1, 0.5, 0.25, ..., 1/{MAX_STEPS_PER_HOUR} h); the data are hourly and finer steps only cost memory"
            )
        stress = self.horizon_days * self.battery.degradation.max_daily_stress(self.steps_per_day)
        if stress > MAX_EPISODE_STRESS:
            raise ScenarioError(
                f"battery.degradation: an episode of horizon_days = {self.horizon_days} at {self.steps_per_day} steps/day can add "
                f"an aging stress of up to {stress:.4g} (horizon_days x exp(k_sigma (1 - sigma_ref)) x ((steps_per_day + 1) / "
                f"(2 (k_delta1 + k_delta3)) + 86400 k_time)); allowed range [0, {MAX_EPISODE_STRESS:g}], beyond which the "
                "state of health rounds to 0"
            )
        if self.episode_bytes > MAX_EPISODE_BYTES:
            f = self.forecast
            raise ScenarioError(
                f"horizon_days = {self.horizon_days} at step_hours = {self.step_hours} with forecast.history_steps = "
                f"{f.history_steps}, forecast.forecast_steps = {f.forecast_steps} and ev.n_ports = {self.ev.n_ports} needs "
                f"{self.episode_bytes / 2**30:.3g} GiB of episode arrays per microgrid at reset; allowed at most "
                f"{MAX_EPISODE_BYTES / 2**30:g} GiB (shorten the horizon or the forecast window, or lengthen the step)"
            )

    @property
    def soc_bounds(self) -> tuple[float, float]:
        """``(soc_min, soc_max)`` the supervisor holds the battery in: the difficulty's overrides, else the battery's."""
        lo = self.battery.soc_min if self.difficulty.soc_min is None else self.difficulty.soc_min
        hi = self.battery.soc_max if self.difficulty.soc_max is None else self.difficulty.soc_max
        return lo, hi

    @property
    def steps_per_day(self) -> int:
        return int(round(24 / self.step_hours))

    @property
    def episode_steps(self) -> int:
        return self.steps_per_day * self.horizon_days

    @property
    def episode_bytes(self) -> int:
        """Bytes of the largest arrays one microgrid's reset builds (envs/episode.py), 8 per value: the forecast noise
        ``(H + T + F) x F x S``, the forecast errors ``(T + 1) x F x S``, the window ``(H + T + F) x S`` and the EV
        arrivals ``2 x T x n_ports`` (``T`` steps, window of ``H`` past and ``F`` forecast steps of ``S`` series)."""
        f, T, S = self.forecast, self.episode_steps, len(WINDOW_SERIES)
        span = f.history_steps + T + f.forecast_steps
        return 8 * (span * f.forecast_steps * S + (T + 1) * f.forecast_steps * S + span * S + 2 * T * self.ev.n_ports)

    def replace(self, **changes: Any) -> "Scenario":
        """A copy with top-level fields or nested ``section__field`` keys changed (validated)."""
        return from_dict(_merge(to_dict(self), _nest(changes)))

    # ---- YAML -------------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> "Scenario":
        """A scenario from a YAML file; relative ``base`` and ``data`` paths in it are resolved against its folder."""
        return _from_yaml(Path(path), ())

    def to_yaml(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump(to_dict(self), fh, sort_keys=False)


def _from_yaml(path: Path, chain: tuple[Path, ...]) -> Scenario:
    """:meth:`Scenario.from_yaml`, with the files of the ``base`` chain that led here (to report a cycle)."""
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(resolved) :], resolved))
        raise ScenarioError(f"base: the scenario files form a cycle: {cycle}")
    try:
        with open(path, encoding="utf-8") as fh:
            raw = load_yaml(fh) or {}
    # ValueError: not UTF-8, or an integer of over 4300 digits; RecursionError: nested too deeply
    except (OSError, ValueError, yaml.YAMLError, RecursionError) as err:
        raise ScenarioError(f"{path}: cannot read the scenario file ({err})") from err
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: the top level of a scenario file must be a mapping")
    return _with_base(raw, path.absolute().parent, (*chain, resolved))


def _with_base(raw: Mapping[str, Any], folder: Path, chain: tuple[Path, ...] = ()) -> Scenario:
    """A scenario from a mapping whose optional ``base`` (a preset or a YAML path) supplies every field the
    mapping leaves out; a relative ``base``, ``data.series_path`` or ``data.sessions_path`` is resolved against
    ``folder``.

    :param raw: the mapping, as read from a file
    :param folder: folder of the file (the working folder for a mapping given in code)
    :param chain: resolved files of the ``base`` chain so far
    """
    raw = dict(raw)
    base = raw.pop("base", None)
    data = raw.get("data")
    if isinstance(data, Mapping):  # anything else is reported by from_dict
        raw["data"] = {k: _resolve(v, folder) if k in DATA_PATHS else v for k, v in data.items()}
    if base is None:
        return from_dict(raw)
    if not isinstance(base, str) or not base:
        raise ScenarioError(f"base must be a preset name {list(PRESETS)} or a path to a YAML file, got {base!r}")
    if base in PRESETS:
        start = _preset(base, chain)
    else:
        path = Path(_resolve(base, folder))
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            raise ScenarioError(f"base = {base!r}: no such preset {list(PRESETS)} or YAML file ({path})")
        start = _from_yaml(path, chain)
    return from_dict(_merge(to_dict(start), raw))


def _resolve(value: Any, folder: Path | None) -> Any:
    """A relative path string made absolute against ``folder`` (None: the working folder, asked only then); anything
    else unchanged (validated later)."""
    if not (isinstance(value, str) and value and not Path(value).is_absolute()):
        return value
    return str(folder / value if folder is not None else Path(value).absolute())


def _preset(name: str, chain: tuple[Path, ...] = ()) -> Scenario:
    return _from_yaml(Path(str(resources.files("sb3_microgrid") / "scenarios" / f"{name}.yaml")), chain)


def _nest(changes: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in changes.items():
        parts = key.split("__")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def to_dict(obj: Any) -> Any:
    """A plain nested dict of a scenario (tuples as lists), as written to YAML."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return list(obj)
    return obj


def _build(cls: type, raw: Mapping[str, Any], path: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{path} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ScenarioError(f"unknown key(s) {unknown} in {path}; allowed: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        default = fields[name].default_factory if fields[name].default_factory is not dataclasses.MISSING else None
        if default is not None and dataclasses.is_dataclass(default):
            kwargs[name] = _build(default, value, f"{path}.{name}")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        elif isinstance(fields[name].default, float) and isinstance(value, int) and not isinstance(value, bool):
            # an integer beyond the largest float (YAML's 1 followed by 400 zeros) must fail the range check, not float()
            lo, hi, lo_open = fields[name].metadata["range"]
            check_range(cls._path(name), value, max(lo, -sys.float_info.max), min(hi, sys.float_info.max), lo_open)
            kwargs[name] = float(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def from_dict(raw: Mapping[str, Any]) -> Scenario:
    """Build and validate a :class:`Scenario` from a nested mapping (unknown keys are errors); relative data paths
    are resolved against the working folder.

    :param raw: nested mapping of fields, as :func:`to_dict` gives
    """
    data = raw.get("data")
    if isinstance(data, Mapping):  # anything else is reported by _build
        # a relative path kept as is was read against whatever folder the env was built in, and to_yaml wrote it
        # relative, so the reloaded scenario read a file next to the YAML file instead
        raw = {**raw, "data": {k: _resolve(v, None) if k in DATA_PATHS else v for k, v in data.items()}}
    return _build(Scenario, raw, "scenario")


PRESETS = ("campus", "campus_tod")


def load_scenario(scenario: str | Path | Scenario | Mapping[str, Any] | None = None) -> Scenario:
    """A scenario from a preset name, a YAML path, a mapping, or a :class:`Scenario` (returned as is).

    :param scenario: ``None`` or ``"campus"`` for the default, ``"campus_tod"``, a path to a YAML file,
        or a mapping of fields (whose ``base`` key, as in a YAML file, names the preset it changes).
    """
    if scenario is None:
        scenario = "campus"
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, Mapping):
        return _with_base(scenario, Path.cwd())
    text = str(scenario)
    if text in PRESETS:
        return _preset(text)
    if Path(text).suffix in (".yaml", ".yml") and Path(text).exists():
        return Scenario.from_yaml(text)
    raise ScenarioError(f"unknown scenario {text!r}: use one of {list(PRESETS)} or a path to a YAML file")
