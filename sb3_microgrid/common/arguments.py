"""Range checks of the numeric arguments of this package's SB3 parts (wrappers, extractors): numbers as Python, numpy
or a YAML file give them."""

from __future__ import annotations

import numbers
from typing import Any

from ..scenario import ScenarioError, check_range


def checked_number(name: str, value: Any, lo: float, hi: float, lo_open: bool = False, integer: bool = False) -> int | float:
    """``value`` as a Python ``int`` (with ``integer``) or ``float``, if it is a finite number in ``[lo, hi]``
    (``(lo, hi]`` with ``lo_open``): :func:`~sb3_microgrid.scenario.check_range`'s check, once numpy numbers and,
    with ``integer``, whole floats (YAML reads ``!!float 1e6`` as a float) are made Python numbers; booleans are
    refused.

    :raises ValueError: naming ``name`` and the allowed range
    """
    if isinstance(value, bool):
        pass  # left for check_range to refuse (numpy's booleans are not numbers.Real)
    elif isinstance(value, numbers.Integral):
        value = int(value)  # an int is kept exact: float() would overflow on a 400-digit one
    elif isinstance(value, numbers.Real):
        value = float(value)
        if integer and value.is_integer():
            value = int(value)
    try:
        check_range(name, value, lo, hi, lo_open, integer)
    except ScenarioError as err:  # the same message, without calling an extractor's argument a scenario's
        raise ValueError(str(err)) from None
    return value
