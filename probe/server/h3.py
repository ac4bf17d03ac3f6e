"""HTTP/3 over QUIC on UDP, on the port of each TLS listener, in the server's process.

Probes fetch over QUIC too (YouTube was slowed differently over QUIC and TCP in
2024), so the measurement server answers the same endpoints (`/bytes`, `/upload`,
`/meta`) over HTTP/3 through the same `Handlers`, for any SNI (or none). aioquic
runs on one asyncio loop in its own thread. A response body is pushed into a
stream only while little of it waits unsent, so `/bytes?n=1GB` never sits in memory.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, ProtocolNegotiated, QuicEvent
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .config import ServerConfig, label
from .handlers import Handlers, utc_now
from .http import BodyStats, HttpError, Request, Response, error_response
from .log import JsonLog

_CHUNK = 64 * 1024  # pushed into a stream at a time
_QUEUED_MAX = 1024 * 1024  # unsent bytes a stream may hold before we wait for ACKs
_PUMP_S = 0.05  # also pump on a timer: ACKs are not the only thing that frees a stream
_STOP_JOIN_S = 5.0


def alt_svc(port: int) -> str:
    """The Alt-Svc header value TCP responses advertise HTTP/3 on `port` with."""
    return f'h3=":{port}"; ma=86400'


def configuration(cert_pem: bytes, key_pem: bytes, config: ServerConfig) -> QuicConfiguration:
    """A server configuration showing the default certificate chain to every SNI."""
    quic = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN,
                             idle_timeout=config.idle_timeout)
    chain = x509.load_pem_x509_certificates(cert_pem)
    quic.certificate = chain[0]
    quic.certificate_chain = chain[1:]
    block = re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----.+?-----END [A-Z ]*PRIVATE KEY-----",
                      key_pem, re.DOTALL)  # --key may hold the certificate too
    if block is None:
        raise ValueError("no PEM private key for HTTP/3")
    quic.private_key = serialization.load_pem_private_key(  # type: ignore[assignment]
        block.group(0), None)
    return quic


@dataclass
class _Exchange:
    """One request stream: its head, what arrived of its body, and the body to send back."""

    request: Request
    body: BodyStats = field(default_factory=BodyStats)
    chunks: Iterator[bytes | memoryview] | None = None


class _Protocol(QuicConnectionProtocol):
    """One QUIC connection: HTTP/3 requests answered by the server's handlers."""

    def __init__(self, *args: Any, listener: Http3Listener, label: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listener = listener
        self.label = label
        self.h3: H3Connection | None = None
        self.exchanges: dict[int, _Exchange] = {}
        self.sending: dict[int, Iterator[bytes | memoryview]] = {}
        self.started = time.monotonic()
        self.requests = 0
        self.paths: list[str] = []
        self.statuses: list[int] = []
        self.bytes_in = 0
        self.bytes_out = 0
        self.logged = False
        self.cut: str | None = None  # why the server closed it, if it did
        self._timer: asyncio.TimerHandle | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self.h3 = H3Connection(self._quic)
            self.listener.opened(self)
        elif isinstance(event, ConnectionTerminated):
            idle = event.reason_phrase == "Idle timeout"  # aioquic's own
            self.listener.closed(self, self.cut or ("idle_timeout" if idle else "client_closed"))
        if self.h3 is not None:
            for h3_event in self.h3.handle_event(event):
                self._h3_event(h3_event)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.bytes_in += len(data)
        super().datagram_received(data, addr)
        self._pump()  # an ACK may have freed room in the streams

    def _h3_event(self, event: H3Event) -> None:
        try:
            if isinstance(event, HeadersReceived):
                self.exchanges[event.stream_id] = _Exchange(_request(event.headers))
                if event.stream_ended:
                    self._answer(event.stream_id)
            elif isinstance(event, DataReceived) and event.stream_id in self.exchanges:
                self._body(self.exchanges[event.stream_id], len(event.data))
                if event.stream_ended:
                    self._answer(event.stream_id)
        except HttpError as exc:  # a malformed head, or a body over the cap: answered once
            self.exchanges.pop(event.stream_id, None)
            self._respond(event.stream_id, error_response(exc), head_only=False)

    def _body(self, exchange: _Exchange, n: int) -> None:
        """Count an upload's bytes as they come, never keeping them."""
        now = time.monotonic()
        body = exchange.body
        body.bytes += n
        if n:
            body.first_byte_at = body.first_byte_at or now
            body.last_byte_at = now
        if body.bytes > self.listener.config.max_upload_bytes:
            raise HttpError(413, "body larger than --max-upload-bytes")

    def _answer(self, stream_id: int) -> None:
        exchange = self.exchanges.pop(stream_id)
        request = exchange.request
        self.requests += 1
        if len(self.paths) < self.listener.config.max_logged_paths:
            self.paths.append(request.path[:200])
        try:
            response = self.listener.handlers.handle(request, exchange.body, self)
        except HttpError as exc:
            response = error_response(exc)
        self._respond(stream_id, response, head_only=request.method == "HEAD")

    def _respond(self, stream_id: int, response: Response, head_only: bool) -> None:
        assert self.h3 is not None
        self.statuses.append(response.status)
        headers = [(b":status", str(response.status).encode()),
                   (b"content-length", str(response.length).encode())]
        headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in response.headers]
        body = response.body
        empty = head_only or response.length == 0
        self.h3.send_headers(stream_id, headers, end_stream=empty)
        if not empty:
            self.sending[stream_id] = iter([body] if isinstance(body, bytes) else body)
        self._pump()

    def _pump(self) -> None:
        """Move response bodies into their streams while few bytes wait unsent in them."""
        if self.h3 is None:
            return
        for stream_id in list(self.sending):
            try:
                self._fill(stream_id)
            except Exception:  # noqa: BLE001 - a stream the client reset: drop its body
                self.drop(stream_id)
        self.transmit()
        if self.sending and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(_PUMP_S, self._on_timer)

    def _fill(self, stream_id: int) -> None:
        """Queue one response's body until 1 MiB waits unsent; end the stream after it."""
        assert self.h3 is not None
        chunks = self.sending[stream_id]
        while _queued(self, stream_id) < _QUEUED_MAX:
            chunk = next(chunks, None)
            if chunk is None:
                self.h3.send_data(stream_id, b"", end_stream=True)
                self.drop(stream_id)
                return
            for start in range(0, len(chunk), _CHUNK):
                part = bytes(chunk[start:start + _CHUNK])
                self.bytes_out += len(part)
                self.h3.send_data(stream_id, part, end_stream=False)

    def drop(self, stream_id: int) -> None:
        """Forget a body (sent, or no longer wanted), closing a file it reads."""
        close = getattr(self.sending.pop(stream_id, None), "close", None)
        if close is not None:
            close()

    def _on_timer(self) -> None:
        self._timer = None
        if self.sending:
            self._pump()

    def snapshot(self) -> dict[str, Any]:
        """This connection as /meta reports it (aioquic does not tell the server the SNI)."""
        return {"sni": None, "tls": True, "tls_version": "TLSv1.3", "transport": "quic",
                "requests": self.requests, "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out,
                "duration_s": round(time.monotonic() - self.started, 6), "tcp_info": None}

    def tcp_info(self) -> dict[str, int | None] | None:
        """No kernel TCP state: QUIC runs over UDP."""
        return None


