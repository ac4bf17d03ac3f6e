"""A TLS handshake that sends any SNI but checks the certificate against the server's host.

The measurement server cannot hold a certificate for Twitter's names, yet the
SNI experiment must send them. Verification stays on: the chain must lead to
one of the run's trusted CAs, and the leaf must be valid for the server URL's
own host (or, if the server happens to hold one, for the SNI itself, which is
the ordinary TLS check). The ClientHello can be shaped on the wire: split
inside the name or after the record header in separate TCP segments, or
padded past one segment.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from pathlib import Path

from probe.measure import tcpinfo, tls
from probe.measure.clock import Clock
from probe.measure.failures import SSL_INVALID_HOSTNAME
from probe.records import TlsHandshake

from . import clienthello

SHAPES = ("sni", "header", "padded")  # split inside the name, after the header, padded
PADDED_MIN_BYTES = 1600  # past one full-size segment (MSS 1460 on a 1500-byte MTU)
ACK_WAIT_S = 1.0


def matches_host(cert: dict, host: str) -> bool:
    """Is a verified peer certificate (`getpeercert()` form) valid for `host`?

    RFC 6125: DNS names compare case-insensitively, a wildcard only as the whole
    left-most label and matching exactly one label; an IP matches IP SANs only.
    """
    host = host.strip("[]").rstrip(".").lower()
    sans = cert.get("subjectAltName", ())
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return any(kind == "IP Address" and _same_ip(value, ip) for kind, value in sans)
    for kind, value in sans:
        if kind != "DNS":
            continue
        pattern = value.rstrip(".").lower()
        if pattern == host:
            return True
        if pattern.startswith("*.") and "." in host:
            first, rest = host.split(".", 1)
            if first and rest == pattern[2:] and "*" not in rest:
                return True
    return False


def _same_ip(value: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(value.strip()) == ip
    except ValueError:
        return False


class ServerCertHandshake:
    """A `HandshakeStrategy` for the experiments (see the module docstring).

    It ignores the context the HTTP stack passes (that one checks the SNI) and
    uses its own, built like the run's (`ca_bundle`) but with the name check
    done here, after the chain was verified.
    """

    def __init__(self, ca_bundle: Path | None, server_host: str, shape: str | None = None) -> None:
        if shape is not None and shape not in SHAPES:
            raise ValueError(f"unknown ClientHello shape {shape!r}")
        alpn: tuple[str, ...] = ("http/1.1",)
        if shape == "padded":
            alpn = tuple(clienthello.padding_alpn(PADDED_MIN_BYTES))
        self.context = tls.make_context(ca_bundle, alpn=alpn)
        self.context.check_hostname = False  # verify_mode stays CERT_REQUIRED: chain checked
        self.server_host = server_host
        self.shape = shape
        self.channel = type("ShapedChannel", (_ShapedChannel,), {"shape": shape})

    def __call__(
        self, sock: socket.socket, server_name: str | None, context: ssl.SSLContext,
        timeout: float, clock: Clock, address: str, port: int,
    ) -> tuple[TlsHandshake, tls.BioChannel | None]:
        record, channel = tls.handshake_bio(
            sock, server_name, self.context, timeout, clock, address, port, channel=self.channel
        )
        record.clienthello_shape = self.shape or "whole"
        record.checked_name = self.server_host
        record.name_matched = None
        record.hostname_checked = False
        if channel is None:
            return record, None
        cert = channel.sslobj.getpeercert() or {}
        if matches_host(cert, self.server_host):
            record.name_matched = "server"
        elif server_name and matches_host(cert, server_name):
            record.name_matched = "sni"
        else:
            record.failure = SSL_INVALID_HOSTNAME
            record.verified = False
            record.verify_error = (f"certificate is valid neither for the server "
                                   f"{self.server_host!r} nor for the SNI {server_name!r}")
            channel.close()
            return record, None
        record.hostname_checked = True
        return record, channel


class _ShapedChannel(tls.BioChannel):
    """Writes the ClientHello as the `shape` says; everything after it as usual."""

    shape: str | None = None

    def send_first_flight(self, data: bytes) -> None:
        if self.shape == "sni":
            pieces = clienthello.split_in_name(data)
        elif self.shape == "header":
            pieces = clienthello.split_after_header(data)
        else:  # whole, or padded (the ALPN list already made it longer than a segment)
            pieces = [data]
        for i, piece in enumerate(pieces):
            if i:
                wait_acked(self.sock, ACK_WAIT_S)
            self.sock.sendall(piece)


def wait_acked(sock: socket.socket, timeout: float) -> bool:
    """Wait until everything sent is acknowledged, so the next write is a new segment.

    With TCP_NODELAY each write already leaves as its own segment; waiting for
    the ACK also keeps a retransmission from merging the pieces.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = tcpinfo.read(sock)
        if info is None or not info.get("unacked"):
            return True
        time.sleep(0.002)
    return False
