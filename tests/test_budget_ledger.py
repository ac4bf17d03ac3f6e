"""The data ledger across clock jumps: a wrong clock never erases this month's usage."""

from __future__ import annotations

import datetime as dt
import json
import types
from pathlib import Path

import pytest

from probe.operate import budget as budget_module
from probe.operate.budget import KEEP_MONTHS, MB, Budget, Ledger

MONTH = [dt.date(2026, 11, d) for d in range(2, 30, 3)]  # ten days of November 2026
AHEAD = MONTH[-1] + dt.timedelta(days=400)


def _clock_at(monkeypatch: pytest.MonkeyPatch, day: dt.date) -> None:
    """Make the budget module's UTC clock read `day` (noon)."""

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:
            return dt.datetime(day.year, day.month, day.day, 12, tzinfo=tz)

    monkeypatch.setattr(budget_module, "dt", types.SimpleNamespace(
        datetime=Frozen, UTC=dt.UTC, date=dt.date, timedelta=dt.timedelta))


def test_a_clock_400_days_ahead_and_back_forgets_nothing_of_the_month(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "usage.json")
    for day in MONTH:
        ledger.add(day, 90 * MB)
    ledger.add(AHEAD, 1_000)
    assert ledger.used_in_month(MONTH[-1]) == 900 * MB
    ledger.add(MONTH[-1], 5)  # the clock is right again
    assert ledger.used_in_month(MONTH[-1]) == 900 * MB + 5
    assert ledger.used_on(AHEAD) == 1_000


def test_the_monthly_cap_holds_after_a_run_with_the_clock_far_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger(tmp_path / "usage.json")
    for day in MONTH[:-1]:
        ledger.add(day, 100 * MB)
    _clock_at(monkeypatch, AHEAD)
    Budget(monthly_limit=1_000 * MB, ledger=ledger).charge(2 * MB)
    _clock_at(monkeypatch, MONTH[-1])
    after = Budget(monthly_limit=1_000 * MB, ledger=ledger)
    assert after.remaining() == 100 * MB


def test_a_clock_far_behind_forgets_nothing_of_the_month(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "usage.json")
    for day in MONTH:
        ledger.add(day, 90 * MB)
    ledger.add(dt.date(1970, 1, 1), 1_000)
    assert ledger.used_in_month(MONTH[-1]) == 900 * MB


def test_the_ledger_keeps_its_most_recent_months_only(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "usage.json")
    firsts = [dt.date(2024 + m // 12, m % 12 + 1, 1) for m in range(KEEP_MONTHS + 5)]
    for day in firsts:
        ledger.add(day, 1)
    kept = sorted(json.loads(ledger.path.read_text())["days"])
    assert kept == [d.isoformat() for d in firsts[-KEEP_MONTHS:]]
