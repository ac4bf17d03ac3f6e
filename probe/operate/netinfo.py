"""Which network (ASN, country) a run measured, from a database the user supplies.

The probe asks no online service who it is: that would reveal the volunteer to
one more party. Given `--asn-db` (the iptoasn.com TSV format: range start,
range end, AS number, country code, AS name; plain or .gz), it looks up this
machine's own addresses locally and records only the AS and the country.
"""

from __future__ import annotations

import bisect
import gzip
import ipaddress
import zlib
from dataclasses import dataclass
from pathlib import Path


class AsnDbError(Exception):
    """The database file cannot be read; the message names file:line."""


@dataclass(frozen=True)
class Network:
    asn: int
    cc: str
    as_name: str

    def as_dict(self) -> dict:
        return {"asn": f"AS{self.asn}", "cc": self.cc, "as_name": self.as_name,
                "source": "local database (--asn-db)"}


class AsnDb:
    """Sorted address ranges, searched with bisect."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._starts: list[int] = []
        self._rows: list[tuple[int, Network]] = []
        opener = gzip.open if self.path.suffix == ".gz" else open
        ranges = []
        try:
            with opener(self.path, "rt", encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip() or line.startswith("#"):
                        continue
                    ranges.append(self._parse(line, lineno))
        except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:
            raise AsnDbError(f"{self.path}: cannot read: {exc}") from exc
        ranges.sort(key=lambda r: r[0])
        self._starts = [r[0] for r in ranges]
        self._rows = [(r[1], r[2]) for r in ranges]

    def _parse(self, line: str, lineno: int) -> tuple[int, int, Network]:
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 4:
            raise AsnDbError(f"{self.path}:{lineno}: expected start, end, ASN, country, name "
                             "separated by tabs")
        try:
            start, end = ipaddress.ip_address(parts[0]), ipaddress.ip_address(parts[1])
            asn = int(parts[2])
        except ValueError as exc:
            raise AsnDbError(f"{self.path}:{lineno}: {exc}") from None
        if start.version != end.version or int(end) < int(start):
            raise AsnDbError(f"{self.path}:{lineno}: bad range {parts[0]} - {parts[1]}")
        key = (start.version << 128) | int(start)
        return key, (start.version << 128) | int(end), Network(
            asn, parts[3].strip(), parts[4].strip() if len(parts) > 4 else "")

    def lookup(self, address: str) -> Network | None:
        ip = ipaddress.ip_address(address)
        key = (ip.version << 128) | int(ip)
        i = bisect.bisect_right(self._starts, key) - 1
        if i < 0:
            return None
        end, network = self._rows[i]
        return network if key <= end and network.asn != 0 else None


def own_network(db: AsnDb, addresses: set[str]) -> Network | None:
    """The network of the first of this machine's addresses the database knows."""
    for address in sorted(addresses):
        found = db.lookup(address)
        if found:
            return found
    return None
