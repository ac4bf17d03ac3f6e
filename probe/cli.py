"""The `probe` command line: `run` and `rebuild` here, the rest loaded on demand.

Sub-commands that pull in heavy libraries (the server, the lab, pandas and
matplotlib for analysis) are imported only when used, so a cron run starts fast.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from probe import __version__
from probe.collection.submit_cli import submit_options
from probe.experiment_names import DEFAULT as DEFAULT_EXPERIMENTS
from probe.experiment_names import NAMES as EXPERIMENTS
from probe.experiment_names import OVER_QUIC as QUIC_EXPERIMENTS
from probe.experiment_names import check as check_experiments
from probe.experiment_names import chosen as chosen_experiments
from probe.measure.limits import DEFAULT_LIMITS, DNS_TIMEOUT
from probe.operate.options import budget_options, network_options

if TYPE_CHECKING:  # names for the hints; each step imports what it uses when it runs
    from probe.collection.submit_cli import Settings
    from probe.operate.budget import Budget
    from probe.packs import Pack
    from probe.progress import TerminalProgress
    from probe.runner import RunConfig, Runner, RunResult
    from probe.targets import Target

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130  # a second signal: stopped at once


class LazyGroup(click.Group):
    """A click group whose sub-commands live in other modules, imported when invoked."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(
    cls=LazyGroup,
    lazy={
        "serve": "probe.server.cli:serve",
        "collect": "probe.collection.cli:collect",
        "lab": "probe.lab.cli:lab",
        "analyze": "analysis.cli:analyze",
        "locate": "probe.experiments.cli:locate",
        "schedule": "probe.operate.schedule_cli:schedule_group",
        "doctor": "probe.operate.doctor:doctor",
        "submit": "probe.collection.submit_cli:submit",
        "targets": "probe.targets_cli:targets",
    },
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="probe")
def main() -> None:
    """Measure, prove and locate bandwidth throttling (e.g. of Twitter media).

    `probe run` measures the targets and writes a result folder (with --server,
    also the differential experiments; --pack picks the services); `probe targets`
    lists the service packs and checks their URLs; `probe locate` finds the throttler's hop;
    `probe serve` runs the measurement server; `probe lab` builds a censored
    network in namespaces; `probe analyze` turns result folders into verdicts and
    reports; `probe schedule` and `probe doctor` are for unattended operation.
    """


def _experiments(ctx: click.Context, param: click.Parameter,
                 value: str | None) -> list[str] | None:
    if value is None:  # the defaults, which depend on --http3 (experiment_names.chosen)
        return None
    try:
        return check_experiments([e.strip() for e in value.split(",") if e.strip()])
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@click.option("--pack", "pack_names", multiple=True, metavar="NAME",
              help="Measure a service pack of targets/ (twitter, youtube, facebook; `probe "
                   "targets list` shows them); repeatable; `all` for every pack but the lab's. "
                   "A pack brings its own controls. Default: twitter, unless --targets is "
                   "given.")
@click.option("--targets", "target_files", multiple=True, type=click.Path(path_type=Path),
              help="Targets file (TOML); repeatable; measured with the --pack packs, if any.")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1, 1000),
              help="Measure every target this many times, interleaved.")
@network_options
@click.option("--max-bytes", default=DEFAULT_LIMITS.max_bytes, show_default=True,
              type=click.IntRange(1024), help="Byte cap per object (per whole video).")
@click.option("--max-seconds", default=DEFAULT_LIMITS.max_seconds, show_default=True,
              type=click.FloatRange(0.5, 600),
              help="Time cap per object; a transfer cut by it is still a valid rate measurement.")
@click.option("--connect-timeout", default=DEFAULT_LIMITS.connect_timeout, show_default=True,
              type=click.FloatRange(0.5, 120),
              help="Seconds to wait for a TCP connect and for a TLS handshake (each).")
