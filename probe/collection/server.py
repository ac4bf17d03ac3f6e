"""`probe collect`'s HTTP(S) server: the standard library's, bounded for exposure.

One thread per connection, at most `max_connections` of them (a newcomer beyond is
closed at once); one request per connection (bk-003: no keep-alive assumed); a
deadline for the TLS handshake and request head and one for the whole request, kept
by a watchdog thread that shuts a late connection down. Each client is held to a
request rate (`ratelimit`) and to a number of open reports (`store.OpenLimits`).
Every answer is JSON. Two background threads keep the storage: one closes idle reports
and seals closed ones (`Store.maintain`), the other appends them to the dataset
(`ingester`, unless `dataset` is off).
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import socketserver
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from probe.server.admission import Client
from probe.server.config import DEFAULT_LISTEN, label
from probe.server.log import JsonLog
from probe.server.tls import Certificates

from . import protocol, ratelimit, validate
from .ingester import INGEST_EVERY_S, Ingester
from .ratelimit import RateLimiter
from .store import (
    IDLE_CLOSE_S,
    SWEEP_EVERY_S,
    ClosedReport,
    OpenLimits,
    Store,
    TooManyOpen,
    UnknownReport,
)

# A refused body this much over its cap is still read (and dropped) before the answer,
# so the client sees the 413 rather than a reset; a larger one is cut off.
DRAIN_LIMIT = 2 * protocol.MAX_MEASUREMENT_BYTES
_WATCH_EVERY_S = 0.25
# A client refused for the collector's open reports cap is asked to come back this much
# later: reports close by themselves, an idle one after two hours.
FULL_RETRY_AFTER_S = 60


@dataclass
class CollectorConfig:
    """What `probe collect` was asked to do; the limits have safe defaults for exposure."""

    data: Path
    listen: list[tuple[str, int]] = field(default_factory=lambda: [DEFAULT_LISTEN])
    cert: Path | None = None
    key: Path | None = None
    plain_http: bool = False
    log: Path | None = None  # None: JSON lines to stderr
    log_client_address: bool = False
    max_connections: int = 64
    header_timeout: float = 10.0  # TLS handshake and request head
    request_timeout: float = 120.0  # the whole request, body included (4 MiB on a slow link)
    read_timeout: float = 10.0  # any one read
    idle_close: float = IDLE_CLOSE_S
    rate_limit: float = ratelimit.DEFAULT_RATE  # requests a second per address; 0: no limit
    rate_burst: int = ratelimit.DEFAULT_BURST
    max_open_reports: int = OpenLimits.total
    max_open_reports_per_client: int = OpenLimits.per_client  # 0: no cap per client
    dataset: bool = True  # append sealed reports to DATA/dataset
    ingest_every: float = INGEST_EVERY_S  # seconds between two rounds of ingest


class Collector:
    """`start()` binds every --listen address and serves until `stop()`."""

    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self.log = JsonLog(config.log)
        try:
            self.store = Store(config.data, config.idle_close, limits=OpenLimits(
                config.max_open_reports, config.max_open_reports_per_client),
                log=self.log_request)
            self.certificates = (None if config.plain_http
                                 else Certificates(config.cert, config.key))
        except BaseException:
            self.log.close()
            raise
        self.ingester = (Ingester(config.data, self.store.archive, config.ingest_every,
                                  self.log_request) if config.dataset else None)
        self.limiter = (RateLimiter(config.rate_limit, config.rate_burst)
                        if config.rate_limit else None)
        self.slots = threading.BoundedSemaphore(config.max_connections)
        self._servers: list[_HTTPServer] = []
        self._threads: list[threading.Thread] = []
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def context(self) -> ssl.SSLContext | None:
        return self.certificates.default if self.certificates else None

    def start(self) -> list[tuple[str, int]]:
        """Bind and start serving; returns the bound (host, port) pairs (port 0 resolved)."""
        try:
            for address in self.config.listen:
                self._servers.append(_HTTPServer(address, self))
        except OSError:
            for server in self._servers:
                server.server_close()
            raise
        for server in self._servers:
            self._spawn(server.serve_forever, 0.2)
        self._spawn(self._watch)
        self._spawn(self._maintain)
        if self.ingester is not None:
            self.ingester.start()
        return [s.server_address[:2] for s in self._servers]

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop accepting, let the requests in flight finish (bounded by their deadlines)."""
        for server in self._servers:
            server.shutdown()
        for server in self._servers:
            server.server_close()  # joins the connection threads
        self._stopping.set()
        for thread in self._threads:
            thread.join()
        if self.ingester is not None:
            self.ingester.stop()
        self.store.archive.close()
        self.log.close()

    def watch(self, conn: socket.socket, deadline: float) -> None:
        with self._lock:
            self._deadlines[conn] = deadline

    def unwatch(self, conn: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(conn, None)

    def _watch(self) -> None:
        """Shut down connections past their deadline: a slow sender holds a slot no longer."""
        while not self._stopping.wait(_WATCH_EVERY_S):
            now = time.monotonic()
            with self._lock:  # held: a socket is unwatched before it is closed
                for conn, deadline in self._deadlines.items():
                    if now > deadline:
                        try:  # the plain socket call, also on a TLS socket being read
                            socket.socket.shutdown(conn, socket.SHUT_RDWR)
                        except OSError:
                            pass

    def _maintain(self) -> None:
        """Close idle reports and seal closed ones even when no request comes; a failure
        is logged by the store and retried at the next round."""
        while not self._stopping.wait(SWEEP_EVERY_S):
            try:
                self.store.maintain()
            except Exception as exc:  # the thread must outlive a bug or a full disk
                self.log_request({"event": "error", "error": repr(exc)})

    def log_request(self, record: dict[str, Any]) -> None:
        self.log.write({"time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
                        + "Z", **record})


class _HTTPServer(ThreadingHTTPServer):
    """One listening address; the TLS handshake happens in the connection's thread."""

    daemon_threads = False  # server_close() waits for the requests in flight
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], collector: Collector) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.collector = collector
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the address (a slow start)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.collector.slots.acquire(blocking=False):
            self.shutdown_request(request)  # every slot taken: no thread for a newcomer
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.collector.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.collector.slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        collector, config = self.collector, self.collector.config
        conn: socket.socket = request
        conn.settimeout(config.read_timeout)
        started = time.monotonic()
        try:
            if collector.context is not None:
                conn = collector.context.wrap_socket(request, server_side=True,
                                                     do_handshake_on_connect=False)
            collector.watch(conn, started + config.header_timeout)
            if isinstance(conn, ssl.SSLSocket):
                conn.do_handshake()
            _Handler(conn, client_address, self, started)
        except OSError:
            pass  # a failed handshake or a client gone: there is nobody to answer
        finally:
            collector.unwatch(conn)
            if conn is not request:
                conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """An unexpected failure: logged without the client's address (the default prints it)."""
        self.collector.log_request({"event": "error", "error": repr(sys.exc_info()[1])})


