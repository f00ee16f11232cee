"""A family of microgrid sites: load kinds, PV climates, assets, tariffs and grid limits (issue 11, "Sites").

Every site is a validated :class:`~sb3_microgrid.scenario.Scenario` built on the ``campus`` preset, with its own
data seed and hence its own deterministic ten years (2015-2024: train 2015-2022, validation 2023, test 2024).

- :data:`SITE_PRESETS`: hand-made sites (a 200 kW clinic, a 2 MW campus, an office park, a factory, ...). They are
  the held-out set (:func:`held_out_sites`): the test of adaptation, never used in training.
- :func:`sample_sites` / :func:`training_sites`: sites drawn from the ranges below, deterministic from a seed.
- :func:`check_not_held_out`: the guard training code calls; it raises :class:`HeldOutSiteError`.

Held-out sites take their data seeds from :data:`HELD_OUT_DATA_SEEDS`, sampled sites from the disjoint
:data:`TRAINING_DATA_SEEDS`, so a sampled site is never held out by construction. Sizes are given relative to the
mean load so that the same draw describes a clinic and a campus. The ranges and their sources are listed in
``docs/data_card.md``, section "Sites"; ``[est]`` there marks an engineering estimate.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .scenario import CLIMATES, LOAD_PROFILES, SEED_MAX, Scenario, ScenarioError, check_range, load_scenario

# Data seeds 0-999 are left to hand-written scenarios (the default campus uses 0). The two ranges are disjoint.
TRAINING_DATA_SEEDS = range(1_000, 2**31)
HELD_OUT_DATA_SEEDS = range(2**31, 2**31 + 1_000)

# Mean building load by load kind (kW) [est]: from a small college, clinic or office block to a large campus,
# hospital or factory supplied at high tension.
LOAD_MEAN_KW: dict[str, tuple[float, float]] = {
    "campus": (150.0, 2500.0),
    "office": (100.0, 1500.0),
    "hospital": (100.0, 1500.0),
    "industry": (150.0, 3000.0),
}
# Upper bound on an hour's load / mean load of each kind: the largest ratio over the five climates and data seeds 0-7
# (campus 2.51, office 3.24, hospital 1.52, industry 1.94), rounded up with about 8 % margin. Sizes the import limit.
PEAK_TO_MEAN: dict[str, float] = {"campus": 2.7, "office": 3.5, "hospital": 1.7, "industry": 2.1}
PV_KWP_PER_KW = (0.3, 2.0)  # rooftop PV per kW of mean load [est]; the campus has 400 / 316 = 1.27
WIND_SHARE = 0.4  # share of sites with a small turbine [est]; the others have none
WIND_KW_PER_KW = (0.1, 0.6)  # rated wind per kW of mean load where there is a turbine [est]; campus 100 / 316 = 0.32
BATTERY_SHARE = 0.8  # share of sites with a battery [est]
BATTERY_HOURS = (1.0, 6.0)  # capacity / mean load (h) [est]; campus 1500 / 316 = 4.7
BATTERY_C_RATE = (0.25, 1.0)  # power / capacity (1/h) [est]: 4-hour to 1-hour systems; campus 1/3
# Without a battery, BatteryConfig still needs a positive capacity: a 1 kWh placeholder at 0 kW charge and discharge
# power, without self-discharge (which the supervisor could not make up at 0 kW) and calendar aging.
NO_BATTERY_CAPACITY_KWH = 1.0
CHARGER_SHARE = 0.8  # share of sites with EV chargers [est]
PORTS_PER_100_KW = (1.0, 5.0)  # EV ports per 100 kW of mean load [est]; campus 12 / 3.16 = 3.8
MAX_PORTS = 40  # the observation has three entries and the action one per port
# AC port powers (kW): Bharat AC-001 outlet 3.3 (230 V, 15 A), single-phase 32 A 7.4, three-phase 16 A 11 (campus),
# three-phase 32 A 22.
PORT_POWERS_KW = (3.3, 7.4, 11.0, 22.0)
TARIFFS = ("exchange", "tod")
NETWORK_CHARGE_INR_PER_KWH = (3.0, 4.5)  # on top of the exchange price [est]; campus 3.6 [est]
# ToD normal rate (Rs/kWh) [est] around the Delhi non-domestic rate of about Rs 8.50/kVAh (CALIBRATION.md), applied
# per kWh as campus_tod's is (the env bills kWh).
NORMAL_RATE_INR_PER_KWH = (6.5, 10.0)
# Consumer rules 2023: peak at least 1.2x the normal rate, solar hours at least 20 % below it; the 2024 EV charging
# guidelines use 0.7x in solar hours. The upper peak bound 1.3 is [est].
PEAK_MULTIPLIER = (1.2, 1.3)
SOLAR_MULTIPLIER = (0.7, 0.8)
# Demand charge (Rs/kVA/month) [est] around the Delhi figure of about Rs 250 (CALIBRATION.md); campus 350 [est].
DEMAND_CHARGE_INR_PER_KVA_MONTH = (150.0, 500.0)
# Feed-in price (Rs/kWh) [est]; campus 3.0. Below the cheapest import price of every site, as Scenario requires.
EXPORT_PRICE_INR_PER_KWH = (2.0, 3.0)
# Contracted import / (peak load + all ports at full power) [est]; campus 1200 / (2.7 x 316 + 12 x 11) = 1.22.
IMPORT_HEADROOM = (1.1, 1.5)
EXPORT_SHARE = 0.75  # share of sites allowed to export [est]; the others are zero-export connections
EXPORT_LIMIT_PER_KW = (0.25, 1.0)  # export limit / (PV + wind capacity) where export is allowed [est]
# Rupees per unit of reward per kW of mean load: the campus's 1000 Rs at 316 kW, so rewards of a 200 kW clinic and
# a 2 MW campus have the same size.
REWARD_SCALE_INR_PER_KW = 1000.0 / 316.0


class HeldOutSiteError(ValueError):
    """A held-out site was given to training or meta-training."""


def _check_optional(path: str, value: float, bounds: tuple[float, float]) -> None:
    """Raise :class:`ScenarioError` unless ``value`` is 0 (the asset is absent) or lies in ``bounds``.

    :param path: field name for the message
    :param value: the value
    :param bounds: allowed ``(lo, hi)`` when not 0
    """
    check_range(path, value, 0.0, bounds[1])
    if 0 < value < bounds[0]:
        raise ScenarioError(f"{path} = {value!r}; allowed: 0 (none) or [{bounds[0]}, {bounds[1]}]")


@dataclass(frozen=True)
class SiteSpec:
    """One site in relative terms, checked against the family's ranges; :meth:`scenario` builds its scenario.

    :param name: scenario name, a non-empty string
    :param data_seed: seed of the site's synthetic data, an integer in ``[0,`` :data:`~sb3_microgrid.scenario.SEED_MAX` ``]`` (:data:`HELD_OUT_DATA_SEEDS`
        for a held-out site, :data:`TRAINING_DATA_SEEDS` for a sampled one)
    :param load_profile: one of ``LOAD_PROFILES``
    :param climate: one of ``CLIMATES``
    :param load_mean_kw: mean building load (kW), in ``LOAD_MEAN_KW[load_profile]``
    :param pv_kwp_per_kw: PV peak per kW of mean load
    :param wind_kw_per_kw: rated wind per kW of mean load, 0 for no turbine
    :param battery_hours: battery capacity / mean load (h), 0 for no battery
    :param battery_c_rate: battery power / capacity (1/h), ignored without battery
    :param ports_per_100_kw: EV ports per 100 kW of mean load (rounded, at least 1, at most ``MAX_PORTS``), 0 for none
    :param port_power_kw: power of each port, one of ``PORT_POWERS_KW``
    :param tariff: ``"exchange"`` or ``"tod"``
    :param network_charge_inr_per_kwh: on top of the exchange price (exchange tariff)
    :param normal_rate_inr_per_kwh: ToD normal rate (ToD tariff)
    :param peak_multiplier: ToD peak rate / normal rate
    :param solar_multiplier: ToD solar-hours rate / normal rate
    :param demand_charge_inr_per_kva_month: demand charge on the monthly peak
    :param export_price_inr_per_kwh: feed-in price
    :param import_headroom: contracted import / (peak load + all ports at full power)
    :param export_per_kw: export limit / (PV + wind capacity), 0 for a zero-export connection
    """

    name: str
    data_seed: int
    load_profile: str
    climate: str
    load_mean_kw: float
    pv_kwp_per_kw: float
    wind_kw_per_kw: float
    battery_hours: float
    battery_c_rate: float
    ports_per_100_kw: float
    port_power_kw: float
    tariff: str
    network_charge_inr_per_kwh: float
    normal_rate_inr_per_kwh: float
    peak_multiplier: float
    solar_multiplier: float
    demand_charge_inr_per_kva_month: float
    export_price_inr_per_kwh: float
    import_headroom: float
    export_per_kw: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ScenarioError(f"site name must be a non-empty string, got {self.name!r}")
        # The scenario's data.seed range, checked here so that the error names the site and this field.
        check_range(f"site {self.name!r}: data_seed", self.data_seed, 0, SEED_MAX, integer=True)
        for name, allowed in (("load_profile", LOAD_PROFILES), ("climate", CLIMATES), ("tariff", TARIFFS), ("port_power_kw", PORT_POWERS_KW)):
            if getattr(self, name) not in allowed:
                raise ScenarioError(f"site {self.name!r}: {name} = {getattr(self, name)!r}; allowed: {', '.join(map(repr, allowed))}")
        check_range(f"site {self.name!r}: load_mean_kw", self.load_mean_kw, *LOAD_MEAN_KW[self.load_profile])
        for path, value, bounds in (
            ("pv_kwp_per_kw", self.pv_kwp_per_kw, PV_KWP_PER_KW),
            ("battery_c_rate", self.battery_c_rate, BATTERY_C_RATE),
            ("network_charge_inr_per_kwh", self.network_charge_inr_per_kwh, NETWORK_CHARGE_INR_PER_KWH),
            ("normal_rate_inr_per_kwh", self.normal_rate_inr_per_kwh, NORMAL_RATE_INR_PER_KWH),
            ("peak_multiplier", self.peak_multiplier, PEAK_MULTIPLIER),
            ("solar_multiplier", self.solar_multiplier, SOLAR_MULTIPLIER),
            ("demand_charge_inr_per_kva_month", self.demand_charge_inr_per_kva_month, DEMAND_CHARGE_INR_PER_KVA_MONTH),
            ("export_price_inr_per_kwh", self.export_price_inr_per_kwh, EXPORT_PRICE_INR_PER_KWH),
            ("import_headroom", self.import_headroom, IMPORT_HEADROOM),
        ):
            check_range(f"site {self.name!r}: {path}", value, *bounds)
        for path, value, bounds in (
            ("wind_kw_per_kw", self.wind_kw_per_kw, WIND_KW_PER_KW),
            ("battery_hours", self.battery_hours, BATTERY_HOURS),
            ("ports_per_100_kw", self.ports_per_100_kw, PORTS_PER_100_KW),
            ("export_per_kw", self.export_per_kw, EXPORT_LIMIT_PER_KW),
        ):
            _check_optional(f"site {self.name!r}: {path}", value, bounds)

    @property
    def n_ports(self) -> int:
        """EV ports: none for ``ports_per_100_kw == 0``, else the rounded ratio within ``[1, MAX_PORTS]``."""
        if self.ports_per_100_kw == 0:
            return 0
        return int(np.clip(round(self.ports_per_100_kw * self.load_mean_kw / 100.0), 1, MAX_PORTS))

    def scenario(self) -> Scenario:
        """The site as a validated scenario: the ``campus`` preset with this site's fields changed."""
        load = self.load_mean_kw
        has_battery = self.battery_hours > 0
        capacity = self.battery_hours * load if has_battery else NO_BATTERY_CAPACITY_KWH
        battery_kw = round(capacity * self.battery_c_rate, 1) if has_battery else 0.0
        pv_kwp = round(self.pv_kwp_per_kw * load, 1)
        wind_kw = round(self.wind_kw_per_kw * load, 1)
        ev_kw = self.n_ports * self.port_power_kw
        changes = {
            "name": self.name,
            "battery__capacity_kwh": round(capacity, 1),
            "battery__charge_power_kw": battery_kw,
            "battery__discharge_power_kw": battery_kw,
            "pv__capacity_kwp": pv_kwp,
            "wind__rated_kw": wind_kw,
            "grid__tariff": self.tariff,
            "grid__network_charge_inr_per_kwh": self.network_charge_inr_per_kwh,
            "grid__normal_rate_inr_per_kwh": self.normal_rate_inr_per_kwh,
            "grid__peak_multiplier": self.peak_multiplier,
            "grid__solar_multiplier": self.solar_multiplier,
            "grid__demand_charge_inr_per_kva_month": self.demand_charge_inr_per_kva_month,
            "grid__export_price_inr_per_kwh": self.export_price_inr_per_kwh,
            "grid__import_limit_kw": round(self.import_headroom * (PEAK_TO_MEAN[self.load_profile] * load + ev_kw), 1),
            "grid__export_limit_kw": round(self.export_per_kw * (pv_kwp + wind_kw), 1),
            "ev__n_ports": self.n_ports,
            "ev__port_power_kw": self.port_power_kw,
            "reward__scale_inr": round(REWARD_SCALE_INR_PER_KW * load, 1),
            "data__seed": self.data_seed,
            "data__load_mean_kw": load,
            "data__load_profile": self.load_profile,
            "data__climate": self.climate,
        }
        if not has_battery:
            # The placeholder neither leaks nor ages: nothing of it shows in the KPIs.
            changes["battery__self_discharge_per_hour"] = 0.0
            changes["battery__degradation__k_time"] = 0.0
        return _campus().replace(**changes)


