"""`probe serve` does not say what it is: no banner, no `Server` header, no telling error
texts, a default certificate without the project's name, and endpoints under a prefix
that a probe's `--server URL` path reaches."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509

from probe.cli import main
from probe.experiments import plan
from probe.experiments.base import Server as ServerUrl
from probe.lab.ca import CertificateAuthority
from probe.measure.keys import TestKeys
from probe.measure.tls import make_context
from probe.measure.transfer import Limits
from probe.measurement import MeasureContext, Measurement
from probe.server.app import Server
from probe.server.config import ServerConfig, parse_path_prefix

pytestmark = pytest.mark.timeout(60)
HOST = "measure.test"
PREFIX = "/x7k2"
# What a scanner might send: the root, common probes, our endpoints without the
# prefix, malformed heads, a refused upload.
SCANS = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /robots.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /meta HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /bytes?n=5 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"GET /x7k2 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /x7k2/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /x7k2bytes?n=5 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /x7k2/bytes?n=abc HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /x7k2/media/a.jpg HTTP/1.1\r\nHost: x\r\n\r\n",
    b"DELETE /x7k2/meta HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/2.0\r\n\r\n",
    b"GET / HTTP/1.1\r\nbroken\r\n\r\n",
    b"POST /x7k2/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n"
    b"Expect: 100-continue\r\n\r\n",
    b"\x00\x01garbage\r\n\r\n",
]


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while piece := sock.recv(65536):
            out += piece
    return out


@pytest.fixture(scope="module")
def neutral(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A server as deployed with defaults (self-signed certificate), plus a prefix."""
    log = tmp_path_factory.mktemp("neutral") / "log.jsonl"
    with Server(ServerConfig(listen=[("127.0.0.1", 0)], log=log, path_prefix=PREFIX,
                             max_upload_bytes=1000)) as srv:
        yield srv.addresses[0][1]


@pytest.mark.parametrize("request_bytes", SCANS)
def test_no_answer_tells_what_the_server_is(neutral: int, request_bytes: bytes) -> None:
    answer = _exchange(neutral, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 4") or head.startswith(b"HTTP/1.1 5"), answer
    assert b"\r\nserver:" not in head.lower()
    _, status, phrase = head.split(b"\r\n")[0].split(b" ", 2)
    assert body in (b"", status + b" " + phrase + b"\n"), body  # the standard phrase only
    assert b"probe" not in answer.lower() and b"--" not in body


def test_the_endpoints_answer_under_the_prefix_only(neutral: int) -> None:
    base = f"http://127.0.0.1:{neutral}"
    ok = httpx.get(f"{base}{PREFIX}/bytes?n=5", timeout=10)
    assert ok.status_code == 200 and len(ok.content) == 5 and "server" not in ok.headers
    meta = httpx.get(f"{base}{PREFIX}/meta", timeout=10)
    assert meta.status_code == 200 and "server" not in meta.headers
    assert httpx.get(f"{base}/bytes?n=5", timeout=10).status_code == 404
    up = httpx.post(f"{base}{PREFIX}/upload", content=b"abc", timeout=10)
    assert up.json()["bytes"] == 3


def test_the_default_certificate_has_no_project_name(neutral: int) -> None:
    pem = ssl.get_server_certificate(("127.0.0.1", neutral))
    cert = x509.load_pem_x509_certificate(pem.encode())
    names = cert.subject.rfc4514_string() + cert.issuer.rfc4514_string()
    names += str(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    assert "probe" not in names.lower() and "localhost" in names


def test_the_root_is_a_404_without_a_prefix_too(tmp_path: Path) -> None:
    with Server(ServerConfig(listen=[("127.0.0.1", 0)], log=tmp_path / "l.jsonl")) as srv:
        base = f"http://127.0.0.1:{srv.addresses[0][1]}"
        root = httpx.get(base + "/", timeout=10)
        assert root.status_code == 404 and root.text == "404 Not Found\n"
        assert len(httpx.get(base + "/bytes?n=3", timeout=10).content) == 3


@pytest.mark.parametrize("text, prefix", [("", ""), ("/", ""), ("/x7k2", "/x7k2"),
                                          ("x7k2/", "/x7k2"), ("/a/b-c_d.e~f", "/a/b-c_d.e~f")])
def test_path_prefix_is_normalised(text: str, prefix: str) -> None:
    assert parse_path_prefix(text) == prefix


@pytest.mark.parametrize("text", ["/a b", "/a?b", "/a//b", "/%2e", "/a#b", "/é"])
def test_path_prefix_must_be_plain_url_characters(text: str) -> None:
    with pytest.raises(ValueError, match="path prefix"):
        parse_path_prefix(text)
    res = CliRunner().invoke(main, ["serve", "--listen", "127.0.0.1:0", "--path-prefix", text])
    assert res.exit_code == 2 and "--path-prefix" in res.output


def test_server_url_path_is_the_prefix() -> None:
    server = ServerUrl.parse("https://m.example.org:8443/x7k2/")
    assert server.url_for("/bytes?n=1") == "https://m.example.org:8443/x7k2/bytes?n=1"
    assert ServerUrl.parse("https://m.example.org").url_for("/upload") == \
        "https://m.example.org:443/upload"


def test_experiments_reach_a_prefixed_server(test_ca: CertificateAuthority,
                                             tmp_path: Path) -> None:
    issued = test_ca.issue([HOST], out_dir=tmp_path)
    log = tmp_path / "log.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "probe.server", "--listen", "127.0.0.1:0", "--cert",
         str(issued.cert), "--key", str(issued.key), "--log", str(log),
         "--path-prefix", PREFIX], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
        ctx = MeasureContext(
            resolvers=[], ssl_context=make_context(test_ca.cert_path),
            limits=Limits(max_bytes=50_000, max_seconds=5.0), stop_when=None, allow_nets=[],
            dns_timeout=2.0, ca_bundle=test_ca.cert_path, connect_to={HOST: "127.0.0.1"})
        variants = [e for e in plan(f"https://{HOST}:{port}{PREFIX}", ["sni", "upload"])
                    if e.target.name in ("sni-neutral", "upload-neutral")]
        assert len(variants) == 2
        for e in variants:
            keys = TestKeys()
            assert e.run(ctx, Measurement("m", keys=keys))["failure"] is None
            # a download sends its cap as a Range: 206; an upload's answer is 200
            expected = 206 if e.target.name == "sni-neutral" else 200
            assert keys.transfers[0]["status_code"] == expected
    finally:
        proc.terminate()
        proc.wait(10)
    records = [json.loads(x) for x in log.read_text().splitlines()]
    start = records[0]
    assert start["event"] == "start" and start["path_prefix"] == PREFIX
    paths = [p for r in records if r["event"] == "connection" for p in r["paths"]]
    assert sorted(paths) == [f"{PREFIX}/bytes", f"{PREFIX}/upload"]
