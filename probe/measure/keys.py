"""The `test_keys` of one measurement: where every measuring step appends its records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class TestKeys:
    """OONI-style record lists for one measurement (df-001/002/005/006/008) plus transfers.

    Each step appends plain JSON-able dicts; a DNS query, TCP connect, TLS
    handshake and transfer are built as the types of probe/records.py and filed
    as their `as_dict()`. The shapes are documented in docs/data-format.md.
    `transfers` is ours: one entry per HTTP transfer with its throughput time
    series and TCP_INFO snapshots.
    """

    __test__ = False  # not a pytest test class

    queries: list[dict] = field(default_factory=list)
    tcp_connect: list[dict] = field(default_factory=list)
    tls_handshakes: list[dict] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    network_events: list[dict] = field(default_factory=list)
    transfers: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)
