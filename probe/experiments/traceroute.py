"""A TCP traceroute toward the measurement server's own port, without raw sockets.

Each probe is a connect() whose SYN carries IP TTL k: the router where it
expires answers ICMP time-exceeded, which the kernel queues on the socket
(IP_RECVERR) with the router's address; a SYN-ACK means the server itself is
k hops away. TCP to the same port follows the path the measured flow takes
(UDP could be filtered or balanced differently).
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import time
from dataclasses import asdict, dataclass

IP_RECVERR = 11
ICMP_TIME_EXCEEDED, ICMP6_TIME_EXCEEDED = 11, 3
SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 = 2, 3


@dataclass
class Hop:
    """One TTL: who answered (None: nobody within the timeout) and how."""

    ttl: int
    address: str | None
    reply: str  # time-exceeded, destination (SYN-ACK or RST from the server), unreachable, none
    rtt_ms: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def probe(address: str, port: int, ttl: int, timeout: float) -> Hop:
    """Send one SYN with IP TTL `ttl`; report what came back."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        if family == socket.AF_INET:
            s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        else:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVERR, 1)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
        # A RST, not a FIN, when the server answers: no half-open connection left behind.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.setblocking(False)
        started = time.monotonic()
        code = s.connect_ex((address, port))
        if code not in (0, errno.EINPROGRESS):
            return Hop(ttl, None, "none", None)
        _, writable, failed = select.select([], [s], [s], timeout)
        rtt = round((time.monotonic() - started) * 1000, 3)
        origin = _error_origin(s)
        if origin is not None:  # an ICMP error: a router (or the server's network) answered
            sender, kind = origin
            return Hop(ttl, sender, kind, rtt)
        if not writable and not failed:
            return Hop(ttl, None, "none", None)  # a silent hop: nothing within the timeout
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err in (0, errno.ECONNREFUSED):  # SYN-ACK or RST: the server itself
            return Hop(ttl, address, "destination", rtt)
        return Hop(ttl, None, "none", None)


def _error_origin(s: socket.socket) -> tuple[str, str] | None:
    """(ICMP sender, "time-exceeded" or "unreachable") from the socket's error queue, if an
    ICMP or ICMPv6 error is there."""
    try:
        _, ancillary, _, _ = s.recvmsg(512, 512, socket.MSG_ERRQUEUE)
    except OSError:
        return None
    for _level, _kind, data in ancillary:
        # struct sock_extended_err: errno (4), origin (1), type (1), code (1), pad (1),
        # info (4), data (4); then the offender's sockaddr.
        if len(data) < 24:
            continue
        _, origin, icmp_type = struct.unpack_from("=IBB", data)
        if origin not in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
            continue
        exceeded = ICMP_TIME_EXCEEDED if origin == SO_EE_ORIGIN_ICMP else ICMP6_TIME_EXCEEDED
        kind = "time-exceeded" if icmp_type == exceeded else "unreachable"
        family = struct.unpack_from("=H", data, 16)[0]
        if family == socket.AF_INET:
            return socket.inet_ntop(socket.AF_INET, data[20:24]), kind
        if family == socket.AF_INET6 and len(data) >= 40:
            return socket.inet_ntop(socket.AF_INET6, data[24:40]), kind
    return None


def traceroute(address: str, port: int = 443, max_hops: int = 16,
               timeout: float = 1.0) -> list[Hop]:
    """Probe TTL 1, 2, ... until the server answers (or `max_hops`)."""
    hops = []
    for ttl in range(1, max_hops + 1):
        hop = probe(address, port, ttl, timeout)
        hops.append(hop)
        if hop.reply in ("destination", "unreachable"):
            break
    return hops
