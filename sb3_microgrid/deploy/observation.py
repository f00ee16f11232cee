"""The policy's observation from a site's measurements, built by the names of the layout it was exported with.

Each feature is normalised as the env normalises it (``docs/environment.md``, section 4): the EV features in
hours / 24 (:data:`~sb3_microgrid.envs.dispatch.EV_HOURS_SCALE`), the fleet features by the same compiled function
as the env's, the day's peak as a fraction of the import limit, the window's PV and wind as fractions of what is
installed and every window column divided by the ``window_scale`` the export recorded (the load's is a statistic of
the training data, not of the scenario), and the site context as the export recorded it (it holds such statistics
too).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from ..envs.dispatch import EV_HOURS_SCALE, FLEET_FEATURES, fleet_features
from ..envs.layout import SITE_CONTEXT, ObservationLayout
from ..envs.time_features import TIME_FEATURES, step_hours, time_features
from ..export.onnx_policy import FLOAT32_MAX
from ..scenario import Scenario
from .checks import site_ranges
from .site_state import ROW_FIELDS, SiteState
from .supervision import read_cars

_EV_FEATURE = re.compile(r"ev(\d+)_(connected|need_h|left_h)")
_SITE_FEATURES = ("time_left", "soc", "soh", "day_peak")
#: Window column -> the row field it is read from.
WINDOW_FIELDS = {"pv": "pv_kw", "wind": "wind_kw", "load": "load_kw", "price": "price_inr_per_kwh", "emission": "emission_kg_per_kwh"}


class ObservationBuilder:
    """Builds the observation of a layout from checked measurements.

    :param layout: the policy's observation layout (from the export's manifest)
    :param scenario: the site (installed PV and wind, port power, import limit, step length, horizon)
    :param window_scale: the divisor of each window column (from the export's manifest)
    :param site_context: the value of each site context feature the layout has (from the export's manifest)
    :raises ValueError: naming the feature, for a layout this builder does not know how to fill, or naming the field
        and the allowed range, for a ``window_scale`` or ``site_context`` that is not an object, or a value of it that
        would make the observation overflow float32: a site context value beyond float32's range, a window scale
        below ``largest allowed reading / (installed x float32's largest)``
    """

    def __init__(
        self, layout: ObservationLayout, scenario: Scenario, window_scale: Mapping[str, float], site_context: Mapping[str, float] | None = None
    ) -> None:
        site_context = {} if site_context is None else site_context
        for field, value in (("window_scale", window_scale), ("site_context", site_context)):
            if not isinstance(value, Mapping):
                raise ValueError(f"the manifest's observation.{field} must be an object (a number by feature name), got {value!r:.100}")
        self.layout = layout
        self.scenario = scenario
        n_ports = scenario.ev.n_ports
        self._context: dict[str, float] = {}
        for name in layout.static_names:
            match = _EV_FEATURE.fullmatch(name)
            if match is not None and int(match.group(1)) >= n_ports:
                raise ValueError(f"the policy observes {name!r}, but the scenario has {n_ports} charger(s) (ev.n_ports)")
            if name in SITE_CONTEXT:
                value = site_context.get(name)
                # within float32's range, the observation's: beyond it every observation was inf, which the policy refuses
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) <= FLOAT32_MAX:
                    raise ValueError(
                        f"the policy observes {name!r}, but the manifest's observation.site_context[{name!r}] = {value!r}; allowed: a number "
                        f"in [{-FLOAT32_MAX:.4g}, {FLOAT32_MAX:.4g}] (float32's range); export the model again"
                    )
                self._context[name] = float(value)
            elif match is None and name not in TIME_FEATURES and name not in _SITE_FEATURES and name not in FLEET_FEATURES:
                raise ValueError(f"the policy observes {name!r}, a feature the site controller cannot build from measurements")
        self._fleet = any(name in FLEET_FEATURES for name in layout.static_names)
        installed = {"pv": scenario.pv.capacity_kwp, "wind": scenario.wind.rated_kw}
        ranges = site_ranges(scenario)
        divisors = []
        for name in layout.window_names:
            if name not in WINDOW_FIELDS:
                raise ValueError(f"the policy's window has a column {name!r} the site controller cannot build; known: {sorted(WINDOW_FIELDS)}")
            scale, unit, field = window_scale.get(name), installed.get(name, 1.0), WINDOW_FIELDS[name]
            # The largest reading a request may give stays within float32: a tiny scale (1e-300) made every observation
            # inf, and every decision the fallback. No PV or wind installed: nothing to measure, the column is 0.
            lowest = ranges[field].hi / (unit * FLOAT32_MAX) if unit > 0 else math.ulp(0.0)
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not lowest <= scale < math.inf:
                raise ValueError(
                    f"observation.window_scale[{name!r}] = {scale!r}; allowed: a number in [{lowest:.4g}, inf) "
                    f"(below it, the largest allowed {field} of {ranges[field].hi:g} would overflow float32)"
                )
            divisors.append(unit * scale or math.inf)
        self._columns = [ROW_FIELDS.index(WINDOW_FIELDS[name]) for name in layout.window_names]
        self._divisors = np.array(divisors)
        ev = scenario.ev
        self._need_scale = 1.0 / (ev.port_power_kw * ev.charger_efficiency * EV_HOURS_SCALE)

    def build(self, state: SiteState) -> np.ndarray:
        """The ``(obs_dim,)`` float32 observation of a state whose every value passed its check."""
        start, spd = state.step_start, self.scenario.steps_per_day
        # The hour from the step's index in the day, as the env's: read off the step start's clock, without its
        # seconds, it was off by up to a minute at 1/7 or 1/8 h
        clock = time_features(
            np.atleast_1d(step_hours(state.step % spd, spd)), np.array([float(start.timetuple().tm_yday)]), np.array([float(start.weekday() >= 5)]), np.array([float(state.holiday)])
        )[0]
        features = dict(zip(TIME_FEATURES, clock))
        features["time_left"] = 1.0 - state.step / self.scenario.episode_steps
        features["soc"], features["soh"] = state.soc, state.soh
        features["day_peak"] = state.day_peak_kw / self.scenario.grid.import_limit_kw
        for ev in state.evs:
            features[f"ev{ev.port}_connected"] = 1.0
            features[f"ev{ev.port}_need_h"] = ev.wanted_kwh * self._need_scale
            features[f"ev{ev.port}_left_h"] = ev.hours_left / EV_HOURS_SCALE
        if self._fleet:
            sc, cars, fleet = self.scenario, read_cars(state, self.scenario), np.empty(len(FLEET_FEATURES))
            window_h = self.layout.forecast_steps * sc.step_hours
            fleet_features(cars.connected, cars.wanted_kwh, cars.laxity_h, cars.lo_kw, cars.hi_kw, sc.ev.port_power_kw, sc.ev.charger_efficiency, window_h, fleet)
            features.update(zip(FLEET_FEATURES, fleet))
        features.update(self._context)
        obs = np.empty(self.layout.size, dtype=np.float32)
        obs[self.layout.static] = [features.get(name, 0.0) for name in self.layout.static_names]  # a free charger reads 0
        window = np.concatenate([state.history, state.forecast])[:, self._columns] / self._divisors
        obs[self.layout.window] = np.maximum(window, 0.0).ravel()
        return obs
