"""`probe locate`: find the hop that throttles a Twitter SNI (root, scapy)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

EXIT_CANNOT_RUN = 2


@click.command("locate")
@click.option("--server", "server_url", required=True, metavar="URL",
              help="The measurement server (`probe serve`), e.g. https://measure.example.org")
@click.option("--sni", default="pbs.twimg.com", show_default=True,
              help="Twitter name carried by the injected trigger ClientHello.")
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Trust only these CAs for the server (lab, tests); default: system roots.")
@click.option("--seconds", type=click.FloatRange(0.5, 30), default=2.0, show_default=True,
              help="Length of the download measured after each trigger.")
@click.option("--max-bytes", type=click.IntRange(16_000, 50_000_000), default=500_000,
              show_default=True, help="Largest download per connection.")
@click.option("--max-hops", type=click.IntRange(1, 64), default=16, show_default=True,
              help="Give up the traceroute to the server after this many hops.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def locate(server_url: str, sni: str, ca_bundle: Path | None, seconds: float, max_bytes: int,
           max_hops: int, as_json: bool) -> None:
    """Inject a TTL-limited trigger ClientHello into fresh connections to the server and
    report the smallest TTL whose flow gets throttled: the throttler's hop.

    Needs root (raw sockets, TCP_REPAIR) and IPv4. Exit status 2 when it cannot run.
    """
    from .locate import LocateError, describe
    from .locate import locate as run_locate

    try:
        result = run_locate(server_url, sni=sni, ca_bundle=ca_bundle, seconds=seconds,
                            max_bytes=max_bytes, max_hops=max_hops)
    except (LocateError, ValueError) as exc:
        click.echo(f"probe locate: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=1))
    else:
        click.echo(describe(result))
