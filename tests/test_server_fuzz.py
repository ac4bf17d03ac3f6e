"""Property-based fuzzing of what `probe serve` parses from strangers.

The HTTP request reader (heads and bodies, over a real socket), the ClientHello
peek, and the whole server over TCP get random and mutated inputs: each must
give a parsed result or a clean HTTP error / close, never an escaping
exception or a hang. Each test prints how many cases it ran.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe.server import clienthello
from probe.server.app import Server
from probe.server.config import ServerConfig
from probe.server.http import HttpError, IdleTimeout, Limits, Request, read_request, sink_body
from probe.server.stream import PeerClosed, Stream

pytestmark = pytest.mark.timeout(300)

SEEDS = [
    b"GET /bytes?n=10 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD /meta HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /media/a.jpg HTTP/1.1\r\nRange: bytes=0-1\r\n\r\n",
    b"GET /media/%2e%2e/a.jpg?x=%ff HTTP/1.1\r\nRange: bytes=-3\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
    b"POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
]
# Pieces that sit on the parser's decisions: separators, framing headers, odd numbers.
TOKENS = [
    b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b",", b";", b"%", b"%ff", b"%00", b"\x00", b"\xff",
    b"?", b"#", b"/", b"..", b"HTTP/2.0", b"HTTP/1.1", b"Content-Length: ", b"Transfer-Encoding: ",
    b"chunked", b"gzip", b"Connection: close", b"Expect: 100-continue", b"Range: bytes=",
    b"-", b"0", b"99999999999999999999", b"ffffffffffffffff", b"\r\n\r\n",
]
LIMITS = Limits(max_request_line=256, max_header_bytes=512, max_headers=8, header_timeout=1.0)
counts: dict[str, int] = {}


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few byte flips, insertions (random or parser tokens), cuts, duplications."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "insert", "token", "cut", "repeat"]))
        if op == "flip" and data:
            data[min(pos, len(data) - 1)] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(max_size=16))
        elif op == "token":
            data[pos:pos] = draw(st.sampled_from(TOKENS)) * draw(st.integers(1, 40))
        elif op == "cut":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif op == "repeat":
            data[pos:pos] = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


requests = st.one_of(
    st.binary(max_size=2048),
    st.lists(mutated(SEEDS), min_size=1, max_size=3).map(b"".join),
)


def serve_bytes(data: bytes) -> list[int | str]:
    """Run the server's request loop (heads, then bodies) over a socket carrying `data`."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(data)
        theirs.shutdown(socket.SHUT_WR)
        stream = Stream(ours, idle_timeout=1.0, send_chunk=4096)
        outcomes: list[int | str] = []
        while True:
            try:
                request = read_request(stream, LIMITS)
                if request is None:
                    return outcomes
                assert isinstance(request, Request)
                sink_body(stream, request, limit=1000)
                outcomes.append(200)
            except HttpError as exc:
                return [*outcomes, exc.status]
            except (PeerClosed, IdleTimeout) as exc:
                return [*outcomes, type(exc).__name__]


@settings(max_examples=1500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(requests)
def test_request_reader_parses_or_refuses_cleanly(data: bytes):
    counts["http reader"] = counts.get("http reader", 0) + 1
    started = time.monotonic()
    outcomes = serve_bytes(data)
    assert time.monotonic() - started < 2, "the reader waited on a closed stream"
    assert all(o in (200, "PeerClosed") or (isinstance(o, int) and 400 <= o < 600)
               for o in outcomes)


def client_hello(name: str | None) -> bytes:
    """The first flight of a real TLS client (stdlib ssl), with `name` as SNI."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


NAMES = ["pbs.twimg.com", "a.b", ".".join(["x" * 60] * 4), "control.test"]
HELLOS = [client_hello(n) for n in NAMES] + [client_hello(None)]


@settings(max_examples=2500, deadline=None, derandomize=True)
@given(st.one_of(st.binary(max_size=600), mutated(HELLOS),
                 st.sampled_from(HELLOS).flatmap(lambda h: st.integers(0, len(h)).map(
                     lambda n: h[:n]))))
def test_client_hello_peek_never_raises(data: bytes):
    counts["client hello"] = counts.get("client hello", 0) + 1
    name = clienthello.server_name(data)
    assert name is None or isinstance(name, bytes)


def test_client_hello_peek_finds_the_names_of_real_hellos():
    assert [clienthello.server_name(h) for h in HELLOS] == [n.encode() for n in NAMES] + [None]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "media").mkdir()
    (root / "media" / "a.jpg").write_bytes(b"\xff\xd8jpeg")
    log = root / "serve.jsonl"
    config = ServerConfig(listen=[("127.0.0.1", 0)], media=root / "media", log=log,
                          idle_timeout=2, header_timeout=2, max_upload_bytes=1000,
                          max_connections_per_client=64, max_connections_per_network=64)
    with Server(config) as srv:
        yield srv, log


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(requests)
def test_server_answers_or_closes_on_any_bytes(live: tuple[Server, Path], data: bytes):
    counts["server over TCP"] = counts.get("server over TCP", 0) + 1
    srv, _ = live
    started = time.monotonic()
    with socket.create_connection(srv.addresses[0], timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:  # the server closed with our bytes unread
            answer = b""
    assert time.monotonic() - started < 4
    if data[:1] != b"\x16":  # TLS records get TLS alerts
        assert answer == b"" or answer.startswith(b"HTTP/1.1 ")


def test_fuzzed_server_logged_no_crash(live: tuple[Server, Path]):
    """Runs after the fuzz test above: no connection ended with an unclassified exception."""
    srv, log = live
    with socket.create_connection(srv.addresses[0], timeout=5) as sock:  # still serving
        sock.sendall(b"GET /bytes?n=3 HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    time.sleep(0.2)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    ends = [(r["end"], r["failure"]) for r in records if r["event"] == "connection"]
    crashes = [e for e in ends if (e[1] or "").startswith("unknown_failure")]
    print(f"fuzz cases: {counts}; server connections logged: {len(ends)}; "
          f"crashes: {len(crashes)}")
    assert not crashes and not [r for r in records if r["event"] == "accept_error"]
