"""Command-line options that `probe run` and `probe schedule install` share, declared once.

A scheduled run is `probe run` with the schedule's options passed on, so the two
commands must accept the same budget options with the same meaning and limits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable)

# (option, keyword, help): the data budgets, in megabytes of 10^6 bytes.
BUDGETS = (
    ("--budget-mb", "budget_mb",
     "Stop starting transfers once this run has moved MB megabytes (10^6 B)."),
    ("--daily-budget-mb", "daily_budget_mb",
     "Rolling cap across runs for the current UTC day (kept in the state dir)."),
    ("--monthly-budget-mb", "monthly_budget_mb",
     "Rolling cap across runs for the current UTC month."),
)


def budget_options(func: F) -> F:
    """Add --budget-mb, --daily-budget-mb and --monthly-budget-mb to a click command."""
    for flag, _, text in reversed(BUDGETS):
        func = click.option(flag, type=click.FloatRange(min=0, min_open=True), metavar="MB",
                            help=text)(func)
    return func


def budget_argv(values: dict[str, float | None]) -> list[str]:
    """The budget options of `values` (keyword -> MB) as `probe run` arguments."""
    out: list[str] = []
    for flag, key, _ in BUDGETS:
        if values.get(key):
            out += [flag, f"{values[key]:g}"]
    return out
