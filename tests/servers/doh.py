"""A DNS-over-HTTPS server (RFC 8484) on loopback for tests.

It answers with the lab zone's own logic (`answer_wire`) so DoH and UDP
answers can only differ where a test makes them differ. TLS uses a
certificate from the test CA, so clients verify it like a public resolver.
"""

from __future__ import annotations

import base64
import binascii
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from probe.lab.ca import IssuedCert
from probe.lab.dns_server import Zone, answer_wire

MAX_BODY = 65535  # one DNS message
CONTENT_TYPE = "application/dns-message"


class DohServer:
    """HTTPS on host:port serving `path`; `url` is what a client passes as --doh."""

    def __init__(
        self,
        zone: dict | Zone,
        cert: IssuedCert,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/dns-query",
        silent_hold: float = 10.0,
        drip_s: float = 0.0,
    ) -> None:
        self.zone = zone if isinstance(zone, Zone) else Zone.from_dict(zone)
        self.path = path
        self.silent_hold = silent_hold  # how long a silent name keeps the client waiting
        self.drip_s = drip_s  # > 0: answers are sent a byte at a time, this far apart
        self.requests: list[dict] = []  # one log entry per DNS query, for assertions
        self._stopping = threading.Event()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert.cert, cert.key)
        context.set_alpn_protocols(["http/1.1"])
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._httpd = _TlsHttpServer((host, port), _handler(self), context, family)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{port}{self.path}"

    def start(self) -> str:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.1,), daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> DohServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, wire: bytes) -> tuple[bytes | None, bool]:
        """(response, silent): no response and not silent means a malformed query."""
        out, entry = answer_wire(self.zone, wire)
        self.requests.append(entry)
        return out, bool(entry.get("silent"))

    def hold(self) -> None:
        """Keep a silent name's client waiting, but never past stop()."""
        self._stopping.wait(self.silent_hold)


class _TlsHttpServer(ThreadingHTTPServer):
    """The TLS handshake runs in the handler thread, so a bad client cannot stall accept()."""

    daemon_threads = True
    block_on_close = True

    def __init__(self, address, handler, context: ssl.SSLContext, family: int) -> None:
        self.address_family = family
        self.context = context
        super().__init__(address, handler)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that reject our certificate are what some tests are about

    def get_request(self) -> tuple[socket.socket, tuple]:
        sock, peer = self.socket.accept()
        return self.context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), peer


def _handler(server: DohServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 5

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # tests read server.requests instead

        def do_GET(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            if url.path != server.path:
                return self._reply(404)
            values = parse_qs(url.query).get("dns")
            if not values:
                return self._reply(400)
            text = values[0]
            try:
                wire = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            except (binascii.Error, ValueError):
                return self._reply(400)
            self._answer(wire)

        def do_POST(self) -> None:  # noqa: N802
            if urlsplit(self.path).path != server.path:
                return self._reply(404)
            if self.headers.get("content-type") != CONTENT_TYPE:
                return self._reply(415)
            length = int(self.headers.get("content-length") or 0)
            if not 0 < length <= MAX_BODY:
                return self._reply(413)
            self._answer(self.rfile.read(length))

        def _answer(self, wire: bytes) -> None:
            out, silent = server.answer(wire)
            if silent:  # keep the client waiting, then hang up without an answer
                server.hold()
                self.close_connection = True
            elif out is None:
                self._reply(400)
            else:
                self._reply(200, out)

        def _reply(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            if status != 200:  # an unread request body would poison the next request
                self.close_connection = True
                self.send_header("connection", "close")
            self.send_header("content-type", CONTENT_TYPE if status == 200 else "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            if not server.drip_s:
                self.wfile.write(body)
                return
            self.wfile.flush()
            for i in range(len(body)):  # a slow drip, never past stop()
                if server._stopping.wait(server.drip_s):
                    return
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()

    return Handler
