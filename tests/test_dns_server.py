"""The lab DNS server and the tests' DoH server, spoken to with a plain DNS client."""

from __future__ import annotations

import base64
import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import httpx
import pytest

from probe.lab.ca import CertificateAuthority
from probe.lab.dns_server import DnsServer, Zone
from tests.servers.doh import DohServer

pytestmark = pytest.mark.timeout(60)

ZONE = {
    "ttl": 300,
    "records": {
        "pbs.twimg.com": {"A": ["203.0.113.10"], "AAAA": ["2001:db8::10"]},
        "video.twimg.com": {"CNAME": "video.twimg.com.cdn.test"},
        "video.twimg.com.cdn.test": {"CNAME": "edge.cdn.test", "ttl": 120},
        "edge.cdn.test": {"A": ["203.0.113.11", "203.0.113.12"], "ttl": 60},
        "dangling.test": {"CNAME": "missing.test"},
        "loop1.test": {"CNAME": "loop2.test"},
        "loop2.test": {"CNAME": "loop1.test"},
        "big.test": {"A": [f"203.0.113.{i}" for i in range(1, 101)]},
        "example.org": {"A": ["198.51.100.7"]},
        "throttletwitter.com": {"A": ["198.51.100.8"]},
    },
    "rcodes": {"refused.test": "REFUSED", "fail.test": "SERVFAIL"},
    "silent": ["timeout.test"],
    "poison": {"match": ["twimg.com", "twitter.com", "t.co"], "A": "10.10.34.34"},
}
CLEAN = {k: v for k, v in ZONE.items() if k != "poison"}


@pytest.fixture(scope="module")
def server_log() -> list[dict]:
    return []


@pytest.fixture(scope="module")
def server(server_log):
    with DnsServer(CLEAN, log=server_log.append) as srv:
        yield srv


def ask(srv: DnsServer, name: str, rdtype: str = "A", tcp: bool = False, **kw):
    query = dns.message.make_query(name, rdtype, **kw)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, srv.host, port=srv.port, timeout=2)


def rrsets(response: dns.message.Message) -> list[tuple[str, int, str, list[str]]]:
    return [
        (r.name.to_text(), r.ttl, dns.rdatatype.to_text(r.rdtype), [x.to_text() for x in r])
        for r in response.answer
    ]


@pytest.mark.parametrize("tcp", [False, True])
def test_answers_a_and_aaaa_over_udp_and_tcp(server, tcp):
    a = ask(server, "pbs.twimg.com", "A", tcp=tcp)
    aaaa = ask(server, "pbs.twimg.com", "AAAA", tcp=tcp)
    assert rrsets(a) == [("pbs.twimg.com.", 300, "A", ["203.0.113.10"])]
    assert rrsets(aaaa) == [("pbs.twimg.com.", 300, "AAAA", ["2001:db8::10"])]
    assert a.flags & dns.flags.AA


def test_names_ignore_case_and_trailing_dot(server):
    assert rrsets(ask(server, "PBS.TwImg.com."))[0][3] == ["203.0.113.10"]
    assert rrsets(ask(server, "pbs.twimg.com"))[0][3] == ["203.0.113.10"]


def test_cname_chain_is_followed_with_each_ttl(server):
    assert rrsets(ask(server, "video.twimg.com")) == [
        ("video.twimg.com.", 300, "CNAME", ["video.twimg.com.cdn.test."]),
        ("video.twimg.com.cdn.test.", 120, "CNAME", ["edge.cdn.test."]),
        ("edge.cdn.test.", 60, "A", ["203.0.113.11", "203.0.113.12"]),
    ]


def test_cname_to_unknown_name_is_nxdomain_with_the_cname(server):
    r = ask(server, "dangling.test")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert rrsets(r) == [("dangling.test.", 300, "CNAME", ["missing.test."])]


def test_cname_loop_is_servfail(server):
    assert ask(server, "loop1.test").rcode() == dns.rcode.SERVFAIL


