"""`probe locate`: which hop between the probe and the server throttles a Twitter SNI.

A throttler that reads the ClientHello marks the flow when a Twitter name goes
past it. On a fresh connection to the measurement server we inject a trigger
ClientHello (Twitter SNI) with IP TTL = k, in the connection's own sequence
space (so it is in-window for every device that tracks the flow), where it
expires at hop k, before the server; then we run a neutral TLS download on the
same connection. Only devices at hops 1..k saw the trigger, so the flow is
throttled exactly when k reaches the throttler: the smallest such k is its
hop. Each k needs a new connection (devices inspect only a flow's first
packets), and the throttled/unthrottled boundary is found by binary search
between a baseline (no trigger) and a reference (trigger up to the last hop
before the server), then measured once more on both sides.
"""

from __future__ import annotations

import math
import os
import socket
import ssl
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from probe.measure import tls

from .base import Server
from .traceroute import Hop, traceroute

TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ = 19, 20, 21
TCP_RECV_QUEUE, TCP_SEND_QUEUE, TCP_REPAIR_OFF_NO_WP = 1, 2, -1
ICMP_TIME_EXCEEDED = 11
# baseline / reference rate below which there is no throttling to locate: two
# unthrottled flows on a busy host differ by up to ~2x, a 2021-style policer by 10x+.
SEPARATION_MIN = 5.0
SEPARATION_HIGH = 10.0  # high confidence: the two levels at least this far apart
TRIGGER_SETTLE_S = 0.2  # time for the trigger to reach its hop (and the ICMP to return)


class LocateError(Exception):
    """The experiment cannot run here (not root, no raw sockets, IPv6, ...)."""


@dataclass
class Evidence:
    """One connection: the trigger's TTL (None: no trigger) and what the flow did after it."""

    ttl: int | None
    rate_kbps: float | None
    bytes: int
    seconds: float
    throttled: bool | None = None  # decided once the baseline and reference are known
    icmp_from: str | None = None  # who reported the trigger's expiry (time-exceeded)
    failure: str | None = None


@dataclass
class Location:
    """The answer: the throttler's hop (None: not found) with its router and the evidence."""

    server: str
    server_address: str
    trigger_sni: str
    hop: int | None
    address: str | None  # the router at that hop
    confidence: str  # high, medium, low, none
    reasons: list[str]
    baseline: Evidence
    reference: Evidence | None
    evidence: list[Evidence] = field(default_factory=list)
    traceroute: list[Hop] = field(default_factory=list)
    baseline_after: Evidence | None = None  # no trigger again, after the search

    def as_dict(self) -> dict:
        return asdict(self)


class Injector:
    """Sends a segment into an established connection with a chosen IP TTL (scapy, raw IP)."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise LocateError("probe locate needs root (raw sockets and TCP_REPAIR)")
        try:
            from scapy.layers.inet import IP, TCP
            from scapy.packet import Raw
            from scapy.supersocket import L3RawSocket
        except ImportError as exc:
            raise LocateError(f"probe locate needs scapy: {exc}") from exc
        try:
            self.socket = L3RawSocket()
        except OSError as exc:
            raise LocateError(f"scapy cannot send raw IP packets: {exc}") from exc
        self._ip, self._tcp, self._raw = IP, TCP, Raw

    def close(self) -> None:
        self.socket.close()

    def inject(self, sock: socket.socket, payload: bytes, ttl: int) -> None:
        """`payload` as the connection's next segment (seq = snd_nxt), kernel unaware."""
        seq, ack = _sequence_numbers(sock)
        (src, sport), (dst, dport) = sock.getsockname()[:2], sock.getpeername()[:2]
        packet = (self._ip(src=src, dst=dst, ttl=ttl, flags="DF")
                  / self._tcp(sport=sport, dport=dport, seq=seq, ack=ack, flags="PA",
                              window=502)
                  / self._raw(payload))
        self.socket.send(packet)


