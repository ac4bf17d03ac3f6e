"""`probe schedule install|status|remove`: the command line over probe/schedule.py."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import NoReturn

import click

from probe.operate import consent, schedule, systemd_timer
from probe.operate.budget import Ledger, default_ledger_path
from probe.operate.options import budget_options
from probe.operate.state import state_dir

EXIT_BAD_INPUT = 2


@click.group("schedule", context_settings={"help_option_names": ["-h", "--help"]})
def schedule_group() -> None:
    """Run the probe periodically (cron or a systemd user timer), quietly, with a lock
    and a data budget."""


@schedule_group.command("install")
@click.option("--every", required=True, metavar="DURATION",
              help="How often: e.g. 15m, 1h, 6h, 1d (cron can only divide an hour or a day; "
                   "a systemd timer takes any period).")
@click.option("--jitter", metavar="DURATION",
              help="Random delay before each run, shorter than --every (e.g. 10m).")
@budget_options
@click.option("--out", default=Path("results"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Results folder.")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Rotating log of the scheduled runs [default: <state dir>/probe.log].")
@click.option("--minute", type=click.IntRange(0, 59),
              help="cron: minute of the hour to start at [default: random, to spread "
                   "volunteers]. A systemd timer starts a minute after install or boot.")
@click.option("--scheduler", type=click.Choice(["auto", "cron", "systemd"]), default="auto",
              show_default=True,
              help="auto: cron where installed, else a systemd user timer.")
@click.option("--yes", "-y", is_flag=True,
              help="Give consent now if none is on record (with --submit, to upload too).")
@click.option("--submit", is_flag=True,
              help="Every scheduled run sends itself to the collector (see `probe submit`); "
                   "consent to upload is asked now, or given by --yes.")
@click.option("--collector", metavar="URL",
              help="The collector --submit sends to [default: [submit] collector in the "
                   "config file].")
@click.option("--dry-run", is_flag=True,
              help="Print the crontab line (or the systemd unit files) instead of installing.")
@click.argument("run_args", nargs=-1, type=click.UNPROCESSED)
def install_cmd(every: str, jitter: str | None, budget_mb: float | None,
                daily_budget_mb: float | None, monthly_budget_mb: float | None, out: Path,
                log_file: Path | None, minute: int | None, scheduler: str, yes: bool,
                submit: bool, collector: str | None, dry_run: bool,
                run_args: tuple[str, ...]) -> None:
    """Install (or replace) the crontab entry or the systemd user timer; RUN_ARGS after
    `--` go to `probe run`.

    Consent must be on record (from a first `probe run` at a terminal, or --yes
    here), because nobody will be asked when cron or systemd runs the probe.
    Arguments holding control characters (a newline, ESC, ...) are refused.
    With --submit a collector must be known and consent to upload given now.
    """
    if collector and not submit:
        raise click.UsageError("--collector is for --submit")
    submit_args: list[str] = []
    if submit:
        from probe.collection.submit_cli import scheduled_args

        submit_args = scheduled_args(collector, yes)
    plan = schedule.Plan(
        every=every, jitter=jitter, budget_mb=budget_mb, daily_budget_mb=daily_budget_mb,
        monthly_budget_mb=monthly_budget_mb, out=out,
        log_file=log_file or state_dir() / "probe.log",
        minute=random.randrange(60) if minute is None else minute,
        extra_args=(*submit_args, *run_args),
    )
    if scheduler == "auto":
        # cron runs whether or not the user is logged in; a user timer may not (linger).
        scheduler = "cron" if schedule.has_cron() or not systemd_timer.available() else "systemd"
    try:
        if scheduler == "cron":
            line = plan.line()
            shown = line
        else:
            units = systemd_timer.units(plan.argv(), plan.every_s)
            shown = "\n".join(f"# {systemd_timer.unit_dir() / name}\n{text}"
                              for name, text in units.items())
    except schedule.ScheduleError as exc:
        _fail(f"error: {exc}")
    if dry_run:
        click.echo(shown)
        return
    if not consent.on_record():
        if not yes:
            _fail("error: no consent on record. Read what the probe does and its risk, then "
                  "run `probe run` once at a terminal or pass --yes:\n\n" + consent.TEXT)
        click.echo(consent.TEXT, err=True)
        try:
            consent.record("schedule --yes")
        except OSError as exc:  # a scheduled run without it would refuse to measure
            _fail(f"error: cannot record consent in {consent.path()}: {exc.strerror or exc}")
    try:
        if scheduler == "cron":
            schedule.install(line)
        else:
            systemd_timer.install(units)
    except schedule.ScheduleError as exc:
        _fail(f"error: {exc}")
    if scheduler == "cron":
        click.echo(f"installed: {line}")
    else:
        click.echo(f"installed: systemd user timer {systemd_timer.TIMER} "
                   f"(every {plan.every}) in {systemd_timer.unit_dir()}")
        if systemd_timer.lingering() is False:
            click.echo("note: your systemd user manager stops when you log out, and the "
                       "timer with it; `loginctl enable-linger` keeps it measuring.", err=True)


@schedule_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(as_json: bool) -> None:
    """Show the installed entry, consent, and data used today and this month."""
    import datetime as dt

    try:
        lines = schedule.installed(schedule.read_crontab()) if schedule.has_cron() else []
    except schedule.ScheduleError as exc:
        _fail(f"error: {exc}")
    units = [str(p) for p in systemd_timer.installed()]
    today = dt.datetime.now(dt.UTC).date()
    ledger = Ledger(default_ledger_path())
    info = {"installed": lines + units, "cron": lines, "systemd": units,
            "systemd_timer": systemd_timer.timer_state() if units else None,
            "consent": consent.on_record(),
            "used_today_bytes": ledger.used_on(today),
            "used_this_month_bytes": ledger.used_in_month(today)}
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    shown = lines + [f"systemd user unit {u}" for u in units]
    click.echo("schedule: " + ("\n  ".join([""] + shown) if shown else "not installed"))
    if info["systemd_timer"]:
        click.echo("  " + info["systemd_timer"].replace("\n", "\n  "))
    click.echo(f"consent: {'on record' if info['consent'] else 'not on record'}")
    click.echo(f"data used today: {info['used_today_bytes'] / 1e6:.2f} MB, this month: "
               f"{info['used_this_month_bytes'] / 1e6:.2f} MB")


@schedule_group.command("remove")
def remove_cmd() -> None:
    """Remove the probe's crontab entry and systemd user timer (nothing else is touched)."""
    try:
        n = (schedule.remove() if schedule.has_cron() else 0) + systemd_timer.remove()
    except schedule.ScheduleError as exc:
        _fail(f"error: {exc}")
    click.echo("removed" if n else "nothing to remove")


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(EXIT_BAD_INPUT)
