"""The site controller's request and response: measurements with their units in, setpoints in kW out.

The models check types and presence only: a field of the wrong type or a missing one is refused (HTTP 422
naming it). Values are checked against the site later (:mod:`.checks`), because a bad value must still get
setpoints: a measurement may be ``null`` (missing) or NaN, and the controller then answers with its fallback
and names the field. Every power is kW, every energy kWh, positive when charging (battery or car) or importing.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Callable

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

#: A measured or forecast number: required, but ``null`` (missing) or NaN are allowed and answered with the fallback.
Reading = StrictFloat | None


def _iso_8601(kind: str, example: str) -> Callable[[Any], Any]:
    """A check that lets through only text (ISO 8601, parsed by pydantic), a ``date``/``datetime`` object or ``None``:
    pydantic's lax mode reads a number, or text of digits, as a Unix time in UTC, which the controller then took for
    the site's wall clock. Strict mode would not do: FastAPI validates the parsed JSON in Python mode, where it
    refuses ISO text too.

    :param kind: ``time`` or ``date``, for the message
    :param example: an ISO 8601 value of that kind, for the message
    """

    def check(value: Any) -> Any:
        if value is None or isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                return value
        raise ValueError(f"allowed: an ISO 8601 {kind} as text ({example}), got {value!r:.40}; a number is not read as a Unix time")

    return check


#: A time of the site (ISO 8601 text, or a ``datetime``); never a number.
IsoTime = Annotated[dt.datetime, BeforeValidator(_iso_8601("time", "2024-03-12T11:00:00, or 2024-03-12T11:00:00+05:30 with an offset"))]
#: A day (ISO 8601 text, or a ``date``); never a number.
IsoDate = Annotated[dt.date, BeforeValidator(_iso_8601("date", "2024-03-12"))]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatteryReading(_Model):
    """The battery now."""

    soc: Reading = Field(description="state of charge: stored energy / current (faded) capacity, 0 to 1")
    soh: Reading = Field(description="state of health: current capacity / nominal capacity, (0, 1]")


class SiteReading(_Model):
    """What the site draws and generates now: the supervisor keeps the grid limits with these."""

    load_kw: Reading = Field(description="building load (kW)")
    pv_kw: Reading = Field(description="PV output available, AC (kW)")
    wind_kw: Reading = Field(description="wind output available (kW)")


class EVReading(_Model):
    """A car connected to a charger."""

    charger: StrictInt = Field(description="charger (port) index, 0 .. ev.n_ports - 1 of the scenario")
    energy_wanted_kwh: Reading = Field(description="energy the car still wants, into its battery (kWh)")
    departure: IsoTime | None = Field(description="when the car leaves, site time as the timestamp")
    energy_delivered_kwh: Reading = Field(0.0, description="energy delivered into the car in this session (kWh); bounds V2G")


class SeriesRow(_Model):
    """One step of the site's series: measured averages (history) or the site's own forecasts."""

    load_kw: Reading = Field(description="building load (kW)")
    pv_kw: Reading = Field(description="PV output, AC (kW)")
    wind_kw: Reading = Field(description="wind output (kW)")
    price_inr_per_kwh: Reading = Field(description="import price, all charges included (Rs/kWh)")
    emission_kg_per_kwh: Reading = Field(None, description="grid emission factor (kg CO2/kWh); needed when the policy observes it")


class Measurements(_Model):
    """One decision's request: the state of the site at the start of a step."""

    timestamp: IsoTime = Field(description="time of the measurements, site time (ISO 8601); decides the step it falls in")
    horizon_start: IsoDate | None = Field(
        None, description="first day of the planning horizon the policy was trained on (scenario horizon_days); default: the timestamp's day"
    )
    holiday: StrictBool = Field(False, description="the day is a holiday")
    battery: BatteryReading
    day_peak_import_kw: Reading = Field(description="highest step-average grid import so far today (kW); 0 at midnight")
    site: SiteReading
    evs: list[EVReading] = Field(default_factory=list, description="the connected cars, one per charger at most")
    history: list[SeriesRow] = Field(description="measured step averages of the forecast.history_steps steps before this one, oldest first")
    forecast: list[SeriesRow] = Field(description="the site's forecasts of forecast.forecast_steps steps, this step first")


class Issue(_Model):
    """Why the fallback was used: the field (``battery.soc``, ``history[3].load_kw``, ``policy``) and the problem."""

    field: str
    message: str


class Decision(_Model):
    """Setpoints for the step, after the safety supervisor."""

    timestamp: dt.datetime = Field(description="the request's timestamp")
    step_start: dt.datetime | None = Field(
        description="start of the step decided, at the timestamp's UTC offset (without one if it has none); null when the timestamp could not be placed"
    )
    battery_kw: float = Field(description="battery power, AC side (kW; + charging, - discharging)")
    charger_kw: list[float] = Field(description="power of each charger, bus side (kW; + charging the car, - V2G), index = charger")
    curtail_kw: float = Field(description="PV and wind to curtail to keep the export limit (kW)")
    shed_kw: float = Field(description="load to shed to keep the import limit (kW); the last resort of the supervisor")
    intervened: bool = Field(description="the supervisor changed the requested battery or charger power (or the request was outside [-1, 1])")
    fallback: bool = Field(description="the setpoints are the fallback's, not the policy's: see errors")
    action: list[float] = Field(description="the request in the env's action space, before the supervisor")
    errors: list[Issue] = Field(default_factory=list, description="the bad measurements or failures that led to the fallback")
