"""DNS measurement: what each resolver says a name is (OONI df-002 `queries`).

Throttling is attributed to the SNI only if the address we connect to is a real
one, so every answer is asked of each resolver (system, a plain UDP resolver,
DNS-over-HTTPS), kept as a record, and checked for bogons (poisoned answers
such as 10.10.34.34) and disagreement between resolvers.

We speak DNS ourselves with dnspython instead of calling getaddrinfo so that
each resolver, rcode, TTL and CNAME is visible and every query is bounded by
our own timeout. DoH goes through httpx (not dns.query.https) because that
keeps the cause of a connect failure, which dnspython's transport discards.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import httpx

from probe.records import ABSENT, DnsQuery, resolver_host

from .clock import Clock
from .failures import (
    DNS_NO_ANSWER,
    DNS_NXDOMAIN,
    DNS_REFUSED,
    DNS_SERVFAIL,
    GENERIC_TIMEOUT,
    classify,
)

EDNS_PAYLOAD = 1232  # DNS flag day 2020: avoids IP fragmentation
MAX_DOH_BODY = 65535  # the largest DNS message
MAX_PARALLEL = 8  # queries in flight at once; bounds threads on small machines
MAXNS = 3  # glibc reads at most three nameservers from resolv.conf
UDP_RETRY_S = 1.0  # first wait for a UDP answer before the query is sent again (doubling)

_RCODE_FAILURES = {
    "NOERROR": None,
    "NXDOMAIN": DNS_NXDOMAIN,
    "REFUSED": DNS_REFUSED,
    "SERVFAIL": DNS_SERVFAIL,
}
MISBEHAVING = "dns_server_misbehaving"  # other rcodes, malformed or mismatched replies
NO_ANSWER = DNS_NO_ANSWER
HTTP_FAILED = "http_request_failed"  # the DoH server answered with a non-2xx status


@dataclass(frozen=True)
class Resolver:
    """One resolver to ask: its engine says how it was chosen and how it is spoken to."""

    engine: str  # "system" (from resolv.conf) | "udp" (--resolver IP[:port]) | "doh" (--doh URL)
    address: str  # IP for system/udp, URL for doh
    port: int = 53

    @property
    def key(self) -> str:
        """A stable label, e.g. `udp:1.2.3.4`, `system:[::1]:5353`, `doh:https://...`."""
        if self.engine == "doh":
            return f"doh:{self.address}"
        host = f"[{self.address}]" if ":" in self.address else self.address
        if self.port == 53:
            return f"{self.engine}:{self.address}"
        return f"{self.engine}:{host}:{self.port}"


def system_resolvers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[Resolver]:
    """The nameservers the system uses, in order; [] if none are configured.

    Like glibc, only `nameserver` lines count and only the first three; an
    IPv6 zone suffix (`fe80::1%eth0`) is kept because the kernel needs it.
    """
    try:
        text = Path(resolv_conf).read_text()
    except OSError:
        return []
    found: list[Resolver] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        try:
            ipaddress.ip_address(fields[1].split("%", 1)[0])
        except ValueError:
            continue  # glibc skips what it cannot parse
        found.append(Resolver("system", fields[1]))
    return found[:MAXNS]


def parse_resolver(text: str) -> Resolver:
    """Parse a --resolver/--doh value: `IP`, `IP:PORT`, `[v6]:PORT`, bare v6, or https URL."""
    text = text.strip()
    if not text:
        raise ValueError("empty resolver: expected IP, IP:PORT, [IPv6]:PORT or https:// URL")
    if "://" in text:
        url = urlsplit(text)
        if url.scheme != "https":
            raise ValueError(f"DoH resolver must be an https:// URL, got {text!r}")
        try:
            port = url.port or 443
        except ValueError as exc:
            raise ValueError(f"bad port in DoH URL {text!r}") from exc
        if not url.hostname:
            raise ValueError(f"no host in DoH URL {text!r}")
        return Resolver("doh", text, port)
    host, port = text, 53
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad resolver {text!r}: expected [IPv6]:PORT")
        if rest:
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, _, rest = text.partition(":")
        port = _port(rest, text)
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise ValueError(
            f"bad resolver {text!r}: {host!r} is not an IP address "
            "(use IP, IP:PORT, [IPv6]:PORT or an https:// DoH URL)"
        ) from exc
    return Resolver("udp", host, port)


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port {text!r} in resolver {whole!r}: expected 1-65535")
    return int(text)


def is_bogon(ip: str, allow_nets: Sequence[str] = ()) -> bool:
    """True if `ip` is not a routable Internet address (private, loopback, TEST-NET...).

    `allow_nets` exempts prefixes: the lab serves its targets from documentation
    prefixes, which would otherwise all be bogons. ValueError if `ip` is not an IP.
    """
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if any(addr in ipaddress.ip_network(net, strict=False) for net in allow_nets):
        return False
    return not addr.is_global or addr.is_multicast


def measure(
    hostname: str,
    resolvers: Sequence[Resolver],
    clock: Clock,
    *,
    timeout: float = 5.0,
    qtypes: Sequence[str] = ("A", "AAAA"),
    ca_bundle: Path | None = None,
    allow_nets: Sequence[str] = (),
) -> list[dict]:
    """Ask every resolver for every qtype; one df-002 record each, in resolver x qtype order.

    Queries run in parallel, so the whole call takes about one `timeout`
    (a truncated UDP answer retried over TCP shares its query's timeout; DoH
    applies it to each of connect, TLS, write and read). Never raises for
    network errors: they become the record's `failure`.
    """
    jobs = [(r, q) for r in resolvers for q in qtypes]
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=min(len(jobs), MAX_PARALLEL)) as pool:
        futures = [
            pool.submit(_query, hostname, r, q, clock, timeout, ca_bundle, allow_nets)
            for r, q in jobs
        ]
        records = [f.result() for f in futures]
    for number, record in enumerate(records, start=1):
        record.transaction_id = number
    return [record.as_dict() for record in records]


def _query(
    hostname: str,
    resolver: Resolver,
    qtype: str,
    clock: Clock,
    timeout: float,
    ca_bundle: Path | None,
    allow_nets: Sequence[str],
) -> DnsQuery:
    record = DnsQuery(
        engine="doh" if resolver.engine == "doh" else "udp",  # OONI's: "system" is getaddrinfo
        x_engine=resolver.engine,
        resolver_address=_address_of(resolver),
        resolver_port=_port_of(resolver),
        hostname=hostname,
        query_type=qtype,
        transport="https" if resolver.engine == "doh" else "udp",
        t0=clock.now(),
    )
    started = time.monotonic()
    try:
        query = dns.message.make_query(hostname, qtype, use_edns=0, payload=EDNS_PAYLOAD)
    except Exception as exc:  # a name that cannot be asked (label > 63 octets, bad qtype)
        record.failure = classify(exc)
        record.t = clock.now()
        record.latency_ms = 0.0
        return record
    try:
        if resolver.engine == "doh":
            response = _doh(query, resolver.address, timeout, ca_bundle)
        else:
            response = _udp_then_tcp(query, resolver, timeout, started, record)
    except Exception as exc:  # any network fault is a result, never a crash
        record.failure = _failure(exc)
    else:
        _describe(response, qtype, record, allow_nets)
    record.t = clock.now()
    record.latency_ms = round((time.monotonic() - started) * 1000, 3)
    return record


def _address_of(resolver: Resolver) -> str:
    """OONI's `resolver_address`: `ip:port` (`[ip]:port` for IPv6), or the DoH URL."""
    if resolver.engine == "doh":
        return resolver.address
    host = f"[{resolver.address}]" if ":" in resolver.address else resolver.address
    return f"{host}:{resolver.port}"


