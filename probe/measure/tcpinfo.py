"""Linux `TCP_INFO` snapshots: what the kernel knows about a flow (RTT, losses, rates).

A policer drops packets without inflating RTT while a shaper delays them, so the
kernel's per-socket counters are the evidence that tells them apart (Flach et
al. 2016). The struct grows with kernel versions; we parse only the fields the
running kernel returned, so old kernels yield fewer keys instead of garbage.
"""

from __future__ import annotations

import socket
import struct

# struct tcp_info from include/uapi/linux/tcp.h, in order. Every field is
# naturally aligned in the C layout, so packing them back to back reproduces it.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("state", "B"), ("ca_state", "B"), ("retransmits", "B"), ("probes", "B"),
    ("backoff", "B"), ("options", "B"), ("wscale", "B"), ("app_limited_flags", "B"),
    ("rto", "I"), ("ato", "I"), ("snd_mss", "I"), ("rcv_mss", "I"),
    ("unacked", "I"), ("sacked", "I"), ("lost", "I"), ("retrans", "I"), ("fackets", "I"),
    ("last_data_sent", "I"), ("last_ack_sent", "I"), ("last_data_recv", "I"),
    ("last_ack_recv", "I"),
    ("pmtu", "I"), ("rcv_ssthresh", "I"), ("rtt", "I"), ("rttvar", "I"),
    ("snd_ssthresh", "I"), ("snd_cwnd", "I"), ("advmss", "I"), ("reordering", "I"),
    ("rcv_rtt", "I"), ("rcv_space", "I"), ("total_retrans", "I"),
    ("pacing_rate", "Q"), ("max_pacing_rate", "Q"), ("bytes_acked", "Q"),
    ("bytes_received", "Q"), ("segs_out", "I"), ("segs_in", "I"),
    ("notsent_bytes", "I"), ("min_rtt", "I"), ("data_segs_in", "I"), ("data_segs_out", "I"),
    ("delivery_rate", "Q"), ("busy_time", "Q"), ("rwnd_limited", "Q"), ("sndbuf_limited", "Q"),
    ("delivered", "I"), ("delivered_ce", "I"), ("bytes_sent", "Q"), ("bytes_retrans", "Q"),
    ("dsack_dups", "I"), ("reord_seen", "I"), ("rcv_ooopack", "I"), ("snd_wnd", "I"),
    ("rcv_wnd", "I"), ("rehash", "I"), ("total_rto", "H"), ("total_rto_recoveries", "H"),
    ("total_rto_time", "I"),
)

_LAYOUT: tuple[tuple[str, struct.Struct, int], ...] = tuple(
    (name, struct.Struct("=" + fmt), sum(struct.calcsize(f) for _, f in _FIELDS[:i]))
    for i, (name, fmt) in enumerate(_FIELDS)
)
_MAX_LEN = 256
_UNLIMITED = 2**64 - 1  # the kernel reports "no pacing limit" as ~0ULL
TCP_INFO = getattr(socket, "TCP_INFO", 11)


def parse(raw: bytes) -> dict[str, int]:
    """Decode a `struct tcp_info` of any length into {field: value} for the fields present."""
    fields: dict[str, int] = {}
    for name, fmt, offset in _LAYOUT:
        if offset + fmt.size > len(raw):
            break
        fields[name] = fmt.unpack_from(raw, offset)[0]
    return fields


def read(sock: socket.socket) -> dict[str, int] | None:
    """Raw TCP_INFO fields of a connected socket, or None if the socket is gone."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, _MAX_LEN)
    except (OSError, ValueError):
        return None
    return parse(raw) or None


def summary(fields: dict[str, int]) -> dict[str, int | None]:
    """The subset a transfer record keeps, with units in the names (rates in bit/s)."""

    def rate_bps(name: str) -> int | None:
        value = fields.get(name)
        if value is None or value == _UNLIMITED:
            return None
        return value * 8

    return {
        "rtt_us": fields.get("rtt"),
        "rttvar_us": fields.get("rttvar"),
        "min_rtt_us": fields.get("min_rtt"),
        "retransmits": fields.get("retransmits"),
        "total_retrans": fields.get("total_retrans"),
        "lost": fields.get("lost"),
        "delivery_rate_bps": rate_bps("delivery_rate"),
        "bytes_received": fields.get("bytes_received"),
        "bytes_acked": fields.get("bytes_acked"),
        "snd_cwnd": fields.get("snd_cwnd"),
        "pacing_rate_bps": rate_bps("pacing_rate"),
        "busy_time_us": fields.get("busy_time"),
    }