def _sequence_numbers(sock: socket.socket) -> tuple[int, int]:
    """(next sequence number to send, next to receive), read in TCP_REPAIR mode."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    except OSError as exc:
        raise LocateError(f"TCP_REPAIR is not allowed: {exc}") from exc
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
        seq = sock.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ)
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)
        ack = sock.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ)
    finally:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP)
    return seq & 0xFFFFFFFF, ack & 0xFFFFFFFF


class IcmpWatch:
    """Reads ICMP time-exceeded messages about one of our TCP flows (raw ICMP socket)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.setblocking(False)

    def close(self) -> None:
        self.sock.close()

    def drain(self) -> None:
        while True:
            try:
                self.sock.recv(2048)
            except BlockingIOError:
                return

    def expired_at(self, sport: int, dst: str, dport: int) -> str | None:
        """The sender of a time-exceeded quoting our flow's packet, if one arrived."""
        while True:
            try:
                data, (sender, _) = self.sock.recvfrom(2048)
            except BlockingIOError:
                return None
            if _quotes_flow(data, sport, dst, dport):
                return sender


def _quotes_flow(data: bytes, sport: int, dst: str, dport: int) -> bool:
    """Is `data` (IP + ICMP) a time-exceeded quoting a TCP packet of sport -> dst:dport?"""
    if not data:
        return False
    ihl = (data[0] & 0x0F) * 4
    if len(data) < ihl + 8 + 20 + 4 or data[ihl] != ICMP_TIME_EXCEEDED:
        return False
    inner = data[ihl + 8:]
    inner_ihl = (inner[0] & 0x0F) * 4  # anyone can send ICMP: check lengths before reading
    if inner_ihl < 20 or len(inner) < inner_ihl + 4:
        return False
    if inner[9] != socket.IPPROTO_TCP or socket.inet_ntoa(inner[16:20]) != dst:
        return False
    ports = struct.unpack_from("!HH", inner, inner_ihl)
    return ports == (sport, dport)


@dataclass
class Setup:
    """What every connection of one locate run shares."""

    server: Server
    address: str
    path: str
    context: ssl.SSLContext
    trigger: bytes
    seconds: float
    injector: Injector
    icmp: IcmpWatch


def client_hello(sni: str) -> bytes:
    """A real TLS client's first flight for `sni`: one ClientHello record."""
    out = ssl.MemoryBIO()
    obj = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def measure_flow(setup: Setup, ttl: int | None) -> Evidence:
    """One connection: optional trigger at `ttl`, then a neutral HTTPS download, timed."""
    try:
        sock = socket.create_connection((setup.address, setup.server.port), timeout=10)
    except OSError as exc:
        return Evidence(ttl, None, 0, 0.0, failure=f"connect: {exc}")
    icmp_from = None
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ttl is not None:
            setup.icmp.drain()
            setup.injector.inject(sock, setup.trigger, ttl)
            time.sleep(TRIGGER_SETTLE_S)
            icmp_from = setup.icmp.expired_at(sock.getsockname()[1], setup.address,
                                              setup.server.port)
        try:
            got, seconds = _download(sock, setup)
        except (OSError, ValueError) as exc:
            return Evidence(ttl, None, 0, 0.0, icmp_from=icmp_from,
                            failure=f"{type(exc).__name__}: {exc}")
    rate = round(got * 8 / 1000 / seconds, 3) if seconds > 0 and got else None
    return Evidence(ttl, rate, got, round(seconds, 4), icmp_from=icmp_from)


