"""The differential experiments without a lab: ClientHello cuts, the plan, and every
variant against a real `probe serve` on loopback (its log says what it saw)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from probe.experiment_names import DEFAULT, NAMES, OVER_QUIC, chosen
from probe.experiments import SPLIT_SHAPES, TWITTER_SNIS, plan, sni_names
from probe.experiments import clienthello as ch
from probe.experiments.base import MAX_BYTES, Server
from probe.experiments.download import Download
from probe.experiments.h3 import H3Download
from probe.experiments.handshake import PADDED_MIN_BYTES, ServerCertHandshake, matches_host
from probe.experiments.locate import client_hello
from probe.lab.ca import CertificateAuthority
from probe.measure.keys import TestKeys
from probe.measure.tls import make_context
from probe.measure.transfer import Limits
from probe.measurement import MeasureContext, Measurement
from probe.names import is_twitter_name
from probe.runner import RunConfig, Runner
from probe.targets import Target, default_paths, load

pytestmark = pytest.mark.timeout(60)
HOST = "measure.test"


def hello(sni: str | None, alpn: list[str] | None = None) -> bytes:
    """The ClientHello OpenSSL writes for `sni` (None: no SNI)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    if alpn:
        context.set_alpn_protocols(alpn)
    out = ssl.MemoryBIO()
    obj = context.wrap_bio(ssl.MemoryBIO(), out, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


# --- ClientHello cuts -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["pbs.twimg.com", "video.twimg.com", "twitter.com", "t.co",
                                  "a" * 63 + ".example"])
def test_sni_span_points_at_the_name(name: str) -> None:
    data = hello(name)
    offset, length = ch.sni_span(data)
    assert data[offset:offset + length] == name.encode()
    assert data[offset - 2:offset] == len(name).to_bytes(2, "big")  # the name's length prefix


@pytest.mark.parametrize("name", ["pbs.twimg.com", "twitter.com", "t.co"])
def test_split_in_name_leaves_no_piece_with_the_whole_name(name: str) -> None:
    data = hello(name)
    pieces = ch.split_in_name(data)
    assert b"".join(pieces) == data and len(pieces) == 2
    assert all(name.encode() not in p for p in pieces)
    assert all(b".twimg.com" not in p for p in pieces) or not name.endswith("twimg.com")
    offset, length = ch.sni_span(data)
    assert offset < len(pieces[0]) < offset + length  # the cut is strictly inside the name


def test_split_after_header_isolates_the_record_header() -> None:
    data = hello("pbs.twimg.com")
    first, rest = ch.split_after_header(data)
    assert first == data[:5] and first[0] == 0x16 and rest[0] == 0x01  # ClientHello type
    assert int.from_bytes(first[3:5], "big") == len(rest)


def test_hello_without_sni_cannot_be_split_in_the_name() -> None:
    data = hello(None)
    assert ch.sni_span(data) is None
    with pytest.raises(ValueError, match="no server name"):
        ch.split_in_name(data)


