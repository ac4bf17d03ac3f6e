"""What a measurement works with: the run's settings, and its own clock, records and id."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from probe.measure import dns
from probe.measure.clock import Clock
from probe.measure.keys import TestKeys
from probe.measure.transfer import Limits, StopWhen


@dataclass
class Measurement:
    """One measurement under way: its id, its clock (zero when it began) and its records."""

    id: str
    clock: Clock = field(default_factory=Clock)
    keys: TestKeys = field(default_factory=TestKeys)


@dataclass
class MeasureContext:
    """The run-wide settings a single measurement works with (limits shrunk to the budget)."""

    resolvers: list[dns.Resolver]
    ssl_context: ssl.SSLContext
    limits: Limits
    stop_when: StopWhen | None
    allow_nets: list[str]
    dns_timeout: float
    ca_bundle: Path | None
    connect_to: dict[str, str]

    def resolve(self, m: Measurement, host: str, pinned: str | None) -> dict:
        """DNS for `host` into `m.keys.queries`; returns `address` (None: no usable answer),
        the consistency flags and, without an address, the DNS failure."""
        if _is_ip(host):
            return {"address": host.strip("[]"), "dns_consistency": dns.consistency([])}
        queries = m.keys.queries
        queries.extend(
            dns.measure(host, self.resolvers, m.clock, timeout=self.dns_timeout,
                        ca_bundle=self.ca_bundle, allow_nets=self.allow_nets)
        )
        pinned = pinned or self.connect_to.get(host.lower())
        address = pinned or dns.pick_address(queries, self.allow_nets)
        out = {"address": address, "dns_consistency": dns.consistency(queries, self.allow_nets)}
        if address is None:
            out["failure"] = _dns_failure(queries)
        return out


def first_failure(keys: TestKeys) -> str | None:
    """The failure that ended the measurement, in the order the steps happen."""
    for c in keys.tcp_connect:
        if c["status"]["failure"]:
            return c["status"]["failure"]
    for h in keys.tls_handshakes:
        if h.get("failure") and not h.get("no_tls_verify"):
            return h["failure"]
    for t in keys.transfers:
        if t.get("failure"):
            return t["failure"]
    return None


def _dns_failure(queries: list[dict]) -> str:
    """The failure of a lookup that gave no usable address: a bogon answer first (that
    is tampering, whatever else failed), else the A queries' own failure."""
    failures = [q.get("failure") for q in queries if q.get("query_type") == "A"]
    real = [f for f in failures if f]
    if any(q.get("bogons") for q in queries):
        return "dns_bogon_error"
    return real[0] if real else "dns_no_answer"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