def test_unknown_name_nxdomain_known_name_other_type_nodata(server):
    assert ask(server, "nothing.test").rcode() == dns.rcode.NXDOMAIN
    nodata = ask(server, "example.org", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and nodata.answer == []


@pytest.mark.parametrize("name,rcode", [("refused.test", "REFUSED"), ("fail.test", "SERVFAIL")])
def test_forced_rcodes(server, name, rcode):
    assert dns.rcode.to_text(ask(server, name).rcode()) == rcode


def test_silent_name_gets_no_answer(server):
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(dns.message.make_query("timeout.test", "A"), server.host, port=server.port,
                      timeout=0.3)


def test_large_answer_is_truncated_over_udp_and_whole_over_tcp(server):
    udp = ask(server, "big.test", use_edns=0, payload=1232)
    assert udp.flags & dns.flags.TC and udp.answer == []
    tcp = ask(server, "big.test", tcp=True, use_edns=0, payload=1232)
    assert not tcp.flags & dns.flags.TC
    assert rrsets(tcp)[0][3] == [f"203.0.113.{i}" for i in range(1, 101)]


def test_udp_and_tcp_share_the_chosen_port(server):
    assert server.port > 0
    with socket.create_connection((server.host, server.port), timeout=2):
        pass


def test_log_has_one_entry_per_query(server, server_log):
    before = len(server_log)
    ask(server, "refused.test", "AAAA")
    (entry,) = server_log[before:]
    assert entry["name"] == "refused.test." and entry["type"] == "AAAA"
    assert entry["rcode"] == "REFUSED" and entry["poisoned"] is False
    assert entry["transport"] == "udp"


@pytest.mark.parametrize(
    "name,poisoned",
    [
        ("pbs.twimg.com", True),  # a real name: the poisoned answer replaces it
        ("twitter.com", True),
        ("x.t.co", True),
        ("absent.twimg.com", True),  # poisoned even where the truth is NXDOMAIN
        ("throttletwitter.com", False),  # suffix matches only on a label boundary
        ("example.org", False),
    ],
)
def test_poison_matches_name_or_label_suffix(name, poisoned):
    with DnsServer(ZONE) as srv:
        r = ask(srv, name)
        aaaa = ask(srv, "pbs.twimg.com", "AAAA")
    answer = rrsets(r)
    assert (answer == [(f"{name}.", 300, "A", ["10.10.34.34"])]) is poisoned
    assert rrsets(aaaa)[0][3] == ["2001:db8::10"]  # no AAAA poison configured: the truth


def test_reload_swaps_the_zone():
    with DnsServer(CLEAN) as srv:
        assert rrsets(ask(srv, "pbs.twimg.com"))[0][3] == ["203.0.113.10"]
        srv.reload(ZONE)
        assert rrsets(ask(srv, "pbs.twimg.com"))[0][3] == ["10.10.34.34"]


def test_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        srv = DnsServer(CLEAN, host="::1").__enter__()
    except OSError:
        pytest.skip("no ::1 on this host")
    try:
        assert rrsets(ask(srv, "pbs.twimg.com", tcp=True))[0][3] == ["203.0.113.10"]
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "zone,message",
    [
        ({"records": {"a.test": {"A": ["not-an-ip"]}}}, "bad A value"),
        ({"records": {"a.test": {"BOGUS": ["1.2.3.4"]}}}, "unknown record type"),
        ({"rcodes": {"a.test": "NOPE"}}, "unknown rcode"),
        ({"records": {"a.test": ["1.2.3.4"]}}, "must map record types"),
        ({"record": {}}, "unknown zone keys"),
    ],
)
def test_bad_zone_is_rejected_at_load(zone, message):
    with pytest.raises(ValueError, match=message):
        Zone.from_dict(zone)