@click.option("--dns-timeout", default=DNS_TIMEOUT, show_default=True,
              type=click.FloatRange(0.1, 60),
              help="Seconds to wait for each DNS answer.")
@click.option("--server", metavar="URL",
              help="A measurement server (`probe serve`) for the differential experiments, "
                   "e.g. https://measure.example.org:8443.")
@click.option("--experiments", "experiment_names", default=None, callback=_experiments,
              metavar="LIST",
              help="Comma-separated experiments to run when --server is given, of "
                   f"{', '.join(EXPERIMENTS)}; default: {','.join(DEFAULT_EXPERIMENTS)}, "
                   f"and {','.join(QUIC_EXPERIMENTS)} (over HTTP/3) with --http3.")
@click.option("--http3", is_flag=True,
              help="Also fetch every https target over HTTP/3 (QUIC on UDP), as a measurement "
                   "of its own (experiment target-h3); a target list asks it per target "
                   "with http3 = true.")
@click.option("--no-early-stop", is_flag=True,
              help="Always use the full --max-bytes/--max-seconds instead of stopping a "
                   "transfer once its rate estimate is stable.")
@budget_options
@click.option("--label", help="Free-text network label stored in run.json (e.g. 'mts-mobile').")
@click.option("--asn-db", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Local IP-to-ASN database (iptoasn.com TSV, plain or .gz) to record this "
                   "network's AS and country; nothing is looked up online.")
