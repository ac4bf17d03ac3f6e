"""TCP connect measurement (OONI df-005 `tcp_connect` entries)."""

from __future__ import annotations

import socket
import time

from probe.records import TcpConnect

from .clock import Clock
from .failures import classify


def connect(
    address: str, port: int, timeout: float, clock: Clock
) -> tuple[TcpConnect, socket.socket | None]:
    """Open a TCP connection and describe it; the socket is None on failure.

    The record is a df-005 entry plus `latency_ms`; failures are df-007 strings.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    t0 = clock.now()
    started = time.monotonic()
    failure = None
    try:
        sock.connect((address, port))
    except OSError as exc:
        failure = classify(exc)
        sock.close()
    latency_ms = round((time.monotonic() - started) * 1000, 3)
    record = TcpConnect(
        ip=address,
        port=port,
        status={"success": failure is None, "failure": failure},  # `blocked`: a verdict's
        t0=t0,
        t=clock.now(),
        latency_ms=latency_ms,
    )
    return record, (None if failure else sock)