def _resolver_of(query: dict) -> Resolver:
    """The resolver a query record was asked of (results of format 1 too)."""
    return Resolver(query.get("x_engine") or query["engine"], resolver_host(query),
                    query["resolver_port"])


def _port_of(resolver: Resolver) -> int:
    """A DoH URL carries its own port; `Resolver.port` is only meaningful for DNS over UDP."""
    if resolver.engine == "doh":
        try:
            return urlsplit(resolver.address).port or 443
        except ValueError:
            return 443
    return resolver.port


def _udp_then_tcp(
    query: dns.message.Message, resolver: Resolver, timeout: float, started: float,
    record: DnsQuery,
) -> dns.message.Message:
    """UDP on a connected socket (so ICMP port-unreachable reads as connection_refused),
    the query sent again after 1 s, then 2 s, ... within `timeout` as stub resolvers do
    (a lost datagram is loss, not tampering; a late answer to any copy counts: same id);
    TCP with the time left if the answer comes back truncated."""
    address = resolver.address
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    wait = UDP_RETRY_S
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(_sockaddr(family, address, resolver.port))
        while True:
            record.attempts = (0 if record.attempts is ABSENT else record.attempts) + 1
            remaining = timeout - (time.monotonic() - started)
            try:
                response = dns.query.udp(query, address, timeout=min(wait, remaining),
                                         port=resolver.port, sock=sock)
                break
            except dns.exception.Timeout:
                if timeout - (time.monotonic() - started) <= 0.01:
                    raise
                wait *= 2
    if response.flags & dns.flags.TC:
        record.transport = "tcp"
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            raise dns.exception.Timeout
        response = dns.query.tcp(query, address, timeout=remaining, port=resolver.port)
    return response