@functools.cache
def _campus() -> Scenario:
    """The preset every site changes (forecast, reward weights, difficulty and battery chemistry stay the campus's)."""
    return load_scenario("campus")


def _preset(name: str, seed_index: int, **fields: object) -> SiteSpec:
    """A hand-made held-out site with the campus's tariff details unless given.

    :param name: site name
    :param seed_index: index of its data seed in ``HELD_OUT_DATA_SEEDS``
    :param fields: the other :class:`SiteSpec` fields
    """
    defaults: dict[str, object] = {
        "network_charge_inr_per_kwh": 3.6,
        "normal_rate_inr_per_kwh": 8.5,
        "peak_multiplier": 1.2,
        "solar_multiplier": 0.8,
        "export_price_inr_per_kwh": 3.0,
        "battery_c_rate": 0.5,
        "import_headroom": 1.2,
    }
    return SiteSpec(name=name, data_seed=HELD_OUT_DATA_SEEDS[seed_index], **{**defaults, **fields})


#: Hand-made sites, all held out (:func:`held_out_sites`); every field lies in the sampling ranges, so they are drawn
#: from the same family as the training sites. Between them: every load kind, climate, tariff and port power, no
#: battery, no chargers, no wind, zero export.
SITE_PRESETS: dict[str, SiteSpec] = {
    spec.name: spec
    for spec in (
        _preset("clinic_200kw", 0, load_profile="hospital", climate="chennai", load_mean_kw=200.0, pv_kwp_per_kw=0.75,
                wind_kw_per_kw=0.0, battery_hours=2.0, ports_per_100_kw=2.0, port_power_kw=7.4, tariff="tod",
                normal_rate_inr_per_kwh=8.0, demand_charge_inr_per_kva_month=300.0, export_per_kw=0.0),
        _preset("campus_2mw", 1, load_profile="campus", climate="delhi", load_mean_kw=2000.0, pv_kwp_per_kw=1.25,
                wind_kw_per_kw=0.0, battery_hours=3.0, battery_c_rate=0.33, ports_per_100_kw=2.0, port_power_kw=11.0,
                tariff="exchange", network_charge_inr_per_kwh=3.2, demand_charge_inr_per_kva_month=400.0, export_per_kw=0.5),
        _preset("office_park", 2, load_profile="office", climate="pune", load_mean_kw=800.0, pv_kwp_per_kw=0.75,
                wind_kw_per_kw=0.0, battery_hours=2.0, ports_per_100_kw=3.75, port_power_kw=7.4, tariff="tod",
                normal_rate_inr_per_kwh=9.5, peak_multiplier=1.25, demand_charge_inr_per_kva_month=350.0, export_per_kw=0.4),
        _preset("factory", 3, load_profile="industry", climate="jodhpur", load_mean_kw=1500.0, pv_kwp_per_kw=1.33,
                wind_kw_per_kw=0.2, battery_hours=2.0, battery_c_rate=0.5, ports_per_100_kw=1.0, port_power_kw=22.0,
                tariff="exchange", network_charge_inr_per_kwh=4.2, demand_charge_inr_per_kva_month=500.0, export_per_kw=1.0),
        _preset("hospital_no_battery", 4, load_profile="hospital", climate="delhi", load_mean_kw=600.0, pv_kwp_per_kw=0.5,
                wind_kw_per_kw=0.0, battery_hours=0.0, ports_per_100_kw=1.0, port_power_kw=11.0, tariff="tod",
                normal_rate_inr_per_kwh=7.5, solar_multiplier=0.7, demand_charge_inr_per_kva_month=250.0, export_per_kw=0.0),
        _preset("office_no_chargers", 5, load_profile="office", climate="chennai", load_mean_kw=300.0, pv_kwp_per_kw=1.33,
                wind_kw_per_kw=0.33, battery_hours=3.0, battery_c_rate=0.33, ports_per_100_kw=0.0, port_power_kw=11.0,
                tariff="exchange", network_charge_inr_per_kwh=3.8, demand_charge_inr_per_kva_month=200.0, export_per_kw=0.8),
        _preset("workshop_bare", 6, load_profile="industry", climate="kolkata", load_mean_kw=250.0, pv_kwp_per_kw=0.4,
                wind_kw_per_kw=0.0, battery_hours=0.0, ports_per_100_kw=0.0, port_power_kw=3.3, tariff="tod",
                normal_rate_inr_per_kwh=7.0, demand_charge_inr_per_kva_month=150.0, export_per_kw=0.0),
        _preset("campus_windy", 7, load_profile="campus", climate="chennai", load_mean_kw=700.0, pv_kwp_per_kw=0.7,
                wind_kw_per_kw=0.57, battery_hours=3.0, battery_c_rate=0.33, ports_per_100_kw=2.3, port_power_kw=3.3,
                tariff="exchange", demand_charge_inr_per_kva_month=350.0, export_per_kw=0.5),
        _preset("college_small", 8, load_profile="campus", climate="jodhpur", load_mean_kw=150.0, pv_kwp_per_kw=2.0,
                wind_kw_per_kw=0.0, battery_hours=2.0, battery_c_rate=1.0, ports_per_100_kw=4.7, port_power_kw=3.3,
                tariff="tod", normal_rate_inr_per_kwh=8.5, demand_charge_inr_per_kva_month=250.0, export_per_kw=0.25),
    )
}


