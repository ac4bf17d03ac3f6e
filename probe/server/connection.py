"""One client connection: TLS-or-plain sniffing, keep-alive request loop, one log line.

Whatever the client does (garbage, resets, silence), the connection ends with
its socket closed and a log record written; nothing propagates to the server.
The server may cut a connection from its own thread (`cut`: stopping, an
evicted slot, the lifetime cap); a lock keeps the socket it shuts down the one
this connection still owns.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from probe.measure import failures, tcpinfo
from probe.measure.failures import classify

from . import clienthello
from .admission import Client, Standing
from .config import ServerConfig, label
from .h3 import alt_svc
from .handlers import Handlers, kbps, utc_now
from .http import (
    HttpError,
    IdleTimeout,
    Limits,
    Request,
    Response,
    error_response,
    read_request,
    response_head,
    sink_body,
)
from .log import JsonLog
from .stream import PLAIN_SEND_CHUNK, TLS_SEND_CHUNK, PeerClosed, Stream
from .tls import Certificates

TLS_HANDSHAKE = 0x16  # first byte of a TLS record carrying a ClientHello
_HELLO_PEEK = 16 * 1024
_LINGER_MAX_BYTES = 1024 * 1024
_MAX_LOGGED_PATH = 200


@dataclass
class Shared:
    """What every connection of one server uses."""

    config: ServerConfig
    certificates: Certificates
    handlers: Handlers
    log: JsonLog
    limits: Limits


class Connection:
    """Serves one accepted socket to completion in the calling thread."""

    def __init__(
        self, sock: socket.socket, peer: tuple, listener: str, shared: Shared
    ) -> None:
        self.sock = sock
        self.peer = peer
        self.listener = listener
        self.shared = shared
        self.client = Client.of(peer[0])
        self.started = time.monotonic()
        self.tls = False
        self.sni: str | None = None
        self.tls_version: str | None = None
        self.stream: Stream | None = None
        self.requests = 0
        self.paths: list[str] = []
        self.statuses: list[int] = []
        self.up_bytes = 0
        self.up_time = 0.0
        self.end = "client_closed"
        self.failure: str | None = None
        self._cut: str | None = None  # why the server cut this connection, if it did
        self._sock_lock = threading.Lock()
        self._progressed_at = self.started
        self._acked: int | None = None  # the kernel's bytes_acked at the last `standing`
        self._silent = False
        self._sending = False

    def run(self) -> None:
        try:
            self._serve()
        except HttpError as exc:  # a bad request head: answer, then close
            self.end = "bad_request"
            self._try_send_error(exc)
        except IdleTimeout:
            self.end = "idle_timeout"
        except PeerClosed:
            self.end = "client_closed_mid_request"
        except Exception as exc:  # noqa: BLE001 - a bad client must never crash the server
            self.failure = classify(exc)
            gone = self.failure in (failures.EOF_ERROR, failures.CONNECTION_RESET)
            # A probe abandoning a slow download (its time cap) is routine, not a fault.
            self.end = "client_closed_mid_response" if gone and self._sending else "failure"
        finally:
            if self._cut is not None:  # whatever the socket saw came from our shutdown
                self.end, self.failure = self._cut, None
            info = self.tcp_info()
            with self._sock_lock:
                self.sock.close()
            self.shared.log.write(self._record(info))

    def cut(self, reason: str) -> None:
        """Called from another thread: unblock any read or write at once; `reason` becomes
        the log's `end` (`server_stopping`, `evicted`, `lifetime`)."""
        with self._sock_lock:
            self._cut = reason
            try:
                fd = self.sock.fileno()
                if fd >= 0:
                    with socket.socket(fileno=os.dup(fd)) as dup:
                        dup.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def standing(self, now: float) -> Standing:
        """Silent since accept, and seconds without progress, for the server's admission.

        Progress serves a client: a response chunk sent, a body byte received, or
        bytes the client acknowledged since the previous call (a throttled client
        draining a buffered response makes progress although no send returns).
        Handshake and request-head bytes are not progress: dripping them keeps no
        slot. Silence is the kernel's count (Linux); elsewhere no one is silent.
        """
        with self._sock_lock:
            fields = tcpinfo.read(self.sock) if self.sock.fileno() >= 0 else None
        if fields:
            acked = fields.get("bytes_acked")
            if self._acked is not None and acked != self._acked:
                self._progressed_at = now
            self._acked = acked
            self._silent = fields.get("bytes_received") == 0
        latest = self._progressed_at
        if self.stream is not None:
            latest = max(latest, self.stream.progressed_at)
        return Standing(silent=self._silent, stalled=max(0.0, now - latest))

    def _serve(self) -> None:
        config = self.shared.config
        self.sock.settimeout(config.header_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            first = self.sock.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            self.end = "idle_timeout"
            return
        if not first:
            return
        if first[0] == TLS_HANDSHAKE:
            self._handshake()
        chunk = TLS_SEND_CHUNK if self.tls else PLAIN_SEND_CHUNK
        stream = self.stream = Stream(self.sock, config.idle_timeout, chunk)
        keep_alive = True
        while keep_alive:
            request = read_request(stream, self.shared.limits)
            if request is None:
                return
            self.requests += 1
            if len(self.paths) < config.max_logged_paths:
                self.paths.append(request.target.partition("?")[0][:_MAX_LOGGED_PATH])
            response = self._respond(request, stream)
            self.statuses.append(response.status)
            keep_alive = request.keep_alive and not response.close and not self._last_request()
            self._send(request, response, keep_alive)
        self.end = "server_closed"
        stream.linger(_LINGER_MAX_BYTES, self.shared.config.header_timeout)

    def _last_request(self) -> bool:
        """The request cap or the lifetime is reached: this response says `Connection: close`
        (the server's sweep cuts a connection that outlives its lifetime anyway)."""
        config = self.shared.config
        return (self.requests >= config.max_requests_per_connection
                or time.monotonic() - self.started >= config.max_connection_time)

    def _handshake(self) -> None:
        self.tls = True
        certificates = self.shared.certificates
        context = certificates.default
        raw_name = clienthello.server_name(self.sock.recv(_HELLO_PEEK, socket.MSG_PEEK))
        if raw_name is not None and not raw_name.isascii():
            context = certificates.verbatim
            self.sni = raw_name.decode("utf-8", "backslashreplace")
        with self._sock_lock:  # wrapping detaches the plain socket: `cut` must see the new one
            tls_sock = context.wrap_socket(
                self.sock, server_side=True, do_handshake_on_connect=False)
            self.sock = tls_sock
        tls_sock.settimeout(self.shared.config.header_timeout)
        try:
            tls_sock.do_handshake()
        finally:
            self.sni = getattr(tls_sock, "probe_sni", self.sni)
        self.tls_version = tls_sock.version()

    def _respond(self, request: Request, stream: Stream) -> Response:
        config = self.shared.config
        try:
            if request.has_body and request.headers.get("expect", "").lower() == "100-continue":
                if (request.content_length or 0) > config.max_upload_bytes:
                    raise HttpError(413, "body larger than --max-upload-bytes")
                stream.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = sink_body(stream, request, config.max_upload_bytes)
            if body.last_byte_at is not None:
                self.up_bytes += body.bytes
                self.up_time += body.last_byte_at - request.started
            return self.shared.handlers.handle(request, body, self)
        except HttpError as exc:
            return error_response(exc)

    def _send(self, request: Request, response: Response, keep_alive: bool) -> None:
        assert self.stream is not None
        if self.tls and self.shared.config.http3:  # the same port answers HTTP/3 over UDP
            port = int(self.listener.rpartition(":")[2])
            response.headers.append(("Alt-Svc", alt_svc(port)))
        head = response_head(response, keep_alive)
        body = response.body
        self._sending = True
        try:
            if request.method == "HEAD":
                self.stream.send(head)
            elif isinstance(body, bytes):
                self.stream.send(head + body)
            else:
                self.stream.send(head)
                for chunk in body:
                    self.stream.send(chunk)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        self._sending = False

    def _try_send_error(self, exc: HttpError) -> None:
        if self.stream is None:
            return
        self.statuses.append(exc.status)
        response = error_response(exc)
        try:
            self.stream.send(response_head(response, keep_alive=False) + bytes(response.body))
            self.stream.linger(_LINGER_MAX_BYTES, self.shared.config.header_timeout)
        except OSError:
            pass

    def tcp_info(self) -> dict[str, int | None] | None:
        """Kernel view of the flow (same fields and units as the probe's transfer records)."""
        fields = tcpinfo.read(self.sock)
        return tcpinfo.summary(fields) if fields else None

    def snapshot(self) -> dict[str, Any]:
        """This connection as /meta reports it to the client."""
        return {
            "sni": self.sni,
            "tls": self.tls,
            "tls_version": self.tls_version,
            "requests": self.requests,
            "bytes_in": self.stream.bytes_in if self.stream else 0,
            "bytes_out": self.stream.bytes_out if self.stream else 0,
            "duration_s": round(time.monotonic() - self.started, 6),
            "tcp_info": self.tcp_info(),
        }

    def _record(self, info: dict[str, int | None] | None) -> dict[str, Any]:
        """The log line: no client address unless --log-client-address.

        Download goodput is the kernel's: bytes acked over the time data was in
        flight (busy_time), so buffered-but-unsent bytes and idle gaps don't count.
        """
        down = None
        if info and info.get("bytes_acked") and info.get("busy_time_us"):
            down = kbps(info["bytes_acked"], info["busy_time_us"] / 1e6)
        record: dict[str, Any] = {
            "event": "connection",
            "time": utc_now(),
            "listener": self.listener,
        }
        if self.shared.config.log_client_address:
            record["client"] = label(self.peer[0], self.peer[1])
        record.update(
            {
                "sni": self.sni,
                "tls": self.tls,
                "tls_version": self.tls_version,
                "requests": self.requests,
                "paths": self.paths,
                "statuses": self.statuses,
                "bytes_in": self.stream.bytes_in if self.stream else 0,
                "bytes_out": self.stream.bytes_out if self.stream else 0,
                "duration_s": round(time.monotonic() - self.started, 6),
                "goodput_kbps": {"up": kbps(self.up_bytes, self.up_time), "down": down},
                "tcp_info": info,
                "end": self.end,
                "failure": self.failure,
            }
        )
        return record