def _sockaddr(family: int, address: str, port: int) -> tuple:
    """getaddrinfo resolves an IPv6 zone suffix (`%eth0`) to its scope id."""
    infos = socket.getaddrinfo(address, port, family, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST)
    return infos[0][4]


def _doh(
    query: dns.message.Message, url: str, timeout: float, ca_bundle: Path | None
) -> dns.message.Message:
    """RFC 8484 POST; verification is always on, against `ca_bundle` if given."""
    context = (
        ssl.create_default_context(cafile=str(ca_bundle))
        if ca_bundle
        else ssl.create_default_context()
    )
    wire = query.to_wire()
    headers = {"content-type": "application/dns-message", "accept": "application/dns-message"}
    # httpx bounds each phase and read; the whole exchange gets a deadline too, so a
    # server that drips its answer a byte at a time cannot hold the query for long.
    deadline = time.monotonic() + 2 * timeout
    with httpx.Client(verify=context, timeout=timeout, trust_env=False) as client:
        with client.stream("POST", url, content=wire, headers=headers) as reply:
            if not 200 <= reply.status_code < 300:
                raise _HttpStatus(reply.status_code)
            body = b""
            for chunk in reply.iter_bytes():
                body += chunk
                if len(body) > MAX_DOH_BODY:
                    raise dns.exception.FormError("DoH body larger than a DNS message")
                if time.monotonic() > deadline:
                    raise dns.exception.Timeout("DoH answer slower than its deadline")
    response = dns.message.from_wire(body)
    if not query.is_response(response):
        raise dns.query.BadResponse("DoH reply does not match the query")
    return response


class _HttpStatus(Exception):
    """A DoH server's non-2xx status."""


def _failure(exc: BaseException) -> str:
    if isinstance(exc, _HttpStatus):
        return HTTP_FAILED
    if isinstance(exc, dns.exception.Timeout):
        return GENERIC_TIMEOUT
    if isinstance(exc, dns.exception.DNSException):
        return MISBEHAVING
    return classify(exc)


