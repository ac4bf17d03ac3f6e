"""`probe submit` and `probe run --submit`: finished runs to a collector, with consent.

Exit status: 0 when nothing is left to send (every measurement acknowledged or
rejected by the collector), 1 when some are left queued (the collector was unreachable
or answered server errors; run it again later), 2 for usage errors, no consent to
upload, and runs refused (not scrubbed, unreadable, or a named run still running).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import click

EXIT_QUEUED = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class Settings:
    """Where and how to send: the options, else the config file's `[submit]` table."""

    collector: str
    proxy: str | None = None
    ca_bundle: Path | None = None


def settings(collector: str | None, proxy: str | None, ca_bundle: Path | None) -> Settings:
    """The options completed from the config file; click.UsageError says what is missing."""
    from . import client, config

    try:
        defaults = config.submit_defaults()
    except config.ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    url = collector or defaults.get("collector")
    if not url:
        raise click.UsageError(f"no collector: pass --collector URL or set [submit] "
                               f"collector = \"https://...\" in {config.path()}")
    proxy = proxy or defaults.get("proxy")
    bundle = ca_bundle or (Path(defaults["ca_bundle"]) if "ca_bundle" in defaults else None)
    try:
        return Settings(client.collector_url(url), proxy and client.proxy_url(proxy), bundle)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _remember_collector(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    ctx.meta["submit.collector"] = value


def _want_submit(ctx: click.Context, param: click.Parameter, value: bool) -> Settings | None:
    collector = ctx.meta.get("submit.collector")
    if collector and not value:
        raise click.UsageError("--collector is where --submit sends; add --submit")
    return settings(collector, None, None) if value else None


def submit_options(f: Callable) -> Callable:
    """`--submit` and `--collector` for `probe run`: the command gets `submit`, the
    Settings to send the finished run with (checked before measuring), or None."""
    f = click.option("--submit", is_flag=True, callback=_want_submit,
                     help="Send the finished run to the collector (--collector, else the "
                          "config file; see `probe submit`). Consent to upload is asked "
                          "once (--yes gives it); exit 1 if it is left queued, 2 without "
                          "consent.")(f)
    return click.option("--collector", metavar="URL", is_eager=True, expose_value=False,
                        callback=_remember_collector,
                        help="The collector --submit sends to.")(f)


def after_run(folder: Path, target: Settings, yes: bool) -> None:
    """`probe run --submit`: send the run just written; messages go to stderr, so the
    folder stays the last line on stdout; exits only when something is left unsent."""
    status = send([folder], target, yes, named={folder},
                  echo=partial(click.echo, err=True))
    if status:
        sys.exit(status)


def scheduled_args(collector: str | None, yes: bool) -> list[str]:
    """For `probe schedule install --submit`: settle now what a scheduled run cannot ask
    (a collector; consent to upload, asked here at a terminal or given by --yes) and
    return what the scheduled `probe run` needs to submit. click.UsageError if either
    is missing."""
    from probe.operate.consent import ConsentRefused

    from . import upload_consent

    target = settings(collector, None, None)
    text = upload_consent.explain(target.collector, target.proxy, "every scheduled run",
                                  "with --asn-db among the run's options, else AS0, ZZ")
    try:
        upload_consent.ensure(target.collector, text, at_terminal(), yes,
                              lambda t: click.confirm(f"{t}\nSend every run?", err=True))
    except ConsentRefused as exc:
        raise click.UsageError(str(exc)) from None
    return ["--submit"] + (["--collector", target.collector] if collector else [])


def at_terminal() -> bool:
    """Can somebody be asked (as for the consent to measure)?"""
    return sys.stdin.isatty() and sys.stderr.isatty()


def send(folders: list[Path], target: Settings, yes: bool, named: set[Path],
         echo: Callable[[str], None]) -> int:
    """Send the runs of `folders`; the exit status."""
    from probe.operate.consent import ConsentRefused

    from . import queue, upload_consent
    from .client import Collector, Unreachable
    from .submit import NO_IDENTITY, NotScrubbed, Sender, default_scrubber, measurements

    status = 0
    runs = []
    for folder in folders:
        run = queue.load(folder)
        if run.problem is None:
            runs.append(run)
        elif run.running and folder not in named:
            echo(f"{folder}: skipped, {run.problem}")
        else:
            echo(f"{folder}: refused, {run.problem}")
            status = EXIT_USAGE
    if not runs:
        return status
    if not upload_consent.on_record(target.collector):
        count = sum(1 for run in runs for _ in measurements(run.folder))
        identity = ("none of these has it: AS0, ZZ"
                    if not any(r.info.get("network") for r in runs) else "sent when known")
        text = upload_consent.explain(target.collector, target.proxy,
                                      f"{count} measurement(s) of {len(runs)} run(s)",
                                      identity)
        try:
            upload_consent.ensure(target.collector, text, at_terminal(), yes,
                                  lambda t: click.confirm(f"{t}\nSend now?", err=True))
        except ConsentRefused as exc:
            click.echo(f"error: {exc}", err=True)
            return EXIT_USAGE
    try:
        collector = Collector(target.collector, ca_bundle=target.ca_bundle, proxy=target.proxy)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_USAGE
    with collector:
        sender = Sender(collector, default_scrubber())
        for i, run in enumerate(runs):
            try:
                with queue.exclusive(run.folder):
                    outcome = sender.send(run)
            except NotScrubbed as exc:
                echo(f"{run.folder}: refused, not scrubbed: {exc}")
                status = EXIT_USAGE
                continue
            except queue.Busy as exc:
                echo(f"{exc}; left to it")
                continue
            except OSError as exc:
                echo(f"{run.folder}: refused, {exc.strerror or exc}")
                status = EXIT_USAGE
                continue
            except Unreachable as exc:
                left = len(runs) - i
                echo(f"{run.folder}: collector unreachable ({exc}); {left} run(s) left "
                     "queued, run `probe submit` again later")
                return status or EXIT_QUEUED
            echo(f"{run.folder}: {outcome.describe()} to {collector.url}")
            if outcome.sent and not run.info.get("network"):
                echo(f"{run.folder}: {NO_IDENTITY}")
    return status


def status_lines(folders: list[Path], echo: Callable[[str], None]) -> None:
    """`--status`: each run as queued / partial (n of m) / sent / rejected, per collector."""
    from . import queue
    from .submit import measurements

    for folder in folders:
        run = queue.load(folder)
        if run.problem:
            echo(f"{folder}: not sendable, {run.problem}")
            continue
        try:
            reports = queue.State(folder).data["collectors"]
        except OSError as exc:
            echo(f"{folder}: {exc}")
            continue
        known = [r["total"] for r in reports.values() if queue.finished(r, folder)]
        total = known[0] if known else sum(1 for _ in measurements(folder))
        if not reports:
            echo(f"{folder}: {queue.summary(None, total)}")
        for url, report in reports.items():
            echo(f"{folder}: {queue.summary(report, total)} to {url}, "
                 f"report {report['report_id'] or '-'}")


@click.command()
@click.argument("dirs", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--collector", metavar="URL",
              help="The collector, e.g. https://collector.example.org (default: [submit] "
                   "collector in the config file, see docs/submit.md).")
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Also trust these CA certificates (PEM) for the collector. Verification "
                   "stays on.")
