"""`probe serve` against real clients on loopback: httpx, raw sockets and stdlib ssl."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import httpx
import pytest

from probe.lab.ca import CertificateAuthority
from probe.server import clienthello
from probe.server.app import Server
from probe.server.config import ServerConfig, label, parse_listen

pytestmark = pytest.mark.timeout(60)

MAX_CONNECTIONS = 6
IDLE = 1.5
HEADER = 1.5
MAX_UPLOAD = 1_000_000
MAX_BYTES = 20_000_000
VIDEO = os.urandom(200_000)
FILES = {
    "img.jpg": ("image/jpeg", b"\xff\xd8jpeg"),
    "img.png": ("image/png", b"\x89PNG"),
    "hls/playlist.m3u8": ("application/vnd.apple.mpegurl", b"#EXTM3U\n#EXTINF:2,\nseg1.m4s\n"),
    "hls/seg1.m4s": ("video/iso.segment", os.urandom(50_000)),
    "hls/seg2.ts": ("video/mp2t", os.urandom(30_000)),
    "video.mp4": ("video/mp4", VIDEO),
    "app.js": ("text/javascript; charset=utf-8", b"console.log(1)"),
    "index.html": ("text/html; charset=utf-8", b"<html></html>"),
    "blob.bin": ("application/octet-stream", b"\x00\x01"),
}
SECRET = b"TOP-SECRET-OUTSIDE-MEDIA"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory, test_ca: CertificateAuthority) -> dict:
    root = tmp_path_factory.mktemp("server")
    media = root / "media"
    for name, (_, data) in FILES.items():
        (media / name).parent.mkdir(parents=True, exist_ok=True)
        (media / name).write_bytes(data)
    (root / "secret.txt").write_bytes(SECRET)
    (media / "escape.txt").symlink_to(root / "secret.txt")
    (media / "inside.jpg").symlink_to(media / "img.jpg")
    cert_dir = root / "certs"
    test_ca.issue(["pbs.twimg.com"], out_dir=cert_dir)
    test_ca.issue(["*.twimg.com"], out_dir=cert_dir)
    default = test_ca.issue(["default.test", "127.0.0.1"], out_dir=root / "default")
    return {"root": root, "media": media, "cert_dir": cert_dir, "default": default}


def make_config(tree: dict, log: Path, **overrides) -> ServerConfig:
    settings = dict(
        listen=[("127.0.0.1", 0)], cert=tree["default"].cert, key=tree["default"].key,
        cert_dir=tree["cert_dir"], media=tree["media"], log=log,
        max_connections=MAX_CONNECTIONS, idle_timeout=IDLE, header_timeout=HEADER,
        max_upload_bytes=MAX_UPLOAD, max_bytes=MAX_BYTES,
    )
    settings.update(overrides)
    return ServerConfig(**settings)


@pytest.fixture
def server(tree: dict, tmp_path: Path):
    srv = Server(make_config(tree, tmp_path / "server.jsonl"))
    (srv.host, srv.port), = srv.start()
    srv.log_path = tmp_path / "server.jsonl"
    yield srv
    srv.stop()


@pytest.fixture
def client(server: Server, ca_bundle: Path):
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca_bundle)), timeout=10) as c:
        yield c


def https(server: Server, path: str) -> str:
    return f"https://127.0.0.1:{server.port}{path}"


def log_records(server: Server, count: int, event: str = "connection") -> list[dict]:
    """Wait (bounded) until `count` records of `event` were written; they come at close."""
    deadline = time.monotonic() + 10
    while True:
        text = server.log_path.read_text() if server.log_path.exists() else ""
        records = [json.loads(line) for line in text.splitlines()]
        found = [r for r in records if r["event"] == event]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def tls_context(ca_bundle: Path, check_hostname: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_bundle))
    ctx.check_hostname = check_hostname
    return ctx


def connect(server: Server, sni: str | None = None, ctx: ssl.SSLContext | None = None):
    sock = socket.create_connection((server.host, server.port), timeout=10)
    if ctx is None:
        return sock
    return ctx.wrap_socket(sock, server_hostname=sni)


def read_response(sock: socket.socket, buf: bytearray | None = None) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 response with Content-Length (what the server always sends)."""
    buf = bytearray() if buf is None else buf
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before a full head: {bytes(buf)!r}")
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    length = int(headers.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            break
        body += data
    buf[:] = body[length:]
    return int(lines[0].split()[1]), headers, bytes(body[:length])


def exchange(server: Server, request: bytes) -> tuple[int, dict, bytes]:
    with connect(server) as sock:
        sock.sendall(request)
        return read_response(sock)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True if the server closed (EOF or reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def reset(sock: socket.socket) -> None:
    """Close with an RST, like a client killed mid-transfer."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# --- endpoints ---------------------------------------------------------------------------


def test_bytes_over_https_and_plain_http_on_the_same_port(server, client):
    secure = client.get(https(server, "/bytes?n=3000000"))
    plain = httpx.get(f"http://127.0.0.1:{server.port}/bytes?n=12345", timeout=10)
    assert secure.status_code == 200 and len(secure.content) == 3_000_000
    assert plain.status_code == 200 and len(plain.content) == 12_345
    assert secure.headers["content-type"] == "application/octet-stream"
    assert len(zlib.compress(secure.content)) > 0.99 * 3_000_000  # incompressible
    assert client.get(https(server, "/bytes?n=0")).content == b""
    head = client.head(https(server, "/bytes?n=777"))
    assert head.headers["content-length"] == "777" and head.content == b""


def test_bytes_honours_a_single_range_so_a_clients_cap_holds(server, client):
    """/bytes?n= is an object like any other: a Range gives 206 and only that span, the
    same bytes the whole object holds there."""
    whole = client.get(https(server, "/bytes?n=3000000")).content
    part = client.get(https(server, "/bytes?n=3000000"), headers={"Range": "bytes=2000000-"})
    assert part.status_code == 206 and part.headers["content-range"] == \
        "bytes 2000000-2999999/3000000"
    assert part.content == whole[2_000_000:]
    capped = client.get(https(server, "/bytes?n=1000000"), headers={"Range": "bytes=0-65535"})
    assert capped.status_code == 206 and len(capped.content) == 65_536
    assert client.get(https(server, "/bytes?n=10"),
                      headers={"Range": "bytes=20-"}).status_code == 416


@pytest.mark.parametrize("query", ["", "?n=", "?n=-1", "?n=abc", f"?n={MAX_BYTES + 1}",
                                   "?n=%C2%B2", "?n=" + "9" * 5000])
def test_bytes_rejects_bad_or_too_large_n(server, client, query):
    assert client.get(https(server, "/bytes" + query)).status_code == 400


def test_meta_describes_this_connection(server, client):
    meta = client.get(https(server, "/meta"), extensions={"sni_hostname": "pbs.twimg.com"}).json()
    conn = meta["connection"]
    assert meta["version"] and meta["server_time"].endswith("Z")
    assert conn["sni"] == "pbs.twimg.com" and conn["tls"] is True
    assert conn["tls_version"] == "TLSv1.3"
    assert conn["bytes_in"] > 50 and conn["requests"] == 1
    assert conn["tcp_info"]["rtt_us"] > 0
    plain = httpx.get(f"http://127.0.0.1:{server.port}/meta", timeout=10).json()["connection"]
    assert plain["tls"] is False and plain["sni"] is None and plain["tls_version"] is None


def test_upload_is_counted_server_side(server, client):
    body = os.urandom(400_000)
    result = client.post(https(server, "/upload"), content=body).json()
    assert result["bytes"] == 400_000
    assert result["duration_s"] > 0 and result["goodput_kbps"] > 0
    assert result["first_byte_ms"] >= 0 and result["tcp_info"]["bytes_received"] >= 400_000

    def chunks():
        for _ in range(7):
            yield b"x" * 10_001

    chunked = client.post(https(server, "/upload"), content=chunks()).json()
    assert chunked["bytes"] == 70_007


def test_upload_over_the_limit_is_413(server, client):
    too_big = client.post(https(server, "/upload"), content=b"x" * (MAX_UPLOAD + 1))
    assert too_big.status_code == 413
    chunked = client.post(https(server, "/upload"), content=iter([b"y" * 400_000] * 3))
    assert chunked.status_code == 413


def test_expect_100_continue_gets_interim_response(server):
    with connect(server) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        status, _, body = read_response(sock)
    assert status == 200 and json.loads(body)["bytes"] == 5


def test_unknown_path_and_wrong_method(server, client):
    assert client.get(https(server, "/nothing")).status_code == 404
    wrong = client.post(https(server, "/meta"), content=b"abc")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD"
    assert client.get(https(server, "/upload")).status_code == 405


# --- media ---------------------------------------------------------------------------------


def test_media_types_bodies_and_keep_alive(server, client):
    for name, (ctype, data) in FILES.items():
        response = client.get(https(server, f"/media/{name}"))
        assert response.status_code == 200, name
        assert response.headers["content-type"] == ctype, name
        assert response.content == data, name
    head = client.head(https(server, "/media/video.mp4"))
    assert head.headers["content-length"] == str(len(VIDEO)) and head.content == b""
    client.close()
    (record,) = log_records(server, 1)
    assert record["requests"] == len(FILES) + 1  # all over one keep-alive connection
    assert record["paths"][0] == "/media/img.jpg" and record["paths"][-1] == "/media/video.mp4"
    assert record["statuses"] == [200] * (len(FILES) + 1)


@pytest.mark.parametrize(
    "header,status,span",
    [
        ("bytes=10-19", 206, (10, 19)),
        ("bytes=199990-", 206, (199_990, 199_999)),
        ("bytes=-5", 206, (199_995, 199_999)),
        ("bytes=0-999999999", 206, (0, 199_999)),
        ("bytes=0-0", 206, (0, 0)),
        ("bytes=0-1,5-6", 200, None),  # multi-range: ignored, whole file
        ("bytes=abc", 200, None),
        ("bytes=9-3", 200, None),
        (b"bytes=\xb2-", 200, None),  # a latin-1 superscript two is no digit to int()
        ("bytes=" + "9" * 30 + "-", 200, None),
    ],
)
def test_media_single_ranges(server, client, header, status, span):
    response = client.get(https(server, "/media/video.mp4"), headers={"Range": header})
    assert response.status_code == status
    if span is None:
        assert response.content == VIDEO
    else:
        first, last = span
        assert response.content == VIDEO[first:last + 1]
        assert response.headers["content-range"] == f"bytes {first}-{last}/{len(VIDEO)}"


@pytest.mark.parametrize("header", ["bytes=200000-", "bytes=300000-300010", "bytes=-0"])
def test_media_unsatisfiable_range_is_416(server, client, header):
    response = client.get(https(server, "/media/video.mp4"), headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(VIDEO)}"
    assert client.get(https(server, "/media/img.jpg")).status_code == 200  # still usable


@pytest.mark.parametrize(
    "path",
    [
        "/media/../secret.txt",
        "/media/%2e%2e/secret.txt",
        "/media/%2E%2E%2Fsecret.txt",
        "/media/..%2fsecret.txt",
        "/media/hls/../../secret.txt",
        "/media/hls/%2e%2e/%2e%2e/secret.txt",
        "/media/%2e%2e%5csecret.txt",
        "/media//etc/passwd",
        "/media/%2Fetc%2Fpasswd",
        "/media/escape.txt",
        "/media/img.jpg%00.png",
        "/media/",
        "/media/hls",
        "/media/missing.jpg",
    ],
)
def test_media_never_leaves_the_folder(server, path):
    status, _, body = exchange(server, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status in (400, 404)
    assert SECRET not in body and b"root:" not in body


def test_media_symlink_inside_the_folder_is_served(server, client):
    assert client.get(https(server, "/media/inside.jpg")).content == FILES["img.jpg"][1]


# --- TLS -----------------------------------------------------------------------------------


def peer_names(sock: ssl.SSLSocket) -> list[str]:
    return [value for _, value in sock.getpeercert()["subjectAltName"]]


@pytest.mark.parametrize(
    "sni,expected",
    [
        ("pbs.twimg.com", ["pbs.twimg.com"]),
        ("PBS.TWIMG.COM", ["pbs.twimg.com"]),
        ("video.twimg.com", ["*.twimg.com"]),
        ("twitter.com", ["default.test", "127.0.0.1"]),
        ("throttletwitter.com", ["default.test", "127.0.0.1"]),
        ("a" * 60 + ".t.co", ["default.test", "127.0.0.1"]),
        (None, ["default.test", "127.0.0.1"]),
    ],
)
def test_sni_chooses_certificate_and_any_name_is_accepted(server, ca_bundle, sni, expected):
    ctx = tls_context(ca_bundle, check_hostname=False)  # chain still verified against test CA
    with connect(server, sni=sni, ctx=ctx) as sock:
        assert peer_names(sock) == expected
        sock.sendall(b"GET /meta HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 200
    assert json.loads(body)["connection"]["sni"] == sni


def test_sni_certificate_verifies_with_hostname_check(server, ca_bundle):
    with connect(server, sni="video.twimg.com", ctx=tls_context(ca_bundle)) as sock:
        assert sock.version() == "TLSv1.3"


def test_tls12_client_is_served(server, ca_bundle):
    ctx = tls_context(ca_bundle)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with connect(server, sni="pbs.twimg.com", ctx=ctx) as sock:
        sock.sendall(b"GET /meta HTTP/1.1\r\nHost: x\r\n\r\n")
        assert json.loads(read_response(sock)[2])["connection"]["tls_version"] == "TLSv1.2"


def client_hello(sni: str | None) -> bytes:
    """The first flight of a real stdlib TLS client (never completed)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    outgoing = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_client_hello_parser_finds_the_sni():
    hello = client_hello("pbs.twimg.com")
    assert clienthello.server_name(hello) == b"pbs.twimg.com"
    assert clienthello.server_name(client_hello(None)) is None
    assert clienthello.server_name(hello[:60]) is None  # cut before the extensions
    assert clienthello.server_name(b"GET / HTTP/1.1\r\n\r\n") is None
    assert clienthello.server_name(b"\x16\x03\x01") is None


def test_non_ascii_sni_is_not_refused(server):
    """Python's SNI callback cannot take a non-ASCII name; the server must still answer."""
    hello = client_hello("aaaa.example").replace(b"aaaa.example", "ää.example".encode())
    with connect(server) as sock:
        sock.sendall(hello)
        first = sock.recv(6)
    assert first[0] == 0x16 and first[5] == 0x02  # a handshake record: ServerHello, no alert
    (record,) = log_records(server, 1)
    assert record["sni"] == "ää.example"


# --- robustness and limits -----------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes,status",
    [
        (b"GET /meta HTTP/1.1\r\n" + b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431),
        (b"GET /meta HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n",
         431),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /meta HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
        (b"GET /meta HTTP/1.1\r\nX-A\n: 1\r\n\r\n", 400),
        (b"POST /upload HTTP/1.1\r\nX-A: 1\nContent-Length: 0\r\n\r\n", 400),
        (b"GET http://example.org/ HTTP/1.1\r\n\r\n", 400),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),  # HTTP/2 prior knowledge
        (b"GET /meta HTTP/3.0\r\n\r\n", 505),
        (b"POST /upload HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST /upload HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        (b"POST /upload HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST /upload HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n", 400),  # latin-1 superscript
        (b"POST /upload HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", 400),
        (b"POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ],
)
def test_malformed_requests_get_an_error_and_a_close(server, request_bytes, status):
    with connect(server) as sock:
        sock.sendall(request_bytes)
        got, headers, _ = read_response(sock)
        assert got == status
        assert headers["connection"] == "close"
        assert closed_by_server(sock, within=5)


def test_pipelined_requests_are_answered_in_order(server):
    with connect(server) as sock:
        sock.sendall(
            b"GET /bytes?n=3 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd"
            b"GET /media/img.jpg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        buf = bytearray()
        first, second, third = (read_response(sock, buf) for _ in range(3))
        assert closed_by_server(sock, within=5)
    assert len(first[2]) == 3
    assert json.loads(second[2])["bytes"] == 4
    assert third[2] == FILES["img.jpg"][1]


def test_http10_without_keep_alive_is_closed_after_the_response(server):
    with connect(server) as sock:
        sock.sendall(b"GET /bytes?n=10 HTTP/1.0\r\n\r\n")
        status, headers, body = read_response(sock)
        assert status == 200 and len(body) == 10 and headers["connection"] == "close"
        assert closed_by_server(sock, within=5)


def test_idle_connection_is_closed_and_logged(server):
    with connect(server) as sock:
        sock.sendall(b"GET /meta HTTP/1.1\r\nHost: x\r\n\r\n")
        read_response(sock)
        started = time.monotonic()
        assert closed_by_server(sock, within=IDLE + 5)
        assert time.monotonic() - started >= IDLE * 0.8
    assert log_records(server, 1)[0]["end"] == "idle_timeout"


def test_slow_reader_keeps_its_keep_alive_connection(server):
    """A throttled client drains a buffered response for longer than the idle timeout:
    it is not idle (it keeps acknowledging), so its next request must still be served."""
    n = 700_000
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: slow drain
    sock.connect((server.host, server.port))
    with sock:
        sock.sendall(b"GET /bytes?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
        started, buf = time.monotonic(), bytearray()
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(8192)
        body = len(buf) - buf.index(b"\r\n\r\n") - 4
        while body < n:  # ~400 kB/s at best
            data = sock.recv(8192)
            assert data, "server closed a connection that was still draining"
            body += len(data)
            time.sleep(0.02)
        assert time.monotonic() - started > 1.5 * IDLE
        sock.sendall(b"GET /bytes?n=5 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 200 and len(body) == 5


def test_slow_request_head_is_cut_off(server):
    """Slowloris: bytes keep coming, but the head must be complete within the header timeout."""
    request = b"GET /meta HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    with connect(server) as sock:
        started = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for i in range(len(request)):
                sock.sendall(request[i:i + 1])
                time.sleep(0.1)  # 10 s in total if never cut
        assert time.monotonic() - started < HEADER + 5


def test_silent_connection_is_closed(server):
    with connect(server) as sock:
        assert closed_by_server(sock, within=HEADER + 5)


def test_excess_connections_are_closed_at_once(server):
    held = []
    try:
        for _ in range(MAX_CONNECTIONS):
            sock = connect(server)
            sock.sendall(b"GET /meta HTTP/1.1\r\nHost: x\r\n\r\n")
            read_response(sock)  # accepted and being served: the slot is taken
            held.append(sock)
        with connect(server) as extra:
            assert closed_by_server(extra, within=1.0)
        assert server.rejected >= 1
        held.pop().close()
        deadline = time.monotonic() + 5
        while server.active >= MAX_CONNECTIONS and time.monotonic() < deadline:
            time.sleep(0.02)
        status, _, _ = exchange(server, b"GET /meta HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200
    finally:
        for sock in held:
            sock.close()


def test_bad_clients_do_not_hurt_the_server(server, ca_bundle):
    with connect(server) as sock:  # TLS record header followed by garbage
        sock.sendall(b"\x16\x03\x01\x00\x40" + os.urandom(64))
        assert closed_by_server(sock, within=5)
    with connect(server) as sock:  # TLS that stops mid-ClientHello
        sock.sendall(b"\x16\x03\x01\x02\x00\x01")
        assert closed_by_server(sock, within=HEADER + 5)
    sock = connect(server)
    sock.sendall(b"GET /me")
    reset(sock)
    tls = connect(server, sni="pbs.twimg.com", ctx=tls_context(ca_bundle))
    tls.sendall(b"GET /bytes?n=15000000 HTTP/1.1\r\nHost: x\r\n\r\n")
    tls.recv(1000)
    reset(tls)
    records = log_records(server, 4)
    failures = {r["failure"] for r in records if r["end"] == "failure" and r["sni"] is None}
    assert failures == {"ssl_failed_handshake", "generic_timeout_error", "connection_reset"}
    (cut,) = [r for r in records if r["sni"] == "pbs.twimg.com"]
    assert cut["end"] == "client_closed_mid_response"
    assert cut["failure"] in ("connection_reset", "eof_error")
    assert 0 < cut["bytes_out"] < 15_000_000
    status, _, _ = exchange(server, b"GET /meta HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200


# --- log -----------------------------------------------------------------------------------


def test_log_line_per_connection_without_client_address(server, client):
    extension = {"sni_hostname": "pbs.twimg.com"}
    client.get(https(server, "/meta?secret=1"), extensions=extension)
    client.get(https(server, "/bytes?n=2000000"), extensions=extension)
    client.post(https(server, "/upload"), content=b"u" * 100_000, extensions=extension)
    client.close()
    (record,) = log_records(server, 1)
    assert record["listener"] == f"127.0.0.1:{server.port}"
    assert record["sni"] == "pbs.twimg.com" and record["tls"] is True
    assert record["requests"] == 3 and record["paths"] == ["/meta", "/bytes", "/upload"]
    assert record["bytes_out"] > 2_000_000 and record["bytes_in"] > 100_000
    assert record["duration_s"] > 0 and record["time"].endswith("Z")
    assert record["goodput_kbps"]["up"] > 0
    assert set(record["goodput_kbps"]) == {"up", "down"}
    assert record["tcp_info"]["rtt_us"] > 0 and record["tcp_info"]["total_retrans"] >= 0
    assert record["end"] == "client_closed" and record["failure"] is None
    assert "client" not in record and "127.0.0.1\"" not in server.log_path.read_text()
    assert "secret" not in server.log_path.read_text()


def test_client_address_is_logged_only_on_request(tree, tmp_path):
    log = tmp_path / "log.jsonl"
    with Server(make_config(tree, log, log_client_address=True)) as srv:
        port = srv.addresses[0][1]
        with socket.create_connection(("127.0.0.1", port)) as sock:
            local_port = sock.getsockname()[1]
            sock.sendall(b"GET /meta HTTP/1.1\r\nConnection: close\r\n\r\n")
            read_response(sock)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    (conn,) = [r for r in records if r["event"] == "connection"]
    assert conn["client"] == f"127.0.0.1:{local_port}"
    assert records[-1]["event"] == "stop"
    assert (records[-1]["accepted"], records[-1]["rejected"]) == (1, 0)


def test_one_client_cannot_take_every_slot(tree, tmp_path):
    with Server(make_config(tree, tmp_path / "log.jsonl", max_connections_per_client=2)) as srv:
        port = srv.addresses[0][1]
        held = []
        try:
            for _ in range(2):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(b"GET /meta HTTP/1.1\r\nHost: x\r\n\r\n")
                read_response(sock)
                held.append(sock)
            with socket.create_connection(("127.0.0.1", port)) as third:
                assert closed_by_server(third, within=2)
            # another address still gets in
            with socket.create_connection(("127.0.0.1", port),
                                          source_address=("127.0.0.2", 0)) as other:
                other.sendall(b"GET /meta HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert read_response(other)[0] == 200
            held.pop().close()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # the slot comes back once it is closed
                with socket.create_connection(("127.0.0.1", port)) as again:
                    again.sendall(b"GET /meta HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    try:
                        if read_response(again)[0] == 200:
                            break
                    except (OSError, ValueError):
                        pass
                time.sleep(0.05)
            else:
                pytest.fail("the client's slot did not come back")
        finally:
            for sock in held:
                sock.close()


def test_no_thread_to_spare_refuses_one_connection_and_keeps_serving(
        tree, tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    with Server(make_config(tree, log)) as srv:
        port = srv.addresses[0][1]
        original = threading.Thread.start
        failed = []

        def start_once_failing(thread):
            if not failed:
                failed.append(thread)
                raise RuntimeError("can't start new thread")
            return original(thread)

        monkeypatch.setattr(threading.Thread, "start", start_once_failing)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            assert closed_by_server(sock, within=5)
        monkeypatch.setattr(threading.Thread, "start", original)
        assert len(httpx.get(f"http://127.0.0.1:{port}/bytes?n=5", timeout=10).content) == 5
    stop = json.loads(log.read_text().splitlines()[-1])
    assert failed and (stop["accepted"], stop["rejected"]) == (1, 1)


# --- lifecycle -----------------------------------------------------------------------------


def test_stop_closes_open_connections_promptly(tree, tmp_path):
    srv = Server(make_config(tree, tmp_path / "log.jsonl", idle_timeout=60, header_timeout=60))
    (_, port), = srv.start()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /meta HTTP/1.1\r\n\r\n")
    read_response(sock)
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 3
    assert closed_by_server(sock, within=1)
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_several_listeners_including_ipv6(tree, tmp_path):
    log = tmp_path / "log.jsonl"
    with Server(make_config(tree, log, listen=[("127.0.0.1", 0), ("::1", 0)])) as srv:
        (v4, p4), (v6, p6) = srv.addresses
        assert (v4, v6) == ("127.0.0.1", "::1") and p4 and p6
        assert len(httpx.get(f"http://127.0.0.1:{p4}/bytes?n=9", timeout=10).content) == 9
        assert len(httpx.get(f"http://[::1]:{p6}/bytes?n=8", timeout=10).content) == 8
    listeners = {json.loads(x).get("listener") for x in log.read_text().splitlines()}
    assert {f"127.0.0.1:{p4}", f"[::1]:{p6}"} <= listeners


def test_self_signed_certificate_when_none_given(tree, tmp_path):
    config = make_config(tree, tmp_path / "log.jsonl", cert=None, key=None, cert_dir=None)
    with Server(config) as srv:
        port = srv.addresses[0][1]
        der = ssl.get_server_certificate(("127.0.0.1", port))
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(der)).hexdigest().upper()
    assert srv.certificates.fingerprint.replace(":", "") == digest


def test_python_m_probe_server_serves_and_exits_on_sigterm(tree, tmp_path):
    log = tmp_path / "serve.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "probe.server", "--listen", "127.0.0.1:0", "--log", str(log),
         "--media", str(tree["media"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening 127.0.0.1:"), proc.stderr.read()
        port = int(line.split(":")[-1])
        response = httpx.get(f"https://127.0.0.1:{port}/media/img.jpg", verify=False, timeout=10)
        assert response.content == FILES["img.jpg"][1]
        pem = ssl.get_server_certificate(("127.0.0.1", port))
        printed = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        stderr = proc.stderr.read()
        assert ":".join(printed[i:i + 2] for i in range(0, 64, 2)) in stderr
        events = [json.loads(x)["event"] for x in log.read_text().splitlines()]
        assert events[0] == "start" and events[-1] == "stop" and "connection" in events
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    "text,expected",
    [("127.0.0.1:8443", ("127.0.0.1", 8443)), (":80", ("0.0.0.0", 80)),
     ("[::1]:443", ("::1", 443))],
)
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected
    assert parse_listen(label(*expected)) == expected


@pytest.mark.parametrize("text", ["8443", "host:", "host:99999", "host:http"])
def test_parse_listen_rejects(text):
    with pytest.raises(ValueError):
        parse_listen(text)

