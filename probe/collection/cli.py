"""`probe collect`: receive measurements from probes (bk-003) until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import ssl
import sys
import threading
from pathlib import Path

import click

from probe.server.config import label
from probe.server.options import listen_and_certificate

from .ratelimit import NETWORK_FACTOR
from .server import Collector, CollectorConfig
from .store import StoreError

EXIT_BAD_INPUT = 2
_defaults = CollectorConfig(data=Path())


@click.command("collect")
@click.option("--data", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder the reports are stored in (created if needed): open reports "
                   "in reports/, closed ones sealed in raw/ and appended to dataset/; see "
                   "docs/collector.md for the layout.")
@listen_and_certificate(
    "Address to listen on. Repeatable.",
    "Certificate chain (PEM). Without it a self-signed one is generated.")
@click.option("--plain-http", is_flag=True,
              help="Speak plain HTTP, for a reverse proxy in front that terminates TLS.")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Append the JSON-lines request log here (default: stderr).")
@click.option("--log-client-address", is_flag=True,
              help="Also log client IP:port (off by default to protect volunteers).")
@click.option("--max-connections", type=click.IntRange(1), default=_defaults.max_connections,
              show_default=True, help="Concurrent connections; a newcomer beyond is closed.")
@click.option("--header-timeout", type=click.FloatRange(0.1), default=_defaults.header_timeout,
              show_default=True, help="Seconds for the TLS handshake and the request head.")
@click.option("--request-timeout", type=click.FloatRange(0.1),
              default=_defaults.request_timeout, show_default=True,
              help="Seconds for a whole request, its body included.")
@click.option("--rate-limit", type=click.FloatRange(0), default=_defaults.rate_limit,
              show_default=True,
              help=f"Requests a second per client address (its /24 or /64 network: "
                   f"{NETWORK_FACTOR} times as many); over it, 429 with Retry-After. 0: no "
                   "limit (behind a proxy, where every client has the proxy's address).")
@click.option("--rate-burst", type=click.IntRange(1), default=_defaults.rate_burst,
              show_default=True,
              help="Requests a client address may send at once before --rate-limit paces "
                   "it (a run's measurements are sent back to back).")
@click.option("--max-open-reports", type=click.IntRange(1),
              default=_defaults.max_open_reports, show_default=True,
              help="Reports open at once; one more is refused with 503 once those idle "
                   "too long are closed.")
@click.option("--max-open-reports-per-client", type=click.IntRange(0),
              default=_defaults.max_open_reports_per_client, show_default=True,
              help="Reports open at once per client network (/24 or /64); one more is "
                   "refused with 429. 0: no cap per client (behind a proxy).")
@click.option("--no-dataset", is_flag=True,
              help="Keep the raw archive only: no Parquet dataset in DATA/dataset (`probe "
                   "analyze ingest DATA --into ...` makes one later).")
@click.option("--ingest-every", type=click.FloatRange(1), default=_defaults.ingest_every,
              show_default=True, metavar="SECONDS",
              help="Seconds between two appends of the newly sealed reports to "
                   "DATA/dataset (one `probe analyze ingest` each time; a failed one is "
                   "retried then).")
def collect(data: Path, listen: list[tuple[str, int]], cert: Path | None, key: Path | None,
            plain_http: bool, log_file: Path | None, log_client_address: bool,
            max_connections: int, header_timeout: float, request_timeout: float,
            rate_limit: float, rate_burst: int, max_open_reports: int,
            max_open_reports_per_client: int, no_dataset: bool, ingest_every: float) -> None:
    """Collect measurements from `probe submit` (OONI's collector protocol, bk-003).

    Every measurement is checked, then appended to DATA/reports/<report_id>/
    measurements.jsonl and fsynced before the probe hears 200. A closed report is sealed
    into DATA/raw/date=YYYY-MM-DD/cc=XX/asn=ASn/<report_id>.jsonl.gz (gzip JSONL), each
    measurement once, and appended to the Parquet dataset DATA/dataset in the background;
    `probe analyze verdicts DATA` reads either. Exit status: 0 after SIGTERM or SIGINT, 2
    for an unusable --data, --log-file or option, 1 if it cannot listen.
    """
    if key is not None and cert is None:
        raise click.UsageError("--key needs --cert")
    if plain_http and cert is not None:
        raise click.UsageError("--plain-http serves no certificate; drop --cert/--key")
    config = CollectorConfig(
        data=data, listen=listen, cert=cert, key=key, plain_http=plain_http, log=log_file,
        log_client_address=log_client_address, max_connections=max_connections,
        header_timeout=header_timeout, request_timeout=request_timeout,
        rate_limit=rate_limit, rate_burst=rate_burst, max_open_reports=max_open_reports,
        max_open_reports_per_client=max_open_reports_per_client,
        dataset=not no_dataset, ingest_every=ingest_every,
    )
    try:
        collector = Collector(config)
    except StoreError as exc:
        click.echo(f"error: --data {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except ssl.SSLError as exc:
        click.echo(f"error: --cert/--key: not a certificate chain and its key in PEM "
                   f"({exc.reason or exc})", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except OSError as exc:  # an unreadable --cert/--key, an unwritable --log-file
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"error: {where}{exc.strerror or exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        addresses = collector.start()
    except OSError as exc:
        collector.store.archive.close()
        collector.log.close()
        raise click.ClickException(f"cannot listen: {exc}") from None
    if collector.certificates is None:
        click.echo("plain HTTP: keep a TLS-terminating reverse proxy in front", err=True)
        if rate_limit or max_open_reports_per_client:
            click.echo("behind a proxy every client has its address: limit the rate at "
                       "the proxy and pass --rate-limit 0 --max-open-reports-per-client 0",
                       err=True)
    else:
        origin = "self-signed" if collector.certificates.generated else str(cert)
        click.echo(f"certificate ({origin}) SHA-256 {collector.certificates.fingerprint}",
                   err=True)
    scheme = "http" if plain_http else "https"
    for host, port in addresses:
        click.echo(f"listening {scheme}://{label(host, port)}")
    sys.stdout.flush()
    while not stop.wait(1.0):
        pass
    collector.stop()
