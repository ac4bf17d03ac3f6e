"""The typed records: their dicts (keys, order, absent keys) and the CSV columns they declare."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from probe.records import (
    ABSENT,
    DnsQuery,
    Record,
    TcpConnect,
    TlsHandshake,
    Transfer,
    column,
    columns,
)
from probe.results.schema import FILES


def _dns() -> DnsQuery:
    return DnsQuery(engine="udp", resolver_address="192.0.2.53", resolver_port=53,
                    hostname="pbs.twimg.com", query_type="A", transport="udp", t0=0.5)


def _transfer(**extra: object) -> Transfer:
    return Transfer(
        transfer_id="m-1", role="object", url="https://pbs.twimg.com/x.jpg",
        host="pbs.twimg.com", sni="pbs.twimg.com", address="192.0.2.7", port=443,
        direction="down", method="GET", status_code=200, content_type="image/jpeg",
        bytes=1000, wire_bytes=1200, t0=0.1, t=0.9, duration_s=0.5, ttfb_ms=20.0,
        last_byte_ms=480.0, goodput_kbps=16.0, failure=None, stopped_by="complete",
        samples=[[0.0, 0], [480.0, 1000]], tcp_info=[{"t_ms": 0.0, "rtt_us": 900}],
        connection_reused=False, **extra,
    )


RECORDS = [
    _dns(),
    TcpConnect(ip="192.0.2.7", port=443, t0=0.1, t=0.2, latency_ms=1.5,
               status={"success": True, "failure": None, "blocked": None}, transfer_id=None),
    TlsHandshake(address="192.0.2.7:443", server_name="pbs.twimg.com", sni_sent=True,
                 hostname_checked=True, t0=0.2, t=0.3, name_matched=None),
    _transfer(),
    _transfer(bytes_written=1000, samples_count="bytes_acked", server_upload=None),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_a_record_survives_its_json(record: Record) -> None:
    """What a record files is what reads back into it: keys in field order, values as set."""
    filed = record.as_dict()
    back = json.loads(json.dumps(filed))
    assert list(back) == list(filed)
    again = type(record)(**back)
    assert again == record and list(again.as_dict()) == list(filed)


def test_an_absent_field_is_no_key_and_a_null_one_is() -> None:
    handshake = RECORDS[2].as_dict()
    assert "evidence_failure" not in handshake and "transfer_id" not in handshake
    assert handshake["name_matched"] is None
    assert RECORDS[1].as_dict()["transfer_id"] is None
    download, upload = RECORDS[3].as_dict(), RECORDS[4].as_dict()
    assert "bytes_written" not in download and "server_upload" not in download
    assert upload["server_upload"] is None


def test_keys_set_late_keep_their_place() -> None:
    """A UDP query's attempts sit between t0 and t, as OONI's readers of our JSONL saw them."""
    query = _dns()
    query.attempts = 2
    query.t, query.latency_ms, query.transaction_id = 0.7, 200.0, 1
    assert list(query.as_dict())[-5:] == ["t0", "attempts", "t", "latency_ms", "transaction_id"]
    assert query.as_dict()["attempts"] == 2
    assert "attempts" not in _dns().as_dict() and _dns().attempts is ABSENT


def test_as_dict_shares_the_series() -> None:
    """A fetch's caller may amend the record it got back; the filed one is the same dict,
    and the series inside are the transfer's own lists, not copies."""
    transfer = _transfer()
    assert transfer.as_dict()["samples"] is transfer.samples


# The record files' columns as published (docs/data-format.md), after the envelope's.
PUBLISHED = {
    "dns.csv": ["hostname", "query_type", "engine", "resolver", "rcode", "failure", "answers",
                "ttl_min", "cname_chain", "latency_ms", "bogons", "inconsistent"],
    "tcp.csv": ["address", "port", "success", "failure", "latency_ms"],
    "tls.csv": ["address", "transport", "server_name", "tls_version", "cipher_suite", "alpn",
                "handshake_ms", "verified", "failure", "verify_error", "cert_subject",
                "cert_issuer", "cert_sans", "cert_not_after", "cert_sha256", "chain_length",
                "chain_from_unverified_retry"],
    "transfers.csv": ["transfer_id", "url", "host", "sni", "address", "port", "transport",
                      "direction", "method", "status_code", "bytes", "wire_bytes", "duration_s",
                      "ttfb_ms", "goodput_kbps", "stopped_by", "failure", "connection_reused",
                      "rtt_ms", "retransmits", "samples", "alt_svc_h3"],
}
ENVELOPE = ["run_id", "measurement_id", "measurement_start_time", "repetition", "target",
            "family", "kind", "experiment"]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_columns_derived_from_the_records_are_the_published_ones(name: str) -> None:
    assert [c.name for c in FILES[name]] == ENVELOPE + PUBLISHED[name]


def test_columns_read_their_field() -> None:
    row = {**_transfer().as_dict(), "tcp_info": [{"rtt_us": 1000, "total_retrans": 1},
                                                 {"rtt_us": 3000, "total_retrans": 4}]}
    cells = {c.name: c.get(row) for c in Transfer.csv_columns()}
    assert cells["rtt_ms"] == 2.0 and cells["retransmits"] == 3 and cells["samples"] == 2
    assert cells["goodput_kbps"] == 16.0 and cells["failure"] is None
    tcp = {c.name: c.get(RECORDS[1].as_dict()) for c in TcpConnect.csv_columns()}
    assert tcp == {"address": "192.0.2.7", "port": 443, "success": True, "failure": None,
                   "latency_ms": 1.5}


def test_a_column_declared_but_not_placed_is_refused() -> None:
    @dataclass(kw_only=True)
    class Unplaced(Record):
        CSV_ORDER = ("a",)

        a: int = columns(column("count", "placed"))
        b: int = columns(column("count", "declared, not placed"))

    with pytest.raises(TypeError, match="CSV_ORDER"):
        Unplaced.csv_columns()
