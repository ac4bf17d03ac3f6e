"""TLS handshake measurement (OONI df-006 `tls_handshakes` entries) with the certificate chain.

Verification is always on: a probe that accepted any certificate could not tell
an interceptor from the real server. When verification fails we keep the
df-007 failure and make one separate, unverified handshake on a fresh
connection only to record the chain the network presented (evidence of
interception); nothing is ever transferred over an unverified connection.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import socket
import ssl
import threading
import time
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from probe.records import TlsHandshake

from . import cipher_names, tcp
from .clock import Clock
from .failures import (
    EOF_ERROR,
    SSL_FAILED_HANDSHAKE,
    SSL_INVALID_CERTIFICATE,
    SSL_INVALID_HOSTNAME,
    SSL_UNKNOWN_AUTHORITY,
    classify,
)

_T = typing.TypeVar("_T")
_VERIFY_FAILURES = (SSL_UNKNOWN_AUTHORITY, SSL_INVALID_HOSTNAME, SSL_INVALID_CERTIFICATE)
# `check_hostname` is read only while a socket is wrapped; wrapping without SNI
# flips it off for that instant, so concurrent wraps through this module serialise.
_WRAP_LOCK = threading.Lock()


def make_context(
    ca_bundle: Path | None = None, alpn: Sequence[str] = ("http/1.1",)
) -> ssl.SSLContext:
    """A verifying client context: system roots, or only `ca_bundle` when given (lab, tests)."""
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    # A FIN without close_notify is a plain EOF (HTTP framing detects truncation);
    # otherwise OpenSSL answers it with an alert and the peer's RST hides the FIN.
    context.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def handshake(
    sock: socket.socket,
    server_name: str | None,
    context: ssl.SSLContext,
    timeout: float,
    clock: Clock,
    address: str,
    port: int,
) -> tuple[TlsHandshake, ssl.SSLSocket | None]:
    """Run a verified TLS handshake on a connected socket; the TLS socket is None on failure.

    `server_name` is the SNI to send; None or "" sends no SNI, in which case
    only the chain can be verified (no name to check it against). `sock` is
    consumed: on failure it is closed.
    """
    return _measure(_socket_handshake, sock, server_name, context, timeout, clock, address, port)


def handshake_bio(
    sock: socket.socket,
    server_name: str | None,
    context: ssl.SSLContext,
    timeout: float,
    clock: Clock,
    address: str,
    port: int,
    channel: type[BioChannel] | None = None,
) -> tuple[TlsHandshake, BioChannel | None]:
    """`handshake`, but TLS runs over memory BIOs and we do the socket I/O.

    Same record, different plumbing: a transfer then reads the socket in large
    chunks (one syscall for many TLS records), a reset surfaces as ECONNRESET
    instead of an EOF, and strategies that shape the ClientHello on the wire
    pass a `channel` subclass of `BioChannel` that overrides `send_first_flight`.
    """
    connect = (channel or BioChannel).connect
    return _measure(connect, sock, server_name, context, timeout, clock, address, port)


def _measure(
    start: Callable[[ssl.SSLContext, socket.socket, str | None, float], _T],
    sock: socket.socket,
    server_name: str | None,
    context: ssl.SSLContext,
    timeout: float,
    clock: Clock,
    address: str,
    port: int,
) -> tuple[TlsHandshake, _T | None]:
    """Time the handshake `start` does, describe it, keep evidence if verification fails."""
    sni = server_name or None
    record = _new_record(address, port, sni, clock.now())
    started = time.monotonic()
    conn: _T | None = None
    try:
        conn = start(context, sock, sni, timeout)
    except OSError as exc:  # (before ValueError: a certificate error is both)
        # With OP_IGNORE_UNEXPECTED_EOF a FIN mid-handshake is a "zero return": an EOF.
        record.failure = EOF_ERROR if isinstance(exc, ssl.SSLZeroReturnError) else classify(exc)
        if isinstance(exc, ssl.SSLCertVerificationError):
            record.verify_error = f"{exc.verify_message} (verify code {exc.verify_code})"
        sock.close()
    except ValueError:  # a name TLS cannot send (UnicodeError from IDNA encoding)
        record.failure = SSL_FAILED_HANDSHAKE
        sock.close()
    record.handshake_ms = round((time.monotonic() - started) * 1000, 3)
    record.t = clock.now()
    if conn is not None:
        _describe_session(record, conn, verified_chain=True)
        record.verified = True
    elif record.failure in _VERIFY_FAILURES:
        _capture_unverified(record, sni, timeout, clock, address, port)
    return record, conn


def _socket_handshake(
    context: ssl.SSLContext, sock: socket.socket, sni: str | None, timeout: float
) -> ssl.SSLSocket:
    sock.settimeout(timeout)
    tls_sock = wrap(context, sock, sni)
    try:
        tls_sock.do_handshake()
    except OSError:
        tls_sock.close()
        raise
    return tls_sock


class BioChannel:
    """A client TLS connection whose records we move between memory BIOs and the socket."""

    RECV_BYTES = 256 * 1024

    def __init__(self, sock: socket.socket, sslobj: ssl.SSLObject,
                 incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> None:
        self.sock = sock
        self.sslobj = sslobj
        self._incoming = incoming
        self._outgoing = outgoing
        self._rbuf = memoryview(bytearray(self.RECV_BYTES))
        # The socket said EOF. Not MemoryBIO.eof: that stays False while a torn
        # record is buffered, and waiting for its end would spin forever.
        self._socket_eof = False

    @classmethod
    def connect(
        cls, context: ssl.SSLContext, sock: socket.socket, sni: str | None, timeout: float
    ) -> BioChannel:
        """Handshake within `timeout` seconds in total; raises as ssl.SSLSocket would."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        sslobj = wrap(context, sock, sni, bio=(incoming, outgoing))
        channel = cls(sock, sslobj, incoming, outgoing)
        deadline = time.monotonic() + timeout
        first = True
        while True:
            try:
                sslobj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if first:
                    channel.send_first_flight(outgoing.read())
                    first = False
                channel._flush()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("TLS handshake timed out") from None
                sock.settimeout(remaining)
                channel._fill()
            except ssl.SSLError:
                channel._flush_quietly()  # our alert, as any TLS stack would send it
                raise
        channel._flush()
        return channel

    def send_first_flight(self, data: bytes) -> None:
        """Write the ClientHello: the hook for strategies that split or pad it on the wire."""
        self.sock.sendall(data)

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self.sock.sendall(data)

    def _flush_quietly(self) -> None:
        try:
            self._flush()
        except OSError:
            pass

    def _fill(self) -> None:
        """Move what the socket has (waiting as its timeout says) into the TLS engine."""
        n = self.sock.recv_into(self._rbuf, self.RECV_BYTES)
        if n:
            self._incoming.write(self._rbuf[:n])
        else:
            self._socket_eof = True
            self._incoming.write_eof()

    def settimeout(self, value: float | None) -> None:
        self.sock.settimeout(value)

    def recv_into(self, buffer: memoryview | bytearray, nbytes: int = 0) -> int:
        """Decrypted bytes into `buffer`, 0 at EOF; with timeout 0, raises if none are ready.

        Waits only while nothing at all is decryptable, then returns every
        record already received (one call per socket read, not per record).
        """
        view = memoryview(buffer)
        nbytes = nbytes or len(view)
        total = 0
        while total < nbytes:
            try:
                n = self.sslobj.read(nbytes - total, view[total:])
            except ssl.SSLWantReadError:
                if total or self._socket_eof:
                    break
                self._fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break  # close_notify, or a FIN without it (HTTP framing judges truncation)
            else:
                if n == 0:  # EOF (what OP_IGNORE_UNEXPECTED_EOF makes of a bare FIN)
                    break
                total += n
        return total

    def recv(self, bufsize: int) -> bytes:
        buffer = bytearray(bufsize)
        return bytes(buffer[: self.recv_into(buffer, bufsize)])

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self.sslobj.write(view)
            view = view[written:]
            self._flush()

    def close(self) -> None:
        self.sock.close()


