"""The observation's self-description, so no features extractor hard-codes indices."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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

    def index(self, name: str) -> int:
        """Position of a static feature in the observation vector."""
        return self.static_names.index(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ObservationLayout":
        return cls(
            static_names=tuple(raw["static_names"]),
            window_names=tuple(raw["window_names"]),
            history_steps=int(raw["history_steps"]),
            forecast_steps=int(raw["forecast_steps"]),
        )
