"""Range checks of the numeric arguments of this package's SB3 parts (wrappers, extractors): numbers as Python, numpy
or a YAML file give them."""

from __future__ import annotations

import math
import numbers
from typing import Any


def checked_number(name: str, value: Any, lo: float, hi: float, lo_open: bool = False, integer: bool = False) -> int | float:
    """``value`` as a Python ``int`` (with ``integer``) or ``float``, if it is a finite number in ``[lo, hi]``
    (``(lo, hi]`` with ``lo_open``). Numpy numbers are taken, and with ``integer`` so are whole floats (YAML reads
    ``!!float 1e6`` as a float); booleans are not.

    :raises ValueError: naming ``name`` and the allowed range
    """
    allowed = f"{'(' if lo_open else '['}{lo}, {hi}]"
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or type(value).__name__ == "bool_":
        raise ValueError(f"{name} must be {kind} in {allowed}, got {value!r}")
    if isinstance(value, numbers.Integral):
        value = int(value)
    elif integer and math.isfinite(value) and float(value).is_integer():
        value = int(value)
    elif integer:
        raise ValueError(f"{name} must be {kind} in {allowed}, got {value!r}")
    else:
        value = float(value)
    # an int is compared exactly (math.isfinite would overflow on a 400-digit one)
    if (isinstance(value, float) and not math.isfinite(value)) or value > hi or value < lo or (lo_open and value == lo):
        raise ValueError(f"{name} = {value!r} is outside the allowed range {allowed}")
    return value
