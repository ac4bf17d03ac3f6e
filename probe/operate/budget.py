"""Data budgets: a cap per run and rolling daily/monthly caps across scheduled runs.

Volunteers are often on metered mobile data, so the probe counts the bytes it
moves and stops starting transfers once a cap is reached. The rolling caps are
kept in a small ledger file that every run adds its usage to.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from probe.operate.state import state_dir
from probe.results.atomic import write_text

log = logging.getLogger("probe")
MB = 1_000_000
# What a measurement moves besides HTTP payload, estimated: a TLS handshake with
# a certificate chain, and one DNS query and answer.
TLS_OVERHEAD_BYTES = 8_000
DNS_OVERHEAD_BYTES = 300
# The ledger keeps the days of the most recent calendar months it holds: a year and
# the current month, as the ledger itself recorded them (not as the clock says now).
KEEP_MONTHS = 13


def measurement_bytes(measurement: dict) -> int:
    """Bytes a measurement cost on the network (wire counts where the kernel gave them)."""
    keys = measurement.get("test_keys") or {}
    total = 0
    for t in keys.get("transfers") or []:
        total += int(t.get("wire_bytes") or t.get("bytes") or 0)
    total += TLS_OVERHEAD_BYTES * len(keys.get("tls_handshakes") or [])
    total += DNS_OVERHEAD_BYTES * len(keys.get("queries") or [])
    return total


def default_ledger_path() -> Path:
    return state_dir() / "usage.json"


@dataclass
class Ledger:
    """Bytes used per UTC day, in a JSON file; updates are locked and atomic."""

    path: Path

    def _read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # a damaged ledger must not stop measuring; it restarts from zero
        days = data.get("days", {}) if isinstance(data, dict) else {}
        return {k: int(v) for k, v in days.items() if isinstance(v, int | float)}

    def used_on(self, day: dt.date) -> int:
        return self._read().get(day.isoformat(), 0)

    def used_in_month(self, day: dt.date) -> int:
        prefix = day.strftime("%Y-%m-")
        return sum(v for k, v in self._read().items() if k.startswith(prefix))

    def add(self, day: dt.date, n: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            days = self._read()
            days[day.isoformat()] = days.get(day.isoformat(), 0) + n
            text = json.dumps({"days": _recent(days)}, indent=1, sort_keys=True)
            write_text(self.path, text + "\n")


def _recent(days: dict[str, int]) -> dict[str, int]:
    """The days of the KEEP_MONTHS most recent months the ledger holds.

    Pruning by "now" would let one run with a clock far ahead (a dead RTC
    battery, a wrong NTP answer) erase this month's usage and lift the monthly
    cap; counting months the ledger recorded, such a run adds one month and
    forgets none of the current one.
    """
    months = sorted({k[:7] for k in days}, reverse=True)[:KEEP_MONTHS]
    return {k: v for k, v in days.items() if k[:7] in months}


@dataclass
class Budget:
    """How many bytes this run may still move (None = unlimited)."""

    run_limit: int | None = None
    daily_limit: int | None = None
    monthly_limit: int | None = None
    ledger: Ledger | None = None
    used: int = 0
    ledger_error: str | None = None

    def __post_init__(self) -> None:
        today = dt.datetime.now(dt.UTC).date()
        self.day = today
        limits = [self.run_limit] if self.run_limit is not None else []
        if self.ledger is not None and self.daily_limit is not None:
            limits.append(self.daily_limit - self.ledger.used_on(today))
        if self.ledger is not None and self.monthly_limit is not None:
            limits.append(self.monthly_limit - self.ledger.used_in_month(today))
        self.limit = max(0, min(limits)) if limits else None

    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)

    def exhausted(self) -> bool:
        remaining = self.remaining()
        return remaining is not None and remaining <= 0

    def charge(self, n: int) -> None:
        """Count `n` bytes; a ledger that cannot be written (full disk, read-only state
        folder) is logged and noted, and this run's own count still holds."""
        self.used += n
        if self.ledger is not None:
            try:  # the day it was used: a run may cross midnight (UTC)
                self.ledger.add(dt.datetime.now(dt.UTC).date(), n)
            except OSError as exc:
                self.ledger_error = f"{self.ledger.path}: {exc.strerror or exc}"
                log.warning("cannot update the data ledger %s", self.ledger_error)

    def describe(self) -> dict:
        return {
            "run_limit_bytes": self.run_limit, "daily_limit_bytes": self.daily_limit,
            "monthly_limit_bytes": self.monthly_limit,
            "ledger": str(self.ledger.path) if self.ledger else None,
            "effective_limit_bytes": self.limit, "used_bytes": self.used,
            "ledger_error": self.ledger_error,
        }
