"""Keep the volunteer's own addresses out of every result, as OONI does.

The probe never records its local addresses on purpose, but an address can
still arrive inside something it records (a DNS answer, a header, an error
text). So every measurement is scrubbed before it is written: each address of
this machine's interfaces (loopback aside) is replaced by `[scrubbed]`.
"""

from __future__ import annotations

import fcntl
import ipaddress
import re
import socket
import struct
from pathlib import Path

SCRUBBED = "[scrubbed]"
_SIOCGIFADDR = 0x8915


def local_addresses() -> set[str]:
    """Every non-loopback IPv4/IPv6 address configured on this host's interfaces."""
    found: set[str] = set()
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        names = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in names:
            try:
                raw = fcntl.ioctl(s.fileno(), _SIOCGIFADDR,
                                  struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            found.add(socket.inet_ntoa(raw[20:24]))
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            hexaddr = line.split()[0]
            found.add(str(ipaddress.IPv6Address(bytes.fromhex(hexaddr))))
    except (OSError, ValueError, IndexError):
        pass
    return {a for a in found if not ipaddress.ip_address(a).is_loopback
            and not ipaddress.ip_address(a).is_unspecified}


class Scrubber:
    """Replaces given addresses wherever they occur as a whole address in a record."""

    def __init__(self, addresses: set[str]) -> None:
        self.addresses = sorted(addresses, key=len, reverse=True)
        parts = []
        for a in self.addresses:
            if ":" in a:  # IPv6: not inside a longer hex/colon run
                parts.append(rf"(?<![0-9A-Fa-f:]){re.escape(a)}(?![0-9A-Fa-f:])")
            else:
                parts.append(rf"(?<![0-9.]){re.escape(a)}(?![0-9])(?!\.[0-9])")
        self._pattern = re.compile("|".join(parts), re.IGNORECASE) if parts else None

    def text(self, value: str) -> str:
        return self._pattern.sub(SCRUBBED, value) if self._pattern else value

    def record(self, obj: object) -> object:
        """A copy of a JSON-like value with every string (and key) scrubbed."""
        if self._pattern is None:
            return obj
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {self.text(k) if isinstance(k, str) else k: self.record(v)
                    for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.record(v) for v in obj]
        return obj