class _Handler(BaseHTTPRequestHandler):
    """One request: route, check, store, answer in JSON, log one line."""

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.1"  # a garbled request line still gets a status line
    server: _HTTPServer

    def __init__(self, request: Any, client_address: Any, server: _HTTPServer,
                 started: float) -> None:
        self.started = started
        self.record: dict[str, Any] = {}
        super().__init__(request, client_address, server)

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        if self.record:
            collector = self.server.collector
            if collector.config.log_client_address:
                self.record["client"] = label(*self.client_address[:2])
            collector.log_request(self.record)

    def parse_request(self) -> bool:
        """The standard library's parsing of the request head, then the client's rate:
        over it, 429 before the body is read or anything is done."""
        if not super().parse_request():
            return False
        limiter = self.server.collector.limiter
        wait = limiter.admit(self.client_address[0]) if limiter is not None else 0.0
        if not wait:
            return True
        self.record.update(method=self.command, path=_shape(self.path), bytes_in=0)
        self._drain()
        self._error(429, "too many requests from this address or its network; retry later",
                    {"Retry-After": ratelimit.retry_after(wait)})
        return False

    def do_POST(self) -> None:
        collector = self.server.collector
        collector.watch(self.connection, self.started + collector.config.request_timeout)
        self.record.update(method="POST", path="other", bytes_in=0)
        try:
            route = validate.route(self.path)
            self.record.update(path=route.shape)
            if route.report_id:
                self.record["report_id"] = route.report_id
            length = validate.body_length(self.headers, validate.body_limit(route.kind))
        except validate.RequestError as exc:
            self._drain()
            self._error(exc.status, exc.message)
            return
        body = self.rfile.read(length)
        self.record["bytes_in"] = len(body)
        if len(body) < length:
            raise ConnectionError("the client sent less than its Content-Length")
        headers: dict[str, str] = {}
        try:
            status, answer = self._step(route, body)
        except validate.RequestError as exc:
            status, answer = exc.status, {"error": exc.message}
        except UnknownReport:
            status, answer = 404, {"error": "no report has this id"}
        except ClosedReport:
            status, answer = 409, {"error": "the report is closed; open a new one"}
        except TooManyOpen as exc:
            status, answer, headers = _too_many_open(exc)
        except Exception as exc:  # a full disk, a bug: the client may retry, nothing stored
            self.record["internal"] = repr(exc)
            status, answer = 500, {"error": "the collector could not store this; retry later"}
        if status >= 400:
            self.record["error"] = answer["error"]
        self._respond(status, answer, headers)

    def _step(self, route: validate.Route, body: bytes) -> tuple[int, dict[str, Any]]:
        """The protocol step itself, on a body of the right size."""
        store = self.server.collector.store
        if route.kind == "open":
            owner = Client.of(self.client_address[0]).network
            report_id = store.open(validate.open_request(body), owner)
            self.record["report_id"] = report_id
            return 200, {"backend_version": protocol.BACKEND_VERSION, "report_id": report_id,
                         "supported_formats": ["json"]}
        if route.kind == "update":
            store.check_open(route.report_id)
            content = validate.update_request(body, route.report_id)
            uid, duplicate = store.append(route.report_id, content)
            if duplicate:
                self.record["duplicate"] = True
            return 200, {"measurement_uid": uid}
        store.close(route.report_id)
        return 200, {"status": "success"}

    def _not_allowed(self) -> None:
        self.record.update(method=self.command, path="other", bytes_in=0)
        self._drain()
        self._error(405, "only POST is served", {"Allow": "POST"})

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _drain(self) -> None:
        """Read and drop a refused body (up to DRAIN_LIMIT) so the answer is not lost
        to a reset of the connection the client is still writing to."""
        text = self.headers.get("Content-Length", "0").strip()
        left = int(text) if text.isdigit() else 0
        if left > DRAIN_LIMIT:
            return
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                return
            left -= len(chunk)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """The standard library's refusals (bad request line, too many headers) in JSON;
        the log gets the status's phrase only, as the message may quote the client."""
        self.record.setdefault("method", "other")
        self.record.setdefault("path", "other")
        self._respond(code, {"error": message or HTTPStatus(code).phrase})
        self.record["error"] = HTTPStatus(code).phrase

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.record["error"] = message
        self._respond(status, {"error": message}, headers)

    def _respond(self, status: int, answer: dict[str, Any],
                 headers: dict[str, str] | None = None) -> None:
        body = json.dumps(answer).encode("utf-8")
        self.send_response_only(status)
        for name, value in {"Date": self.date_time_string(),
                            "Content-Type": "application/json; charset=utf-8",
                            "Content-Length": str(len(body)), "Cache-Control": "no-store",
                            "Connection": "close", **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()
        self.record.update(status=status, bytes_out=len(body))

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the standard library's line names the client; ours is in handle()."""


def _shape(path: str) -> str:
    """The route's shape of a path, for the log ("other" for none)."""
    try:
        return validate.route(path).shape
    except validate.RequestError:
        return "other"


def _too_many_open(exc: TooManyOpen) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The answer when no report may be opened: 429 for the client's own cap, 503 for
    the collector's; either way reports close as their clients finish or idle."""
    if exc.per_client:
        status, error = 429, ("too many reports open from this network; close those "
                              "finished or retry later")
    else:
        status, error = 503, "the collector has too many reports open; retry later"
    return status, {"error": error}, {"Retry-After": str(FULL_RETRY_AFTER_S)}
