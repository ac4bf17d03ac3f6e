"""`probe schedule install|status|remove`: the command line over probe/schedule.py."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import click

from probe.operate import consent, schedule
from probe.operate.budget import Ledger, default_ledger_path
from probe.operate.state import state_dir

EXIT_BAD_INPUT = 2


@click.group("schedule", context_settings={"help_option_names": ["-h", "--help"]})
def schedule_group() -> None:
    """Run the probe periodically from cron, quietly, with a lock and a data budget."""


@schedule_group.command("install")
@click.option("--every", required=True, metavar="DURATION",
              help="How often: e.g. 15m, 1h, 6h, 1d (cron can only divide an hour or a day).")
@click.option("--jitter", metavar="DURATION",
              help="Random delay before each run, shorter than --every (e.g. 10m).")
@click.option("--budget-mb", type=click.FloatRange(min=0, min_open=True), metavar="MB",
              help="Data cap per run, in megabytes.")
@click.option("--daily-budget-mb", type=click.FloatRange(min=0, min_open=True), metavar="MB",
              help="Rolling data cap per UTC day across runs.")
@click.option("--monthly-budget-mb", type=click.FloatRange(min=0, min_open=True), metavar="MB",
              help="Rolling data cap per UTC month across runs.")
@click.option("--out", default=Path("results"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Results folder.")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Rotating log of the scheduled runs [default: <state dir>/probe.log].")
@click.option("--minute", type=click.IntRange(0, 59),
              help="Minute of the hour to start at [default: random, to spread volunteers].")
@click.option("--yes", "-y", is_flag=True, help="Give consent now if none is on record.")
@click.option("--dry-run", is_flag=True, help="Print the crontab line instead of installing it.")
@click.argument("run_args", nargs=-1, type=click.UNPROCESSED)
def install_cmd(every: str, jitter: str | None, budget_mb: float | None,
                daily_budget_mb: float | None, monthly_budget_mb: float | None, out: Path,
                log_file: Path | None, minute: int | None, yes: bool, dry_run: bool,
                run_args: tuple[str, ...]) -> None:
    """Install (or replace) the crontab entry; RUN_ARGS after `--` go to `probe run`.

    Consent must be on record (from a first `probe run` at a terminal, or --yes
    here), because nobody will be asked when cron runs the probe.
    """
    plan = schedule.Plan(
        every=every, jitter=jitter, budget_mb=budget_mb, daily_budget_mb=daily_budget_mb,
        monthly_budget_mb=monthly_budget_mb, out=out,
        log_file=log_file or state_dir() / "probe.log",
        minute=random.randrange(60) if minute is None else minute, extra_args=run_args,
    )
    try:
        line = plan.line()
    except schedule.ScheduleError as exc:
        _fail(f"error: {exc}")
    if dry_run:
        click.echo(line)
        return
    if not consent.on_record():
        if not yes:
            _fail("error: no consent on record. Read what the probe does and its risk, then "
                  "run `probe run` once at a terminal or pass --yes:\n\n" + consent.TEXT)
        click.echo(consent.TEXT, err=True)
        consent.record("schedule --yes")
    try:
        schedule.install(line)
    except schedule.ScheduleError as exc:
        _fail(f"error: {exc}")
    click.echo(f"installed: {line}")


@schedule_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(as_json: bool) -> None:
    """Show the installed entry, consent, and data used today and this month."""
    import datetime as dt

    try:
        lines = schedule.installed(schedule.read_crontab())
    except schedule.ScheduleError as exc:
        _fail(f"error: {exc}")
    today = dt.datetime.now(dt.UTC).date()
    ledger = Ledger(default_ledger_path())
    info = {"installed": lines, "consent": consent.on_record(),
            "used_today_bytes": ledger.used_on(today),
            "used_this_month_bytes": ledger.used_in_month(today)}
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo("schedule: " + ("\n  ".join([""] + lines) if lines else "not installed"))
    click.echo(f"consent: {'on record' if info['consent'] else 'not on record'}")
    click.echo(f"data used today: {info['used_today_bytes'] / 1e6:.2f} MB, this month: "
               f"{info['used_this_month_bytes'] / 1e6:.2f} MB")


@schedule_group.command("remove")
def remove_cmd() -> None:
    """Remove the probe's crontab entry (nothing else in the crontab is touched)."""
    try:
        n = schedule.remove()
    except schedule.ScheduleError as exc:
        _fail(f"error: {exc}")
    click.echo("removed" if n else "nothing to remove")


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(EXIT_BAD_INPUT)