def _wait_for(path: Path, predicate, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            if predicate(lines):
                return lines
        time.sleep(0.05)
    text = path.read_text() if path.exists() else ""
    raise AssertionError(f"log {path} never matched; has: {text}")


def test_cli_serves_reloads_on_sighup_and_exits_on_sigterm(tmp_path):
    zone_file = tmp_path / "zone.json"
    log = tmp_path / "dns.log"
    zone_file.write_text(json.dumps(CLEAN))
    proc = subprocess.Popen(
        [sys.executable, "-m", "probe.lab.dns_server", "--listen", "127.0.0.1:0",
         "--zone", str(zone_file), "--log", str(log)],
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        lines = _wait_for(log, lambda ls: any(x["event"] == "listening" for x in ls))
        port = next(x["port"] for x in lines if x["event"] == "listening")

        def a(name: str) -> list[str]:
            r = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2)
            return [x.to_text() for rr in r.answer for x in rr]

        assert a("pbs.twimg.com") == ["203.0.113.10"]
        zone_file.write_text(json.dumps(ZONE))
        proc.send_signal(signal.SIGHUP)
        _wait_for(log, lambda ls: any(x["event"] == "reload" and x["ok"] for x in ls))
        assert a("pbs.twimg.com") == ["10.10.34.34"]
        zone_file.write_text("{broken")
        proc.send_signal(signal.SIGHUP)
        _wait_for(log, lambda ls: any(x["event"] == "reload" and not x["ok"] for x in ls))
        assert a("pbs.twimg.com") == ["10.10.34.34"]  # a bad file keeps the old zone
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = _wait_for(log, lambda ls: ls[-1]["event"] == "stopped")
    queries = [x for x in lines if x["event"] == "query"]
    assert [(q["name"], q["type"], q["rcode"], q["poisoned"]) for q in queries] == [
        ("pbs.twimg.com.", "A", "NOERROR", False),
        ("pbs.twimg.com.", "A", "NOERROR", True),
        ("pbs.twimg.com.", "A", "NOERROR", True),
    ]


def test_cli_rejects_bad_listen(tmp_path):
    zone_file = tmp_path / "zone.json"
    zone_file.write_text("{}")
    proc = subprocess.run(
        [sys.executable, "-m", "probe.lab.dns_server", "--listen", "nocolon", "--zone",
         str(zone_file)],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 2 and "HOST:PORT" in proc.stderr


@pytest.fixture(scope="module")
def doh(test_ca: CertificateAuthority, tmp_path_factory):
    cert = test_ca.issue(["127.0.0.1"], out_dir=tmp_path_factory.mktemp("doh"))
    with DohServer(CLEAN, cert) as srv:
        yield srv


def _client(test_ca: CertificateAuthority) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(test_ca.cert_path)),
                        timeout=5, trust_env=False)


def test_doh_get_and_post_answer_like_the_udp_server(doh, test_ca, server):
    query = dns.message.make_query("video.twimg.com", "A", id=4242)
    wire = query.to_wire()
    with _client(test_ca) as client:
        post = client.post(doh.url, content=wire,
                           headers={"content-type": "application/dns-message"})
        param = base64.urlsafe_b64encode(wire).rstrip(b"=").decode()
        get = client.get(doh.url, params={"dns": param})
    for reply in (post, get):
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "application/dns-message"
        answer = dns.message.from_wire(reply.content)
        assert answer.id == 4242
        assert rrsets(answer) == rrsets(ask(server, "video.twimg.com"))


def test_doh_rejects_bad_requests(doh, test_ca):
    base = doh.url.rsplit("/", 1)[0]
    with _client(test_ca) as client:
        assert client.post(base + "/other", content=b"x").status_code == 404
        assert client.post(doh.url, content=b"x",
                           headers={"content-type": "text/plain"}).status_code == 415
        assert client.get(doh.url).status_code == 400
        assert client.get(doh.url, params={"dns": "AAAA"}).status_code == 400  # not a message


def test_tcp_length_prefix_split_across_segments(server):
    """RFC 7766 allows the two length bytes to arrive apart (here 0.5 s apart)."""
    import socket
    import struct
    import time

    import dns.message

    wire = dns.message.make_query("pbs.twimg.com", "A").to_wire()
    framed = struct.pack("!H", len(wire)) + wire
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(framed[:1])
        time.sleep(0.5)
        s.sendall(framed[1:])
        length = struct.unpack("!H", s.recv(2))[0]
        body = b""
        while len(body) < length:
            body += s.recv(length - len(body))
    assert dns.message.from_wire(body).answer
