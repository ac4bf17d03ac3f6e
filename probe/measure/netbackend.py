"""An httpcore network backend that measures and steers every connection it opens.

httpx decides *when* a connection is needed; this backend decides *how*: it
connects to the address the runner resolved (the URL keeps its host: curl's
--connect-to), measures the TCP connect and the TLS handshake into `TestKeys`,
sends the SNI the experiment chose (independent of the URL host), and keeps
the raw socket so the transfer can read `TCP_INFO` and stop a blocked read.
The TLS step is a pluggable `HandshakeStrategy` so experiments can replace the
ClientHello (split across TCP segments, padded) without touching HTTP.
"""

from __future__ import annotations

import errno
import select
import socket
import ssl
import threading
import typing
from collections.abc import Callable
from typing import Protocol

import httpcore

from probe.records import TlsHandshake, network_event

from . import tcp, tcpinfo, tls
from .clock import Clock
from .failures import DNS_NXDOMAIN
from .keys import TestKeys

READ_BYTES = 256 * 1024  # one read hands the HTTP stack up to this much
TCP_CLOSE = 7  # include/net/tcp_states.h


class TLSChannel(Protocol):
    """What a strategy's result must offer: ssl.SSLSocket and tls.BioChannel both fit.

    With timeout 0, recv_into must raise (SSLWantReadError or BlockingIOError)
    when nothing is ready rather than wait.
    """

    def recv_into(self, buffer: memoryview, nbytes: int = 0) -> int: ...

    def sendall(self, data: bytes) -> None: ...

    def settimeout(self, value: float | None) -> None: ...

    def close(self) -> None: ...


class HandshakeStrategy(Protocol):
    """`tls.handshake`'s signature: returns a df-006 record and a channel (None on failure)."""

    def __call__(
        self,
        sock: socket.socket,
        server_name: str | None,
        context: ssl.SSLContext,
        timeout: float,
        clock: Clock,
        address: str,
        port: int,
    ) -> tuple[TlsHandshake, TLSChannel | None]: ...


class MeasuredConnectError(httpcore.ConnectError):
    """A connect or handshake that failed; carries its df-007 string through httpx."""

    def __init__(self, failure: str) -> None:
        super().__init__(failure)
        self.failure = failure


