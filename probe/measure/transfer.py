"""One HTTP(S) transfer with a throughput time series and kernel TCP_INFO snapshots.

Throttling is a property of a flow over time (a policer's saw-tooth, a rate that
converges to ~140 kbps), so a transfer records not just its total but
cumulative bytes at every read and on a fixed tick, plus TCP_INFO on the tick.
A transfer cut short by our own bound (bytes, seconds, "rate is stable") or a
stall after data flowed is still a valid rate measurement: failure stays None.
"""

from __future__ import annotations

import math
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit

import httpcore
import httpx

from probe.records import Transfer, network_event

from . import tcpinfo, tls
from .clock import Clock
from .failures import GENERIC_TIMEOUT, classify
from .keys import TestKeys
from .limits import Limits
from .netbackend import HandshakeStrategy, MeasuredConnectError, ProbeBackend, ProbeStream

KEY_HEADERS = (
    "content-type", "content-length", "content-range", "server", "via",
    "x-cache", "age", "cache-control", "location", "alt-svc",
)
# An Alt-Svc entry offering HTTP/3 (RFC 9114; drafts as h3-29): `h3=":443"; ma=86400`.
_H3_OFFER = re.compile(r'(?:^|,)\s*h3(?:-\d+)?\s*=', re.IGNORECASE)
_BY_DATA = ("complete", "max_bytes")  # transfers whose span ends at their last byte
TLS_RECORD = 16_384  # largest TLS plaintext record
TLS_OVERHEAD = 29  # per record: 5 header bytes + AEAD nonce and tag (TLS 1.2 GCM; 1.3: 22)
StopWhen = Callable[[list[tuple[float, int]]], bool]


class _Progress:
    """State shared by the reading thread and the sampler of one transfer."""

    def __init__(self, deadline_s: float) -> None:
        self.lock = threading.Lock()
        self.deadline_s = deadline_s
        self.started: float | None = None  # monotonic time the request went out
        self.headers_at: float | None = None  # response headers parsed: first response byte
        self.last_byte: float | None = None
        self.ended: float | None = None  # the exchange was over (read done, failed or stopped)
        self.bytes = 0
        self.samples: list[list[float | int]] = []
        self.tcp_info: list[dict] = []
        self.wire_start: dict[str, int] = {}  # TCP_INFO as the request went out
        self.stop_reason: str | None = None
        self.callback_error: Exception | None = None
        self.stream: ProbeStream | None = None
        self.done = threading.Event()

    def add(self, n: int) -> None:
        with self.lock:  # the clock inside: samples stay in time order with the sampler's
            now = time.monotonic()
            self.bytes += n
            self.last_byte = now
            self.samples.append([_ms(now - (self.started or now)), self.bytes])

    def stop(self, reason: str) -> None:
        """Record why we stop and unblock a read stuck in the kernel."""
        with self.lock:
            if self.stop_reason is None:
                self.stop_reason = reason
        if self.stream is not None:
            self.stream.abort()

    def past_deadline(self) -> bool:
        return self.started is not None and time.monotonic() - self.started >= self.deadline_s


@dataclass
class _Reply:
    """What came back of one request: the response head, and how and why its body ended."""

    status: int | None = None
    content_type: str | None = None
    headers: list[list[str]] = field(default_factory=list)  # the KEY_HEADERS present
    header_bytes: int = 0
    body_length: int = 0
    stopped_by: str = "complete"
    failure: str | None = None


@dataclass(frozen=True)
class _Ask:
    """One fetch as asked: what the record says about the request, whatever came back."""

    transfer_id: str
    url: str
    method: str
    role: str
    byte_range: tuple[int, int] | None  # the caller's
    sent_range: tuple[int, int] | None  # the caller's cut to the byte cap
    max_bytes: int


class _Transport(httpx.BaseTransport):
    """httpx's HTTPTransport, over a connection pool that dials through our backend.

    httpx has no public hook for a network backend, so this transport owns an
    httpcore pool built with ours and does what HTTPTransport does around it:
    httpcore's request and response in httpx's types, its errors as httpx's.
    """

    def __init__(self, backend: ProbeBackend, ssl_context: ssl.SSLContext) -> None:
        self.pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=1,
            http1=True,
            http2=False,
            retries=0,
            network_backend=backend,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = self.pool.handle_request(core_request)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self.pool.close()


class _ResponseStream(httpx.SyncByteStream):
    """An httpcore body as httpx reads it: a failed read raises httpx's error."""

    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


