"""Relative timestamps for records: seconds since the measurement began (OONI `t`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Clock:
    """A monotonic clock zeroed at the start of one measurement."""

    start: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        """Seconds since the measurement began, rounded to microseconds."""
        return round(time.monotonic() - self.start, 6)
