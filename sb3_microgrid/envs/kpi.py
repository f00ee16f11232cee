"""The episode KPIs under the names the evaluation tables and the training logs share."""

from __future__ import annotations

from .core import EPISODE_KEYS

_RENAMED = {"total_cost": "cost", "battery_degradation": "battery_fade"}
#: The env's episode totals (:data:`~sb3_microgrid.envs.EPISODE_KEYS`) -> their column names.
DAY_COLUMNS = {key: _RENAMED.get(key, key) for key in EPISODE_KEYS}
