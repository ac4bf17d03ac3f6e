"""DNS measurement against real lab DNS and DoH servers on loopback."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from probe.lab.ca import CertificateAuthority
from probe.lab.dns_server import DnsServer
from probe.measure.clock import Clock
from probe.measure.dns import (
    Resolver,
    consistency,
    is_bogon,
    measure,
    parse_resolver,
    pick_address,
    system_resolvers,
)
from probe.records import DnsQuery
from tests.servers.doh import DohServer

pytestmark = pytest.mark.timeout(60)

LAB_NETS = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
TRUTH = {
    "ttl": 300,
    "records": {
        "pbs.twimg.com": {"A": ["203.0.113.10"], "AAAA": ["2001:db8::10"]},
        "video.twimg.com": {"CNAME": "video.twimg.com.cdn.test"},
        "video.twimg.com.cdn.test": {"CNAME": "edge.cdn.test", "ttl": 120},
        "edge.cdn.test": {"A": ["203.0.113.11"], "ttl": 60},
        "v4only.test": {"A": ["198.51.100.7"]},
        "big.test": {"A": [f"203.0.113.{i}" for i in range(1, 101)]},
    },
    "rcodes": {"refused.test": "REFUSED", "fail.test": "SERVFAIL", "notimp.test": "NOTIMP"},
    "silent": ["timeout.test"],
}
POISONED = {**TRUTH, "poison": {"match": ["twimg.com"], "A": "10.10.34.34", "AAAA": "::1"}}


@pytest.fixture(scope="module")
def truth():
    with DnsServer(TRUTH) as srv:
        yield Resolver("udp", srv.host, srv.port)


@pytest.fixture(scope="module")
def liar():
    with DnsServer(POISONED) as srv:
        yield Resolver("udp", srv.host, srv.port)


@pytest.fixture(scope="module")
def doh(test_ca: CertificateAuthority, tmp_path_factory):
    cert = test_ca.issue(["127.0.0.1"], out_dir=tmp_path_factory.mktemp("doh"))
    with DohServer(TRUTH, cert, silent_hold=3) as srv:
        yield srv


def closed_port() -> int:
    """A UDP port with nothing listening (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one(hostname: str, resolver: Resolver, qtype: str = "A", **kw) -> dict:
    (record,) = measure(hostname, [resolver], Clock(), qtypes=(qtype,), timeout=2, **kw)
    return record


# --- records -------------------------------------------------------------------------


def test_success_record_has_every_field(truth):
    records = measure("pbs.twimg.com", [truth], Clock(), timeout=2, allow_nets=LAB_NETS)
    a, aaaa = records
    assert a == {  # OONI df-002: the engine that spoke, ip:port, the rcode's number
        "engine": "udp",
        "x_engine": "udp",
        "resolver_address": f"127.0.0.1:{truth.port}",
        "resolver_port": truth.port,
        "hostname": "pbs.twimg.com",
        "query_type": "A",
        "transport": "udp",
        "attempts": 1,
        "answers": [{"answer_type": "A", "ipv4": "203.0.113.10", "ttl": 300}],
        "cname_chain": [],
        "bogons": [],
        "rcode": 0,
        "failure": None,
        "t0": a["t0"],
        "t": a["t"],
        "latency_ms": a["latency_ms"],
        "transaction_id": 1,
    }
    assert aaaa["answers"] == [{"answer_type": "AAAA", "ipv6": "2001:db8::10", "ttl": 300}]
    assert aaaa["transaction_id"] == 2 and aaaa["query_type"] == "AAAA"
    for r in records:
        assert 0 <= r["t0"] <= r["t"] and r["latency_ms"] >= 0


def test_cname_chain_and_ttls(truth):
    r = one("video.twimg.com", truth)
    assert r["cname_chain"] == ["video.twimg.com.cdn.test", "edge.cdn.test"]
    assert r["answers"] == [
        {"answer_type": "CNAME", "hostname": "video.twimg.com.cdn.test", "ttl": 300},
        {"answer_type": "CNAME", "hostname": "edge.cdn.test", "ttl": 120},
        {"answer_type": "A", "ipv4": "203.0.113.11", "ttl": 60},
    ]
    assert r["failure"] is None


@pytest.mark.parametrize(
    "name,qtype,rcode,failure",
    [
        ("nothing.test", "A", 3, "dns_nxdomain_error"),  # NXDOMAIN
        ("v4only.test", "AAAA", 0, "dns_no_answer"),  # NOERROR
        ("video.twimg.com", "AAAA", 0, "dns_no_answer"),  # CNAME but no address
        ("refused.test", "A", 5, "dns_refused_error"),  # REFUSED
        ("fail.test", "A", 2, "dns_servfail_error"),  # SERVFAIL
        ("notimp.test", "A", 4, "dns_server_misbehaving"),  # NOTIMP
    ],
)
def test_rcodes_become_df007_failures(truth, name, qtype, rcode, failure):
    r = one(name, truth, qtype)
    assert (r["rcode"], r["failure"]) == (rcode, failure)


def test_silent_name_times_out_within_the_timeout(truth):
    (r,) = measure("timeout.test", [truth], Clock(), qtypes=("A",), timeout=0.4)
    assert r["failure"] == "generic_timeout_error" and r["rcode"] is None
    assert 300 <= r["latency_ms"] < 5000


def test_closed_port_is_connection_refused():
    r = one("pbs.twimg.com", Resolver("udp", "127.0.0.1", closed_port()))
    assert r["failure"] == "connection_refused" and r["answers"] == []


def test_truncated_answer_is_retried_over_tcp(truth):
    r = one("big.test", truth)
    assert r["transport"] == "tcp" and r["failure"] is None
    assert [a["ipv4"] for a in r["answers"]] == [f"203.0.113.{i}" for i in range(1, 101)]


def test_bad_input_is_a_failure_not_an_exception(truth):
    r = one("x" * 64 + ".test", truth)  # a label over 63 octets cannot be sent
    assert r["failure"] and r["failure"].startswith("unknown_failure")
    r = one("pbs.twimg.com", Resolver("udp", "not-an-ip"))
    assert r["failure"] and r["rcode"] is None


def test_queries_run_in_parallel_so_the_call_is_bounded(truth, liar):
    records = measure("timeout.test", [truth, liar], Clock(), timeout=0.5)
    assert [r["failure"] for r in records] == ["generic_timeout_error"] * 4
    # Sequential queries would start one after another, each 0.5 s later.
    assert max(r["t0"] for r in records) < 0.9


# --- bogons, consistency, address choice ---------------------------------------------


@pytest.mark.parametrize(
    "ip,bogon",
    [
        ("10.10.34.34", True), ("127.0.0.1", True), ("169.254.1.1", True),
        ("192.168.1.1", True), ("100.64.0.1", True), ("0.0.0.0", True),
        ("192.0.2.1", True), ("198.51.100.1", True), ("203.0.113.1", True),
        ("224.0.0.1", True), ("240.0.0.1", True), ("::1", True), ("fe80::1", True),
        ("fc00::1", True), ("2001:db8::1", True), ("::ffff:10.0.0.1", True),
        ("8.8.8.8", False), ("104.244.42.1", False), ("2606:4700::1111", False),
        ("::ffff:8.8.8.8", False),
    ],
)
def test_is_bogon(ip, bogon):
    assert is_bogon(ip) is bogon


def test_allow_nets_exempts_lab_prefixes_only():
    assert not is_bogon("203.0.113.10", LAB_NETS)
    assert not is_bogon("2001:db8::10", LAB_NETS)
    assert is_bogon("10.10.34.34", LAB_NETS)
    with pytest.raises(ValueError):
        is_bogon("not-an-ip")


def test_bogons_flagged_per_record_and_allow_nets_respected(liar):
    r = one("pbs.twimg.com", liar, allow_nets=LAB_NETS)
    assert r["answers"] == [{"answer_type": "A", "ipv4": "10.10.34.34", "ttl": 300}]
    assert r["bogons"] == ["10.10.34.34"] and r["failure"] is None
    clean = one("v4only.test", liar)
    assert clean["bogons"] == ["198.51.100.7"]  # a documentation prefix is a bogon...
    assert one("v4only.test", liar, allow_nets=LAB_NETS)["bogons"] == []  # ...unless allowed


def test_poisoned_resolver_is_inconsistent_with_the_truth(truth, liar):
    queries = measure("pbs.twimg.com", [truth, liar], Clock(), timeout=2)
    result = consistency(queries, allow_nets=LAB_NETS)
    assert result == {
        "bogons": ["10.10.34.34", "::1"],
        "inconsistent": True,
        "answers_by_resolver": {
            truth.key: ["203.0.113.10", "2001:db8::10"],
            liar.key: ["10.10.34.34", "::1"],
        },
    }
    assert truth.key == f"udp:127.0.0.1:{truth.port}"


def test_agreeing_resolvers_are_consistent(truth, doh, ca_bundle):
    doh_resolver = parse_resolver(doh.url)
    queries = measure("video.twimg.com", [truth, doh_resolver], Clock(), timeout=2,
                      ca_bundle=ca_bundle)
    assert consistency(queries, LAB_NETS) == {
        "bogons": [],
        "inconsistent": False,
        "answers_by_resolver": {truth.key: ["203.0.113.11"], f"doh:{doh.url}": ["203.0.113.11"]},
    }


def test_differing_failures_are_inconsistent_but_silence_is_not(truth, liar):
    # NXDOMAIN from one resolver, an address from the other: they disagree.
    with DnsServer({"records": {}}) as empty:
        nx = Resolver("udp", empty.host, empty.port)
        queries = measure("v4only.test", [truth, nx], Clock(), qtypes=("A",), timeout=2)
    assert consistency(queries)["inconsistent"] is True
    # A resolver that never replies is not evidence either way.
    queries = measure("v4only.test", [truth, Resolver("udp", "127.0.0.1", closed_port())],
                      Clock(), qtypes=("A",), timeout=2)
    assert consistency(queries)["inconsistent"] is False


def test_pick_address_prefers_the_system_resolver(truth, liar):
    system_truth = Resolver("system", truth.address, truth.port)
    system_liar = Resolver("system", liar.address, liar.port)
    queries = measure("pbs.twimg.com", [truth, system_truth], Clock(), timeout=2)
    queries[0]["answers"][0]["ipv4"] = "198.51.100.99"  # mark the non-system answer
    assert pick_address(queries, LAB_NETS) == "203.0.113.10"
    # The system resolver lies: fall back to the first clean A from any resolver.
    queries = measure("pbs.twimg.com", [system_liar, truth], Clock(), timeout=2)
    assert pick_address(queries, LAB_NETS) == "203.0.113.10"
    # Only bogons (lab addresses not allowed): nothing to connect to.
    assert pick_address(queries) is None
    assert pick_address([], LAB_NETS) is None


# --- DNS over HTTPS ------------------------------------------------------------------


def test_doh_success(doh, ca_bundle):
    resolver = parse_resolver(doh.url)
    records = measure("video.twimg.com", [resolver], Clock(), timeout=2, ca_bundle=ca_bundle)
    a, aaaa = records
    assert (a["engine"], a["transport"], a["resolver_address"]) == ("doh", "https", doh.url)
    assert a["resolver_port"] == int(doh.url.split(":")[2].split("/")[0])
    assert a["cname_chain"] == ["video.twimg.com.cdn.test", "edge.cdn.test"]
    assert a["answers"][-1] == {"answer_type": "A", "ipv4": "203.0.113.11", "ttl": 60}
    assert aaaa["failure"] == "dns_no_answer"
    assert {(q["name"], q["type"]) for q in doh.requests} >= {
        ("video.twimg.com.", "A"), ("video.twimg.com.", "AAAA")}


def test_doh_untrusted_certificate_is_a_failure(doh, foreign_ca):
    resolver = parse_resolver(doh.url)
    r = one("pbs.twimg.com", resolver, ca_bundle=foreign_ca.cert_path)
    assert r["failure"] == "ssl_unknown_authority" and r["answers"] == []
    r = one("pbs.twimg.com", resolver)  # system roots do not know the test CA either
    assert r["failure"] == "ssl_unknown_authority"


def test_doh_certificate_for_another_name_is_a_failure(test_ca, tmp_path, ca_bundle):
    cert = test_ca.issue(["doh.example"], out_dir=tmp_path)
    with DohServer(TRUTH, cert) as srv:
        by_ip = one("pbs.twimg.com", parse_resolver(srv.url), ca_bundle=ca_bundle)
        local = socket.getaddrinfo("localhost", srv.url.split(":")[2].split("/")[0])[0][4][0]
        by_name = one("pbs.twimg.com", parse_resolver(srv.url.replace("127.0.0.1", "localhost")),
                      ca_bundle=ca_bundle)
    # failures.py names an IP mismatch ssl_invalid_certificate (verify code 64, not 62).
    assert by_ip["failure"] in ("ssl_invalid_hostname", "ssl_invalid_certificate")
    assert by_ip["answers"] == []
    if local != "127.0.0.1":
        pytest.skip("localhost does not resolve to 127.0.0.1 first here")
    assert by_name["failure"] == "ssl_invalid_hostname"


def test_doh_http_error_and_silence(doh, ca_bundle):
    wrong_path = parse_resolver(doh.url.replace("/dns-query", "/nope"))
    assert one("pbs.twimg.com", wrong_path, ca_bundle=ca_bundle)["failure"] == "http_request_failed"
    (r,) = measure("timeout.test", [parse_resolver(doh.url)], Clock(), qtypes=("A",),
                   timeout=0.4, ca_bundle=ca_bundle)
    assert r["failure"] == "generic_timeout_error"


def test_doh_connection_refused(ca_bundle):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = one("pbs.twimg.com", parse_resolver(f"https://127.0.0.1:{port}/dns-query"),
            ca_bundle=ca_bundle)
    assert r["failure"] == "connection_refused"


# --- configuration -------------------------------------------------------------------


def test_system_resolvers_from_resolv_conf(tmp_path: Path):
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# generated\n"
        "; old comment style\n"
        "search example.org\n"
        "options edns0 timeout:2 ndots:1\n"
        "nameserver 192.0.2.53   # trailing comment\n"
        "  nameserver\t2001:db8::53\n"
        "nameserver fe80::1%eth0\n"
        "nameserver not-an-ip\n"
        "#nameserver 198.51.100.1\n"
        "nameserver 198.51.100.53\n"
    )
    assert system_resolvers(conf) == [
        Resolver("system", "192.0.2.53"),
        Resolver("system", "2001:db8::53"),
        Resolver("system", "fe80::1%eth0"),
    ]  # glibc stops at three
    assert system_resolvers(tmp_path / "missing") == []
    empty = tmp_path / "empty.conf"
    empty.write_text("options rotate\n")
    assert system_resolvers(empty) == []


