"""The `upload` experiment: POST to /upload with a Twitter and a neutral SNI.

Bytes handed to the socket are not bytes sent: the kernel buffers megabytes,
so a throttled upload looks fast until the buffer is full. The samples here
count what the server acknowledged (TCP_INFO `bytes_acked`), the writer keeps
only a short backlog unacknowledged (so stopping early does not leave minutes
of buffered data to drain), and the body is chunked so it can end at any
moment and still get the server's answer: its own byte count and timing.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore

from probe.measure import tcpinfo
from probe.measure.clock import Clock
from probe.measure.failures import BAD_RESPONSE, EOF_ERROR, GENERIC_TIMEOUT, classify
from probe.measure.keys import TestKeys
from probe.measure.netbackend import MeasuredConnectError, ProbeBackend, ProbeStream
from probe.measure.transfer import Limits, StopWhen
from probe.measurement import MeasureContext, Measurement, first_failure
from probe.records import Transfer
from probe.targets import Target

from .base import Server, capped
from .handshake import ServerCertHandshake

CHUNK = 16 * 1024  # one TLS record per write
MIN_BACKLOG = 32 * 1024  # unacknowledged bytes allowed at any rate
BACKLOG_SECONDS = 2.0  # ... and up to this many seconds of the recent acknowledged rate
ANSWER_WAIT_S = 10.0  # after the last chunk: the backlog drains, the server answers
MAX_ANSWER_BYTES = 1_000_000  # bounds memory against a hostile server


@dataclass
class Upload:
    """One variant: up to the capped byte count POSTed to the server with `target.sni`."""

    target: Target
    server: Server
    name: str = "upload"
    version = "0.3.0"  # 0.3: OONI's record shapes (rcode a number, ...); 0.2: failure names

    def run(self, ctx: MeasureContext, m: Measurement) -> dict:
        keys, clock = m.keys, m.clock
        extra = ctx.resolve(m, self.server.host, None)
        extra["variant"] = {"sni": self.target.sni, "clienthello": "whole"}
        if extra["address"] is None:
            return extra
        limits = capped(ctx.limits)
        backend = ProbeBackend(
            keys, clock, address=extra["address"], sni=self.target.sni,
            handshake=ServerCertHandshake(ctx.ca_bundle, self.server.host),
        )
        backend.transfer_id = f"{m.id}-1"
        try:
            stream = backend.connect_tcp(self.server.host, self.server.port,
                                         timeout=limits.connect_timeout)
            stream = stream.start_tls(ctx.ssl_context, self.server.host, limits.connect_timeout)
        except MeasuredConnectError:
            extra["failure"] = first_failure(keys)
            return extra
        try:
            record = post(stream, keys, clock, self.target.url, limits, ctx.stop_when,
                          backend.transfer_id, self.target.sni)
        finally:
            stream.close()
        extra["server_upload"] = record["server_upload"]
        extra["failure"] = first_failure(keys)
        return extra


class _Acked:
    """Cumulative acknowledged payload since the request began, as samples."""

    def __init__(self, stream: ProbeStream) -> None:
        self.stream = stream
        info = tcpinfo.read(stream.raw) or {}
        self.base = info.get("bytes_acked", 0)
        self.started = time.monotonic()
        self.samples: list[list[float | int]] = []
        self.tcp_info: list[dict] = []
        self.last_tick = 0.0

    @property
    def acked(self) -> int:
        return int(self.samples[-1][1]) if self.samples else 0

    def fresh(self) -> int:
        """Acknowledged bytes right now (a syscall, no sample)."""
        info = tcpinfo.read(self.stream.raw)
        return info.get("bytes_acked", self.base) - self.base if info else self.acked

    def tick(self) -> None:
        """One sample (and TCP_INFO snapshot) of the acknowledged bytes."""
        now = time.monotonic()
        t_ms = round((now - self.started) * 1000, 3)
        info = tcpinfo.read(self.stream.raw)
        if info is None:
            return
        self.samples.append([t_ms, max(self.acked, info.get("bytes_acked", 0) - self.base)])
        self.tcp_info.append({"t_ms": t_ms, **tcpinfo.summary(info)})
        self.last_tick = now

    def recent_rate(self, window_s: float = 0.5) -> float:
        """Acknowledged bytes per second over the last `window_s`."""
        if len(self.samples) < 2:
            return 0.0
        t_end, b_end = self.samples[-1]
        for t, b in reversed(self.samples):
            if t_end - t >= window_s * 1000:
                return (b_end - b) / ((t_end - t) / 1000)
        return 0.0


def post(stream: ProbeStream, keys: TestKeys, clock: Clock, url: str, limits: Limits,
         stop_when: StopWhen | None, transfer_id: str, sni: str) -> dict:
    """Upload, sample the acknowledged bytes, read the server's JSON; append the records."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    t0 = clock.now()
    keys.network_events.append(
        {"operation": "http_transaction_start", "t": t0, "transfer_id": transfer_id})
    acked = _Acked(stream)
    body = os.urandom(CHUNK)
    sent = 0
    stopped_by, failure, answer = "complete", None, b""
    try:
        stream.write(head, timeout=limits.read_timeout)
        acked.tick()
        while sent < limits.max_bytes:
            reason = _should_stop(acked, limits, stop_when)
            if reason:
                stopped_by = reason
                break
            backlog = sent + len(head) - acked.fresh()
            if backlog > max(MIN_BACKLOG, BACKLOG_SECONDS * acked.recent_rate()):
                time.sleep(0.002)
                if time.monotonic() - acked.last_tick >= limits.sample_interval_s:
                    acked.tick()
                continue
            n = min(CHUNK, limits.max_bytes - sent)
            stream.write(b"%x\r\n" % n + body[:n] + b"\r\n", timeout=limits.read_timeout)
            sent += n
            if time.monotonic() - acked.last_tick >= limits.sample_interval_s:
                acked.tick()
        stream.write(b"0\r\n\r\n", timeout=limits.read_timeout)
        answer = _read_answer(stream, acked, limits)
    except (httpcore.NetworkError, httpcore.TimeoutException, OSError) as exc:
        stopped_by = "error"
        failure = GENERIC_TIMEOUT if isinstance(exc, httpcore.TimeoutException) else classify(exc)
    acked.tick()
    status, server = _parse(answer)
    if failure is None and status is None:  # closed without an answer, or not HTTP
        stopped_by, failure = "error", EOF_ERROR if not answer.strip() else BAD_RESPONSE
    t = clock.now()
    keys.network_events.append({"operation": "http_transaction_done", "t": t,
                                "transfer_id": transfer_id, "failure": failure})
    keys.requests.append({
        "request": {"method": "POST", "url": url, "x_transport": "tcp",
                    "headers_list": [["Host", host], ["Transfer-Encoding", "chunked"]]},
        "response": None if status is None else {
            "code": status, "headers_list": [], "body_length": len(answer)},
        "failure": failure, "t0": t0, "t": t, "transfer_id": transfer_id,
    })
    record = _record(url, host, sni, stream, transfer_id, t0, t, sent, acked, stopped_by,
                     failure, status, server)
    keys.transfers.append(record)
    return record