def preset_site(name: str) -> Scenario:
    """The scenario of a hand-made (held-out) site.

    :param name: a key of :data:`SITE_PRESETS`
    """
    if name not in SITE_PRESETS:
        raise ScenarioError(f"unknown site {name!r}; site presets: {', '.join(SITE_PRESETS)}")
    return SITE_PRESETS[name].scenario()


def held_out_sites() -> list[Scenario]:
    """The fixed held-out sites: every site preset, never to be used in training or meta-training."""
    return [spec.scenario() for spec in SITE_PRESETS.values()]


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], decimals: int) -> float:
    """A uniform draw in ``bounds``, rounded (the bounds have fewer decimals, so it stays inside).

    :param rng: generator of the site
    :param bounds: ``(lo, hi)``
    :param decimals: decimals kept
    """
    return round(float(rng.uniform(*bounds)), decimals)


def _present(rng: np.random.Generator, share: float, bounds: tuple[float, float], decimals: int) -> float:
    """0 (the asset is absent) with probability ``1 - share``, else a uniform draw in ``bounds``.

    Both draws are always made, so a site's later fields do not depend on whether this asset is present.

    :param rng: generator of the site
    :param share: probability that the asset is present
    :param bounds: ``(lo, hi)`` of its size
    :param decimals: decimals kept
    """
    present = rng.random() < share
    size = _uniform(rng, bounds, decimals)
    return size if present else 0.0