def test_system_engine_queries_the_resolv_conf_servers(tmp_path, truth):
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {truth.address}\n")
    (resolver,) = system_resolvers(conf)
    assert resolver == Resolver("system", "127.0.0.1", 53)
    r = one("pbs.twimg.com", Resolver("system", truth.address, truth.port))
    # OONI's "system" is getaddrinfo; these are UDP queries, chosen by the system's file
    assert (r["engine"], r["x_engine"]) == ("udp", "system")
    assert r["answers"][0]["ipv4"] == "203.0.113.10"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1.2.3.4", Resolver("udp", "1.2.3.4", 53)),
        (" 1.2.3.4:5353 ", Resolver("udp", "1.2.3.4", 5353)),
        ("2001:db8::1", Resolver("udp", "2001:db8::1", 53)),
        ("[2001:db8::1]:5353", Resolver("udp", "2001:db8::1", 5353)),
        ("[2001:db8::1]", Resolver("udp", "2001:db8::1", 53)),
        ("https://dns.example/dns-query", Resolver("doh", "https://dns.example/dns-query", 443)),
        ("https://127.0.0.1:8443/q", Resolver("doh", "https://127.0.0.1:8443/q", 8443)),
    ],
)
def test_parse_resolver(text, expected):
    assert parse_resolver(text) == expected


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "empty resolver"),
        ("dns.google", "is not an IP address"),
        ("1.2.3.4:abc", "bad port"),
        ("1.2.3.4:0", "bad port"),
        ("1.2.3.4:70000", "bad port"),
        ("[2001:db8::1]:x", "bad port"),
        ("[2001:db8::1", "expected \\[IPv6\\]:PORT"),
        ("http://dns.example/dns-query", "must be an https:// URL"),
        ("https:///dns-query", "no host"),
        ("https://dns.example:99999/", "bad port"),
        ("999.1.1.1", "is not an IP address"),
    ],
)
def test_parse_resolver_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_resolver(text)


