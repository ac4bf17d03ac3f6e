"""The `probe` command line: `run` and `rebuild` here, the rest loaded on demand.

Sub-commands that pull in heavy libraries (the server, the lab, pandas and
matplotlib for analysis) are imported only when used, so a cron run starts fast.
"""

from __future__ import annotations

import importlib
import ipaddress
import sys
from pathlib import Path

import click

from probe import __version__

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
    },
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="probe")
def main() -> None:
    """Measure, prove and locate bandwidth throttling (e.g. of Twitter media).

    `probe run` measures the targets and writes a result folder; `probe serve`
    runs the measurement server; `probe lab` builds a censored network in
    namespaces; `probe analyze` turns result folders into verdicts and reports.
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
@click.option("--label", help="Free-text network label stored in run.json (e.g. 'mts-mobile').")
@click.option("--out", default=Path("results"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder under which the run's result folder is created.")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress or summary (for cron); still prints the result folder.")
def run(target_files: tuple[Path, ...], repeat: int, resolver: list, doh: list,
        no_system_resolver: bool, ca_bundle: Path | None, connect_to: dict, max_bytes: int,
        max_seconds: float, dns_timeout: float, allow_nets: list[str], server: str | None,
        experiments: str, no_early_stop: bool, label: str | None, out: Path,
        quiet: bool) -> None:
    """Measure every target and write a result folder.

    For each target: DNS (system resolver, --resolver, --doh), TCP connect, the
    TLS handshake and the HTTP(S) transfer with a throughput time series and
    TCP_INFO. Twitter and control targets are interleaved so both see the same
    network. The result folder's path is the last line printed.

    Exit status: 0 when the run completed (whatever it found), 2 for bad input,
    1 for an internal error.
    """
    from probe import targets as targets_mod
    from probe.measure.transfer import Limits
    from probe.results.folder import OutputError
    from probe.runner import RunConfig, Runner

    experiment_names = [e.strip() for e in experiments.split(",") if e.strip()]
    unknown = sorted(set(experiment_names) - set(EXPERIMENTS))
    if unknown:
        raise click.BadParameter(f"unknown experiment(s) {', '.join(unknown)}; choose from "
                                 f"{', '.join(EXPERIMENTS)}", param_hint="--experiments")
    files = list(target_files) or targets_mod.default_paths()
    try:
        loaded = targets_mod.load(files)
    except targets_mod.TargetError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    config = RunConfig(
        target_files=files, out=out, repeat=repeat, resolvers=resolver + doh,
        system_resolver=not no_system_resolver, ca_bundle=ca_bundle, connect_to=connect_to,
        limits=Limits(max_bytes=max_bytes, max_seconds=max_seconds),
        allow_nets=allow_nets, dns_timeout=dns_timeout, label=label,
        early_stop=not no_early_stop, server=server, experiments=experiment_names,
    )
    show = not quiet and sys.stderr.isatty()
    progress = None
    if show:
        from probe.progress import TerminalProgress

        progress = TerminalProgress()
    try:
        runner = Runner(config, loaded, observer=progress or (lambda e, p: None))
        result = runner.run()
    except OutputError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    finally:
        if progress:
            progress.stop()
    if not quiet:
        from rich.console import Console

        from probe.progress import summary_table

        Console().print(summary_table(result.measurements))
    click.echo(str(result.folder))


@main.command()
@click.argument("folders", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
def rebuild(folders: tuple[Path, ...]) -> None:
    """Rebuild a run folder's CSVs from its measurements.jsonl (e.g. after a killed run)."""
    from probe.results import csvs

    for f in folders:
        try:
            paths = csvs.rebuild(f)
        except FileNotFoundError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        click.echo(f"{f}: rebuilt {', '.join(p.name for p in paths)}")
