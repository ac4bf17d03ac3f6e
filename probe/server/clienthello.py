"""Find the SNI in the first bytes of a TLS ClientHello, tolerating truncation.

Python's `sni_callback` aborts the handshake when the name is not ASCII (it
decodes it before our code runs). The server promises to accept any name, so
such hellos are spotted here first and served by a context without the callback.
"""

from __future__ import annotations

import struct

_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_SERVER_NAME = 0x0000
_HOST_NAME = 0x00


def server_name(data: bytes) -> bytes | None:
    """Raw SNI host name from a ClientHello's first record, or None if absent or unreadable.

    Only what arrived is parsed; a hello cut before its server_name extension gives None.
    """
    try:
        if data[0] != _HANDSHAKE or data[5] != _CLIENT_HELLO:
            return None
        pos = 5 + 4 + 2 + 32  # record header, handshake header, legacy_version, random
        pos += 1 + data[pos]  # session id
        pos += 2 + struct.unpack_from("!H", data, pos)[0]  # cipher suites
        pos += 1 + data[pos]  # compression methods
        end = pos + 2 + struct.unpack_from("!H", data, pos)[0]
        pos += 2
        while pos + 4 <= min(end, len(data)):
            kind, length = struct.unpack_from("!HH", data, pos)
            pos += 4
            if kind == _SERVER_NAME:
                return _host_name(data[pos:pos + length])
            pos += length
    except (IndexError, struct.error):
        return None
    return None


def _host_name(ext: bytes) -> bytes | None:
    list_end = 2 + struct.unpack_from("!H", ext, 0)[0]
    pos = 2
    while pos + 3 <= min(list_end, len(ext)):
        kind, length = struct.unpack_from("!BH", ext, pos)
        pos += 3
        if kind == _HOST_NAME and pos + length <= len(ext):
            return ext[pos:pos + length]
        pos += length
    return None