@pytest.mark.parametrize("junk", [b"", b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\x05\x02abcd"])
def test_not_a_client_hello_is_refused(junk: bytes) -> None:
    with pytest.raises(ValueError):
        ch.sni_span(junk)


def test_truncated_client_hello_is_refused() -> None:
    data = hello("pbs.twimg.com")
    with pytest.raises(ValueError):
        ch.sni_span(data[:60])


def test_padding_alpn_grows_the_hello_past_one_segment_and_keeps_the_sni() -> None:
    names = ch.padding_alpn(PADDED_MIN_BYTES)
    assert names[-1] == "http/1.1" and all(len(n) <= 255 for n in names)
    plain, padded = hello("pbs.twimg.com"), hello("pbs.twimg.com", names)
    # OpenSSL pads small hellos to 517 bytes itself; ours must pass a full-size packet.
    assert len(plain) < 1400 < 1500 < PADDED_MIN_BYTES <= len(padded)
    assert int.from_bytes(padded[3:5], "big") == len(padded) - 5  # still one record
    offset, length = ch.sni_span(padded)
    assert padded[offset:offset + length] == b"pbs.twimg.com"


# --- names, certificates, plan ----------------------------------------------------------


def test_twitter_names_are_labels_not_substrings() -> None:
    assert all(is_twitter_name(n) for n in ["pbs.twimg.com", "t.co", "TWITTER.com.", "x.com"])
    assert not any(is_twitter_name(n) for n in ["reddit.com", "microsoft.com", "", None,
                                                  "throttletwitter.com", "t.co.example"])


@pytest.mark.parametrize(("sans", "host", "ok"), [
    ([("DNS", "measure.test")], "measure.test", True),
    ([("DNS", "MEASURE.test")], "measure.TEST.", True),
    ([("DNS", "*.example.org")], "a.example.org", True),
    ([("DNS", "*.example.org")], "a.b.example.org", False),
    ([("DNS", "*.example.org")], "example.org", False),
    ([("DNS", "other.test")], "measure.test", False),
    ([("IP Address", "192.0.2.7")], "192.0.2.7", True),
    ([("DNS", "192.0.2.7")], "192.0.2.7", False),
    ([], "measure.test", False),
])
def test_matches_host(sans: list, host: str, ok: bool) -> None:
    assert matches_host({"subjectAltName": tuple(sans)}, host) is ok


def test_plan_contents() -> None:
    experiments = plan("https://measure.test:8443", list(NAMES))
    by = {(e.name, e.target.name): e for e in experiments}
    assert len(by) == len(experiments)
    sni = [e for e in experiments if e.name == "sni"]
    assert [e.target.sni for e in sni] == [*TWITTER_SNIS, HOST, ""]
    assert [e.target.family for e in sni] == ["twitter"] * len(TWITTER_SNIS) + ["control"] * 2
    assert {e.target.url for e in experiments if e.name in ("sni", "split")} == \
        {f"https://measure.test:8443/bytes?n={MAX_BYTES}"}
    split = [e for e in experiments if e.name == "split"]
    assert [e.shape for e in split] == list(SPLIT_SHAPES)
    assert all(is_twitter_name(e.target.sni) for e in split)
    upload = [e for e in experiments if e.name == "upload"]
    assert [e.target.url for e in upload] == ["https://measure.test:8443/upload"] * 2
    assert [e.target.family for e in upload] == ["twitter", "control"]
    assert all(e.target.kind == "bytes" and e.target.name.startswith(e.name + "-")
               for e in experiments)
    assert [e.name for e in plan("https://measure.test", ["upload"])] == ["upload", "upload"]


def twitter(name: str, url: str, sni: str | None = None) -> Target:
    return Target(name=name, url=url, family="twitter", kind="image", sni=sni)


RUN = [
    twitter("image", "https://pbs.twimg.com/a.jpg"),
    Target(name="control", url="https://images.lab.test/a.jpg", family="control", kind="image"),
    twitter("hls", "https://video.twimg.com/a.m3u8"),
    twitter("mp4", "https://VIDEO.twimg.com/a.mp4"),  # the same name: tried once
    twitter("script", "https://cdn.example/a.js", sni="ABS.twimg.com."),  # the SNI, not the host
    twitter("no-sni", "https://t.co/", sni=""),  # sends no name: nothing to try
    twitter("by-address", "https://203.0.113.10/a.jpg"),  # not a name the analysis calls Twitter
]
REDDIT = Target(name="reddit", url="https://www.reddit.com/", family="control-tco", kind="page")


def test_sni_names_are_every_twitter_name_of_the_run() -> None:
    assert sni_names(RUN) == [*TWITTER_SNIS, "video.twimg.com", "abs.twimg.com"]
    assert sni_names([]) == list(TWITTER_SNIS)


def test_sni_names_add_t_co_for_a_collateral_target_once() -> None:
    assert sni_names([REDDIT, *RUN, REDDIT]) == [*TWITTER_SNIS, "t.co", "video.twimg.com",
                                                 "abs.twimg.com"]
    tco = twitter("tco", "https://t.co/x")
    assert sni_names([tco, REDDIT]) == [*TWITTER_SNIS, "t.co"]


def test_plan_tries_each_name_with_the_neutral_baselines() -> None:
    sni = plan("https://measure.test", ["sni", "split"], [*RUN, REDDIT])
    names = [*TWITTER_SNIS, "video.twimg.com", "abs.twimg.com", "t.co"]
    assert [e.target.name for e in sni if e.name == "sni"] == \
        [*(f"sni-{n}" for n in names), "sni-neutral", "sni-none"]
    assert [e.target.family for e in sni if e.name == "sni"] == \
        ["twitter"] * len(names) + ["control"] * 2
    assert len([e for e in sni if e.name == "split"]) == len(SPLIT_SHAPES)


def test_the_runner_plans_the_names_of_its_own_targets(tmp_path: Path) -> None:
    """The shipped lists: each Twitter target's name is tried, t.co for the collateral ones."""
    targets = load(default_paths())
    config = RunConfig(target_files=default_paths(), out=tmp_path, server="https://measure.test",
                       experiments=["sni"], early_stop=False)
    tried = {item.target.sni for item in Runner(config, targets).items
             if isinstance(item, Download) and item.name == "sni"}
    own = {t.sni if t.sni is not None else t.host for t in targets if t.family == "twitter"}
    assert own == {"pbs.twimg.com", "video.twimg.com", "abs.twimg.com", "twitter.com", "t.co"}
    assert tried == own | {"measure.test", ""}


def test_a_packs_names_are_tried_under_their_service() -> None:
    """YouTube targets' names and a pack's names of hosts without a public object (signed
    playback URLs) join the Twitter ones, labelled with their service's family."""
    from probe import packs

    (youtube,) = packs.select(["youtube"])
    _, targets = packs.load([youtube])
    config = RunConfig(target_files=youtube.files, server="https://measure.test",
                       experiments=["sni"], early_stop=False, sni_names=packs.sni_names([youtube]))
    sni = {item.target.sni: item.target.family for item in Runner(config, targets).items
           if isinstance(item, Download) and item.name == "sni"}
    assert sni == {"pbs.twimg.com": "twitter", "twitter.com": "twitter",
                   "i.ytimg.com": "youtube", "www.youtube.com": "youtube",
                   "youtu.be": "youtube", "rr1---sn-4g5e6nsz.googlevideo.com": "youtube",
                   "redirector.googlevideo.com": "youtube", "measure.test": "control",
                   "": "control"}
    assert sni_names([], ["example.com", "I.ytimg.com"]) == [*TWITTER_SNIS, "i.ytimg.com"]


def test_the_quic_experiments_mirror_sni_and_pair_the_transports() -> None:
    experiments = plan("https://measure.test:8443", ["sni", "sni-h3", "transport"], RUN)
    tcp = [(e.target.sni, e.target.family) for e in experiments if e.name == "sni"]
    over_quic = [e for e in experiments if e.name == "sni-h3"]
    assert [(e.target.sni, e.target.family) for e in over_quic] == tcp
    assert all(isinstance(e, H3Download) and e.target.name.startswith("sni-h3-")
               for e in over_quic)
    transport = [e for e in experiments if e.name == "transport"]
    assert [(type(e), e.target.name, e.target.sni) for e in transport] == [
        (Download, "transport-tcp", HOST), (H3Download, "transport-quic", HOST)]
    assert {e.target.url for e in experiments} == {f"https://{HOST}:8443/bytes?n={MAX_BYTES}"}


def test_the_quic_experiments_run_by_default_only_with_http3() -> None:
    assert chosen(None, http3=False) == list(DEFAULT) and not set(DEFAULT) & set(OVER_QUIC)
    assert chosen(None, http3=True) == [*DEFAULT, *OVER_QUIC]
    assert chosen(["sni-h3"], http3=False) == ["sni-h3"]  # chosen with --experiments


def test_plan_neutral_name_for_an_ip_server_and_bad_input() -> None:
    neutral = [e for e in plan("https://192.0.2.80", ["sni"]) if e.target.name == "sni-neutral"]
    assert neutral[0].target.sni == "example.com"
    assert Server.parse("https://[2001:db8::1]:444").url_for("/x") == "https://[2001:db8::1]:444/x"
    with pytest.raises(ValueError, match="unknown experiment"):
        plan("https://measure.test", ["sni", "dpi"])
    with pytest.raises(ValueError, match="https"):
        plan("http://measure.test", ["sni"])


# --- every variant against a real measurement server --------------------------------------


@dataclass
class Served:
    url: str
    log: Path
    ca: Path

    def connections(self, at_least: int = 0, timeout: float = 5.0) -> list[dict]:
        """The server's connection log lines; it writes one when a connection closes,
        which can trail the client's close, so wait (bounded) for `at_least` of them."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [json.loads(x) for x in self.log.read_text().splitlines()]
            seen = [x for x in lines if x.get("event") == "connection"]
            if len(seen) >= at_least or time.monotonic() > deadline:
                return seen
            time.sleep(0.02)


def _serve(cert: Path, key: Path, log: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "probe.server", "--listen", "127.0.0.1:0", "--cert", str(cert),
         "--key", str(key), "--log", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert line.startswith("listening "), line
    return proc, int(line.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def served(test_ca: CertificateAuthority, tmp_path_factory) -> Iterator[Served]:
    """`probe serve` with a certificate for its own name only (no Twitter names)."""
    d = tmp_path_factory.mktemp("serve")
    issued = test_ca.issue([HOST], out_dir=d)
    proc, port = _serve(issued.cert, issued.key, d / "log.jsonl")
    try:
        yield Served(f"https://{HOST}:{port}", d / "log.jsonl", test_ca.cert_path)
    finally:
        proc.terminate()
        proc.wait(10)


def context(ca: Path, max_bytes: int = 300_000) -> MeasureContext:
    return MeasureContext(
        resolvers=[], ssl_context=make_context(ca), limits=Limits(max_bytes=max_bytes,
                                                                  max_seconds=5.0),
        stop_when=None, allow_nets=[], dns_timeout=2.0, ca_bundle=ca,
        connect_to={HOST: "127.0.0.1"},
    )


def test_download_variants_send_only_their_sni(served: Served) -> None:
    before = len(served.connections())
    ctx = context(served.ca)
    for e in plan(served.url, ["sni", "split"]):
        keys = TestKeys()
        extra = e.run(ctx, Measurement("m", keys=keys))
        assert extra["failure"] is None and extra["address"] == "127.0.0.1"
        (hs,) = keys.tls_handshakes
        assert hs["verified"] and hs["name_matched"] == "server" and hs["checked_name"] == HOST
        assert hs["server_name"] == e.target.sni
        assert hs["clienthello_shape"] == (getattr(e, "shape", None) or "whole")
        (t,) = keys.transfers
        assert (t["direction"], t["sni"], t["status_code"], t["stopped_by"]) == \
            ("down", e.target.sni, 206, "max_bytes")  # the cap sent as a Range
        assert t["bytes"] >= 300_000  # the cap, checked per read
    sent = [e.target.sni or None for e in plan(served.url, ["sni", "split"])]
    seen = served.connections(at_least=before + len(sent))[before:]
    # The server saw each name whole, also when it straddled two segments or was padded.
    assert [c["sni"] for c in seen] == sent
    assert all(c["paths"] == ["/bytes"] and c["tls"] for c in seen)


def test_quic_variants_send_their_sni_over_http3_to_the_same_server(served: Served) -> None:
    """sni-h3 and transport on loopback: each variant reaches the server over its
    transport with its SNI, the chain verified for the server's own name, and the records
    say QUIC (the server's QUIC side cannot log the SNI: aioquic does not pass it on)."""
    before = len(served.connections())
    ctx = context(served.ca)
    variants = plan(served.url, ["sni-h3", "transport"])
    for e in variants:
        keys = TestKeys()
        extra = e.run(ctx, Measurement("m", keys=keys))
        assert extra["failure"] is None and extra["address"] == "127.0.0.1", keys.tls_handshakes
        (hs,) = keys.tls_handshakes
        quic = isinstance(e, H3Download)
        assert hs.get("transport") == ("quic" if quic else None)
        assert hs["verified"] and hs["checked_name"] == HOST and hs["name_matched"] == "server"
        assert hs["server_name"] == e.target.sni
        (t,) = keys.transfers
        assert (t["sni"], t["status_code"], t["bytes"]) == (e.target.sni, 206, 300_000)
        assert t.get("transport") == ("quic" if quic else None)
    seen = served.connections(at_least=before + len(variants))[before:]
    assert sorted(c.get("transport", "tcp") for c in seen) == sorted(
        "quic" if isinstance(e, H3Download) else "tcp" for e in variants)
    assert all(c["paths"] == ["/bytes"] for c in seen)


def test_upload_counts_what_the_server_acknowledged(served: Served) -> None:
    ctx = context(served.ca, max_bytes=400_000)
    for e in plan(served.url, ["upload"]):
        keys = TestKeys()
        extra = e.run(ctx, Measurement("m", keys=keys))
        assert extra["failure"] is None
        (t,) = keys.transfers
        server = extra["server_upload"]
        assert t["direction"] == "up" and t["status_code"] == 200
        assert server["bytes"] == t["bytes"] == t["bytes_written"] == 400_000
        assert t["goodput_kbps"] == server["goodput_kbps"]
        counts = [b for _, b in t["samples"]]
        assert counts == sorted(counts)
        # Acknowledged TCP payload: the body plus TLS and HTTP framing, under 1 % more.
        assert 400_000 <= counts[-1] <= 404_000
        assert t["tcp_info"] and "bytes_acked" in t["tcp_info"][-1]


def test_certificate_for_another_name_is_refused(
    test_ca: CertificateAuthority, tmp_path: Path
) -> None:
    issued = test_ca.issue(["elsewhere.test"], out_dir=tmp_path)
    proc, port = _serve(issued.cert, issued.key, tmp_path / "log.jsonl")
    try:
        keys = TestKeys()
        e = plan(f"https://{HOST}:{port}", ["sni"])[0]  # a Twitter SNI
        extra = e.run(context(test_ca.cert_path), Measurement("m", keys=keys))
    finally:
        proc.terminate()
        proc.wait(10)
    assert extra["failure"] == "ssl_invalid_hostname"
    (hs,) = keys.tls_handshakes
    assert not hs["verified"] and hs["name_matched"] is None
    assert hs["certificates"][0]["sans"] == ["elsewhere.test"]  # the evidence is kept
    assert keys.transfers[0]["bytes"] == 0  # nothing moved over an unverified connection


def test_untrusted_chain_is_refused(served: Served, foreign_ca: CertificateAuthority) -> None:
    keys = TestKeys()
    extra = plan(served.url, ["sni"])[0].run(context(foreign_ca.cert_path),
                                             Measurement("m", keys=keys))
    assert extra["failure"] == "ssl_unknown_authority"
    assert not keys.tls_handshakes[0]["verified"]


def test_handshake_strategy_rejects_unknown_shape(ca_bundle: Path) -> None:
    with pytest.raises(ValueError, match="shape"):
        ServerCertHandshake(ca_bundle, HOST, "sideways")


def test_locate_trigger_is_one_client_hello_record() -> None:
    data = client_hello("pbs.twimg.com")
    offset, length = ch.sni_span(data)
    assert data[offset:offset + length] == b"pbs.twimg.com"
    assert len(data) == int.from_bytes(data[3:5], "big") + 5 < 1400  # fits one packet


def test_locate_without_root_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """As an ordinary user (euid faked, so it does not matter who can read the venv),
    locate says it needs root before it sends anything."""
    from click.testing import CliRunner

    from probe.cli import main

    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    res = CliRunner().invoke(main, ["locate", "--server", "https://192.0.2.80"])
    assert res.exit_code == 2, res.output
    assert "root" in res.output


def test_icmp_time_exceeded_is_matched_to_its_flow() -> None:
    from scapy.layers.inet import ICMP, IP, TCP

    from probe.experiments.locate import _quotes_flow

    def icmp(kind: int, dst: str, sport: int, dport: int) -> bytes:
        quoted = bytes(IP(src="192.0.2.1", dst=dst) / TCP(sport=sport, dport=dport))[:28]
        return bytes(IP(src="192.0.2.6", dst="192.0.2.1") / ICMP(type=kind) / quoted)

    assert _quotes_flow(icmp(11, "198.51.100.80", 40000, 443), 40000, "198.51.100.80", 443)
    assert not _quotes_flow(icmp(11, "198.51.100.80", 40001, 443), 40000, "198.51.100.80", 443)
    assert not _quotes_flow(icmp(11, "198.51.100.81", 40000, 443), 40000, "198.51.100.80", 443)
    assert not _quotes_flow(icmp(3, "198.51.100.80", 40000, 443), 40000, "198.51.100.80", 443)
    # Crafted ones: a quoted header claiming 60 bytes, cut short; an empty packet.
    good = icmp(11, "198.51.100.80", 40000, 443)
    crafted = good[:28] + bytes([0x4F]) + good[29:]
    assert not _quotes_flow(crafted, 40000, "198.51.100.80", 443)
    assert not _quotes_flow(b"", 40000, "198.51.100.80", 443)


def test_locate_confidence() -> None:
    from probe.experiments.locate import Evidence, _confidence

    def ev(k: int, throttled: bool | None) -> Evidence:
        return Evidence(k, None if throttled is None else (100.0 if throttled else 9e5), 1, 1.0,
                        throttled=throttled)

    clean = {2: [ev(2, False), ev(2, False)], 3: [ev(3, True), ev(3, True)], 4: [ev(4, True)]}
    assert _confidence(clean, 3, True, 100.0)[0] == "high"
    assert _confidence(clean, 3, True, 6.0)[0] == "medium"  # levels only 6x apart
    assert _confidence(clean, 3, False, 100.0)[0] == "low"  # the boundary moved
    noisy = {**clean, 1: [ev(1, True)]}  # a slow flow before the hop
    level, reasons = _confidence(noisy, 3, True, 100.0)
    assert level == "low" and "disagree" in reasons[1]
    failed = {**clean, 2: [ev(2, False), ev(2, None)]}
    level, reasons = _confidence(failed, 3, True, 100.0)
    assert level == "low" and "failed at TTL 2" in reasons[-1]


@pytest.mark.parametrize("answer, failure", [(b"", "eof_error"),
                                             (b"garbage\r\n\r\n", "http_invalid_response")])
def test_upload_to_a_server_that_never_answers_properly(
        test_ca: CertificateAuthority, tmp_path: Path, answer: bytes, failure: str) -> None:
    """It takes the whole body, then closes (or answers nonsense): named, not a timeout."""
    import socket
    import threading

    from tests.servers.http_servers import server_context

    issued = test_ca.issue([HOST], out_dir=tmp_path)
    listener = socket.create_server(("127.0.0.1", 0))
    tls = server_context(issued.cert, issued.key)

    def serve() -> None:
        conn, _ = listener.accept()
        with tls.wrap_socket(conn, server_side=True) as s:
            s.settimeout(10)
            data = b""
            while not data.endswith(b"0\r\n\r\n"):
                piece = s.recv(65536)
                if not piece:
                    return
                data += piece
            s.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        e = plan(f"https://{HOST}:{listener.getsockname()[1]}", ["upload"])[0]
        keys = TestKeys()
        extra = e.run(context(test_ca.cert_path, max_bytes=50_000),
                      Measurement("m", keys=keys))
    finally:
        thread.join(10)
        listener.close()
    (t,) = keys.transfers
    assert (t["failure"], t["stopped_by"]) == (failure, "error")
    assert extra["failure"] == failure


@pytest.mark.parametrize("residual, hop, confidence", [(False, 3, "high"), (True, None, "none")])
def test_locate_checks_a_flow_without_trigger_after_the_search(
        monkeypatch: pytest.MonkeyPatch, residual: bool, hop: int | None,
        confidence: str) -> None:
    """A device at hop 3. With `residual`, every flow after the first trigger is slow
    (state kept per client): the search alone would walk down to hop 1, sure of it."""
    from types import SimpleNamespace

    from probe.experiments import locate

    triggered = []

    def measure_flow(setup: object, k: int | None) -> locate.Evidence:
        if k is not None:
            triggered.append(k)
        slow = (k is not None and k >= 3) or (residual and bool(triggered))
        return locate.Evidence(k, 100.0 if slow else 50_000.0, 1000, 1.0)

    monkeypatch.setattr(locate, "measure_flow", measure_flow)
    setup = SimpleNamespace(server=SimpleNamespace(url="https://measure.test"),
                            address="198.51.100.80")
    result = locate._search(setup, "pbs.twimg.com", 4, [])
    assert (result.hop, result.confidence) == (hop, confidence), result.reasons
    assert result.baseline_after is not None and result.baseline_after.ttl is None
    if residual:
        assert any("not tied to where the trigger expired" in r for r in result.reasons)


def test_every_experiment_measurement_is_an_ooni_measurement(served: Served) -> None:
    """The envelope of each kind of experiment parses with OONI's models; the measurement
    server is the test helper it names."""
    import datetime as dt

    from probe.measurement import RunStamp, measure
    from tests.ooni_check import ooni_errors

    stamp = RunStamp(run_id="r", started=dt.datetime.now(dt.UTC), server=served.url)
    ctx = context(served.ca, max_bytes=100_000)
    done = set()
    for e in plan(served.url, list(NAMES)):
        if e.name in done:
            continue
        done.add(e.name)
        m = measure(e, ctx, run=stamp, repetition=0)
        assert ooni_errors(m) == [], e.name
        assert m["test_helpers"] == {"backend": {"address": served.url, "type": "https"}}
        assert m["annotations"]["experiment"] == e.name
    assert done == set(NAMES)
