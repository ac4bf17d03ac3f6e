"""The CSV schemas: every column's name, unit and meaning, and how it is read off a record.

This is the single definition of the public CSV contract; docs/data-format.md
shows the same tables (a test keeps the two in step).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NUMBER_UNITS = frozenset({"count", "s", "ms", "us", "bytes", "segments", "kbit/s", "bit/s"})
_UNITLESS_NUMBERS = frozenset({"port", "status_code"})


@dataclass(frozen=True)
class Column:
    name: str
    unit: str
    meaning: str
    get: Callable[[dict], Any]

    @property
    def kind(self) -> str:
        """What a cell may hold: `number`, `bool` or `text`; the readers of result folders
        from other machines check every cell against it."""
        if self.unit == "bool":
            return "bool"
        if self.unit in NUMBER_UNITS or self.name in _UNITLESS_NUMBERS:
            return "number"
        return "text"


def _key(name: str) -> Callable[[dict], Any]:
    return lambda row: row.get(name)


def _joined(name: str) -> Callable[[dict], Any]:
    return lambda row: ";".join(str(v) for v in (row.get(name) or []))


def _tcpinfo_median(field: str, scale: float = 1.0) -> Callable[[dict], Any]:
    def get(row: dict) -> Any:
        values = [s[field] for s in row.get("tcp_info") or [] if s.get(field) is not None]
        return round(statistics.median(values) * scale, 3) if values else None

    return get


def _tcpinfo_delta(field: str) -> Callable[[dict], Any]:
    def get(row: dict) -> Any:
        values = [s[field] for s in row.get("tcp_info") or [] if s.get(field) is not None]
        return values[-1] - values[0] if values else None

    return get


def _answers(row: dict) -> str:
    out = []
    for a in row.get("answers") or []:
        out.append(str(a.get("ipv4") or a.get("ipv6") or a.get("hostname") or ""))
    return ";".join(out)


def _min_ttl(row: dict) -> Any:
    ttls = [a["ttl"] for a in row.get("answers") or [] if a.get("ttl") is not None]
    return min(ttls) if ttls else None


def _leaf(field: str, join: bool = False) -> Callable[[dict], Any]:
    def get(row: dict) -> Any:
        certs = row.get("certificates") or []
        if not certs:
            return None
        value = certs[0].get(field)
        return ";".join(value) if join and value is not None else value

    return get


# Columns that every per-measurement file starts with; read off the envelope.
CONTEXT = [
    Column("run_id", "", "identifier of the run (also the result folder's name)", _key("run_id")),
    Column("measurement_id", "", "identifier of the measurement (one target at one repetition)",
           _key("measurement_id")),
    Column("measurement_start_time", "UTC, YYYY-MM-DD HH:MM:SS",
           "when the measurement began (OONI's envelope format)",
           _key("measurement_start_time")),
    Column("repetition", "count", "repetition index, from 0", _key("repetition")),
    Column("target", "", "target name from the targets file", _key("target")),
    Column("family", "", "target family: twitter, control, or another group", _key("family")),
    Column("kind", "", "target kind: image, video, script or page; bytes for the experiments' "
           "transfers from the measurement server", _key("kind")),
    Column("experiment", "", "what the measurement tests: target (a listed object), "
           "or a differential experiment (sni, split, upload)", _key("experiment")),
]

DNS = CONTEXT + [
    Column("hostname", "", "name queried", _key("hostname")),
    Column("query_type", "", "A or AAAA", _key("query_type")),
    Column("engine", "", "system (resolv.conf), udp (--resolver) or doh (--doh)", _key("engine")),
    Column("resolver", "", "resolver IP address, or DoH URL", _key("resolver_address")),
    Column("rcode", "", "DNS response code (NOERROR, NXDOMAIN, ...); empty without a response",
           _key("rcode")),
    Column("failure", "", "OONI df-007 failure string; empty on success", _key("failure")),
    Column("answers", "", "answers in order, ';'-separated (addresses and CNAME targets)",
           _answers),
    Column("ttl_min", "s", "smallest TTL among the answers", _min_ttl),
    Column("cname_chain", "", "CNAME chain followed, ';'-separated", _joined("cname_chain")),
    Column("latency_ms", "ms", "time from query sent to answer", _key("latency_ms")),
    Column("bogons", "", "answers that are private, loopback or reserved addresses, ';'-separated",
           _joined("bogons")),
    Column("inconsistent", "bool", "resolvers disagreed on this name's addresses in this "
           "measurement", _key("inconsistent")),
]

TCP = CONTEXT + [
    Column("address", "", "IP address connected to", _key("ip")),
    Column("port", "", "TCP port", _key("port")),
    Column("success", "bool", "the connection was established",
           lambda r: (r.get("status") or {}).get("success")),
    Column("failure", "", "OONI df-007 failure string; empty on success",
           lambda r: (r.get("status") or {}).get("failure")),
    Column("latency_ms", "ms", "time to establish the connection (SYN to SYN-ACK)",
           _key("latency_ms")),
]

TLS = CONTEXT + [
    Column("address", "", "ip:port the handshake was made with", _key("address")),
    Column("server_name", "", "SNI sent; empty when none was sent", _key("server_name")),
    Column("tls_version", "", "negotiated version, e.g. TLSv1.3", _key("tls_version")),
    Column("cipher_suite", "", "negotiated cipher suite", _key("cipher_suite")),
    Column("alpn", "", "negotiated ALPN protocol", _key("negotiated_protocol")),
    Column("handshake_ms", "ms", "ClientHello to handshake complete", _key("handshake_ms")),
    Column("verified", "bool", "chain and name verified against the trusted CAs", _key("verified")),
    Column("failure", "", "OONI df-007 failure string (e.g. ssl_unknown_authority); empty on "
           "success", _key("failure")),
    Column("verify_error", "", "the verifier's own message when verification failed",
           _key("verify_error")),
    Column("cert_subject", "", "leaf certificate subject", _leaf("subject")),
    Column("cert_issuer", "", "leaf certificate issuer", _leaf("issuer")),
    Column("cert_sans", "", "leaf subject alternative names, ';'-separated", _leaf("sans", True)),
    Column("cert_not_after", "UTC, ISO 8601", "leaf certificate expiry", _leaf("not_after")),
    Column("cert_sha256", "hex", "SHA-256 fingerprint of the leaf certificate (DER)",
           _leaf("sha256")),
    Column("chain_length", "count", "certificates presented",
           lambda r: len(r.get("certificates") or []) or None),
    Column("chain_from_unverified_retry", "bool", "the chain was captured by a second, "
           "unverified handshake after verification failed (evidence only)",
           lambda r: bool(r.get("chain_from_unverified_retry"))),
]

TRANSFERS = CONTEXT + [
    Column("transfer_id", "", "identifier of the transfer (joins samples.csv, tcpinfo.csv)",
           _key("transfer_id")),
    Column("url", "", "URL requested", _key("url")),
    Column("host", "", "URL host", _key("host")),
    Column("sni", "", "SNI sent; empty when none was sent (or for plain HTTP)", _key("sni")),
    Column("address", "", "server IP address used", _key("address")),
    Column("port", "", "server TCP port", _key("port")),
    Column("direction", "", "down (server to probe) or up (probe to server)", _key("direction")),
    Column("method", "", "HTTP method", _key("method")),
    Column("status_code", "", "HTTP status; empty without a response", _key("status_code")),
    Column("bytes", "bytes", "payload bytes moved (body received, or body sent for up)",
           _key("bytes")),
    Column("wire_bytes", "bytes", "bytes the kernel counted on the connection during the "
           "transfer (TCP_INFO), headers and TLS included", _key("wire_bytes")),
    Column("duration_s", "s", "request sent to last byte (or to the stop)", _key("duration_s")),
    Column("ttfb_ms", "ms", "request sent to first response byte", _key("ttfb_ms")),
    Column("goodput_kbps", "kbit/s", "body bytes that arrived * 8 / 1000 / duration_s: the "
           "user's view. For a transfer our own clock cut (stable, or max_seconds after the "
           "body began) the bytes are the kernel's count (wire_bytes) less the response "
           "header and TLS record framing, so the TLS record in flight (up to 16 KiB, a "
           "second at 128 kbit/s) counts; `bytes` is what was decrypted and read",
           _key("goodput_kbps")),
    Column("stopped_by", "", "complete, max_bytes, max_seconds, stable (rate estimate settled), "
           "timeout (stalled after progress), or error; an object cut to what was left of "
           "the data budget says max_bytes", _key("stopped_by")),
    Column("failure", "", "OONI df-007 failure string; empty when the transfer completed or "
           "stopped at a bound (a valid throughput measurement)", _key("failure")),
    Column("connection_reused", "bool", "the transfer reused the previous transfer's connection",
           _key("connection_reused")),
    Column("rtt_ms", "ms", "median smoothed RTT over the transfer (TCP_INFO)",
           _tcpinfo_median("rtt_us", 0.001)),
    Column("retransmits", "segments", "retransmitted segments during the transfer (TCP_INFO "
           "total_retrans delta)", _tcpinfo_delta("total_retrans")),
    Column("samples", "count", "throughput samples recorded (rows in samples.csv)",
           lambda r: len(r.get("samples") or [])),
]

SAMPLES = [
    Column("run_id", "", "identifier of the run", _key("run_id")),
    Column("transfer_id", "", "transfer the sample belongs to", _key("transfer_id")),
    Column("t_ms", "ms", "time since the request was sent", _key("t_ms")),
    Column("bytes", "bytes", "cumulative payload bytes at that time", _key("bytes")),
]

TCPINFO = [
    Column("run_id", "", "identifier of the run", _key("run_id")),
    Column("transfer_id", "", "transfer the snapshot belongs to", _key("transfer_id")),
    Column("t_ms", "ms", "time since the request was sent", _key("t_ms")),
    Column("rtt_us", "us", "smoothed round-trip time (tcpi_rtt)", _key("rtt_us")),
    Column("rttvar_us", "us", "round-trip time variation (tcpi_rttvar)", _key("rttvar_us")),
    Column("min_rtt_us", "us", "minimum RTT seen (tcpi_min_rtt)", _key("min_rtt_us")),
    Column("retransmits", "count", "current consecutive retransmissions (tcpi_retransmits)",
           _key("retransmits")),
    Column("total_retrans", "segments", "retransmitted segments so far (tcpi_total_retrans)",
           _key("total_retrans")),
    Column("lost", "segments", "segments currently considered lost (tcpi_lost)", _key("lost")),
    Column("delivery_rate_bps", "bit/s", "kernel's delivery-rate estimate (tcpi_delivery_rate)",
           _key("delivery_rate_bps")),
    Column("bytes_received", "bytes", "bytes received on the connection (tcpi_bytes_received)",
           _key("bytes_received")),
    Column("bytes_acked", "bytes", "bytes sent and acknowledged (tcpi_bytes_acked)",
           _key("bytes_acked")),
    Column("snd_cwnd", "segments", "congestion window (tcpi_snd_cwnd)", _key("snd_cwnd")),
    Column("wire_bytes", "bytes", "bytes on the connection since the request was sent: "
           "received (down) or acknowledged (up), TLS and HTTP framing included; the fine-"
           "grained series that the early stop and the analysis judge rates on",
           _key("wire_bytes")),
]

FILES: dict[str, list[Column]] = {
    "dns.csv": DNS,
    "tcp.csv": TCP,
    "tls.csv": TLS,
    "transfers.csv": TRANSFERS,
    "samples.csv": SAMPLES,
    "tcpinfo.csv": TCPINFO,
}