def test_resolver_keys():
    assert Resolver("udp", "1.2.3.4").key == "udp:1.2.3.4"
    assert Resolver("system", "::1", 5353).key == "system:[::1]:5353"
    assert Resolver("doh", "https://d.example/q", 443).key == "doh:https://d.example/q"


def _blank_query() -> DnsQuery:
    """A query record before its response is described."""
    return DnsQuery(engine="udp", resolver_address="192.0.2.53", resolver_port=53,
                    hostname="pbs.twimg.com", query_type="A", transport="udp", t0=0.0)


def test_records_that_do_not_answer_the_question_are_ignored() -> None:
    """A hostile resolver adds a CH-class A record (no IP inside) and an A record of an
    unrelated name; neither is an answer, and neither may crash the measurement."""
    import dns.message
    import dns.rrset

    from probe.measure.dns import _describe

    query = dns.message.make_query("pbs.twimg.com", "A")
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text("pbs.twimg.com.", 60, "CH", "A", "ns.example. 1"))
    response.answer.append(dns.rrset.from_text("evil.example.", 60, "IN", "A", "198.51.100.66"))
    response.answer.append(dns.rrset.from_text("PBS.twimg.com.", 60, "IN", "CNAME",
                                               "cdn.twimg.com."))
    response.answer.append(dns.rrset.from_text("cdn.twimg.com.", 60, "IN", "A", "192.0.2.7"))
    query_record = _blank_query()
    _describe(response, "A", query_record, [])
    record = query_record.as_dict()
    assert [a.get("ipv4") or a.get("hostname") for a in record["answers"]] == \
        ["cdn.twimg.com", "192.0.2.7"]
    assert record["cname_chain"] == ["cdn.twimg.com"] and record.get("failure") is None
    only_unrelated = dns.message.make_response(query)
    only_unrelated.answer.append(dns.rrset.from_text("evil.example.", 60, "IN", "A",
                                                     "198.51.100.66"))
    query_record = _blank_query()
    _describe(only_unrelated, "A", query_record, [])
    record = query_record.as_dict()
    assert record["answers"] == [] and record["failure"] == "dns_no_answer"