@click.option("--out", default=Path("results"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder under which the run's result folder is created.")
@click.option("--wait", is_flag=True,
              help="If another run holds the lock, wait for it instead of exiting with 3.")
@click.option("--jitter", type=click.FloatRange(0, 3600), default=0, metavar="SECONDS",
              help="Sleep a random 0..SECONDS before measuring (spreads scheduled runs).")
@click.option("--yes", "-y", is_flag=True,
              help="Accept the explanation of what is measured and its risk, and record it "
                   "(asked once at a terminal otherwise). Without a terminal a run needs "
                   "consent on record or --yes; it exits with 2 before measuring.")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also log to this file, rotated at 1 MB (5 kept); for scheduled runs. "
                   "Lines are in UTC and scrubbed like the results; keep the file out of "
                   "the results folder you share.")
@click.option("--verbose", "-v", is_flag=True, help="Log each step to stderr.")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress or summary (for cron); still prints the result folder.")
@submit_options
def run(pack_names: tuple[str, ...], target_files: tuple[Path, ...], repeat: int,
        resolver: list, doh: list, no_system_resolver: bool, ca_bundle: Path | None,
        connect_to: dict, allow_nets: list[str], max_bytes: int, max_seconds: float,
        connect_timeout: float, dns_timeout: float, server: str | None,
        experiment_names: list[str] | None, http3: bool, no_early_stop: bool,
        budget_mb: float | None, daily_budget_mb: float | None,
        monthly_budget_mb: float | None, label: str | None, asn_db: Path | None, out: Path,
        wait: bool, jitter: float, yes: bool, log_file: Path | None, verbose: bool,
        quiet: bool, submit: Settings | None) -> None:
    """Measure every target and write a result folder.

    For each target: DNS (system resolver, --resolver, --doh), TCP connect, the
    TLS handshake and the HTTP(S) transfer with a throughput time series and
    TCP_INFO; with --http3 (or http3 = true) also over HTTP/3 (QUIC). The targets
    are those of the packs (--pack; Twitter and its controls by default) and of
    --targets. Service and control targets are interleaved so both see the same
    network. With --server, the differential experiments run
    among them, sending the name of every service target (and the packs' names of
    hosts whose media needs a signed URL) to the server. The result folder's path
    is the last line printed.

    One run at a time: a second run exits with 3 (or waits with --wait).
    SIGINT/SIGTERM finish the measurement in flight, write the results and exit 0;
    a second signal stops at once with 130 (the results written so far stay valid).

    Consent: the first run at a terminal explains what is measured and its risk
    and asks; without a terminal nobody can be asked, so the run needs consent on
    record (or --yes) and otherwise exits with 2 having measured nothing.

    Exit status: 0 when the run completed (whatever it found, also when a budget
    or a signal stopped it), 2 for bad input, unwritable results or no consent, 3
    when another run holds the lock, 1 for an internal error.
    """
    from probe.measure.limits import Limits
    from probe.packs import sni_names
    from probe.runner import RunConfig

    _setup_logging(verbose, log_file)
    files, loaded, chosen = _load_targets(pack_names, target_files)
    network = _network(asn_db) if asn_db else None
    consent_state = _consent(yes)
    with _run_lock(wait):
        _sleep_jitter(jitter)
        config = RunConfig(
            target_files=files, out=out, repeat=repeat, resolvers=resolver + doh,
            system_resolver=not no_system_resolver, ca_bundle=ca_bundle, connect_to=connect_to,
            limits=Limits(max_bytes=max_bytes, max_seconds=max_seconds,
                          connect_timeout=connect_timeout),
            allow_nets=allow_nets, dns_timeout=dns_timeout, label=label,
            budget=_budget(budget_mb, daily_budget_mb, monthly_budget_mb),
            early_stop=not no_early_stop, server=server,
            experiments=chosen_experiments(experiment_names, http3),
            consent=consent_state, network=network, packs=[p.name for p in chosen],
            sni_names=sni_names(chosen), http3=http3,
        )
        progress = _progress(quiet)
        runner = _runner(config, loaded, progress)
        result = _measure(runner, progress)
    _report(runner, result, quiet)
    if submit:
        from probe.collection.submit_cli import after_run

        after_run(result.folder, submit, yes)


def _load_targets(pack_names: tuple[str, ...], target_files: tuple[Path, ...]
                  ) -> tuple[list[Path], list[Target], list[Pack]]:
    """The files to measure, their targets and the packs they come from (the default pack
    without --pack and --targets); an unknown pack or a bad list exits 2 before anything
    is asked, locked or written."""
    from probe import packs
    from probe.targets import TargetError

    names = pack_names or (() if target_files else (packs.DEFAULT,))
    try:
        chosen = packs.select(names)
        files, loaded = packs.load(chosen, target_files)
    except (packs.UnknownPack, TargetError) as exc:
        _fail(f"error: {exc}", EXIT_BAD_INPUT)
    return files, loaded, chosen


def _consent(yes: bool) -> str:
    """The consent on record, asked for at a terminal; without it the run exits with 2."""
    from probe.operate import consent

    interactive = sys.stdin.isatty() and sys.stderr.isatty()
    try:
        return consent.ensure(
            interactive, yes, lambda text: click.confirm(f"{text}\nMeasure now?", err=True))
    except consent.ConsentRefused as exc:
        _fail(f"error: {exc}", EXIT_BAD_INPUT)


@contextlib.contextmanager
def _run_lock(wait: bool) -> Iterator[None]:
    """One run at a time: held while measuring, also when the run exits early."""
    from probe.operate import lock

    run_lock = lock.RunLock()
    try:
        run_lock.acquire(wait=wait)
    except lock.LockedError as exc:
        _fail(f"error: {exc}", lock.EXIT_LOCKED)
    except lock.LockFileError as exc:
        _fail(f"error: {exc}", EXIT_BAD_INPUT)
    try:
        yield
    finally:
        run_lock.release()


def _sleep_jitter(jitter: float) -> None:
    """A random start delay, so that scheduled volunteers' probes do not fire together."""
    if jitter:
        import random
        import time

        time.sleep(random.uniform(0, jitter))


def _budget(budget_mb: float | None, daily_budget_mb: float | None,
            monthly_budget_mb: float | None) -> Budget:
    """The data budget of the options; a daily or monthly one keeps its ledger across runs."""
    from probe.operate.budget import MB, Budget, Ledger, default_ledger_path

    daily = daily_budget_mb and int(daily_budget_mb * MB)
    monthly = monthly_budget_mb and int(monthly_budget_mb * MB)
    return Budget(
        run_limit=int(budget_mb * MB) if budget_mb else None,
        daily_limit=daily or None, monthly_limit=monthly or None,
        ledger=Ledger(default_ledger_path()) if (daily or monthly) else None,
    )


def _progress(quiet: bool) -> TerminalProgress | None:
    """The progress bar, only where someone watches (stderr a terminal, no --quiet)."""
    if quiet or not sys.stderr.isatty():
        return None
    from probe.progress import TerminalProgress

    return TerminalProgress()


def _runner(config: RunConfig, loaded: list[Target],
            progress: TerminalProgress | None) -> Runner:
    """The run's runner; a bad --server URL or --ca-bundle file exits with 2."""
    from probe.runner import Runner

    try:
        return Runner(config, loaded, observer=progress or (lambda e, p: None))
    except (ValueError, OSError) as exc:
        import ssl

        if isinstance(exc, ssl.SSLError):
            _fail(f"error: --ca-bundle {config.ca_bundle}: not a PEM file of CA certificates "
                  f"({exc.reason or exc})", EXIT_BAD_INPUT)
        _fail(f"error: {exc}", EXIT_BAD_INPUT)


def _measure(runner: Runner, progress: TerminalProgress | None) -> RunResult:
    """Run the measurements. Unwritable results exit with 2; a second signal (130) and a
    bug of ours (1) exit pointing at the folder, whose measurements stay valid."""
    from probe.results.folder import OutputError

    try:
        with _shown(progress), _graceful_signals(runner):
            return runner.run()
    except OutputError as exc:
        _fail(f"error: {exc}", EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        _saved_so_far(runner, "interrupted; the measurements written so far are in the folder",
                      EXIT_INTERRUPTED)
    except Exception as exc:  # our bug: run.json says "error"; what was measured stays
        import traceback

        traceback.print_exc()
        _saved_so_far(runner, f"internal error ({type(exc).__name__}: {exc}); please report "
                      "it. The measurements written so far are in the folder", EXIT_INTERNAL)


@contextlib.contextmanager
def _shown(progress: TerminalProgress | None) -> Iterator[None]:
    """The one place the progress bar stops: before anything else is printed."""
    try:
        yield
    finally:
        if progress:
            progress.stop()


def _saved_so_far(runner: Runner, message: str, status: int) -> NoReturn:
    """Exit after a cut run, printing its folder (if made) as the last line, as always."""
    click.echo(message, err=True)
    if runner.folder:
        click.echo(str(runner.folder))
    sys.exit(status)


def _report(runner: Runner, result: RunResult, quiet: bool) -> None:
    """Why the run stopped early (if it did), the summary unless --quiet, and the result
    folder's path as the last line, where scripts read it."""
    if runner.stop_reason:
        click.echo(f"stopped early ({runner.stop_reason}); what was measured is saved",
                   err=True)
    if not quiet:
        _print_summary(result)
    click.echo(str(result.folder))


def _print_summary(result: RunResult) -> None:
    """The one-screen summary: per target what happened, its goodput and the verdict."""
    from probe.progress import print_summary

    print_summary(result.measurements, *_verdicts(result.folder))


def _verdicts(folder: Path) -> tuple[dict[str, str], list[str]]:
    """Each judged target's verdict label, and notes on those not ok: the one place the probe
    calls the analysis (and pandas), once the run is written. The measurements are saved
    whatever happens here, so a failure costs the labels, never the run."""
    import logging

    from probe.progress import row_label, slow_network_note

    found: dict[str, str] = {}
    notes: list[str] = []
    try:
        from analysis.verdicts import CONTROL_MIN_KBPS, verdicts

        rows = verdicts([folder]).to_dict("records")
        for v in rows:
            label = v["verdict"] + (f" ({v['trigger']})" if v.get("trigger") else "")
            row = row_label(v["target"], v["experiment"])
            found[row] = label
            if v["verdict"] != "ok":
                notes.append(f"{row}: {label}: {v['explanation']}")
        notes += [f"{v['target']}: {v['across_transports']}" for v in rows
                  if isinstance(v.get("across_transports"), str)]
        slow = slow_network_note(rows, CONTROL_MIN_KBPS)
        if slow:
            notes.append(slow)
    except Exception as exc:  # the measurements are saved; a summary must not fail the run
        logging.getLogger("probe").warning("no verdicts in the summary: %s", exc)
    return found, notes


def _network(asn_db: Path) -> dict | None:
    """This network's AS and country from the user's database, or None if it does not say."""
    from probe.operate.netinfo import AsnDb, AsnDbError, own_network
    from probe.operate.privacy import local_addresses

    try:
        found = own_network(AsnDb(asn_db), local_addresses())
    except AsnDbError as exc:
        _fail(f"error: {exc}", EXIT_BAD_INPUT)
    return found.as_dict() if found else None


def _fail(message: str, status: int) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(status)


def _setup_logging(verbose: bool, log_file: Path | None) -> None:
    """--verbose: steps to stderr; --log-file: the same, rotated, for unattended runs;
    both in UTC and scrubbed like the results."""
    import logging
    from logging.handlers import RotatingFileHandler

    from probe.operate.privacy import LogFormatter, Scrubber, local_addresses

    logger = logging.getLogger("probe")
    logger.setLevel(logging.INFO)
    if not (verbose or log_file):
        return
    fmt = LogFormatter(Scrubber(local_addresses(), home=str(Path.home())))
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    if log_file:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handler = RotatingFileHandler(log_file, maxBytes=1_000_000, backupCount=5)
        except OSError as exc:
            _fail(f"error: cannot write log file {log_file}: {exc.strerror or exc}",
                  EXIT_BAD_INPUT)
        handler.setFormatter(fmt)
        logger.addHandler(handler)


@contextlib.contextmanager
def _graceful_signals(runner: Runner) -> Iterator[None]:
    """First SIGINT/SIGTERM: finish the measurement in flight, then stop. Second: stop now."""
    import logging

    def handler(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if runner.stop_reason:
            raise KeyboardInterrupt
        logging.getLogger("probe").warning("%s: finishing the measurement in flight", name)
        runner.request_stop(name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@main.command()
@click.argument("folders", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
def rebuild(folders: tuple[Path, ...]) -> None:
    """Rebuild a run folder's CSVs from its measurements.jsonl (e.g. after a killed run).

    A line that cannot be flattened (not JSON, longer than 16 MiB, nested too deeply, or
    not of the documented format) is skipped with a warning naming its file and line, and
    counted. Exit status: 0 when every folder was rebuilt (lines skipped or not), 2 when a
    folder has no readable measurements.jsonl or cannot be written; the others are
    rebuilt all the same.
    """
    from probe.results import csvs, jsonl

    failed = False
    for f in folders:
        skipped: list[jsonl.Skip] = []

        def note(skip: jsonl.Skip, skipped: list[jsonl.Skip] = skipped) -> None:
            skipped.append(skip)
            jsonl.warn(skip)

        try:
            paths = csvs.rebuild(f, note)
        except FileNotFoundError as exc:
            click.echo(f"error: {exc}", err=True)
            failed = True
            continue
        except OSError as exc:  # unreadable JSONL, unwritable folder, full disk
            click.echo(f"error: {f}: {exc.strerror or exc}", err=True)
            failed = True
            continue
        note_skipped = f"; skipped {len(skipped)} malformed line(s)" if skipped else ""
        click.echo(f"{f}: rebuilt {', '.join(p.name for p in paths)}{note_skipped}")
    if failed:
        sys.exit(EXIT_BAD_INPUT)
