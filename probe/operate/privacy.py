"""Keep the volunteer's own addresses (and home folder) out of every result, as OONI does.

The probe never records its local addresses on purpose, but an address can
still arrive inside something it records (a DNS answer, a header, an error
text). So every measurement is scrubbed before it is written: each address of
this machine's interfaces (loopback aside), in any of its spellings, is
replaced by `[scrubbed]`; the home folder in a path (which names the user)
becomes `~`. The runner asks for the addresses again before each measurement,
so one that appears during a long run (a new IPv6 temporary address, another
Wi-Fi) is scrubbed from then on. Log lines are scrubbed the same way, and dated
in UTC: local time next to the UTC run id would tell the volunteer's time zone.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import logging
import re
import socket
import struct
from pathlib import Path

SCRUBBED = "[scrubbed]"
_SIOCGIFADDR = 0x8915
# A run of hex digits and colons with at least two colons: a candidate IPv6 address
# (with an optional dotted IPv4 tail), never part of a longer such run.
_IPV6_TOKEN = re.compile(
    r"(?<![0-9A-Fa-f:])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]+(?:\.[0-9]+){0,3}"
    r"(?![0-9A-Fa-f:])"
)


def local_addresses() -> set[str]:
    """Every non-loopback IPv4/IPv6 address configured on this host's interfaces."""
    found: set[str] = set()
    for text in _primary_ipv4() | _local_ipv4_from_fib() | _ipv6():
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:  # a line of /proc we did not understand
            continue
        if not (ip.is_loopback or ip.is_unspecified):
            found.add(text)
    return found


def _primary_ipv4() -> set[str]:
    """Each interface's primary IPv4 address (SIOCGIFADDR)."""
    found: set[str] = set()
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return found
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in names:
            try:
                raw = fcntl.ioctl(s.fileno(), _SIOCGIFADDR,
                                  struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            found.add(socket.inet_ntoa(raw[20:24]))
    return found


def _local_ipv4_from_fib(path: Path = Path("/proc/net/fib_trie")) -> set[str]:
    """All local IPv4 addresses, secondaries included: the kernel's `/32 host LOCAL`
    routes (SIOCGIFADDR sees only the first address of an interface)."""
    found: set[str] = set()
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return found
    last = None
    for line in lines:
        text = line.strip()
        if text.startswith("|-- "):
            last = text[4:]
        elif last and text.startswith("/32 host LOCAL"):
            found.add(last)
    return found


def _ipv6(path: Path = Path("/proc/net/if_inet6")) -> set[str]:
    found: set[str] = set()
    try:
        for line in path.read_text().splitlines():
            found.add(str(ipaddress.IPv6Address(bytes.fromhex(line.split()[0]))))
    except (OSError, ValueError, IndexError):
        pass
    return found


class Scrubber:
    """Replaces given addresses wherever they occur as a whole address in a record,
    and `home` (a folder path) by `~`."""

    def __init__(self, addresses: set[str], home: str | None = None) -> None:
        home = home if home and home.strip("/") else None
        # A path that starts with the home folder, not the same letters inside a URL.
        self._home = (re.compile(rf"(?<![\w./:~-]){re.escape(home.rstrip('/'))}"
                                 rf"(?=/|$|[^\w.-])") if home else None)
        self.addresses: set[str] = set()
        self._v6: set[ipaddress.IPv6Address] = set()
        self._v4: re.Pattern[str] | None = None
        self.add(addresses)

    def add(self, addresses: set[str]) -> None:
        """Scrub these addresses too (from now on); called before every measurement,
        so nothing is rebuilt unless an address is new."""
        if set(addresses) <= self.addresses:
            return
        self.addresses |= set(addresses)
        v4 = sorted((a for a in self.addresses if ":" not in a), key=len, reverse=True)
        self._v6 = {ipaddress.IPv6Address(a) for a in self.addresses if ":" in a}
        parts = [rf"(?<![0-9.]){re.escape(a)}(?![0-9])(?!\.[0-9])" for a in v4]
        self._v4 = re.compile("|".join(parts)) if parts else None

    def _v6_token(self, m: re.Match[str]) -> str:
        token = m.group(0)
        try:
            return SCRUBBED if ipaddress.IPv6Address(token) in self._v6 else token
        except ValueError:
            return token

    def text(self, value: str) -> str:
        if self._v6 and ":" in value:
            value = _IPV6_TOKEN.sub(self._v6_token, value)
        if self._v4 is not None:
            value = self._v4.sub(SCRUBBED, value)
        if self._home is not None:
            value = self._home.sub("~", value)
        return value

    def record(self, obj: object) -> object:
        """A copy of a JSON-like value with every string (and key) scrubbed."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {self.text(k) if isinstance(k, str) else k: self.record(v)
                    for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.record(v) for v in obj]
        return obj


class LogFormatter(logging.Formatter):
    """`TIME LEVEL message` with TIME in UTC (ISO 8601, ms, `Z`), the whole line scrubbed:
    a log file travels with the results, and says nothing they may not say."""

    def __init__(self, scrubber: Scrubber) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")
        self.scrubber = scrubber

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = dt.datetime.fromtimestamp(record.created, dt.UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def format(self, record: logging.LogRecord) -> str:
        return self.scrubber.text(super().format(record))
