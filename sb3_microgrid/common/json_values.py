"""Values as strict JSON takes them: written files never hold ``NaN``, and a file that does is refused on read."""

from __future__ import annotations

from typing import Any, NoReturn

import numpy as np


def plain(value: Any) -> Any:
    """Numpy scalars to Python ones and NaN or infinities to ``None``, recursively through dicts and lists: what
    ``json.dumps(..., allow_nan=False)`` accepts (an undefined figure, such as a gap closed where naive and
    optimal cost the same, is written as ``null``)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def refuse_constant(name: str) -> NoReturn:
    """``json.loads``'s ``parse_constant``: Python's reader takes ``NaN`` and ``Infinity``, which are not JSON.

    :raises ValueError: naming the constant
    """
    raise ValueError(f"{name} is not a JSON value")
