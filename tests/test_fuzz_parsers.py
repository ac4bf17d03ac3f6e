"""Fuzzing the probe's parsers of untrusted input (issue 11): the targets TOML loader and
the description of DNS answers. Bad input is a clean error or a result, never a crash."""

from __future__ import annotations

import tempfile
from pathlib import Path

import dns.message
import dns.rrset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe import targets
from probe.measure.dns import _describe
from probe.records import DnsQuery

FUZZ = settings(max_examples=1000, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
ROOT = Path(__file__).resolve().parents[1]
SHIPPED = (ROOT / "targets" / "twitter.toml").read_text()

# --- targets TOML -------------------------------------------------------------------

TOKENS = st.sampled_from(["[[target]]", "[target]", "[", "]", "{", "}", "=", '"', "'", '"""',
                          "'''", "#", ",", "\n", "\\", "name", "url", "kind", "family", "pair",
                          "sni", "connect_to", "expected_bytes", '"https://a.test/x"', "1e999",
                          "-1", "true", "\x00", "\r", "\t", "é", "\ud7ff", "[[target.x]]",
                          "a.b.c", "= []", "= {}", "= 2021-03-10T00:00:00Z"])


@st.composite
def toml_text(draw: st.DrawFn) -> str:
    """The shipped list with pieces cut, repeated or replaced by TOML tokens and noise."""
    text = SHIPPED
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 40)))
        piece = draw(st.one_of(TOKENS, st.text(max_size=12), st.just(text[i:j] * 2)))
        text = text[:i] + piece + text[j:]
    return text


@FUZZ
@given(st.one_of(toml_text(), st.text(max_size=200), st.binary(max_size=200)))
def test_fuzz_targets_loader(text: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.toml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            targets.load([path])
        except targets.TargetError as exc:
            assert str(exc).startswith(f"{path}:"), str(exc)


# --- DNS answers ----------------------------------------------------------------------


def _response() -> bytes:
    """A real answer: a CNAME chain to A records, plus records a hostile resolver adds."""
    query = dns.message.make_query("pbs.twimg.com", "A")
    response = dns.message.make_response(query)
    response.answer += [
        dns.rrset.from_text("pbs.twimg.com.", 60, "IN", "CNAME", "cdn.twimg.com."),
        dns.rrset.from_text("cdn.twimg.com.", 60, "IN", "A", "192.0.2.7", "10.0.0.1"),
        dns.rrset.from_text("cdn.twimg.com.", 60, "IN", "AAAA", "2001:db8::1"),
        dns.rrset.from_text("other.test.", 60, "IN", "A", "198.51.100.1"),
    ]
    return response.to_wire()


WIRE = _response()


@st.composite
def damaged_wire(draw: st.DrawFn) -> bytes:
    """The answer with bytes flipped, cut or inserted (the header's counts included)."""
    data = bytearray(WIRE)
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["set", "set", "cut", "insert"]))
        if how == "set":
            data[i] = draw(st.integers(0, 255))
        elif how == "cut":
            del data[i:i + draw(st.integers(1, 8))]
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        if not data:
            break
    return bytes(data)


@FUZZ
@given(st.one_of(damaged_wire(), st.binary(max_size=512)), st.sampled_from(["A", "AAAA"]))
def test_fuzz_dns_answer_description(wire: bytes, qtype: str) -> None:
    """What dnspython accepts from the wire, the probe describes without raising; what it
    rejects is a DNSException, which the probe records as a failure string."""
    try:
        response = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return
    query = DnsQuery(engine="udp", resolver_address="192.0.2.53", resolver_port=53,
                     hostname="x.example", query_type=qtype, transport="udp", t0=0.0)
    _describe(response, qtype, query, [])
    record = query.as_dict()
    assert isinstance(record["rcode"], int)  # OONI df-002: the number
    assert all(isinstance(a.get("ttl"), int) for a in record["answers"])
