"""Where to cut a ClientHello so that no single TCP segment or TLS record shows it whole.

A throttler that matches the SNI per packet, without reassembling TCP, misses
a name that straddles two segments; one that expects the whole ClientHello in
the first packet misses a hello longer than a segment. These pure functions
find the name in the bytes OpenSSL wrote and say where to cut them.
"""

from __future__ import annotations

import struct

RECORD_HEADER = 5  # content type (1), version (2), length (2)
HANDSHAKE = 0x16
CLIENT_HELLO = 0x01
SERVER_NAME_EXT = 0x0000
ALPN_NAME_MAX = 255  # one ALPN protocol name is at most 255 bytes (RFC 7301)


def sni_span(hello: bytes) -> tuple[int, int] | None:
    """(offset, length) of the host name inside a ClientHello record; None without SNI.

    Raises ValueError when the bytes are not one TLS handshake record holding a
    ClientHello (then the caller has nothing sensible to cut).
    """
    if len(hello) < RECORD_HEADER + 4 or hello[0] != HANDSHAKE or hello[5] != CLIENT_HELLO:
        raise ValueError("not a TLS record holding a ClientHello")
    record_end = RECORD_HEADER + struct.unpack_from("!H", hello, 3)[0]
    pos = RECORD_HEADER + 4 + 2 + 32  # handshake header, client version, random
    pos += 1 + _u8(hello, pos)  # session id
    pos += 2 + _u16(hello, pos)  # cipher suites
    pos += 1 + _u8(hello, pos)  # compression methods
    ext_end = pos + 2 + _u16(hello, pos)
    pos += 2
    if ext_end > record_end or record_end > len(hello):
        raise ValueError("ClientHello extends past its record")
    while pos + 4 <= ext_end:
        kind, length = struct.unpack_from("!HH", hello, pos)
        body = pos + 4
        if kind == SERVER_NAME_EXT:
            # server_name_list length (2), name type (1), name length (2), name
            if length < 5 or hello[body + 2] != 0:
                raise ValueError("malformed server_name extension")
            name_len = _u16(hello, body + 3)
            if body + 5 + name_len > body + length:
                raise ValueError("server name longer than its extension")
            return body + 5, name_len
        pos = body + length
    return None


def split_in_name(hello: bytes) -> list[bytes]:
    """Two pieces cut in the middle of the server name (as circumvention tools do)."""
    span = sni_span(hello)
    if span is None:
        raise ValueError("the ClientHello carries no server name to split")
    offset, length = span
    cut = offset + max(1, length // 2)
    return [hello[:cut], hello[cut:]]


def split_after_header(hello: bytes) -> list[bytes]:
    """Two pieces: the 5-byte record header alone, then the handshake message."""
    if len(hello) <= RECORD_HEADER or hello[0] != HANDSHAKE:
        raise ValueError("not a TLS handshake record")
    return [hello[:RECORD_HEADER], hello[RECORD_HEADER:]]


def padding_alpn(extra_bytes: int, keep: tuple[str, ...] = ("http/1.1",)) -> list[str]:
    """An ALPN list that grows the ClientHello by at least `extra_bytes`, real names last.

    Python's ssl cannot set the padding extension (RFC 7685), but it takes any
    ALPN names: unknown ones are ignored by a server, which picks from `keep`.
    Each name costs its length plus one byte on the wire.
    """
    names: list[str] = []
    grown = 0
    while grown < extra_bytes:
        size = min(ALPN_NAME_MAX, max(1, extra_bytes - grown - 1))
        stem = f"pad{len(names)}-"
        names.append((stem + "x" * size)[:max(size, len(stem))])
        grown += len(names[-1]) + 1
    return names + list(keep)


def _u8(data: bytes, pos: int) -> int:
    if pos >= len(data):
        raise ValueError("ClientHello truncated")
    return data[pos]


def _u16(data: bytes, pos: int) -> int:
    if pos + 2 > len(data):
        raise ValueError("ClientHello truncated")
    return struct.unpack_from("!H", data, pos)[0]