def _sampled_spec(seed: int, index: int) -> SiteSpec:
    """Site ``index`` of the sample with ``seed``: its own generator, so a sample's first sites do not depend on n.

    :param seed: seed of the sample
    :param index: position in the sample
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    data_seed = int(rng.integers(TRAINING_DATA_SEEDS.start, TRAINING_DATA_SEEDS.stop))
    load_profile = str(rng.choice(LOAD_PROFILES))
    climate = str(rng.choice(CLIMATES))
    lo, hi = LOAD_MEAN_KW[load_profile]
    return SiteSpec(
        name=f"{load_profile}_{climate}_{data_seed}",
        data_seed=data_seed,
        load_profile=load_profile,
        climate=climate,
        # Log-uniform: as many small sites as large ones.
        load_mean_kw=float(round(np.exp(rng.uniform(np.log(lo), np.log(hi))))),
        pv_kwp_per_kw=_uniform(rng, PV_KWP_PER_KW, 3),
        wind_kw_per_kw=_present(rng, WIND_SHARE, WIND_KW_PER_KW, 3),
        battery_hours=_present(rng, BATTERY_SHARE, BATTERY_HOURS, 2),
        battery_c_rate=_uniform(rng, BATTERY_C_RATE, 3),
        ports_per_100_kw=_present(rng, CHARGER_SHARE, PORTS_PER_100_KW, 2),
        port_power_kw=float(rng.choice(PORT_POWERS_KW)),
        tariff=str(rng.choice(TARIFFS)),
        network_charge_inr_per_kwh=_uniform(rng, NETWORK_CHARGE_INR_PER_KWH, 2),
        normal_rate_inr_per_kwh=_uniform(rng, NORMAL_RATE_INR_PER_KWH, 2),
        peak_multiplier=_uniform(rng, PEAK_MULTIPLIER, 3),
        solar_multiplier=_uniform(rng, SOLAR_MULTIPLIER, 3),
        demand_charge_inr_per_kva_month=_uniform(rng, DEMAND_CHARGE_INR_PER_KVA_MONTH, 0),
        export_price_inr_per_kwh=_uniform(rng, EXPORT_PRICE_INR_PER_KWH, 2),
        import_headroom=_uniform(rng, IMPORT_HEADROOM, 3),
        export_per_kw=_present(rng, EXPORT_SHARE, EXPORT_LIMIT_PER_KW, 3),
    )


def sample_sites(n: int, seed: int) -> list[Scenario]:
    """``n`` sites drawn from the family's ranges, each with its own data seed from :data:`TRAINING_DATA_SEEDS`.

    Deterministic: the same ``(n, seed)`` gives identical scenarios (and so identical data), and
    ``sample_sites(m, seed)`` is the first ``m`` sites of ``sample_sites(n, seed)`` for ``m <= n``.

    :param n: number of sites
    :param seed: seed of the sample, in ``[0, 2**32 - 1]``: site ``i`` draws from ``SeedSequence([seed, i])``, which
        reads a larger seed as several 32-bit words, so ``seed + 2**32 * i`` would give site ``i`` of ``seed`` again
    """
    check_range("sample_sites n", n, 0, 1_000_000, integer=True)
    check_range("sample_sites seed", seed, 0, SEED_MAX, integer=True)
    return [_sampled_spec(seed, i).scenario() for i in range(n)]


def is_held_out(scenario: Scenario) -> bool:
    """Whether a scenario is a held-out site: a data seed of :data:`HELD_OUT_DATA_SEEDS` or a site preset's name.

    :param scenario: the scenario
    """
    return scenario.data.seed in HELD_OUT_DATA_SEEDS or scenario.name in SITE_PRESETS


def check_not_held_out(scenarios: Iterable[Scenario]) -> None:
    """Raise :class:`HeldOutSiteError` naming every held-out site among ``scenarios``; training code calls this.

    :param scenarios: the sites a training or meta-training run is about to use
    """
    held_out = [f"{s.name!r} (data seed {s.data.seed})" for s in scenarios if is_held_out(s)]
    if held_out:
        raise HeldOutSiteError(
            f"held-out site(s) {', '.join(held_out)} must not be used for training: held-out sites are the site presets "
            f"{list(SITE_PRESETS)} and every data seed in [{HELD_OUT_DATA_SEEDS.start}, {HELD_OUT_DATA_SEEDS.stop})"
        )


def training_sites(n: int, seed: int) -> list[Scenario]:
    """:func:`sample_sites`, checked by :func:`check_not_held_out`: sites a training run may use.

    :param n: number of sites
    :param seed: seed of the sample
    """
    sites = sample_sites(n, seed)
    check_not_held_out(sites)
    return sites
