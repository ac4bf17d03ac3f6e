"""The `probe` command line: `run` and `rebuild` here, the rest loaded on demand.

Sub-commands that pull in heavy libraries (the server, the lab, pandas and
matplotlib for analysis) are imported only when used, so a cron run starts fast.
"""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import click

from probe import __version__
from probe.collection.submit_cli import Settings, after_run, submit_options
from probe.operate.options import budget_options

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1
EXPERIMENTS = ("sni", "split", "upload")


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
        "lab": "probe.lab.cli:lab",
        "analyze": "analysis.cli:analyze",
        "locate": "probe.experiments.cli:locate",
        "schedule": "probe.operate.schedule_cli:schedule_group",
        "doctor": "probe.operate.doctor:doctor",
        "submit": "probe.collection.submit_cli:submit",
    },
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="probe")
def main() -> None:
    """Measure, prove and locate bandwidth throttling (e.g. of Twitter media).

    `probe run` measures the targets and writes a result folder (with --server,
    also the differential experiments); `probe locate` finds the throttler's hop;
    `probe serve` runs the measurement server; `probe lab` builds a censored
    network in namespaces; `probe analyze` turns result folders into verdicts and
    reports; `probe schedule` and `probe doctor` are for unattended operation.
    """


def _connect_to(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    pins = {}
    for v in values:
        host, sep, ip = v.rpartition(":")
        if "]" in ip or (ip and host.startswith("[")):  # HOST:[v6]
            host, _, ip = v.partition(":")
        ip = ip.strip("[]")
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise click.BadParameter(
                f"{v!r}: expected HOST:IP, e.g. pbs.twimg.com:192.0.2.7"
            ) from None
        if not sep or not host:
            raise click.BadParameter(f"{v!r}: expected HOST:IP")
        pins[host.lower()] = ip
    return pins


def _resolvers(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list:
    from probe.measure import dns

    out = []
    for v in values:
        try:
            r = dns.parse_resolver(v)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        if param.name == "doh" and r.engine != "doh":
            raise click.BadParameter(f"{v!r}: --doh needs an https:// URL")
        if param.name == "resolver" and r.engine == "doh":
            raise click.BadParameter(f"{v!r}: use --doh for DNS-over-HTTPS")
        out.append(r)
    return out


def _nets(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    for v in values:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            raise click.BadParameter(
                f"{v!r} is not an IP network (e.g. 192.0.2.0/24)"
            ) from None
    return list(values)


@main.command()
@click.option("--targets", "target_files", multiple=True, type=click.Path(path_type=Path),
              help="Targets file (TOML); repeatable. Default: the shipped twitter and "
                   "control lists.")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1, 1000),
              help="Measure every target this many times, interleaved.")
@click.option("--resolver", multiple=True, callback=_resolvers, metavar="IP[:PORT]",
              help="Also ask this DNS resolver (UDP, TCP on truncation); repeatable.")
@click.option("--doh", multiple=True, callback=_resolvers, metavar="URL",
              help="Also ask this DNS-over-HTTPS resolver, e.g. https://1.1.1.1/dns-query.")
@click.option("--no-system-resolver", is_flag=True,
              help="Do not query the resolvers of /etc/resolv.conf.")
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Trust these CA certificates (PEM) instead of the system's (labs, "
                   "private deployments). Verification stays on.")
@click.option("--connect-to", multiple=True, callback=_connect_to, metavar="HOST:IP",
              help="Connect to IP for HOST instead of the resolved address; repeatable.")
@click.option("--max-bytes", default=512 * 1024, show_default=True,
              type=click.IntRange(1024), help="Byte cap per object (per whole video).")
@click.option("--max-seconds", default=10.0, show_default=True, type=click.FloatRange(0.5, 600),
              help="Time cap per object; a transfer cut by it is still a valid rate measurement.")
@click.option("--connect-timeout", default=10.0, show_default=True,
              type=click.FloatRange(0.5, 120),
              help="Seconds to wait for a TCP connect and for a TLS handshake (each).")
@click.option("--dns-timeout", default=5.0, show_default=True, type=click.FloatRange(0.1, 60),
              help="Seconds to wait for each DNS answer.")
@click.option("--allow-net", "allow_nets", multiple=True, callback=_nets, metavar="CIDR",
              help="Treat answers in this network as genuine, not bogons (for labs using "
                   "documentation prefixes); repeatable.")
@click.option("--server", metavar="URL",
              help="A measurement server (`probe serve`) for the differential experiments, "
                   "e.g. https://measure.example.org:8443.")