def _describe(
    response: dns.message.Message, qtype: str, record: DnsQuery, allow_nets: Sequence[str]
) -> None:
    """Fill answers, rcode, CNAME chain, bogons and the df-007 failure from a response."""
    record.rcode = int(response.rcode())
    rcode = dns.rcode.to_text(response.rcode())
    wanted = dns.rdatatype.from_text(qtype)
    found = False
    chain = _cname_chain(response)
    # Only class IN records of the question name or its CNAME chain answer the question
    # (a hostile resolver may add others; a CH-class A record does not even hold an IP).
    owners = ({_text(response.question[0].name).lower()} | {c.lower() for c in chain}
              if response.question else set())
    for rrset in response.answer:
        if rrset.rdclass != dns.rdataclass.IN or _text(rrset.name).lower() not in owners:
            continue
        for rdata in rrset:
            if rrset.rdtype == dns.rdatatype.A:
                entry = {"answer_type": "A", "ipv4": rdata.address}
            elif rrset.rdtype == dns.rdatatype.AAAA:
                entry = {"answer_type": "AAAA", "ipv6": rdata.address}
            elif rrset.rdtype == dns.rdatatype.CNAME:
                entry = {"answer_type": "CNAME", "hostname": _text(rdata.target)}
            else:
                continue
            entry["ttl"] = rrset.ttl
            record.answers.append(entry)
        found = found or rrset.rdtype == wanted
    record.cname_chain = chain
    record.bogons = [ip for ip in _ips(record.answers) if is_bogon(ip, allow_nets)]
    if rcode not in _RCODE_FAILURES:
        record.failure = MISBEHAVING
    elif rcode != "NOERROR":
        record.failure = _RCODE_FAILURES[rcode]
    elif not found:
        record.failure = NO_ANSWER


def _cname_chain(response: dns.message.Message) -> list[str]:
    """The CNAME targets followed from the question name, in order (loops cut)."""
    if not response.question:
        return []
    targets = {
        rrset.name: rrset[0].target
        for rrset in response.answer
        if rrset.rdtype == dns.rdatatype.CNAME and rrset.rdclass == dns.rdataclass.IN
    }
    chain: list[str] = []
    name = response.question[0].name
    while name in targets and len(chain) < len(targets):
        name = targets[name]
        chain.append(_text(name))
    return chain


def _ips(answers: list[dict]) -> list[str]:
    """The A and AAAA addresses among a query's answers, in answer order."""
    return [a.get("ipv4") or a["ipv6"] for a in answers if a["answer_type"] != "CNAME"]


def _text(name: dns.name.Name) -> str:
    return name.to_text().rstrip(".")


def consistency(queries: list[dict], allow_nets: Sequence[str] = ()) -> dict:
    """Bogons among all answers, and whether resolvers that replied disagree.

    Resolvers are compared per query type on what they replied: the set of
    addresses, or the failure when there were none. Queries without a reply
    (timeouts, refused connections) are left out: silence is not an answer.
    Different CDN edges can make honest resolvers disagree, so `inconsistent`
    is a flag to look at together with `bogons`, not a verdict.
    """
    bogons: list[str] = []
    by_resolver: dict[str, list[str]] = {}
    outcomes: dict[str, dict[str, object]] = {}
    for q in queries:
        key = _resolver_of(q).key
        ips = _ips(q["answers"])
        listed = by_resolver.setdefault(key, [])
        listed.extend(ip for ip in ips if ip not in listed)
        bogons.extend(ip for ip in ips if is_bogon(ip, allow_nets) and ip not in bogons)
        if q.get("rcode") is not None:
            outcome = frozenset(ips) if ips else q["failure"]
            outcomes.setdefault(q["query_type"], {})[key] = outcome
    inconsistent = any(len(set(per.values())) > 1 for per in outcomes.values())
    return {"bogons": bogons, "inconsistent": inconsistent, "answers_by_resolver": by_resolver}


def pick_address(queries: list[dict], allow_nets: Sequence[str] = ()) -> str | None:
    """The IPv4 to connect to: what the system resolver says unless it is a bogon.

    The system resolver comes first because that is what the volunteer's
    browser would use; another resolver's answer is the fallback.
    """
    system = [q for q in queries if _resolver_of(q).engine == "system"]
    for q in system + queries:
        for answer in q["answers"]:
            if answer["answer_type"] == "A" and not is_bogon(answer["ipv4"], allow_nets):
                return answer["ipv4"]
    return None
