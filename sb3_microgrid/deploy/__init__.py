"""A controller that runs an exported policy on a site's measurements (``docs/deploy.md``).

The runtime needs numpy, numba, pydantic and onnxruntime: neither torch, Stable-Baselines3 nor the simulator.
:class:`SiteController` decides in-process; :mod:`sb3_microgrid.deploy.serve` (FastAPI) serves it over HTTP.
"""

from .checks import Range, site_ranges
from .controller import SiteController, fallback_action
from .observation import ObservationBuilder
from .schema import BatteryReading, Decision, EVReading, Issue, Measurements, SeriesRow, SiteReading
from .site_state import SiteState, check_timestamp, read_state
from .supervision import Setpoints, supervise

__all__ = [
    "BatteryReading",
    "Decision",
    "EVReading",
    "Issue",
    "Measurements",
    "ObservationBuilder",
    "Range",
    "SeriesRow",
    "Setpoints",
    "SiteController",
    "SiteReading",
    "SiteState",
    "check_timestamp",
    "fallback_action",
    "read_state",
    "site_ranges",
    "supervise",
]