def test_doh_answer_dripped_a_byte_at_a_time_is_cut_at_a_deadline(
        test_ca: CertificateAuthority, tmp_path: Path) -> None:
    """httpx bounds each read; the whole DoH exchange has its own deadline (2x timeout)."""
    cert = test_ca.issue(["127.0.0.1"], out_dir=tmp_path)
    with DohServer(TRUTH, cert, drip_s=0.2) as srv:
        started = time.monotonic()
        (record,) = measure("pbs.twimg.com", [Resolver("doh", srv.url, 443)], Clock(),
                            qtypes=("A",), timeout=0.5, ca_bundle=test_ca.cert_path)
        elapsed = time.monotonic() - started
    assert record["failure"] == "generic_timeout_error" and record["answers"] == []
    assert elapsed < 5  # not the ~10 s the drip would take


def test_a_lost_udp_query_is_sent_again_within_the_timeout() -> None:
    """A resolver behind a lossy link: the first datagram vanishes, the copy sent after
    1 s is answered. Loss is not tampering; one query that never came back would be."""
    import threading

    import dns.message
    import dns.rrset

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    seen: list[float] = []

    def serve() -> None:
        for _ in range(2):
            data, peer = sock.recvfrom(4096)
            seen.append(time.monotonic())
            if len(seen) == 1:
                continue  # dropped on the way
            query = dns.message.from_wire(data)
            answer = dns.message.make_response(query)
            answer.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A",
                                                     "192.0.2.7"))
            sock.sendto(answer.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        resolver = Resolver("udp", "127.0.0.1", sock.getsockname()[1])
        (r,) = measure("lossy.test", [resolver], Clock(), qtypes=("A",), timeout=5)
    finally:
        thread.join(6)
        sock.close()
    assert r["failure"] is None and r["attempts"] == 2, r
    assert [a["ipv4"] for a in r["answers"]] == ["192.0.2.7"]
    assert 0.9 <= seen[1] - seen[0] < 2.0 and r["latency_ms"] < 2500