@click.option("--experiments", default="sni,split,upload", show_default=True, metavar="LIST",
              help="Comma-separated experiments to run when --server is given: sni, split, "
                   "upload.")
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
def run(target_files: tuple[Path, ...], repeat: int, resolver: list, doh: list,
        no_system_resolver: bool, ca_bundle: Path | None, connect_to: dict, max_bytes: int,
        max_seconds: float, connect_timeout: float, dns_timeout: float, allow_nets: list[str],
        server: str | None, experiments: str, no_early_stop: bool, budget_mb: float | None,
        daily_budget_mb: float | None, monthly_budget_mb: float | None, label: str | None,
        asn_db: Path | None, out: Path, wait: bool, jitter: float, yes: bool,
        log_file: Path | None, verbose: bool, quiet: bool, submit: Settings | None) -> None:
    """Measure every target and write a result folder.

    For each target: DNS (system resolver, --resolver, --doh), TCP connect, the
    TLS handshake and the HTTP(S) transfer with a throughput time series and
    TCP_INFO. Twitter and control targets are interleaved so both see the same
    network. With --server, the differential experiments run among them. The
    result folder's path is the last line printed.

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
    from probe import targets as targets_mod
    from probe.measure.transfer import Limits
    from probe.operate import consent, lock
    from probe.operate.budget import MB, Budget, Ledger, default_ledger_path
    from probe.results.folder import OutputError
    from probe.runner import RunConfig, Runner

    _setup_logging(verbose, log_file)
    experiment_names = [e.strip() for e in experiments.split(",") if e.strip()]
    unknown = sorted(set(experiment_names) - set(EXPERIMENTS))
    if unknown:
        raise click.BadParameter(f"unknown experiment(s) {', '.join(unknown)}; choose from "
                                 f"{', '.join(EXPERIMENTS)}", param_hint="--experiments")
    files = list(target_files) or targets_mod.default_paths()
    try:
        loaded = targets_mod.load(files)
    except targets_mod.TargetError as exc:
        _fail(f"error: {exc}", EXIT_BAD_INPUT)
    network = _network(asn_db) if asn_db else None
    interactive = sys.stdin.isatty() and sys.stderr.isatty()
    try:
        consent_state = consent.ensure(
            interactive, yes, lambda text: click.confirm(f"{text}\nMeasure now?", err=True))
    except consent.ConsentRefused as exc:
        _fail(f"error: {exc}", EXIT_BAD_INPUT)
    run_lock = lock.RunLock()
    try:
        run_lock.acquire(wait=wait)
    except lock.LockedError as exc:
        _fail(f"error: {exc}", lock.EXIT_LOCKED)
    except lock.LockFileError as exc:
        _fail(f"error: {exc}", EXIT_BAD_INPUT)
    try:
        if jitter:
            import random
            import time

            time.sleep(random.uniform(0, jitter))
        daily = daily_budget_mb and int(daily_budget_mb * MB)
        monthly = monthly_budget_mb and int(monthly_budget_mb * MB)
        budget = Budget(
            run_limit=int(budget_mb * MB) if budget_mb else None,
            daily_limit=daily or None, monthly_limit=monthly or None,
            ledger=Ledger(default_ledger_path()) if (daily or monthly) else None,
        )
        config = RunConfig(
            target_files=files, out=out, repeat=repeat, resolvers=resolver + doh,
            system_resolver=not no_system_resolver, ca_bundle=ca_bundle, connect_to=connect_to,
            limits=Limits(max_bytes=max_bytes, max_seconds=max_seconds,
                          connect_timeout=connect_timeout),
            allow_nets=allow_nets, dns_timeout=dns_timeout, label=label, budget=budget,
            early_stop=not no_early_stop, server=server, experiments=experiment_names,
            consent=consent_state, network=network,
        )
        progress = None
        if not quiet and sys.stderr.isatty():
            from probe.progress import TerminalProgress

            progress = TerminalProgress()
        try:
            runner = Runner(config, loaded, observer=progress or (lambda e, p: None))
        except (ValueError, OSError) as exc:  # a bad --server URL or --ca-bundle file
            import ssl

            if isinstance(exc, ssl.SSLError):
                _fail(f"error: --ca-bundle {ca_bundle}: not a PEM file of CA certificates "
                      f"({exc.reason or exc})", EXIT_BAD_INPUT)
            _fail(f"error: {exc}", EXIT_BAD_INPUT)
        try:
            with _graceful_signals(runner):
                result = runner.run()
        except OutputError as exc:
            _fail(f"error: {exc}", EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            if progress:
                progress.stop()
            click.echo("interrupted; the measurements written so far are in the folder",
                       err=True)
            if runner.folder:
                click.echo(str(runner.folder))
            sys.exit(130)
        except Exception as exc:  # our bug: run.json says "error"; what was measured stays
            if progress:
                progress.stop()
            import traceback

            traceback.print_exc()
            click.echo(f"internal error ({type(exc).__name__}: {exc}); please report it. The "
                       "measurements written so far are in the folder", err=True)
            if runner.folder:
                click.echo(str(runner.folder))
            sys.exit(1)
        finally:
            if progress:
                progress.stop()
    finally:
        run_lock.release()
    if runner.stop_reason:
        click.echo(f"stopped early ({runner.stop_reason}); what was measured is saved",
                   err=True)
    if not quiet:
        _print_summary(result)
    click.echo(str(result.folder))
    if submit:
        after_run(result.folder, submit, yes)


def _print_summary(result) -> None:
    """The one-screen summary: per target what happened, its goodput and the verdict."""
    from probe.progress import print_summary

    print_summary(result.measurements, *_verdicts(result.folder))


def _verdicts(folder: Path) -> tuple[dict[str, str], list[str]]:
    """Each judged target's verdict label, and notes on those not ok: the one place the probe
    calls the analysis (and pandas), once the run is written. The measurements are saved
    whatever happens here, so a failure costs the labels, never the run."""
    import logging

    from probe.progress import slow_network_note

    found: dict[str, str] = {}
    notes: list[str] = []
    try:
        from analysis.verdicts import CONTROL_MIN_KBPS, verdicts

        rows = verdicts([folder]).to_dict("records")
        for v in rows:
            label = v["verdict"] + (f" ({v['trigger']})" if v.get("trigger") else "")
            found[v["target"]] = label
            if v["verdict"] != "ok":
                notes.append(f"{v['target']}: {label}: {v['explanation']}")
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
def _graceful_signals(runner) -> Iterator[None]:
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