# httpcore's errors and httpx's names for them, as httpx's own transport maps them.
_HTTPX_ERRORS: dict[type[Exception], type[httpx.HTTPError]] = {
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.ProtocolError: httpx.ProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
}


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """Raise an httpcore error as the most specific httpx error, the original as its cause
    (the failure names read the cause: a MeasuredConnectError's df-007 string)."""
    try:
        yield
    except Exception as exc:
        mapped: type[httpx.HTTPError] | None = None
        for source, target in _HTTPX_ERRORS.items():
            if isinstance(exc, source) and (mapped is None or issubclass(target, mapped)):
                mapped = target
        if mapped is None:
            raise
        raise mapped(str(exc)) from exc


class Session:
    """HTTP(S) fetches of one measurement over one kept-alive connection to one address.

    `address` is where to connect (None: resolve the URL host); `sni` is the TLS
    server name (None: the URL host, "": send none). Records go into `keys`.
    """

    def __init__(
        self,
        keys: TestKeys,
        clock: Clock,
        *,
        address: str | None,
        sni: str | None,
        ssl_context: ssl.SSLContext,
        limits: Limits,
        transfer_prefix: str,
        handshake: HandshakeStrategy = tls.handshake_bio,
    ) -> None:
        self.keys = keys
        self.clock = clock
        self.limits = limits
        self.prefix = transfer_prefix
        self.sni = sni
        self._count = 0
        self.backend = ProbeBackend(keys, clock, address=address, sni=sni, handshake=handshake)
        timeout = httpx.Timeout(
            connect=limits.connect_timeout, read=limits.read_timeout,
            write=limits.read_timeout, pool=limits.connect_timeout,
        )
        self.client = httpx.Client(
            transport=_Transport(self.backend, ssl_context), timeout=timeout,
            follow_redirects=False, headers={"Accept-Encoding": "identity"},
        )

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def fetch(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: dict | None = None,
        byte_range: tuple[int, int] | None = None,
        max_bytes: int | None = None,
        max_seconds: float | None = None,
        stop_when: StopWhen | None = None,
        sink: Callable[[bytes], None] | None = None,
        role: str = "object",
    ) -> dict:
        """Run one request; append df-001/df-008 records and a transfer record; return the latter.

        `byte_range` is inclusive (HTTP Range); a GET asks for no more than
        `max_bytes` of it (of the whole object if None). `sink` sees every body chunk (the
        caller decides what to keep; we keep nothing). `stop_when` sees
        [(t_ms, cumulative_bytes)] on every tick (in the sampler thread) and may
        end the transfer by returning True. Its bytes are the kernel's count of
        what arrived (TCP_INFO), where available, not the body: TLS hands the
        body over in whole records of up to 16 KiB, which under a 130 kbit/s
        throttle arrive once a second, too coarse to settle a rate in seconds.
        """
        self._count += 1
        max_bytes = self.limits.max_bytes if max_bytes is None else max_bytes
        ask = _Ask(
            transfer_id=f"{self.prefix}-{self._count}", url=url, method=method, role=role,
            byte_range=byte_range, max_bytes=max_bytes,
            sent_range=capped_range(byte_range, max_bytes) if method == "GET" else byte_range,
        )
        progress = _Progress(self.limits.max_seconds if max_seconds is None else max_seconds)
        opened_before = self.backend.connections_opened
        self.backend.transfer_id = ask.transfer_id
        request = self._request(ask, headers, progress)
        t0 = self.clock.now()
        self.keys.network_events.append(
            network_event("http_transaction_start", t0, transfer_id=ask.transfer_id))
        reply = _Reply()
        with self._sampling(progress, ask.transfer_id, stop_when):
            try:
                response = self._send(request, progress, reply)
                self._read(response, ask, progress, reply, sink)
            except (httpx.HTTPError, httpcore.ProtocolError, OSError) as exc:
                reply.stopped_by, reply.failure = _outcome(exc, progress)
        return self._record(ask, request, reply, progress, t0, opened_before)

    def _request(self, ask: _Ask, headers: dict | None, progress: _Progress) -> httpx.Request:
        """The request, with a trace hook: the clock of the transfer (and the baseline of its
        wire series) starts as the request headers go out, after any connect and handshake,
        so a new connection's setup is not counted in a rate."""

        def trace(name: str, info: dict) -> None:
            if name == "http11.send_request_headers.started":
                progress.stream = self.backend.current
                if progress.stream is not None:
                    progress.wire_start.update(tcpinfo.read(progress.stream.raw) or {})
                if progress.wire_start:  # the baseline of the wire series, at t = 0
                    progress.tcp_info.append(
                        {"t_ms": 0.0, **tcpinfo.summary(progress.wire_start), "wire_bytes": 0})
                progress.started = time.monotonic()

        req_headers = dict(headers or {})
        if ask.sent_range is not None:
            req_headers["Range"] = f"bytes={ask.sent_range[0]}-{ask.sent_range[1]}"
        return self.client.build_request(
            ask.method, ask.url, headers=req_headers, extensions={"trace": trace}
        )

    @contextmanager
    def _sampling(
        self, progress: _Progress, transfer_id: str, stop_when: StopWhen | None
    ) -> Iterator[None]:
        """Tick the sampler for as long as the exchange lasts (it may stop the exchange);
        note when the exchange ended, before the sampler's last tick is waited for."""
        sampler = threading.Thread(
            target=self._sample, args=(progress, transfer_id, stop_when), daemon=True
        )
        sampler.start()
        try:
            yield
        finally:
            progress.ended = time.monotonic()
            progress.done.set()
            sampler.join()

    def _send(self, request: httpx.Request, progress: _Progress, reply: _Reply) -> httpx.Response:
        """Send the request and keep the response head; the body is left to `_read`, so the
        bounds apply to it as it streams in."""
        response = self.client.send(request, stream=True)
        reply.header_bytes = _header_bytes(response)
        progress.headers_at = time.monotonic()
        reply.status = response.status_code
        reply.content_type = response.headers.get("content-type")
        reply.headers = [[k, v] for k, v in response.headers.items() if k in KEY_HEADERS]
        stream = response.extensions.get("network_stream")
        if isinstance(stream, ProbeStream):
            progress.stream = stream
        return response

    def _read(
        self, response: httpx.Response, ask: _Ask, progress: _Progress, reply: _Reply,
        sink: Callable[[bytes], None] | None,
    ) -> None:
        """Read the body under the bounds, then say why it ended: our own stop (however the
        read saw it), or a 206 the byte cap cut, which the cap ended, not the object."""
        try:
            reply.stopped_by, reply.body_length = self._read_body(
                response, progress, ask.max_bytes, sink
            )
        finally:
            response.close()
        if reply.stopped_by == progress.stop_reason:
            reply.stopped_by, reply.failure = _stopped(progress)
        elif reply.stopped_by == "complete" and reply.status == 206 and cut_by_cap(
                ask.byte_range, ask.sent_range, response.headers.get("content-range")):
            reply.stopped_by = "max_bytes"

    def _record(
        self, ask: _Ask, request: httpx.Request, reply: _Reply, progress: _Progress,
        t0: float, opened_before: int,
    ) -> dict:
        """Close the transfer's series and events, then describe it twice: as a df-001
        request entry (OONI's view) and as our transfer record (the rate's view)."""
        t = self.clock.now()
        ended = progress.ended
        assert ended is not None  # set as the exchange closed
        end = progress.stream
        wire_end = end.final_tcp_info() if end is not None else None
        self._close_series(progress, wire_end, ended, ask.transfer_id, t, reply.failure)
        if progress.callback_error is not None:
            raise progress.callback_error  # a bug in the caller's stop_when, not a network fault
        self.keys.requests.append({
            "request": {
                "method": ask.method, "url": ask.url, "x_transport": "tcp",
                "headers_list": [
                    [k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw
                ],
            },
            "response": None if reply.status is None else {
                "code": reply.status, "headers_list": reply.headers,
                "body_length": reply.body_length,
            },
            "failure": reply.failure, "t0": t0, "t": t, "transfer_id": ask.transfer_id,
        })
        parts = urlsplit(ask.url)
        host = parts.hostname or ""
        wire_bytes = _wire_bytes(progress.wire_start, wire_end)
        arrived = _arrived(progress.bytes, reply.stopped_by, reply.failure, wire_bytes,
                           reply.header_bytes, parts.scheme == "https")
        record = Transfer(
            transfer_id=ask.transfer_id,
            role=ask.role,
            url=ask.url,
            host=host,
            sni=None if parts.scheme != "https" else (host if self.sni is None else self.sni),
            address=end.address if end else self.backend.address,
            port=parts.port or (443 if parts.scheme == "https" else 80),
            direction="down",
            method=ask.method,
            status_code=reply.status,
            content_type=reply.content_type,
            bytes=progress.bytes,
            wire_bytes=wire_bytes,
            t0=t0,
            t=t,
            **_timing(progress, reply.stopped_by, ended, arrived),
            failure=reply.failure,
            stopped_by=reply.stopped_by,
            samples=progress.samples,
            tcp_info=progress.tcp_info,
            connection_reused=(
                self.backend.connections_opened == opened_before and progress.started is not None
            ),
            alt_svc_h3=None if reply.status is None else offers_h3(reply.headers),
        ).as_dict()
        self.keys.transfers.append(record)
        return record

    def _close_series(self, progress: _Progress, wire_end: dict[str, int] | None, ended: float,
                      transfer_id: str, t: float, failure: str | None) -> None:
        """The last TCP_INFO snapshot and byte count (so even a transfer shorter than one
        tick has its totals), and the end of the transaction in the network events."""
        if wire_end and progress.started is not None:
            # A tick in flight when we stopped may be later than `ended`: keep time order.
            last = progress.tcp_info[-1]["t_ms"] if progress.tcp_info else 0.0
            progress.tcp_info.append({"t_ms": max(_ms(ended - progress.started), last),
                                      **tcpinfo.summary(wire_end),
                                      "wire_bytes": _wire_bytes(progress.wire_start, wire_end)})
        if progress.started is not None:
            self.keys.network_events.append(network_event(
                "bytes_received_cumulative", t, num_bytes=progress.bytes,
                transfer_id=transfer_id))
        self.keys.network_events.append(network_event(
            "http_transaction_done", t, transfer_id=transfer_id, failure=failure))

    def _read_body(
        self, response: httpx.Response, progress: _Progress, max_bytes: int,
        sink: Callable[[bytes], None] | None,
    ) -> tuple[str, int]:
        """Consume the body within the bounds; returns (stopped_by, body bytes read)."""
        received = 0
        length = response.headers.get("content-length", "")
        expected = int(length) if re.fullmatch(r"[0-9]{1,19}", length) else None
        for chunk in response.iter_raw():
            received += len(chunk)
            progress.add(len(chunk))
            if sink is not None:
                sink(chunk)
            if progress.stop_reason is not None:
                return progress.stop_reason, received
            if progress.bytes >= max_bytes and received != expected:
                return "max_bytes", received
            if progress.past_deadline():
                progress.stop("max_seconds")
                return "max_seconds", received
        # A body without a length ends at the connection's close, and our own stop
        # closes it: the end is ours, not the object's.
        return progress.stop_reason or "complete", received

    def _sample(self, progress: _Progress, transfer_id: str, stop_when: StopWhen | None) -> None:
        """Tick every sample_interval_s: cumulative bytes, TCP_INFO, deadline, stop_when."""
        wire_key = "bytes_received"
        wire_start = progress.wire_start
        wire: list[tuple[float, int]] = []
        interval = self.limits.sample_interval_s
        next_tick = time.monotonic() + interval
        while not progress.done.wait(max(0.0, next_tick - time.monotonic())):
            next_tick += interval
            if progress.started is None:
                continue
            with progress.lock:
                t_ms = _ms(time.monotonic() - progress.started)
                progress.samples.append([t_ms, progress.bytes])
                snapshot = [(float(s[0]), int(s[1])) for s in progress.samples]
                cumulative = progress.bytes
            self.keys.network_events.append(network_event(
                "bytes_received_cumulative", self.clock.now(), num_bytes=cumulative,
                transfer_id=transfer_id))
            stream = progress.stream
            fields = tcpinfo.read(stream.raw) if stream is not None else None
            if fields:
                snap = {"t_ms": t_ms, **tcpinfo.summary(fields)}
                if wire_key in fields and wire_key in wire_start:
                    snap["wire_bytes"] = fields[wire_key] - wire_start[wire_key]
                    wire.append((t_ms, snap["wire_bytes"]))
                progress.tcp_info.append(snap)
            if wire:
                snapshot = list(wire)
            if progress.past_deadline():
                progress.stop("max_seconds")
            elif stop_when is not None and self._asks_to_stop(stop_when, snapshot, progress):
                progress.stop("stable")

    @staticmethod
    def _asks_to_stop(
        stop_when: StopWhen, snapshot: list[tuple[float, int]], progress: _Progress
    ) -> bool:
        """Call the caller's rule; if it crashes, end the transfer and re-raise in fetch."""
        try:
            return bool(stop_when(snapshot))
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread
            progress.callback_error = exc
            progress.stop("error")
            return False


def capped_range(asked: tuple[int, int] | None, max_bytes: int) -> tuple[int, int] | None:
    """The byte range to ask for: `asked` (the whole object if None) cut to `max_bytes`.

    Stopping to read at the cap does not stop the server: what it sent within
    the receive window (megabytes on a fast path) arrives anyway. Asked for no
    more than the cap, a server that honours ranges sends no more; one that
    ignores them answers 200 and the read stops at the cap as before.
    """
    first = asked[0] if asked else 0
    last = first + max(1, max_bytes) - 1
    return (first, min(last, asked[1])) if asked else (first, last)


def cut_by_cap(asked: tuple[int, int] | None, sent: tuple[int, int] | None,
                content_range: str | None) -> bool:
    """True when a 206 answered the range the cap cut and the object (or the range the
    caller asked for) goes on past it: the cap ended the transfer, not the object."""
    match = re.fullmatch(r"bytes ([0-9]+)-([0-9]+)/([0-9]+|\*)", (content_range or "").strip())
    if sent is None or sent == asked or match is None or int(match[2]) != sent[1]:
        return False
    goes_on = match[3] == "*" or int(match[3]) > sent[1] + 1
    return goes_on and (asked is None or asked[1] > sent[1])


def _stopped(progress: _Progress) -> tuple[str, str | None]:
    """(stopped_by, failure) of a transfer our own stop ended, however the read saw it."""
    if progress.stop_reason == "max_seconds" and progress.bytes == 0:
        return "max_seconds", GENERIC_TIMEOUT  # nothing arrived: no rate to report
    return str(progress.stop_reason), None


def _outcome(exc: BaseException, progress: _Progress) -> tuple[str, str | None]:
    """(stopped_by, failure) for an exception that ended the transfer."""
    if progress.stop_reason is not None:
        return _stopped(progress)
    if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout):
        return "timeout", (None if progress.bytes > 0 else GENERIC_TIMEOUT)
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, MeasuredConnectError):
            return "error", cause.failure
        cause = cause.__cause__
    return "error", classify(exc)


