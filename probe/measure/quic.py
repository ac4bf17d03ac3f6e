"""One HTTP/3 transfer over QUIC (aioquic), recorded as a TCP transfer is.

In 2024 YouTube was slowed to ~128 kbit/s over TCP but ~512 kbit/s over QUIC: a
throttler may treat the transports apart. So an http3 target is also fetched over
QUIC, with the same bounds (`Limits`), the same throughput samples and the same
record types, marked `transport: quic`. QUIC has no TCP connect; its TLS 1.3
handshake is a `tls_handshakes` record with OONI's `network: udp`. The chain is
verified here, once the handshake is done, against the same CAs, so a failed
verification still records the chain shown; no request is sent over it.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent
from aioquic.tls import Alert, AlertCertificateExpired, verify_certificate
from cryptography.hazmat.primitives import serialization

from probe.records import TlsHandshake, Transfer, network_event

from . import failures
from .clock import Clock
from .keys import TestKeys
from .limits import Limits
from .tls import describe_certificate
from .transfer import KEY_HEADERS, StopWhen, capped_range, cut_by_cap

_BY_DATA = ("complete", "max_bytes")  # transfers whose span ends at their last byte
_STOP = object()  # queued when our own bound stops the transfer


@dataclass(frozen=True)
class H3Ask:
    """One GET over HTTP/3: where to (`address`: the IP, the URL's port over UDP), which
    SNI (None: the URL host, "": none), which CAs (None: the system's). `check_name`: the
    name the chain is verified for instead of the SNI (the experiments send service names
    to a measurement server that holds a certificate for its own name only)."""

    url: str
    address: str
    sni: str | None
    ca_bundle: Path | None
    limits: Limits
    transfer_id: str
    stop_when: StopWhen | None = None
    role: str = "object"
    check_name: str | None = None


@dataclass
class _Progress:
    """How far the exchange got; times are monotonic seconds."""

    started: float | None = None  # the request went out
    headers_at: float | None = None
    last_byte: float | None = None
    ended: float | None = None
    bytes: int = 0
    wire_start: int = 0
    samples: list[list[float | int]] = field(default_factory=list)
    status: int | None = None
    headers: list[list[str]] = field(default_factory=list)
    content_type: str | None = None
    content_range: str | None = None
    content_length: int | None = None
    stop_reason: str | None = None
    stopped_by: str = "complete"
    failure: str | None = None

    def t_ms(self, now: float) -> float:
        return round((now - (self.started or now)) * 1000, 3)


class _Client(QuicConnectionProtocol):
    """A QUIC connection whose HTTP/3 events (and its end) are queued for the fetch."""

    def __init__(self, quic: QuicConnection) -> None:
        super().__init__(quic)
        self.h3 = H3Connection(quic)
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.wire = 0  # UDP payload bytes received

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self.wire += len(data)
        super().datagram_received(data, addr)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.events.put_nowait(event)
        for h3_event in self.h3.handle_event(event):
            self.events.put_nowait(h3_event)


def fetch(keys: TestKeys, clock: Clock, ask: H3Ask) -> dict:
    """Handshake and GET over QUIC into `keys`; returns the transfer record. Never raises
    for network faults: they are the records' failures."""
    return asyncio.run(_fetch(keys, clock, ask))


async def _fetch(keys: TestKeys, clock: Clock, ask: H3Ask) -> dict:
    parts = urlsplit(ask.url)
    port = parts.port or 443
    name = (parts.hostname or "") if ask.sni is None else ask.sni
    handshake = _handshake_record(ask.address, port, name, clock.now(), ask.transfer_id)
    if ask.check_name is not None:
        handshake.checked_name = ask.check_name
        handshake.name_matched = None
        handshake.hostname_checked = True
    progress = _Progress()
    t0 = clock.now()
    keys.network_events.append(network_event("http_transaction_start", t0, proto="udp",
                                             transfer_id=ask.transfer_id))
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in ask.address else socket.AF_INET,
                         socket.SOCK_DGRAM)
    transport, client = await loop.create_datagram_endpoint(
        lambda: _Client(QuicConnection(configuration=_configuration(name, ask.limits))),
        sock=sock)
    try:
        client.connect((ask.address, port))
        if await _handshake(client, handshake, ask, clock):
            await _exchange(client, ask, progress, keys, clock, parts)
        else:
            progress.stopped_by, progress.failure = "error", handshake.failure
    finally:
        progress.ended = progress.ended or time.monotonic()
        client.close()  # sends our CONNECTION_CLOSE: the server stops sending at once
        transport.close()
    keys.tls_handshakes.append(handshake.as_dict())
    return _record(keys, clock, ask, progress, client, t0, port, name)


def _configuration(name: str, limits: Limits) -> QuicConfiguration:
    """HTTP/3 over QUIC; SNI `name` unless empty or an IP (TLS never sends one). aioquic's
    own idle timeout is later than ours, so ours (connect, read) name the stall."""
    return QuicConfiguration(
        is_client=True, alpn_protocols=H3_ALPN, server_name=name or None,
        verify_mode=ssl.CERT_NONE,  # verified in _verify, with the chain kept either way
        idle_timeout=max(limits.connect_timeout, limits.read_timeout) + 5.0,
    )


def _handshake_record(address: str, port: int, name: str, t0: float,
                      transfer_id: str) -> TlsHandshake:
    host = f"[{address}]" if ":" in address else address
    return TlsHandshake(
        address=f"{host}:{port}", server_name=name, sni_sent=bool(name) and not _is_ip(name),
        hostname_checked=bool(name), t0=t0, t=t0, transfer_id=transfer_id,
        network="udp", transport="quic",
    )


async def _handshake(client: _Client, record: TlsHandshake, ask: H3Ask, clock: Clock) -> bool:
    """The QUIC handshake within the connect timeout, then the chain's verification;
    True if a request may go out."""
    started = time.monotonic()
    try:
        await asyncio.wait_for(client.wait_connected(), ask.limits.connect_timeout)
    except TimeoutError:
        record.failure = failures.QUIC_HANDSHAKE_TIMEOUT
    except ConnectionError:
        record.failure = _closed_failure(client)
    record.t = clock.now()
    if record.failure is not None:
        return False
    record.handshake_ms = round((time.monotonic() - started) * 1000, 3)
    tls = client._quic.tls  # noqa: SLF001 - aioquic keeps the session's facts on it
    record.tls_version = "TLSv1.3"  # QUIC carries TLS 1.3 only (RFC 9001)
    if tls.key_schedule is not None:
        record.cipher_suite = f"TLS_{tls.key_schedule.cipher_suite.name}"
    record.negotiated_protocol = tls.alpn_negotiated or ""
    leaf = tls._peer_certificate  # noqa: SLF001 - aioquic exposes the chain only privately
    chain = list(tls._peer_certificate_chain)  # noqa: SLF001
    presented = [c.public_bytes(serialization.Encoding.DER) for c in
                 ([leaf] if leaf is not None else []) + chain]
    record.peer_certificates = [
        {"format": "base64", "data": base64.b64encode(der).decode()} for der in presented]
    record.certificates = [describe_certificate(der) for der in presented]
    if leaf is None:
        record.failure = failures.SSL_FAILED_HANDSHAKE
        return False
    checked = record.server_name if ask.check_name is None else ask.check_name
    record.failure, record.verify_error = _verify(leaf, chain, checked, ask.ca_bundle)
    record.verified = record.failure is None
    if ask.check_name is not None and record.verified:
        record.name_matched = "server"
    return record.verified


def _verify(leaf: Any, chain: list, name: str,
            ca_bundle: Path | None) -> tuple[str | None, str | None]:
    """(failure, the verifier's message) of the chain against the CAs and `name` ("": the
    chain alone)."""
    paths = ssl.get_default_verify_paths()
    cafile = str(ca_bundle) if ca_bundle else paths.cafile
    capath = None if ca_bundle else paths.capath
    try:
        verify_certificate(leaf, chain, server_name=name or None,
                           cafile=cafile, capath=capath)
    except AlertCertificateExpired as exc:
        return failures.SSL_INVALID_CERTIFICATE, str(exc)
    except Alert as exc:
        text = str(exc)
        if "doesn't match" in text or "hostname" in text.lower():
            return failures.SSL_INVALID_HOSTNAME, text
        if "issuer" in text or "self-signed" in text or "self signed" in text:
            return failures.SSL_UNKNOWN_AUTHORITY, text
        return failures.SSL_INVALID_CERTIFICATE, text
    return None, None


def _closed_failure(client: _Client) -> str:
    """The failure of a connection that ended: the close it got, else a reset."""
    while not client.events.empty():
        event = client.events.get_nowait()
        if isinstance(event, ConnectionTerminated):
            return failures.quic_close(event.error_code, event.reason_phrase)
    return failures.QUIC_CLOSED


async def _exchange(client: _Client, ask: H3Ask, progress: _Progress, keys: TestKeys,
                    clock: Clock, parts: Any) -> None:
    """Send the GET and read the response under the bounds, sampling as it comes."""
    sent = capped_range(None, ask.limits.max_bytes)
    assert sent is not None
    stream_id = client._quic.get_next_available_stream_id()  # noqa: SLF001
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    client.h3.send_headers(stream_id, [
        (b":method", b"GET"), (b":scheme", b"https"), (b":authority", parts.netloc.encode()),
        (b":path", path.encode()), (b"accept-encoding", b"identity"),
        (b"range", f"bytes={sent[0]}-{sent[1]}".encode()),
    ], end_stream=True)
    client.transmit()
    progress.started = time.monotonic()
    progress.wire_start = client.wire
    sampler = asyncio.create_task(_sample(client, ask, progress, keys, clock))
    try:
        await _read(client, ask, stream_id, progress)
    finally:
        progress.ended = time.monotonic()
        sampler.cancel()
    if progress.stopped_by == "complete" and progress.status == 206 and cut_by_cap(
            None, sent, progress.content_range):
        progress.stopped_by = "max_bytes"


async def _read(client: _Client, ask: H3Ask, stream_id: int, progress: _Progress) -> None:
    """Take the connection's events until the response ends, a bound or a fault stops it."""
    while True:
        try:
            event = await asyncio.wait_for(client.events.get(), ask.limits.read_timeout)
        except TimeoutError:
            progress.stopped_by = "timeout"
            progress.failure = None if progress.bytes else failures.QUIC_IDLE_TIMEOUT
            return
        if event is _STOP:
            progress.stopped_by = str(progress.stop_reason)
            if progress.stop_reason == "max_seconds" and not progress.bytes:
                progress.failure = failures.GENERIC_TIMEOUT  # nothing arrived: no rate
            return
        if isinstance(event, ConnectionTerminated):
            failure = failures.quic_close(event.error_code, event.reason_phrase)
            if failure == failures.QUIC_IDLE_TIMEOUT:
                progress.stopped_by = "timeout"
                progress.failure = None if progress.bytes else failure
            else:
                progress.stopped_by, progress.failure = "error", failure
            return
        if _on_event(event, stream_id, progress, ask.limits.max_bytes):
            return


def _on_event(event: H3Event, stream_id: int, progress: _Progress, max_bytes: int) -> bool:
    """Note one HTTP/3 event of our stream; True when the transfer is over."""
    if getattr(event, "stream_id", None) != stream_id:
        return False
    now = time.monotonic()
    if isinstance(event, HeadersReceived):
        _head(event.headers, progress, now)
        return event.stream_ended
    if isinstance(event, DataReceived):
        if event.data:
            progress.bytes += len(event.data)
            progress.last_byte = now
            progress.samples.append([progress.t_ms(now), progress.bytes])
        if event.stream_ended:
            if progress.status is None:  # the stream ended before any response head
                progress.stopped_by, progress.failure = "error", failures.EOF_ERROR
            return True
        if progress.bytes >= max_bytes and progress.bytes != progress.content_length:
            progress.stopped_by = "max_bytes"
            return True
    return False


def _head(headers: list[tuple[bytes, bytes]], progress: _Progress, now: float) -> None:
    progress.headers_at = now
    for raw_name, raw_value in headers:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        if name == ":status" and value.isdigit():
            progress.status = int(value)
        elif name in KEY_HEADERS:
            progress.headers.append([name, value])
        if name == "content-type":
            progress.content_type = value
        elif name == "content-range":
            progress.content_range = value
        elif name == "content-length" and value.isdigit():
            progress.content_length = int(value)


async def _sample(client: _Client, ask: H3Ask, progress: _Progress, keys: TestKeys,
                  clock: Clock) -> None:
    """Tick every sample_interval_s: cumulative bytes, the deadline, stop_when."""
    limits = ask.limits
    while True:
        await asyncio.sleep(limits.sample_interval_s)
        now = time.monotonic()
        progress.samples.append([progress.t_ms(now), progress.bytes])
        keys.network_events.append(network_event(
            "bytes_received_cumulative", clock.now(), proto="udp", num_bytes=progress.bytes,
            transfer_id=ask.transfer_id))
        reason = None
        if progress.started is not None and now - progress.started >= limits.max_seconds:
            reason = "max_seconds"
        elif ask.stop_when is not None and ask.stop_when(
                [(float(t), int(n)) for t, n in progress.samples]):
            reason = "stable"
        if reason is not None:
            progress.stop_reason = reason
            client.events.put_nowait(_STOP)
            return


def _record(keys: TestKeys, clock: Clock, ask: H3Ask, progress: _Progress, client: _Client,
            t0: float, port: int, name: str) -> dict:
    """The df-001 request entry, the end of the transaction and our transfer record."""
    t = clock.now()
    if progress.started is not None:
        keys.network_events.append(network_event(
            "bytes_received_cumulative", t, proto="udp", num_bytes=progress.bytes,
            transfer_id=ask.transfer_id))
    keys.network_events.append(network_event("http_transaction_done", t, proto="udp",
                                             transfer_id=ask.transfer_id,
                                             failure=progress.failure))
    parts = urlsplit(ask.url)
    keys.requests.append({
        "network": "udp", "alpn": "h3",
        "request": {"method": "GET", "url": ask.url, "x_transport": "quic",
                    "headers_list": [["accept-encoding", "identity"]]},
        "response": None if progress.status is None else {
            "code": progress.status, "headers_list": progress.headers,
            "body_length": progress.bytes},
        "failure": progress.failure, "t0": t0, "t": t, "transfer_id": ask.transfer_id,
    })
    wire = client.wire - progress.wire_start if progress.started is not None else None
    record = Transfer(
        transfer_id=ask.transfer_id, role=ask.role, url=ask.url, host=parts.hostname or "",
        sni=name, address=ask.address, port=port,
        direction="down", method="GET", status_code=progress.status,
        content_type=progress.content_type, bytes=progress.bytes, wire_bytes=wire,
        t0=t0, t=t, **_timing(progress), failure=progress.failure,
        stopped_by=progress.stopped_by, samples=progress.samples, tcp_info=[],
        connection_reused=False, transport="quic",
    ).as_dict()
    keys.transfers.append(record)
    return record


def _timing(progress: _Progress) -> dict:
    """duration_s, ttfb_ms, last_byte_ms and goodput_kbps, as TCP transfers have them:
    QUIC hands over stream data packet by packet, so the body read is what arrived."""
    started, ended = progress.started, progress.ended
    if started is None or ended is None:
        return {"duration_s": None, "ttfb_ms": None, "last_byte_ms": None, "goodput_kbps": None}
    last = progress.last_byte
    end = (last or progress.headers_at or ended) if progress.stopped_by in _BY_DATA else ended
    duration = round(end - started, 6)
    return {
        "duration_s": duration,
        "ttfb_ms": round((progress.headers_at - started) * 1000, 3)
        if progress.headers_at else None,
        "last_byte_ms": round((last - started) * 1000, 3) if last is not None else None,
        "goodput_kbps": round(progress.bytes * 8 / 1000 / duration, 3) if duration > 0 else None,
    }


def _is_ip(name: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in name else socket.AF_INET, name)
    except OSError:
        return False
    return True
