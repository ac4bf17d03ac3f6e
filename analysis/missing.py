"""Values a table lacks (None, NaN, pandas' NA) as one None: JSON null, a blank cell."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd


def or_none(value: Any, convert: Callable[[Any], Any] = lambda v: v) -> Any:
    """None for a missing value, else `convert(value)` (e.g. `str`, or a rounding)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return convert(value)
