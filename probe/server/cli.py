"""`probe serve`: run the measurement server until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from .app import Server
from .config import ServerConfig, label, parse_path_prefix
from .options import listen_and_certificate

_defaults = ServerConfig()


def _prefix(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return parse_path_prefix(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("serve")
@listen_and_certificate(
    "Address to serve HTTPS and plain HTTP on (sniffed per connection). Repeatable.",
    "Default certificate chain (PEM). Without it a self-signed one is generated.")
@click.option("--cert-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="NAME.pem + NAME.key per SNI name (_wildcard.DOMAIN for *.DOMAIN).")
@click.option("--media", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder served under /media/.")
@click.option("--log", "log", type=click.Path(dir_okay=False, path_type=Path),
              help="Append JSON lines here (default: stderr).")
@click.option("--log-client-address", is_flag=True,
              help="Also log client IP:port (off by default to protect volunteers).")
@click.option("--max-connections", type=click.IntRange(1), default=_defaults.max_connections,
              show_default=True,
              help="Concurrent connections in all; when every slot is taken, see "
                   "--evict-after, else the newcomer is closed at once.")
@click.option("--max-connections-per-client", type=click.IntRange(1),
              default=_defaults.max_connections_per_client, show_default=True,
              help="Concurrent connections from one IP address; so one host cannot take "
                   "every slot (a probe needs one or two).")
@click.option("--max-connections-per-network", type=click.IntRange(1),
              default=_defaults.max_connections_per_network, show_default=True,
              help="Concurrent connections from one /24 (IPv4) or /64 (IPv6): an attacker's "
                   "many addresses share few networks.")
@click.option("--evict-after", type=click.FloatRange(0.0), default=_defaults.evict_after,
              show_default=True,
              help="When no slot is free, the connection that moved no byte for longest, if "
                   "for at least this many seconds, is closed to admit the newcomer.")
@click.option("--max-connection-time", type=click.FloatRange(1.0),
              default=_defaults.max_connection_time, show_default=True,
              help="Seconds one connection may last, however active.")
@click.option("--max-requests-per-connection", type=click.IntRange(1),
              default=_defaults.max_requests_per_connection, show_default=True,
              help="Requests on one connection; the last response says Connection: close.")
@click.option("--idle-timeout", type=click.FloatRange(0.1), default=_defaults.idle_timeout,
              show_default=True, help="Seconds without progress before a connection is closed.")
@click.option("--header-timeout", type=click.FloatRange(0.1), default=_defaults.header_timeout,
              show_default=True, help="Seconds for the TLS handshake and each request head.")
@click.option("--max-upload-bytes", type=click.IntRange(0), default=_defaults.max_upload_bytes,
              show_default=True, help="Largest request body accepted (413 beyond).")
@click.option("--max-bytes", type=click.IntRange(0), default=_defaults.max_bytes,
              show_default=True, help="Largest n accepted by /bytes?n=.")
@click.option("--path-prefix", default="", callback=_prefix, metavar="/PREFIX",
              help="Serve the endpoints under this path (e.g. /x7k2: /x7k2/bytes, ...); "
                   "every other path is a 404. Probes then use --server "
                   "https://HOST/x7k2. Default: none.")
@click.option("--no-http3", is_flag=True,
              help="Do not answer HTTP/3 (QUIC) on the UDP port of each --listen address, nor "
                   "advertise it (Alt-Svc) in HTTPS responses.")
def serve(
    listen: list[tuple[str, int]],
    cert: Path | None,
    key: Path | None,
    cert_dir: Path | None,
    media: Path | None,
    log: Path | None,
    log_client_address: bool,
    max_connections: int,
    max_connections_per_client: int,
    max_connections_per_network: int,
    evict_after: float,
    max_connection_time: float,
    max_requests_per_connection: int,
    idle_timeout: float,
    header_timeout: float,
    max_upload_bytes: int,
    max_bytes: int,
    path_prefix: str,
    no_http3: bool,
) -> None:
    """Serve /bytes, /media, /upload and /meta for probes, accepting any SNI.

    HTTPS and plain HTTP over TCP, and HTTP/3 over QUIC on the same UDP port.
    Nothing else answers (`/` is a 404) and no response names the server."""
    if key is not None and cert is None:
        raise click.UsageError("--key needs --cert")
    config = ServerConfig(
        listen=listen, cert=cert, key=key, cert_dir=cert_dir, media=media, log=log,
        log_client_address=log_client_address, max_connections=max_connections,
        max_connections_per_client=max_connections_per_client,
        max_connections_per_network=max_connections_per_network, evict_after=evict_after,
        max_connection_time=max_connection_time,
        max_requests_per_connection=max_requests_per_connection,
        idle_timeout=idle_timeout, header_timeout=header_timeout,
        max_upload_bytes=max_upload_bytes, max_bytes=max_bytes, path_prefix=path_prefix,
        http3=not no_http3,
    )
    server = Server(config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        addresses = server.start()
    except OSError as exc:
        raise click.ClickException(f"cannot listen: {exc}") from None
    certs = server.certificates
    origin = "self-signed" if certs.generated else str(cert)
    click.echo(f"certificate ({origin}) SHA-256 {certs.fingerprint}", err=True)
    if server.http3:
        click.echo("HTTP/3 (QUIC) on the same ports over UDP", err=True)
    for host, port in addresses:
        click.echo(f"listening {label(host, port)}")
    sys.stdout.flush()
    while not stop.wait(1.0):
        pass
    server.stop()