def wrap(
    context: ssl.SSLContext,
    sock: socket.socket,
    sni: str | None,
    bio: tuple[ssl.MemoryBIO, ssl.MemoryBIO] | None = None,
) -> typing.Any:
    """An SSLSocket (or, given `bio`, an SSLObject) not yet handshaken.

    With no SNI, chain verification stays on but the name check is skipped:
    there is no name to check against. `check_hostname` is read only while
    wrapping, so it is switched off for that instant, and every wrap holds the
    lock: a wrap with a name on another thread must never see it off.
    """

    def make(name: str | None) -> ssl.SSLSocket | ssl.SSLObject:
        if bio is not None:
            return context.wrap_bio(bio[0], bio[1], server_hostname=name)
        return context.wrap_socket(sock, server_hostname=name, do_handshake_on_connect=False)

    with _WRAP_LOCK:
        if sni is None and context.check_hostname:
            context.check_hostname = False
            try:
                return make(None)
            finally:
                context.check_hostname = True
        return make(sni)


def _new_record(address: str, port: int, sni: str | None, t0: float) -> TlsHandshake:
    host = f"[{address}]" if ":" in address else address
    return TlsHandshake(
        address=f"{host}:{port}",
        server_name=sni or "",
        sni_sent=sni is not None and not _is_ip(sni),  # TLS never sends an IP as SNI
        hostname_checked=sni is not None,
        t0=t0,
        t=t0,
    )


