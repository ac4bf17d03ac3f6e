"""The typed records of a measurement's steps, and the CSV columns read off them.

A DNS query, a TCP connect, a TLS handshake and a transfer are each built as
one of these types and filed in `TestKeys` as the JSON-able dict `as_dict`
gives: the fields' order is the JSON key order, and a field left ABSENT is no
key at all (keys only some records carry, e.g. a UDP query's `attempts`, an
upload's `bytes_written`), which is not the same as a null value.

A field that the CSVs show declares its column(s) in its own metadata, so a
new column is declared once, next to its field; `CSV_ORDER` places it among
the type's columns (the CSVs' order is not the JSON's). This module sits
below both the measuring steps that build the records and the results that
read the columns, and imports neither.
"""

from __future__ import annotations

import enum
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import dns.rcode

NUMBER_UNITS = frozenset({"count", "s", "ms", "us", "bytes", "segments", "kbit/s", "bit/s"})
_UNITLESS_NUMBERS = frozenset({"port", "status_code"})

Cell = Callable[[dict], Any]  # reads one CSV cell off a record's dict


class Absent(enum.Enum):
    """The type of ABSENT: a record without this key, unlike a key whose value is null."""

    ABSENT = "absent"


ABSENT = Absent.ABSENT


@dataclass(frozen=True)
class Column:
    """One CSV column: its name, unit and meaning (the public contract), and its cell."""

    name: str
    unit: str
    meaning: str
    get: Cell

    @property
    def kind(self) -> str:
        """What a cell may hold: `number`, `bool` or `text`; the readers of result folders
        from other machines check every cell against it."""
        if self.unit == "bool":
            return "bool"
        if self.unit in NUMBER_UNITS or self.name in _UNITLESS_NUMBERS:
            return "number"
        return "text"


def value(key: str) -> Cell:
    """The cell is the record's value under `key`."""
    return lambda row: row.get(key)


@dataclass(frozen=True)
class _Spec:
    """A column a field declares; `read` turns the field's key into the cell's reader."""

    unit: str
    meaning: str
    name: str | None = None  # None: the field's name
    read: Callable[[str], Cell] = value


def column(unit: str, meaning: str, *, name: str | None = None,
           read: Callable[[str], Cell] = value) -> _Spec:
    """A CSV column read off the field it is declared on (see `columns`)."""
    return _Spec(unit, meaning, name, read)


def columns(*specs: _Spec, **field_options: Any) -> Any:
    """A record field shown in the CSVs as `specs` (one field may give several columns);
    `field_options` are dataclasses.field's (a default)."""
    return field(metadata={"csv": specs}, **field_options)


def optional() -> Any:
    """A record field that is no key unless set."""
    return field(default=ABSENT)


class Record:
    """What the record types share: the dict they are filed as, and their CSV columns."""

    CSV_ORDER: ClassVar[tuple[str, ...]] = ()

    def as_dict(self) -> dict[str, Any]:
        """The JSON-able record, keys in field order, ABSENT fields left out (shallow: the
        lists and dicts inside are the record's own)."""
        out = {}
        for f in fields(self):  # type: ignore[arg-type]  # every Record is a dataclass
            item = getattr(self, f.name)
            if item is not ABSENT:
                out[f.name] = item
        return out

    @classmethod
    def csv_columns(cls) -> list[Column]:
        """The columns the fields declare, in `CSV_ORDER`; a column declared but not placed
        (or placed but not declared) is a bug, raised as the schema is built."""
        found: dict[str, Column] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            for spec in f.metadata.get("csv", ()):
                name = spec.name or f.name
                found[name] = Column(name, spec.unit, spec.meaning, spec.read(f.name))
        if sorted(found) != sorted(cls.CSV_ORDER):
            raise TypeError(f"{cls.__name__}: CSV_ORDER {cls.CSV_ORDER} does not place "
                            f"exactly the declared columns {sorted(found)}")
        return [found[name] for name in cls.CSV_ORDER]


# Readers of the cells a field gives, from its key. They read the dicts of a JSONL, which may
# come from another machine: a missing or empty value is an empty cell, never an error.


def _joined(key: str) -> Cell:
    return lambda row: ";".join(str(v) for v in (row.get(key) or []))


def _answer_texts(key: str) -> Cell:
    def get(row: dict) -> Any:
        answers = row.get(key) or []
        return ";".join(str(a.get("ipv4") or a.get("ipv6") or a.get("hostname") or "")
                        for a in answers)

    return get