def _queued(protocol: _Protocol, stream_id: int) -> int:
    """Bytes of a stream not yet acknowledged: aioquic has no public measure of it."""
    stream = protocol._quic._streams.get(stream_id)  # noqa: SLF001
    return len(stream.sender._buffer) if stream is not None else 0  # noqa: SLF001


def _request(headers: list[tuple[bytes, bytes]]) -> Request:
    """An HTTP/3 request head as the handlers read a HTTP/1.1 one."""
    pseudo: dict[str, str] = {}
    fields: dict[str, str] = {}
    for name, value in headers:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        (pseudo if key.startswith(":") else fields)[key] = text
    method, target = pseudo.get(":method"), pseudo.get(":path")
    if not method or not target or not target.startswith("/"):
        raise HttpError(400, "bad request head")
    path, _, query = target.partition("?")
    return Request(method=method, target=target, path=unquote(path), query=query,
                   version="HTTP/3", headers=fields, started=time.monotonic(),
                   content_length=None)


class Http3Listener:
    """The UDP side of `probe serve`: one QUIC server per TLS listener, one loop thread."""

    def __init__(self, config: ServerConfig, handlers: Handlers, log: JsonLog,
                 quic: QuicConfiguration) -> None:
        self.config = config
        self.handlers = handlers
        self.log = log
        self.quic = quic
        self.loop = asyncio.new_event_loop()
        self.servers: list[QuicServer] = []
        self.connections: set[_Protocol] = set()
        self._thread: threading.Thread | None = None

    def start(self, addresses: list[tuple[str, int]]) -> None:
        """Bind UDP on every (host, port), then serve from a thread; OSError if one fails."""
        try:
            for host, port in addresses:
                self.servers.append(self.loop.run_until_complete(serve(
                    host, port, configuration=self.quic,
                    create_protocol=self._factory(label(host, port)))))
        except OSError:
            self._close_servers()
            self.loop.close()
            raise
        self._thread = threading.Thread(target=self.loop.run_forever, name="probe-quic",
                                        daemon=True)
        self._thread.start()

    def _factory(self, listener: str) -> Callable[..., _Protocol]:
        def create(*args: Any, **kwargs: Any) -> _Protocol:
            return _Protocol(*args, listener=self, label=listener, **kwargs)

        return create

    def stop(self) -> None:
        """Close every connection and server, then the loop."""
        if self._thread is None:
            return
        self.loop.call_soon_threadsafe(self._shutdown)
        self._thread.join(_STOP_JOIN_S)
        self._thread = None
        if not self.loop.is_running():
            self.loop.close()

    def _shutdown(self) -> None:
        for conn in list(self.connections):
            self._cut(conn, "server_stopping")
            self.closed(conn, "server_stopping")
        self._close_servers()
        self.loop.stop()

    def _close_servers(self) -> None:
        for server in self.servers:
            server.close()

    def opened(self, conn: _Protocol) -> None:
        """Admit a new connection, or close it when --max-connections are open over QUIC."""
        if len(self.connections) >= self.config.max_connections:
            conn.close()
            return
        self.connections.add(conn)
        self.loop.call_later(self.config.max_connection_time, self._cut, conn, "lifetime")

    def _cut(self, conn: _Protocol, reason: str) -> None:
        conn.cut = conn.cut or reason
        conn.close()

    def closed(self, conn: _Protocol, end: str) -> None:
        """Log the connection once, as the TCP side logs its own."""
        if conn.logged or conn not in self.connections:
            return
        conn.logged = True
        self.connections.discard(conn)
        for stream_id in list(conn.sending):
            conn.drop(stream_id)
        snapshot = conn.snapshot()
        self.log.write({
            "event": "connection", "time": utc_now(),
            "listener": conn.label, "transport": "quic", "sni": snapshot["sni"], "tls": True,
            "tls_version": "TLSv1.3", "requests": conn.requests, "paths": conn.paths,
            "statuses": conn.statuses, "bytes_in": conn.bytes_in, "bytes_out": conn.bytes_out,
            "duration_s": snapshot["duration_s"], "end": end,
        })
