"""The CSV schemas: every column's name, unit and meaning, and how it is read off a record.

This is the public CSV contract. The columns of dns.csv, tcp.csv, tls.csv and
transfers.csv that come from a record's fields are declared on those fields
(probe/records.py), so a new field and its column are added in one place;
here are the columns that are not a record's: the envelope's, the DNS
consistency flag, the samples and the TCP_INFO snapshots. docs/data-format.md
shows the same tables (a test keeps the two in step).
"""

from __future__ import annotations

from probe.records import Column, DnsQuery, TcpConnect, TlsHandshake, Transfer, value

__all__ = ["CONTEXT", "FILES", "Column"]

# Columns that every per-measurement file starts with; read off the envelope.
CONTEXT = [
    Column("run_id", "", "identifier of the run (also the result folder's name)", value("run_id")),
    Column("measurement_id", "", "identifier of the measurement (one target at one repetition)",
           value("measurement_id")),
    Column("measurement_start_time", "UTC, YYYY-MM-DD HH:MM:SS",
           "when the measurement began (OONI's envelope format)",
           value("measurement_start_time")),
    Column("repetition", "count", "repetition index, from 0", value("repetition")),
    Column("target", "", "target name from the targets file", value("target")),
    Column("family", "", "target family: a service's (twitter, youtube, facebook), control, "
           "or another group", value("family")),
    Column("kind", "", "target kind: image, video, script or page; bytes for the experiments' "
           "transfers from the measurement server", value("kind")),
    Column("experiment", "", "what the measurement tests: target (a listed object), "
           "target-h3 (the same over HTTP/3), or a differential experiment (sni, split, "
           "upload, sni-h3, transport)", value("experiment")),
]

# The record files: the columns the record types declare (probe/records.py), after CONTEXT.
DNS = CONTEXT + DnsQuery.csv_columns() + [
    Column("inconsistent", "bool", "resolvers disagreed on this name's addresses in this "
           "measurement", value("inconsistent")),
]

TCP = CONTEXT + TcpConnect.csv_columns()

TLS = CONTEXT + TlsHandshake.csv_columns()

TRANSFERS = CONTEXT + Transfer.csv_columns()

SAMPLES = [
    Column("run_id", "", "identifier of the run", value("run_id")),
    Column("transfer_id", "", "transfer the sample belongs to", value("transfer_id")),
    Column("t_ms", "ms", "time since the request was sent", value("t_ms")),
    Column("bytes", "bytes", "cumulative payload bytes at that time", value("bytes")),
]

TCPINFO = [
    Column("run_id", "", "identifier of the run", value("run_id")),
    Column("transfer_id", "", "transfer the snapshot belongs to", value("transfer_id")),
    Column("t_ms", "ms", "time since the request was sent", value("t_ms")),
    Column("rtt_us", "us", "smoothed round-trip time (tcpi_rtt)", value("rtt_us")),
    Column("rttvar_us", "us", "round-trip time variation (tcpi_rttvar)", value("rttvar_us")),
    Column("min_rtt_us", "us", "minimum RTT seen (tcpi_min_rtt)", value("min_rtt_us")),
    Column("retransmits", "count", "current consecutive retransmissions (tcpi_retransmits)",
           value("retransmits")),
    Column("total_retrans", "segments", "retransmitted segments so far (tcpi_total_retrans)",
           value("total_retrans")),
    Column("lost", "segments", "segments currently considered lost (tcpi_lost)", value("lost")),
    Column("delivery_rate_bps", "bit/s", "kernel's delivery-rate estimate (tcpi_delivery_rate)",
           value("delivery_rate_bps")),
    Column("bytes_received", "bytes", "bytes received on the connection (tcpi_bytes_received)",
           value("bytes_received")),
    Column("bytes_acked", "bytes", "bytes sent and acknowledged (tcpi_bytes_acked)",
           value("bytes_acked")),
    Column("snd_cwnd", "segments", "congestion window (tcpi_snd_cwnd)", value("snd_cwnd")),
    Column("wire_bytes", "bytes", "bytes on the connection since the request was sent: "
           "received (down) or acknowledged (up), TLS and HTTP framing included; the fine-"
           "grained series that the early stop and the analysis judge rates on",
           value("wire_bytes")),
]

FILES: dict[str, list[Column]] = {
    "dns.csv": DNS,
    "tcp.csv": TCP,
    "tls.csv": TLS,
    "transfers.csv": TRANSFERS,
    "samples.csv": SAMPLES,
    "tcpinfo.csv": TCPINFO,
}
