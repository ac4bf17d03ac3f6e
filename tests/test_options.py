"""`probe run` and `probe schedule install` declare the budget options once, alike; `probe run`
shows the defaults of `Limits` as its own."""

from __future__ import annotations

from probe.cli import run
from probe.measure.limits import DNS_TIMEOUT, Limits
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


def test_run_defaults_are_the_limits_defaults() -> None:
    defaults = {p.name: p.default for p in run.params}
    limits = Limits()
    assert (defaults["max_bytes"], defaults["max_seconds"], defaults["connect_timeout"],
            defaults["dns_timeout"]) == (limits.max_bytes, limits.max_seconds,
                                         limits.connect_timeout, DNS_TIMEOUT)
    assert limits.max_bytes == 512 * 1024  # the public default of --max-bytes


def test_limits_at_most_only_tightens() -> None:
    limits = Limits(max_bytes=1000, max_seconds=5.0)
    assert limits.at_most(max_bytes=400) == Limits(max_bytes=400, max_seconds=5.0)
    assert limits.at_most(2000, 8.0) == limits
    assert limits.at_most(max_seconds=1.0).max_bytes == 1000
