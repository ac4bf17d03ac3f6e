"""`probe targets list` and `probe targets check`: the service packs, and whether their
URLs answer from here, so a campaign starts from live URLs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from probe import packs
from probe import targets as targets_module
from probe.measure.limits import DNS_TIMEOUT
from probe.operate.options import network_options
from probe.targets import Target, TargetError

EXIT_DEAD = 1
# Small caps: enough to see the object answer, little for a volunteer's data plan.
CHECK_MAX_BYTES = 64 * 1024
CHECK_MAX_SECONDS = 5.0
EXIT_BAD_INPUT = 2


@click.group("targets")
def targets() -> None:
    """The service packs of targets/ (`probe run --pack NAME`): list them, check their URLs.

    A pack is one service's targets (Twitter, YouTube, Facebook) with controls of the
    same kinds and sizes; docs/targets.md says how to add one.
    """


@targets.command("list")
@click.option("--pack", "pack_names", multiple=True, metavar="NAME",
              help="Only this pack; repeatable; `all` for every pack but the lab's. "
                   "Default: every pack, the lab's too.")
def list_(pack_names: tuple[str, ...]) -> None:
    """Show each pack: its service, files, the names its `sni` experiment adds, and per
    target its family, kind, host and control (pair); `h3`: also fetched over HTTP/3."""
    chosen = _packs(pack_names) if pack_names else packs.shipped()
    for pack in chosen:
        loaded = _load(pack)
        lab = " (lab only: not in `all`)" if pack.lab else ""
        click.echo(f"{pack.name}{lab}: {pack.description}")
        click.echo(f"  service {pack.service}; files {', '.join(f.name for f in pack.files)}")
        if pack.sni_names:
            click.echo(f"  sni experiment names (with --server): {', '.join(pack.sni_names)}")
        width = max(len(t.name) for t in loaded) if loaded else 0
        for t in loaded:
            pair = f"  vs {t.pair}" if t.pair else ""
            h3 = " h3" if t.http3 else "   "
            click.echo(f"  {t.name:<{width}}  {t.family:<11} {t.kind:<6}{h3} {t.host}{pair}")


@targets.command("check")
@click.option("--pack", "pack_names", multiple=True, metavar="NAME",
              help="Check this pack; repeatable; `all` for every pack but the lab's "
                   "[default: all, unless --targets is given].")
@click.option("--targets", "target_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Check this list or pack file (a new pack before it goes into targets/); "
                   "repeatable.")
@network_options
@click.option("--max-bytes", default=CHECK_MAX_BYTES, show_default=True,
              type=click.IntRange(1024), help="Byte cap per URL (per whole video).")
@click.option("--max-seconds", default=CHECK_MAX_SECONDS, show_default=True,
              type=click.FloatRange(0.5, 60),
              help="Time cap per URL; also the connect and TLS handshake timeout.")
@click.option("--dns-timeout", default=DNS_TIMEOUT, show_default=True,
              type=click.FloatRange(0.1, 60), help="Seconds to wait for each DNS answer.")
def check(pack_names: tuple[str, ...], target_files: tuple[Path, ...], resolver: list,
          doh: list, no_system_resolver: bool,
          ca_bundle: Path | None, connect_to: dict, allow_nets: list[str], max_bytes: int,
          max_seconds: float, dns_timeout: float) -> None:
    """Fetch every URL of the packs once, with small caps, and say what answered.

    Each URL is fetched as `probe run` fetches it (DNS, TCP, TLS with verification, the
    kind's transfers: an HLS playlist with its segments, an MP4 by range) but only up to
    --max-bytes and --max-seconds, and nothing is written. Per URL it prints whether it
    is usable, the HTTP status or the failure (df-007 string, e.g. dns_nxdomain_error),
    the bytes received and why. Usable: an answer below 400 and, but for pages (whose
    answer may be a redirect), at least 1 KB of body. The hosts see the requests as
    they would see a run's: check from a network where that is safe.

    Exit status: 0 when every URL is usable, 1 when one is not (dead, refused, an error
    page), 2 for an unknown pack or a bad list (checked before anything is fetched).
    """
    from probe.measure.limits import Limits
    from probe.target_check import check as check_one
    from probe.target_check import context

    limits = Limits(max_bytes=max_bytes, max_seconds=max_seconds, connect_timeout=max_seconds,
                    read_timeout=max_seconds)
    try:
        ctx = context(limits, ca_bundle, connect_to, resolver + doh, not no_system_resolver,
                      allow_nets, dns_timeout)
    except OSError as exc:  # a --ca-bundle that is not PEM
        _fail(f"error: --ca-bundle {ca_bundle}: {exc}")
    dead: list[str] = []
    total = 0
    chosen = _packs(pack_names or (() if target_files else (packs.ALL,)))
    lists = [(p.name, _load(p)) for p in chosen] + [(str(f), _load_file(f))
                                                    for f in target_files]
    for title, loaded in lists:
        click.echo(f"{title}: {len(loaded)} URLs")
        for t in loaded:
            found = check_one(t, ctx)
            total += 1
            answer = found.failure or (f"HTTP {found.status}" if found.status else "-")
            mark = "ok  " if found.usable else "DEAD"
            click.echo(f"  {mark} {t.name}  {answer}  {found.bytes} B  {t.url}  ({found.why})")
            if not found.usable:
                dead.append(t.name)
    click.echo(f"{total - len(dead)} of {total} URLs usable"
               + (f"; not usable: {', '.join(dead)}" if dead else ""))
    if dead:
        sys.exit(EXIT_DEAD)


def _packs(names: tuple[str, ...]) -> list[packs.Pack]:
    try:
        return packs.select(names)
    except (packs.UnknownPack, TargetError) as exc:
        _fail(f"error: {exc}")


def _load(pack: packs.Pack) -> list[Target]:
    """The pack's targets, its included controls too."""
    try:
        return packs.load([pack])[1]
    except TargetError as exc:
        _fail(f"error: {exc}")


def _load_file(path: Path) -> list[Target]:
    """A file's targets; a pack file's with its includes and its checks."""
    try:
        pack = packs.read(path)
        return packs.load([pack])[1] if pack else targets_module.load([path])
    except TargetError as exc:
        _fail(f"error: {exc}")


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(EXIT_BAD_INPUT)