def _should_stop(acked: _Acked, limits: Limits, stop_when: StopWhen | None) -> str | None:
    if time.monotonic() - acked.started >= limits.max_seconds:
        return "max_seconds"
    if stop_when is not None and acked.samples and \
            stop_when([(float(t), int(b)) for t, b in acked.samples]):
        return "stable"
    return None


def _read_answer(stream: ProbeStream, acked: _Acked, limits: Limits) -> bytes:
    """The server's answer (head and JSON body), sampling while the backlog drains."""
    deadline = time.monotonic() + ANSWER_WAIT_S + limits.read_timeout
    data = b""
    while time.monotonic() < deadline:
        try:
            piece = stream.read(65536, timeout=limits.sample_interval_s)
        except httpcore.ReadTimeout:
            acked.tick()
            continue
        if not piece:
            return data
        data += piece
        if len(data) > MAX_ANSWER_BYTES:  # a server's answer is a small JSON: stop reading
            return data
        head, sep, body = data.partition(b"\r\n\r\n")
        length = _content_length(head)
        if sep and length is not None and len(body) >= length:
            return data
    raise TimeoutError("no answer to the upload")


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and re.fullmatch(rb"[0-9]{1,19}",
                                                                     value.strip()):
            return int(value.strip())
    return None


def _parse(answer: bytes) -> tuple[int | None, dict | None]:
    """(status, the server's JSON) of the raw answer; None for what is not there."""
    head, _, body = answer.partition(b"\r\n\r\n")
    fields = head.split(b" ", 2)
    if not head.startswith(b"HTTP/") or len(fields) < 2 or not re.fullmatch(rb"[0-9]{3}",
                                                                           fields[1]):
        return None, None
    try:
        server = json.loads(body)
    except ValueError:
        server = None
    return int(fields[1]), server if isinstance(server, dict) else None


def _record(url: str, host: str, sni: str, stream: ProbeStream, transfer_id: str, t0: float,
            t: float, sent: int, acked: _Acked, stopped_by: str, failure: str | None,
            status: int | None, server: dict | None) -> dict:
    """The transfer record, of Session.fetch's type, with the upload's fields and the
    server's view added.

    `bytes` is the server's count when it answered, else the acknowledged bytes
    (capped at what was written); the rate comes from the server's timing when
    it has one, else from the acknowledged samples.
    """
    last_t, last_b = (acked.samples[-1] if acked.samples else (0.0, 0))
    moved = server["bytes"] if server and isinstance(server.get("bytes"), int) \
        else min(sent, int(last_b))
    duration = server.get("duration_s") if server else None
    if duration is None:
        duration = round(last_t / 1000, 6) if last_t else None
    goodput = server.get("goodput_kbps") if server else None
    if goodput is None and duration:
        goodput = round(moved * 8 / 1000 / duration, 3)
    return Transfer(
        transfer_id=transfer_id, role="experiment", url=url, host=host, sni=sni,
        address=stream.address, port=stream.port, direction="up", method="POST",
        status_code=status, content_type="application/json",
        bytes=moved, bytes_written=sent, wire_bytes=int(last_b), t0=t0, t=t,
        duration_s=duration, ttfb_ms=None,
        last_byte_ms=last_t if acked.samples else None, goodput_kbps=goodput,
        failure=failure, stopped_by=stopped_by,
        samples=acked.samples, samples_count="bytes_acked",
        tcp_info=acked.tcp_info, connection_reused=False,
        server_upload=server,
    ).as_dict()
