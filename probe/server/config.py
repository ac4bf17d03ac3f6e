"""Server configuration: one place for every limit, so tests and the CLI share defaults."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_LISTEN = ("0.0.0.0", 8443)


@dataclass
class ServerConfig:
    """What `probe serve` was asked to do; every field has a safe default for exposure."""

    listen: list[tuple[str, int]] = field(default_factory=lambda: [DEFAULT_LISTEN])
    cert: Path | None = None
    key: Path | None = None
    cert_dir: Path | None = None
    media: Path | None = None
    log: Path | None = None  # None: JSON lines go to stderr
    log_client_address: bool = False
    max_connections: int = 256
    max_connections_per_client: int = 16  # one address (a CGNAT may hold many volunteers)
    # one /24 or /64: an attacker's many addresses share few networks; 8 are needed to fill
    max_connections_per_network: int = 32
    # When full, a connection that moved no byte for this long gives its slot to a newcomer:
    # longer than a handshake over a slow path and the ACK gaps of a transfer throttled to
    # a few kbit/s, so a measurement in progress is never cut for someone else.
    evict_after: float = 2.0
    # Longer than the probe's largest transfer (--max-seconds up to 600 s) and its timeouts,
    # so no measurement is cut; bounds how long one connection holds a slot.
    max_connection_time: float = 900.0
    idle_timeout: float = 30.0  # seconds without progress (between requests, or mid-body)
    header_timeout: float = 10.0  # whole request head (and TLS handshake) must arrive in this
    max_upload_bytes: int = 64 * 1024 * 1024
    max_bytes: int = 1024 * 1024 * 1024  # cap on /bytes?n=
    max_request_line: int = 8 * 1024
    max_header_bytes: int = 16 * 1024  # request line + headers
    max_headers: int = 100
    max_requests_per_connection: int = 1000  # an HLS probe makes tens
    max_logged_paths: int = 100
    # "" or "/secret": the measurement endpoints live under it; every other path is a 404.
    path_prefix: str = ""
    http3: bool = True  # also answer HTTP/3 over QUIC on the UDP port of each listener


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[v6]:PORT` or `:PORT` (all interfaces) to a bind address."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)+")


def parse_path_prefix(text: str) -> str:
    """`/x7k2` (or `x7k2/`) to `/x7k2`; "" or "/" for none. Unreserved URL characters
    only, so a client can put it into a URL as it is."""
    prefix = "/" + text.strip("/") if text.strip("/") else ""
    if prefix and not _PREFIX.fullmatch(prefix):
        raise ValueError(f"a path prefix holds letters, digits and . _ ~ - between "
                         f"slashes, not {text!r}")
    return prefix


def label(host: str, port: int) -> str:
    """`host:port` with IPv6 hosts in brackets: the inverse of `parse_listen`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
