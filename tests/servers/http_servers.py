"""Small threaded HTTP/1.1 servers (plain or TLS) with hostile behaviours, for tests and benches.

Each path is a behaviour, so one server covers a whole test module:

  /bytes/N                 N bytes as fast as possible (sendall of a memoryview)
  /slow/N?kbps=R           N bytes paced by the application at R kbit/s
  /stall/N?after=K         announces N bytes, sends K, then never sends again
  /reset?after=K           sends K bytes of a larger body, then RST (SO_LINGER 0)
  /eof?after=K             sends K bytes of a larger body, then a clean close (FIN)
  /garbage                 non-HTTP bytes, then close
  /endless                 a body that never ends (until the client goes away)
  /echo                    200 with the request's Host header as the body
  /hugeheaders             a status line, then header lines without end (16 MB at most)
  /drip                    the response trickles in, one byte every 100 ms
  /unframed/N?kbps=R       no Content-Length (the body ends at the close): N bytes at R
                           kbit/s, then close; N = 0: the headers, then silence
  /alert?after=K           K body bytes, then a fatal TLS alert in clear text, then close
  /upload (POST)           reads the body, answers with its length
  /video.mp4               a 1 MB object honouring `Range: bytes=a-b` (206)
  /hls/master.m3u8         master playlist: two variants, the low one listed last
  /hls/{low,high}/index.m3u8, init.mp4, segN.m4s   fMP4 media playlist and segments
  /hls/{low,high}/index    the same playlist without the .m3u8 extension

`seen` keeps what the server observed (SNI per TLS connection, request headers),
so tests can check what actually went over the wire.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

PAYLOAD = memoryview(os.urandom(1 << 20))
HLS_SEGMENTS = 6
HLS_SEGMENT_BYTES = 40_000
MP4_BYTES = 1_000_000
_HEADER_LIMIT = 65536


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS server context for a certificate issued by probe.lab.ca."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass
class Seen:
    """What the server observed, in order."""

    sni: list[str | None] = field(default_factory=list)  # one per TLS handshake
    requests: list[dict] = field(default_factory=list)  # {method, path, headers}
    connections: int = 0


class TestServer:
    """A threaded HTTP/1.1 server on loopback, TLS when given a context; a context manager."""

    __test__ = False

    def __init__(self, context: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.context = context
        self.seen = Seen()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server((host, 0), backlog=64)
        self.host = host
        self.port = self._listener.getsockname()[1]
        if context is not None:
            context.sni_callback = self._on_sni

    def url(self, path: str, host: str | None = None) -> str:
        scheme = "https" if self.context else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    def __enter__(self) -> TestServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        # Here, not in the thread: a stop() right after start() may close it first.
        self._listener.settimeout(0.2)
        thread = threading.Thread(target=self._accept_loop, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop accepting, cut every open connection and join all threads."""
        self._stop.set()
        self._listener.close()
        with self._lock:
            for conn in list(self._conns):
                _shutdown(conn)
        for thread in list(self._threads):
            thread.join(timeout=5)

    def _on_sni(self, sslobj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        with self._lock:
            self.seen.sni.append(name)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.seen.connections += 1
                self._conns.add(conn)
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        sock: socket.socket = conn
        try:
            conn.settimeout(10)
            if self.context is not None:
                sock = self.context.wrap_socket(conn, server_side=True)
                with self._lock:
                    self._conns.discard(conn)
                    self._conns.add(sock)
            reader = _Reader(sock)
            while not self._stop.is_set():
                request = reader.request()
                if request is None:
                    return
                with self._lock:
                    self.seen.requests.append(request)
                if not self._respond(sock, reader, request):
                    return
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._conns.discard(sock)
                self._conns.discard(conn)
            sock.close()

    def _respond(self, sock: socket.socket, reader: _Reader, req: dict) -> bool:
        """Serve one request; False when the connection must end."""
        parts = urlsplit(req["path"])
        path = parts.path
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        after = int(query.get("after", "0"))
        if path.startswith("/bytes/"):
            n = int(path.rsplit("/", 1)[1])
            sock.sendall(_head(200, n))
            _send_fast(sock, n)
        elif path.startswith("/slow/"):
            n = int(path.rsplit("/", 1)[1])
            sock.sendall(_head(200, n))
            self._send_paced(sock, n, float(query.get("kbps", "200")) * 1000 / 8)
        elif path.startswith("/stall/"):
            sock.sendall(_head(200, int(path.rsplit("/", 1)[1])))
            _send_fast(sock, after)
            self._stop.wait(60)
            return False
        elif path in ("/reset", "/eof"):
            sock.sendall(_head(200, after + 1_000_000))
            _send_fast(sock, after)
            time.sleep(0.2)  # let the client read what was sent before the connection dies
            if path == "/reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        elif path == "/garbage":
            sock.sendall(b"\x16\x00GARBAGE\xff\xfe not http at all\r\n\r\n" * 4)
            return False
        elif path == "/endless":
            sock.sendall(_head(200, 1 << 40))
            while not self._stop.is_set():
                sock.sendall(PAYLOAD[:65536])
        elif path == "/hugeheaders":
            sock.sendall(b"HTTP/1.1 200 OK\r\n")
            line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
            for _ in range(16_000):
                if self._stop.is_set():
                    break
                sock.sendall(line)
            return False
        elif path.startswith("/unframed/"):
            n = int(path.rsplit("/", 1)[1])
            sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nServer: probe-test\r\n\r\n")
            if n == 0:
                self._stop.wait(60)
            else:
                self._send_paced(sock, n, float(query.get("kbps", "200")) * 1000 / 8)
            return False
        elif path == "/drip":
            for byte in _head(200, 1000) + bytes(1000):
                if self._stop.wait(0.1):
                    break
                sock.sendall(bytes([byte]))
            return False
        elif path == "/alert":
            sock.sendall(_head(200, after + 1_000_000))
            _send_fast(sock, after)
            time.sleep(0.2)
            os.write(sock.fileno(), b"\x15\x03\x03\x00\x02\x02\x50")  # fatal internal_error
            return False
        elif path == "/echo":
            body = req["headers"].get("host", "").encode()
            sock.sendall(_head(200, len(body)) + body)
        elif path == "/upload":
            received = reader.drain(int(req["headers"].get("content-length", "0")))
            body = str(received).encode()
            sock.sendall(_head(200, len(body)) + body)
        elif path == "/video.mp4":
            _send_ranged(sock, req["headers"].get("range"), MP4_BYTES)
        elif path.startswith("/hls/"):
            scheme = "https" if self.context else "http"
            return _send_hls(sock, path, f"{scheme}://{req['headers'].get('host', '')}")
        else:
            sock.sendall(_head(404, 0))
        return True

    def _send_paced(self, sock: socket.socket, n: int, rate_bytes_s: float) -> None:
        """Application pacing: never ahead of rate*elapsed, in 10 ms steps."""
        start = time.monotonic()
        sent = 0
        while sent < n and not self._stop.is_set():
            due = min(n, int(rate_bytes_s * (time.monotonic() - start)))
            if due > sent:
                _send_fast(sock, due - sent)
                sent = due
            self._stop.wait(0.01)


class SilentServer:
    """Accepts TCP connections (the kernel does) but never reads or answers: a stuck handshake."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._listener = socket.create_server((host, 0), backlog=16)
        self.port = self._listener.getsockname()[1]

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()


def closed_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on (connect is refused)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class _Reader:
    """Buffered request reader for keep-alive connections."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def request(self) -> dict | None:
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > _HEADER_LIMIT:
                return None
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        return {"method": method, "path": path, "headers": headers}

    def drain(self, n: int) -> int:
        """Read and discard an n-byte request body; returns how many bytes arrived."""
        got = min(n, len(self.buf))
        self.buf = self.buf[got:]
        while got < n:
            data = self.sock.recv(min(1 << 20, n - got))
            if not data:
                break
            got += len(data)
        return got


def _head(status: int, length: int, extra: dict[str, str] | None = None) -> bytes:
    reason = {200: "OK", 206: "Partial Content", 404: "Not Found", 416: "Range Not Satisfiable"}
    lines = [f"HTTP/1.1 {status} {reason.get(status, 'X')}", f"Content-Length: {length}",
             "Server: probe-test"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _send_fast(sock: socket.socket, n: int) -> None:
    while n > 0:
        step = min(n, len(PAYLOAD))
        sock.sendall(PAYLOAD[:step])
        n -= step


def _send_ranged(sock: socket.socket, range_header: str | None, size: int) -> None:
    if not range_header or not range_header.startswith("bytes="):
        sock.sendall(_head(200, size, {"Content-Type": "video/mp4", "Accept-Ranges": "bytes"}))
        _send_fast(sock, size)
        return
    first_s, _, last_s = range_header[6:].partition("-")
    first, last = int(first_s), min(int(last_s or size - 1), size - 1)
    if first >= size:
        sock.sendall(_head(416, 0, {"Content-Range": f"bytes */{size}"}))
        return
    extra = {"Content-Type": "video/mp4", "Content-Range": f"bytes {first}-{last}/{size}"}
    sock.sendall(_head(206, last - first + 1, extra))
    _send_fast(sock, last - first + 1)


def _send_hls(sock: socket.socket, path: str, base: str) -> bool:
    """Master -> {high, low}; media playlists use relative, root-relative and absolute URIs."""
    mpegurl = {"Content-Type": "application/vnd.apple.mpegurl"}
    if path == "/hls/master.m3u8":
        body = (
            b"#EXTM3U\n#EXT-X-VERSION:7\n"
            b'#EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720,CODECS="avc1.640028"\n'
            b"high/index.m3u8\n"
            b'#EXT-X-STREAM-INF:BANDWIDTH=256000,RESOLUTION=320x180,CODECS="avc1.4d400d"\n'
            b"low/index.m3u8\n"
        )
        sock.sendall(_head(200, len(body), mpegurl) + body)
        return True
    variant, _, name = path[len("/hls/"):].partition("/")
    if variant not in ("low", "high"):
        sock.sendall(_head(404, 0))
        return True
    if name in ("index.m3u8", "index"):  # "index": a playlist only its content-type reveals
        lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:3",
                 '#EXT-X-MAP:URI="init.mp4"']
        for i in range(HLS_SEGMENTS):
            lines.append("#EXTINF:3.000,")
            if i == 1:
                lines.append(f"/hls/{variant}/seg{i}.m4s")
            elif i == 2:
                lines.append(f"{base}/hls/{variant}/seg{i}.m4s")
            else:
                lines.append(f"seg{i}.m4s")
        lines.append("#EXT-X-ENDLIST")
        body = ("\n".join(lines) + "\n").encode()
        sock.sendall(_head(200, len(body), mpegurl) + body)
    elif name == "init.mp4" or (name.startswith("seg") and name.endswith(".m4s")):
        size = 1000 if name == "init.mp4" else HLS_SEGMENT_BYTES
        sock.sendall(_head(200, size, {"Content-Type": "video/mp4"}))
        _send_fast(sock, size)
    else:
        sock.sendall(_head(404, 0))
    return True


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