class ProbeStream(httpcore.NetworkStream):
    """A plain or TLS connection whose raw socket stays reachable for TCP_INFO and shutdown."""

    def __init__(
        self, backend: ProbeBackend, raw: socket.socket, io: TLSChannel | socket.socket,
        address: str, port: int, is_tls: bool,
    ) -> None:
        self.backend = backend
        self.raw = raw
        self.io = io
        self.address = address
        self.port = port
        self.is_tls = is_tls
        self.aborted = False  # shut down by a watchdog: never hand it out again
        self._last_info: dict[str, int] | None = None
        self._pending_error: OSError | None = None
        self._view = memoryview(bytearray(READ_BYTES))

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Wait for data, then also take whatever else is ready without waiting.

        An SSLSocket read returns one 16 KiB record; handing the HTTP stack up
        to READ_BYTES at once cuts its per-read cost ~10x, so the probe is not
        the bottleneck on fast links. A partial record is never waited for.
        """
        if self._pending_error is not None:
            exc, self._pending_error = self._pending_error, None
            raise httpcore.ReadError(exc) from exc
        view = self._view
        try:
            self.io.settimeout(timeout)
            total = self.io.recv_into(view, READ_BYTES)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(exc) from exc
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            total = 0
        except OSError as exc:
            raise httpcore.ReadError(exc) from exc
        if not total:
            self._raise_if_reset()
            return b""
        try:
            self.io.settimeout(0.0)
            while total < READ_BYTES:
                more = self.io.recv_into(view[total:], READ_BYTES - total)
                if not more:
                    break
                total += more
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            pass
        except OSError as exc:  # e.g. a reset: report it after the data that preceded it
            self._pending_error = exc
        return bytes(view[:total])

    def _raise_if_reset(self) -> None:
        """Tell a RST from a FIN when TLS reports both as EOF (the SSLSocket path).

        Python's ssl turns ECONNRESET inside SSL_read into an EOF, but injected
        RSTs are a censorship signal: the kernel's TCP state still tells. After
        a FIN it is CLOSE_WAIT; after a RST it is CLOSE. (This needs the context
        of tls.make_context: without OP_IGNORE_UNEXPECTED_EOF OpenSSL answers a
        FIN with an alert, the peer then resets, and a FIN would look like a RST.)
        """
        if not self.is_tls or self.aborted:
            return
        info = tcpinfo.read(self.raw)
        if info is None or info.get("state") != TCP_CLOSE:
            return
        try:  # raised, not just chained: httpcore's pool keeps only __context__
            raise ConnectionResetError(errno.ECONNRESET, "connection reset by peer (TCP state)")
        except ConnectionResetError as reset:
            raise httpcore.ReadError(reset) from reset

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self.io.settimeout(timeout)
            self.io.sendall(buffer)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.WriteError(exc) from exc

    def final_tcp_info(self) -> dict[str, int] | None:
        """TCP_INFO now, or as it was when the connection was closed."""
        return tcpinfo.read(self.raw) or self._last_info

    def close(self) -> None:
        self._last_info = tcpinfo.read(self.raw) or self._last_info
        self.io.close()
        if self.raw is not self.io:
            self.raw.close()

    def abort(self) -> None:
        """Unblock any read or write in progress (called from another thread)."""
        self.aborted = True
        try:
            self.raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> ProbeStream:
        return self.backend.start_tls(self, ssl_context, server_hostname, timeout)

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "socket":
            return self.raw
        if info == "ssl_object":  # httpcore asks it which protocol ALPN chose
            if isinstance(self.io, tls.BioChannel):
                return self.io.sslobj
            if isinstance(self.io, ssl.SSLSocket):
                return self.io._sslobj  # noqa: SLF001 - what httpcore's own backend returns
        if info == "is_readable":
            # A readable idle connection is closed or broken: httpcore then drops it.
            return self.aborted or _readable(self.raw)
        if info == "server_addr":
            return (self.address, self.port)
        return None


class ProbeBackend(httpcore.NetworkBackend):
    """Opens connections for one measurement session and records each step in `keys`."""

    def __init__(
        self,
        keys: TestKeys,
        clock: Clock,
        *,
        address: str | None,
        sni: str | None,
        handshake: HandshakeStrategy = tls.handshake_bio,
        on_event: Callable[[dict], None] | None = None,
    ) -> None:
        self.keys = keys
        self.clock = clock
        self.address = address
        self.sni = sni
        self.handshake = handshake
        self.on_event = on_event or keys.network_events.append
        self.connections_opened = 0
        self.transfer_id: str | None = None  # the fetch that needs the connection
        self.current: ProbeStream | None = None
        self._lock = threading.Lock()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> ProbeStream:
        address = self.address or _resolve(host, port)
        if address is None:
            raise MeasuredConnectError(DNS_NXDOMAIN)
        record, sock = tcp.connect(address, port, timeout or 10.0, self.clock)
        record.transfer_id = self.transfer_id
        self.keys.tcp_connect.append(record.as_dict())
        failure = record.status["failure"]
        self.on_event(network_event("connect", record.t, t0=record.t0,
                                    address=_join(address, port), failure=failure,
                                    transfer_id=self.transfer_id))
        if sock is None:
            raise MeasuredConnectError(failure)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self.connections_opened += 1
        return self._track(ProbeStream(self, sock, sock, address, port, is_tls=False))

    def start_tls(
        self,
        stream: ProbeStream,
        context: ssl.SSLContext,
        server_hostname: str | None,
        timeout: float | None,
    ) -> ProbeStream:
        """Handshake with the configured SNI: None = the URL host, "" = no SNI."""
        name = server_hostname if self.sni is None else self.sni
        self.on_event(network_event("tls_handshake_start", self.clock.now(),
                                    transfer_id=self.transfer_id))
        raw = stream.raw
        record, channel = self.handshake(
            raw, name or None, context, timeout or 10.0, self.clock, stream.address, stream.port
        )
        record.transfer_id = self.transfer_id
        self.keys.tls_handshakes.append(record.as_dict())
        self.on_event(network_event("tls_handshake_done", record.t, t0=record.t0,
                                    failure=record.failure, transfer_id=self.transfer_id))
        if channel is None:
            raise MeasuredConnectError(record.failure or "ssl_failed_handshake")
        # ssl.wrap_socket detaches the plain socket; the TLS socket then owns the fd.
        holder = raw if raw.fileno() != -1 else typing.cast(socket.socket, channel)
        tls_stream = ProbeStream(self, holder, channel, stream.address, stream.port, is_tls=True)
        return self._track(tls_stream)

    def _track(self, stream: ProbeStream) -> ProbeStream:
        """Remember the newest connection: the sampler reads TCP_INFO from it."""
        with self._lock:
            self.current = stream
        return stream


def _readable(sock: socket.socket) -> bool:
    """True if an idle socket has data or EOF pending, i.e. it can no longer carry a request."""
    if sock.fileno() == -1:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _resolve(host: str, port: int) -> str | None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return None
    return str(infos[0][4][0]) if infos else None


def _join(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