def _download(sock: socket.socket, setup: Setup) -> tuple[int, float]:
    """(body bytes, seconds from the first body byte) of a GET bounded by setup.seconds."""
    sock.settimeout(10)
    with setup.context.wrap_socket(sock, server_hostname=setup.server.host) as tls_sock:
        host = setup.server.host
        tls_sock.sendall(f"GET {setup.path} HTTP/1.1\r\nHost: {host}\r\n"
                         "Connection: close\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            piece = tls_sock.recv(65536)
            if not piece:
                raise ValueError("connection closed before the response head")
            buf += piece
        first = time.monotonic()
        got = len(buf.partition(b"\r\n\r\n")[2])
        deadline = first + setup.seconds
        last = first
        while (remaining := deadline - time.monotonic()) > 0:
            tls_sock.settimeout(remaining)
            try:
                piece = tls_sock.recv(65536)
            except TimeoutError:
                break
            if not piece:
                break
            got += len(piece)
            last = time.monotonic()
        # Complete objects end at their last byte; cut ones when we stopped waiting.
        end = last if time.monotonic() < deadline else deadline
        return got, max(end - first, 1e-6)


def locate(server_url: str, sni: str = "pbs.twimg.com", ca_bundle: Path | None = None,
           seconds: float = 2.0, max_bytes: int = 500_000, max_hops: int = 16) -> Location:
    """Find the throttler's hop; raises LocateError when the experiment cannot run."""
    server = Server.parse(server_url)
    injector = Injector()  # first: without root or scapy, fail before any traffic
    icmp = IcmpWatch()
    try:
        address = _resolve(server.host, server.port)
        hops = traceroute(address, server.port, max_hops=max_hops)
        if not hops or hops[-1].reply != "destination":
            raise LocateError(f"traceroute did not reach {address}:{server.port} within "
                              f"{max_hops} hops; a trigger could reach the server")
        last_router = hops[-1].ttl - 1
        setup = Setup(server, address, f"{server.prefix}/bytes?n={max_bytes}",
                      tls.make_context(ca_bundle), client_hello(sni), seconds, injector, icmp)
        return _search(setup, sni, last_router, hops)
    finally:
        injector.close()
        icmp.close()


def _search(setup: Setup, sni: str, last_router: int, hops: list[Hop]) -> Location:
    baseline = measure_flow(setup, None)
    result = Location(setup.server.url, setup.address, sni, None, None, "none", [], baseline,
                      None, traceroute=hops)
    if last_router < 1:
        result.reasons.append("the server is one hop away: no router to locate")
        return result
    reference = measure_flow(setup, last_router)
    result.reference = reference
    if baseline.rate_kbps is None or reference.rate_kbps is None:
        result.reasons.append("the baseline or the reference download failed")
        return result
    separation = baseline.rate_kbps / max(reference.rate_kbps, 1e-3)
    references = [reference]
    if separation >= SEPARATION_MIN:  # a slowdown: make sure it is not one slow download
        again = measure_flow(setup, last_router)
        references.append(again)
        separation = 0.0 if again.rate_kbps is None else min(
            separation, baseline.rate_kbps / max(again.rate_kbps, 1e-3))
    if separation < SEPARATION_MIN:
        result.reasons.append(f"a trigger up to hop {last_router} did not slow the flow "
                              f"({reference.rate_kbps:.0f} vs {baseline.rate_kbps:.0f} kbit/s)")
        return result
    threshold = math.sqrt(baseline.rate_kbps * reference.rate_kbps)  # between the two levels
    seen: dict[int, list[Evidence]] = {last_router: references}

    def slow(k: int) -> bool:
        """Throttled at TTL k? A failed connection counts as not throttled (and lowers
        the confidence): only a measured slow rate is evidence of the throttler."""
        ev = measure_flow(setup, k)
        ev.throttled = None if ev.rate_kbps is None else ev.rate_kbps < threshold
        seen.setdefault(k, []).append(ev)
        return bool(ev.throttled)

    baseline.throttled = False
    for ev in references:
        ev.throttled = ev.rate_kbps < threshold
    lo, hi = 1, last_router  # invariant: hop hi is throttled; hops below lo are not
    while lo < hi:
        mid = (lo + hi) // 2
        if slow(mid):
            hi = mid
        else:
            lo = mid + 1
    hop = hi
    # Measure both sides of the boundary once more: the confidence rests on agreement.
    confirmed = slow(hop) and (hop == 1 or not slow(hop - 1))
    result.evidence = [ev for k in sorted(seen) for ev in seen[k]]
    # Without a trigger the flow must still be fast now: else everything slowed down
    # after the first trigger (state kept per client or server, or the path itself),
    # and the search only followed that into hop 1.
    after = measure_flow(setup, None)
    after.throttled = None if after.rate_kbps is None else after.rate_kbps < threshold
    result.baseline_after = after
    if after.throttled is not False:
        result.reasons.append(
            "a flow without a trigger was slow too after the search" if after.throttled
            else "the flow without a trigger after the search failed")
        result.reasons.append("the slowdown is not tied to where the trigger expired "
                              "(state kept after a trigger, or the whole path slowed)")
        return result
    result.hop = hop
    result.address = _router(hop, seen, hops)
    result.confidence, result.reasons = _confidence(seen, hop, confirmed, separation)
    result.reasons.append("a flow without a trigger was still fast after the search")
    return result


def _router(hop: int, seen: dict[int, list[Evidence]], hops: list[Hop]) -> str | None:
    """The trigger's own time-exceeded sender at that TTL, else the traceroute's hop."""
    for ev in seen.get(hop, []):
        if ev.icmp_from:
            return ev.icmp_from
    return next((h.address for h in hops if h.ttl == hop), None)


def _confidence(seen: dict[int, list[Evidence]], hop: int, confirmed: bool,
                separation: float) -> tuple[str, list[str]]:
    """high: boundary repeated, monotone, well separated; medium: one of those weak; else low."""
    reasons = [f"baseline/reference rate ratio {separation:.1f}"]
    monotone = all(
        ev.throttled == (k >= hop) for k, evs in seen.items() for ev in evs
        if ev.throttled is not None
    )
    reasons.append("every TTL at or past the hop was slow and every one before it fast"
                   if monotone else "some TTLs disagree with a single boundary")
    reasons.append("the boundary held when measured again" if confirmed
                   else "the boundary moved when measured again")
    failed = sorted({k for k, evs in seen.items() for ev in evs if ev.throttled is None})
    if failed:
        reasons.append(f"connections failed at TTL {', '.join(map(str, failed))}")
        return "low", reasons
    if monotone and confirmed and separation >= SEPARATION_HIGH:
        return "high", reasons
    if monotone and confirmed:
        return "medium", reasons
    return "low", reasons


def _resolve(host: str, port: int) -> str:
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        raise LocateError(f"cannot resolve {host} to an IPv4 address: {exc}") from exc
    return str(infos[0][4][0])


def describe(result: Location) -> str:
    """The human-readable report."""
    lines = [f"server {result.server} ({result.server_address}), trigger SNI {result.trigger_sni}"]
    if result.hop is None:
        lines.append("throttler: not found (" + "; ".join(result.reasons) + ")")
    else:
        lines.append(f"throttler: hop {result.hop}, router {result.address or 'unknown'}, "
                     f"confidence {result.confidence}")
        lines.extend(f"  - {r}" for r in result.reasons)
    lines.append("evidence (one connection each):")
    rows = [("baseline", result.baseline)]
    if result.reference is not None:
        rows.append(("reference", result.reference))
    rows += [("", ev) for ev in result.evidence if ev is not result.reference]
    for label, ev in rows:
        ttl = "none" if ev.ttl is None else str(ev.ttl)
        rate = "-" if ev.rate_kbps is None else f"{ev.rate_kbps:.0f} kbit/s"
        state = {True: "throttled", False: "fast", None: "?"}[ev.throttled]
        extra = f", expired at {ev.icmp_from}" if ev.icmp_from else ""
        fail = f", {ev.failure}" if ev.failure else ""
        lines.append(f"  trigger TTL {ttl:>4} {label:9} {rate:>16} {state}{extra}{fail}")
    lines.append("routers: " + ", ".join(
        f"{h.ttl}={h.address or '*'}" for h in result.traceroute))
    return "\n".join(lines)