def _min_ttl(key: str) -> Cell:
    def get(row: dict) -> Any:
        ttls = [a["ttl"] for a in row.get(key) or [] if a.get("ttl") is not None]
        return min(ttls) if ttls else None

    return get


def _as_chosen(key: str) -> Cell:
    """The resolver as the probe chose it (system, udp, doh): `x_engine` since results
    format 2, where `engine` is OONI's (udp, doh); before, `engine` itself."""
    return lambda row: row.get("x_engine") or row.get(key)


def resolver_host(row: dict) -> Any:
    """A query's resolver IP (or DoH URL) without the `:port` OONI's `resolver_address`
    carries since results format 2 (`[v6]:53` loses its brackets too)."""
    address, port = row.get("resolver_address"), row.get("resolver_port")
    if not isinstance(address, str) or "://" in address:
        return address
    if port is not None and address.endswith(f":{port}") and (
            address.startswith("[") or address.count(":") == 1):
        address = address[: -len(f":{port}")]
    return address.removeprefix("[").removesuffix("]")


def rcode_text(value: Any) -> Any:
    """A response code as its name (NOERROR, NXDOMAIN): OONI's records hold the number,
    results of format 1 the name."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return dns.rcode.to_text(dns.rcode.Rcode.make(value))
        except (ValueError, dns.rcode.UnknownRcode):
            return str(value)
    return value


def _status(part: str) -> Callable[[str], Cell]:
    return lambda key: lambda row: (row.get(key) or {}).get(part)


def _leaf(part: str, join: bool = False) -> Callable[[str], Cell]:
    def read(key: str) -> Cell:
        def get(row: dict) -> Any:
            certs = row.get(key) or []
            if not certs:
                return None
            found = certs[0].get(part)
            return ";".join(found) if join and found is not None else found

        return get

    return read


def _count(key: str) -> Cell:
    return lambda row: len(row.get(key) or [])


def _count_or_none(key: str) -> Cell:
    return lambda row: len(row.get(key) or []) or None


def _transport(key: str) -> Cell:
    """tcp unless the record says otherwise: records before QUIC transfers have no key."""
    return lambda row: row.get(key) or "tcp"


_TRANSPORT = "tcp, or quic (HTTP/3 over QUIC on UDP)"


def _flag(key: str) -> Cell:
    return lambda row: bool(row.get(key))


def _snapshots(row: dict, key: str, part: str) -> list[Any]:
    return [s[part] for s in row.get(key) or [] if s.get(part) is not None]


def _tcpinfo_median(part: str, scale: float = 1.0) -> Callable[[str], Cell]:
    def read(key: str) -> Cell:
        def get(row: dict) -> Any:
            values = _snapshots(row, key, part)
            return round(statistics.median(values) * scale, 3) if values else None

        return get

    return read


def _tcpinfo_delta(part: str) -> Callable[[str], Cell]:
    def read(key: str) -> Cell:
        def get(row: dict) -> Any:
            values = _snapshots(row, key, part)
            return values[-1] - values[0] if values else None

        return get

    return read


_FAILURE = "OONI df-007 failure string; empty on success"


@dataclass(kw_only=True)
class DnsQuery(Record):
    """One question to one resolver (OONI df-002 + ours)."""

    CSV_ORDER = ("hostname", "query_type", "engine", "resolver", "rcode", "failure", "answers",
                 "ttl_min", "cname_chain", "latency_ms", "bogons")

    engine: str = columns(column("", "system (resolv.conf), udp (--resolver) or doh (--doh)",
                                 read=_as_chosen))  # OONI's: udp or doh
    x_engine: str | Absent = optional()  # ours: system, udp or doh (how it was chosen)
    resolver_address: str = columns(  # OONI's: ip:port ([ip]:port), or the DoH URL
        column("", "resolver IP address, or DoH URL", name="resolver",
               read=lambda _key: resolver_host))
    resolver_port: int
    hostname: str = columns(column("", "name queried"))
    query_type: str = columns(column("", "A or AAAA"))
    transport: str  # udp, tcp after truncation, https
    answers: list[dict] = columns(
        column("", "answers in order, ';'-separated (addresses and CNAME targets)",
            read=_answer_texts),
        column("s", "smallest TTL among the answers", name="ttl_min", read=_min_ttl),
        default_factory=list,
    )
    cname_chain: list[str] = columns(
        column("", "CNAME chain followed, ';'-separated", read=_joined), default_factory=list)
    bogons: list[str] = columns(
        column("", "answers that are private, loopback or reserved addresses, ';'-separated",
            read=_joined),
        default_factory=list,
    )
    rcode: int | None = columns(  # OONI's: the number (0 = NOERROR)
        column("", "DNS response code (NOERROR, NXDOMAIN, ...); empty without a response",
               read=lambda key: lambda row: rcode_text(row.get(key))),
        default=None)
    failure: str | None = columns(column("", _FAILURE), default=None)
    t0: float
    attempts: int | Absent = optional()  # UDP: how many times the query was sent
    t: float = 0.0  # set as the query ends
    latency_ms: float = columns(column("ms", "time from query sent to answer"), default=0.0)
    transaction_id: int | Absent = optional()  # position in the call, not the DNS id


@dataclass(kw_only=True)
class TcpConnect(Record):
    """One TCP connect (OONI df-005 + ours: `latency_ms`)."""

    CSV_ORDER = ("address", "port", "success", "failure", "latency_ms")

    ip: str = columns(column("", "IP address connected to", name="address"))
    port: int = columns(column("", "TCP port"))
    status: dict = columns(  # success, failure, blocked
        column("bool", "the connection was established", name="success", read=_status("success")),
        column("", _FAILURE, name="failure", read=_status("failure")),
    )
    t0: float
    t: float
    latency_ms: float = columns(column("ms", "time to establish the connection (SYN to SYN-ACK)"))
    transfer_id: str | None | Absent = optional()  # the fetch it was opened for


@dataclass(kw_only=True)
class TlsHandshake(Record):
    """One TLS handshake (OONI df-006 + ours), with the chain as evidence."""

    CSV_ORDER = ("address", "transport", "server_name", "tls_version", "cipher_suite", "alpn",
                 "handshake_ms", "verified", "failure", "verify_error", "cert_subject",
                 "cert_issuer", "cert_sans", "cert_not_after", "cert_sha256", "chain_length",
                 "chain_from_unverified_retry")

    address: str = columns(column("", "ip:port the handshake was made with"))
    server_name: str = columns(column("", "SNI sent; empty when none was sent"))
    sni_sent: bool
    hostname_checked: bool
    t0: float
    t: float
    failure: str | None = columns(
        column("", "OONI df-007 failure string (e.g. ssl_unknown_authority); empty on success"),
        default=None)
    tls_version: str | None = columns(column("", "negotiated version, e.g. TLSv1.3"), default=None)
    cipher_suite: str | None = columns(
        column("", "negotiated cipher suite, IANA's name (e.g. TLS_AES_128_GCM_SHA256)"),
        default=None)
    negotiated_protocol: str | None = columns(column("", "negotiated ALPN protocol", name="alpn"),
                                              default=None)
    peer_certificates: list[dict] = field(default_factory=list)  # presented, base64 DER
    no_tls_verify: bool = False
    handshake_ms: float | None = columns(column("ms", "ClientHello to handshake complete"),
                                         default=None)
    verified: bool = columns(column("bool", "chain and name verified against the trusted CAs"),
                             default=False)
    verify_error: str | None = columns(
        column("", "the verifier's own message when verification failed"), default=None)
    certificates: list[dict] = columns(
        column("", "leaf certificate subject", name="cert_subject", read=_leaf("subject")),
        column("", "leaf certificate issuer", name="cert_issuer", read=_leaf("issuer")),
        column("", "leaf subject alternative names, ';'-separated", name="cert_sans",
            read=_leaf("sans", join=True)),
        column("UTC, ISO 8601", "leaf certificate expiry", name="cert_not_after",
            read=_leaf("not_after")),
        column("hex", "SHA-256 fingerprint of the leaf certificate (DER)", name="cert_sha256",
            read=_leaf("sha256")),
        column("count", "certificates presented", name="chain_length", read=_count_or_none),
        default_factory=list,
    )
    chain_from_unverified_retry: bool = columns(
        column("bool", "the chain was captured by a second, unverified handshake after "
            "verification failed (evidence only)", read=_flag),
        default=False)
    evidence_failure: str | Absent = optional()  # the unverified retry failed
    clienthello_shape: str | Absent = optional()  # experiments: how the ClientHello was sent
    checked_name: str | Absent = optional()  # experiments: the measurement server's host
    name_matched: str | None | Absent = optional()  # experiments: server, sni or null
    transfer_id: str | None | Absent = optional()  # the fetch it was made for
    network: str | Absent = optional()  # OONI's: udp for a QUIC handshake (TCP's: no key)
    transport: str | Absent = columns(  # ours: quic (TCP's: no key)
        column("", _TRANSPORT, read=_transport), default=ABSENT)


@dataclass(kw_only=True)
class Transfer(Record):
    """One HTTP transfer, down (Session.fetch) or up (the upload experiment): its totals,
    its bounds' verdict (`stopped_by`) and its time series."""

    CSV_ORDER = ("transfer_id", "url", "host", "sni", "address", "port", "transport",
                 "direction", "method",
                 "status_code", "bytes", "wire_bytes", "duration_s", "ttfb_ms", "goodput_kbps",
                 "stopped_by", "failure", "connection_reused", "rtt_ms", "retransmits",
                 "samples", "alt_svc_h3")

    transfer_id: str = columns(
        column("", "identifier of the transfer (joins samples.csv, tcpinfo.csv)"))
    role: str  # object, playlist, init, segment, progressive, experiment
    url: str = columns(column("", "URL requested"))
    host: str = columns(column("", "URL host"))
    sni: str | None = columns(column("", "SNI sent; empty when none was sent (or for plain HTTP)"))
    address: str | None = columns(column("", "server IP address used"))
    port: int = columns(column("", "server port (TCP; UDP for quic)"))
    direction: str = columns(column("", "down (server to probe) or up (probe to server)"))
    method: str = columns(column("", "HTTP method"))
    status_code: int | None = columns(column("", "HTTP status; empty without a response"))
    content_type: str | None
    bytes: int = columns(
        column("bytes", "payload bytes moved (body received, or body sent for up)"))
    bytes_written: int | Absent = optional()  # up: what the probe handed to the kernel
    wire_bytes: int | None = columns(
        column("bytes", "bytes the kernel counted on the connection during the transfer "
            "(TCP_INFO), headers and TLS included; over quic the UDP payloads received"))
    t0: float
    t: float
    duration_s: float | None = columns(column("s", "request sent to last byte (or to the stop)"))
    ttfb_ms: float | None = columns(column("ms", "request sent to first response byte"))
    last_byte_ms: float | None
    goodput_kbps: float | None = columns(
        column("kbit/s", "body bytes that arrived * 8 / 1000 / duration_s: the user's view. For a "
            "transfer our own clock cut (stable, or max_seconds after the body began) the "
            "bytes are the kernel's count (wire_bytes) less the response header and TLS "
            "record framing, so the TLS record in flight (up to 16 KiB, a second at 128 "
            "kbit/s) counts; `bytes` is what was decrypted and read"))
    failure: str | None = columns(
        column("", "OONI df-007 failure string; empty when the transfer completed or stopped at "
            "a bound (a valid throughput measurement)"))
    stopped_by: str = columns(
        column("", "complete, max_bytes, max_seconds, stable (rate estimate settled), timeout "
            "(stalled after progress), or error; an object cut to what was left of the data "
            "budget says max_bytes"))
    samples: list = columns(  # [t_ms, cumulative bytes]
        column("count", "throughput samples recorded (rows in samples.csv)", read=_count))
    samples_count: str | Absent = optional()  # up: what `samples` count (bytes_acked)
    tcp_info: list[dict] = columns(
        column("ms", "median smoothed RTT over the transfer (TCP_INFO)", name="rtt_ms",
            read=_tcpinfo_median("rtt_us", 0.001)),
        column("segments", "retransmitted segments during the transfer (TCP_INFO total_retrans "
            "delta)", name="retransmits", read=_tcpinfo_delta("total_retrans")),
    )
    connection_reused: bool = columns(
        column("bool", "the transfer reused the previous transfer's connection"))
    server_upload: dict | None | Absent = optional()  # up: the server's own answer
    transport: str | Absent = columns(  # quic; TCP's have no key
        column("", _TRANSPORT, read=_transport), default=ABSENT)
    alt_svc_h3: bool | None | Absent = columns(  # a download over TCP: its answer's Alt-Svc
        column("bool", "the server offered HTTP/3 in its answer (an Alt-Svc header naming h3); "
               "empty without an answer, over QUIC, for uploads and in older files: a server "
               "that does not offer it need not answer QUIC at all"), default=ABSENT)


def network_event(operation: str, t: float, *, t0: float | None = None, proto: str = "tcp",
                  **fields: Any) -> dict[str, Any]:
    """One OONI df-008 network event: `t0` when the operation began (`t` for an instant),
    `t` when it ended, over `proto` (tcp, or udp for QUIC); `fields` are its address,
    failure, num_bytes and our `transfer_id`."""
    return {"operation": operation, **fields, "proto": proto,
            "t0": t if t0 is None else t0, "t": t}
