"""`probe run` and `probe schedule install` declare the budget options once, alike."""

from __future__ import annotations

from probe.cli import run
from probe.operate.options import BUDGETS, budget_argv
from probe.operate.schedule_cli import install_cmd


def _budget_params(command) -> dict:
    names = {key for _, key, _ in BUDGETS}
    return {p.name: (p.opts, p.help, repr(p.type)) for p in command.params if p.name in names}


def test_run_and_schedule_install_take_the_same_budget_options() -> None:
    ours = _budget_params(run)
    assert len(ours) == 3 and ours == _budget_params(install_cmd)


def test_budget_argv_passes_on_what_was_set() -> None:
    assert budget_argv({"budget_mb": 5.0, "daily_budget_mb": None,
                        "monthly_budget_mb": 0.25}) == ["--budget-mb", "5",
                                                         "--monthly-budget-mb", "0.25"]
