"""TCP_INFO parsing: layout against the kernel header, truncation, and a real socket."""

from __future__ import annotations

import socket
import struct

import pytest

from probe.measure import tcpinfo

pytestmark = pytest.mark.timeout(30)

# Offsets from include/uapi/linux/tcp.h, written out independently of the module's table.
KNOWN_OFFSETS = {
    "retransmits": (2, "B"), "lost": (32, "I"), "rtt": (68, "I"), "rttvar": (72, "I"),
    "snd_cwnd": (80, "I"), "total_retrans": (100, "I"), "pacing_rate": (104, "Q"),
    "bytes_acked": (120, "Q"), "bytes_received": (128, "Q"), "min_rtt": (148, "I"),
    "delivery_rate": (160, "Q"), "busy_time": (168, "Q"), "bytes_retrans": (208, "Q"),
    "snd_wnd": (228, "I"),
}


def _raw_with_markers(length: int) -> bytes:
    raw = bytearray(length)
    for i, (offset, fmt) in enumerate(KNOWN_OFFSETS.values()):
        if offset + struct.calcsize(fmt) <= length:
            struct.pack_into("=" + fmt, raw, offset, 100 + i)
    return bytes(raw)


def test_fields_decode_at_kernel_offsets() -> None:
    fields = tcpinfo.parse(_raw_with_markers(256))
    for i, name in enumerate(KNOWN_OFFSETS):
        assert fields[name] == 100 + i, name


def test_short_struct_yields_only_present_fields() -> None:
    # A 104-byte struct (kernel ~2.6) ends right after total_retrans.
    fields = tcpinfo.parse(_raw_with_markers(104))
    assert fields["total_retrans"] == 100 + list(KNOWN_OFFSETS).index("total_retrans")
    assert "pacing_rate" not in fields and "bytes_received" not in fields
    assert tcpinfo.parse(b"") == {}


def test_summary_units_and_unlimited_pacing() -> None:
    fields = {"delivery_rate": 1000, "pacing_rate": 2**64 - 1, "rtt": 5000, "busy_time": 7}
    summary = tcpinfo.summary(fields)
    assert summary["delivery_rate_bps"] == 8000  # bytes/s -> bit/s
    assert summary["pacing_rate_bps"] is None  # ~0 means "no limit"
    assert summary["rtt_us"] == 5000 and summary["busy_time_us"] == 7
    assert summary["lost"] is None  # absent stays absent


def test_real_socket_counts_received_bytes() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        with client, server:
            server.sendall(b"x" * 50_000)
            got = 0
            while got < 50_000:
                got += len(client.recv(65536))
            fields = tcpinfo.read(client)
            assert fields is not None
            assert fields["state"] == 1  # TCP_ESTABLISHED
            assert fields["bytes_received"] == 50_000
            assert fields["rtt"] > 0
            assert tcpinfo.read(server)["bytes_acked"] >= 50_000
    assert tcpinfo.read(client) is None  # closed socket: no snapshot, no exception