def _describe_session(record: TlsHandshake, conn: typing.Any, verified_chain: bool) -> None:
    """Fill version, cipher, ALPN and both chains from a completed handshake."""
    tls_sock = conn.sslobj if isinstance(conn, BioChannel) else conn
    record.tls_version = tls_sock.version()
    cipher = tls_sock.cipher()
    record.cipher_suite = cipher_names.iana(cipher[0]) if cipher else None
    record.negotiated_protocol = tls_sock.selected_alpn_protocol() or ""
    presented = _chain_der(tls_sock, verified=False)
    record.peer_certificates = [
        {"format": "base64", "data": base64.b64encode(der).decode()} for der in presented
    ]
    # The verified chain ends at the trust anchor we accepted: that names the root.
    chain = _chain_der(tls_sock, verified=True) if verified_chain else presented
    record.certificates = [describe_certificate(der) for der in chain]


def _chain_der(tls_sock: ssl.SSLSocket | ssl.SSLObject, verified: bool) -> list[bytes]:
    sslobj = tls_sock._sslobj  # noqa: SLF001 - the public API exposes only the leaf
    getter = sslobj.get_verified_chain if verified else sslobj.get_unverified_chain
    certs = getter() or []
    return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in certs]  # noqa: SLF001


def _capture_unverified(
    record: TlsHandshake, sni: str | None, timeout: float, clock: Clock, address: str, port: int
) -> None:
    """One unverified handshake on a new connection, only to record the presented chain."""
    conn, sock = tcp.connect(address, port, timeout, clock)
    if sock is None:
        record.evidence_failure = conn.status["failure"]
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        sock.settimeout(timeout)
        with context.wrap_socket(sock, server_hostname=sni) as tls_sock:
            presented = _chain_der(tls_sock, verified=False)
    except OSError as exc:
        sock.close()
        record.evidence_failure = classify(exc)
        return
    record.peer_certificates = [
        {"format": "base64", "data": base64.b64encode(der).decode()} for der in presented
    ]
    record.certificates = [describe_certificate(der) for der in presented]
    record.chain_from_unverified_retry = True


def describe_certificate(der: bytes) -> dict:
    """Subject, issuer, SANs, validity (ISO 8601 UTC) and SHA-256 of one DER certificate."""
    cert = x509.load_der_x509_certificate(der)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [str(v) for v in ext.get_values_for_type(x509.DNSName)]
        sans += [str(v) for v in ext.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        sans = []
    return {
        "subject": cert.subject.rfc4514_string(),
        "subject_cn": _common_name(cert.subject),
        "issuer": cert.issuer.rfc4514_string(),
        "sans": sans,
        "not_before": _iso(cert.not_valid_before_utc),
        "not_after": _iso(cert.not_valid_after_utc),
        "sha256": hashlib.sha256(der).hexdigest(),
    }


def _common_name(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