def _timing(progress: _Progress, stopped_by: str, ended: float, arrived: int) -> dict:
    """duration_s, ttfb_ms (-> response headers), last_byte_ms and goodput_kbps.

    The goodput span ends at the last byte when the object (or our byte budget)
    arrived, else when we gave up: a stall is part of the rate a user gets. Its
    bytes are those that arrived (`_arrived`), not only the whole TLS records read.
    """
    started = progress.started
    if started is None:
        return {"duration_s": None, "ttfb_ms": None, "last_byte_ms": None, "goodput_kbps": None}
    last = progress.last_byte
    end = (last or progress.headers_at or ended) if stopped_by in _BY_DATA else ended
    duration = round(end - started, 6)
    return {
        "duration_s": duration,
        "ttfb_ms": _ms(progress.headers_at - started) if progress.headers_at else None,
        "last_byte_ms": _ms(last - started) if last is not None else None,
        "goodput_kbps": round(arrived * 8 / 1000 / duration, 3) if duration > 0 else None,
    }


def _header_bytes(response: httpx.Response) -> int:
    """Bytes of the response's status line and header block as they came on the wire."""
    status_line = len(f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n")
    return status_line + sum(len(k) + len(v) + 4 for k, v in response.headers.raw) + 2


def _arrived(body: int, stopped_by: str, failure: str | None, wire: int | None,
             header_bytes: int, tls: bool) -> int:
    """Body bytes that reached the probe: the body read, or for a transfer our own clock
    cut (stable, max_seconds) the kernel's count less the response header and the TLS
    framing. TLS hands the body over in whole records of up to 16 KiB, so the body read
    misses the record in flight: at 128 kbit/s, up to a second of data. Not after the
    byte cap: its span ends at the last byte read, and what came after is over the cap."""
    if stopped_by not in ("stable", "max_seconds") or failure or wire is None:
        return body
    framing = math.ceil(wire / (TLS_RECORD + TLS_OVERHEAD)) * TLS_OVERHEAD if tls else 0
    return max(body, wire - header_bytes - framing)


def _wire_bytes(start: dict[str, int], end: dict[str, int] | None) -> int | None:
    """Bytes received on the TCP stream during the transfer (TLS and HTTP framing included)."""
    key = "bytes_received"
    if not end or key not in start or key not in end:
        return None
    return end[key] - start[key]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def offers_h3(headers: list[list[str]]) -> bool:
    """Whether a response's Alt-Svc headers offer HTTP/3 (the server would answer QUIC)."""
    return any(k.lower() == "alt-svc" and _H3_OFFER.search(v) for k, v in headers)