@click.option("--proxy", metavar="URL",
              help="Send through this proxy: socks5h://127.0.0.1:9050 (Tor), socks5://..., "
                   "http://...")
@click.option("--yes", "-y", is_flag=True,
              help="Accept what is sent and where, and record it (asked once per collector "
                   "at a terminal otherwise; without one, exit 2).")
@click.option("--status", "show_status", is_flag=True,
              help="Only list each run: queued, partial (n of m), sent or rejected, with the "
                   "collector and report id.")
def submit(dirs: tuple[Path, ...], collector: str | None, ca_bundle: Path | None,
           proxy: str | None, yes: bool, show_status: bool) -> None:
    """Send finished runs (DIRS: run folders or results folders; default ./results) to a
    collector that speaks OONI's collector protocol.

    Only runs that have ended and whose files were scrubbed are sent; each run's
    submission.json records what the collector acknowledged, so running this again
    sends only what is missing. Exit status: 0 nothing left to send, 1 some left
    queued (collector unreachable: try later), 2 usage error, no consent to upload,
    or a run refused.
    """
    from . import queue

    paths = list(dirs) or [Path("results")]
    if not dirs and not paths[0].is_dir():
        raise click.UsageError("no results folder here: name run or results folders")
    folders, errors = queue.find(paths)
    for error in errors:
        click.echo(f"error: {error}", err=True)
    if show_status:
        status_lines(folders, click.echo)
        sys.exit(EXIT_USAGE if errors else 0)
    target = settings(collector, proxy, ca_bundle)
    status = send(folders, target, yes, named={p for p in paths if p in folders},
                  echo=click.echo)
    sys.exit(max(status, EXIT_USAGE if errors else 0))
