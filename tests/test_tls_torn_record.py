"""A connection that ends inside a TLS record must read as EOF, not spin.

Regression: the transfer watchdog shuts the socket down mid-record under a
throttle; the memory BIO then holds a torn record forever and the reader used
to wait for its end at 100% CPU.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

from probe.measure import tls
from tests.servers.http_servers import server_context


def _serve_torn_record(listener: socket.socket, context: ssl.SSLContext) -> None:
    conn, _ = listener.accept()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = context.wrap_bio(incoming, outgoing, server_side=True)
    conn.settimeout(5)
    while True:
        try:
            server.do_handshake()
            break
        except ssl.SSLWantReadError:
            conn.sendall(outgoing.read())
            incoming.write(conn.recv(65536))
    conn.sendall(outgoing.read())
    server.write(b"x" * 4000)  # one record
    record = outgoing.read()
    conn.sendall(record[: len(record) // 2])  # half of it, then FIN
    conn.shutdown(socket.SHUT_WR)
    time.sleep(1)
    conn.close()


def test_eof_inside_a_record_returns_promptly(test_ca) -> None:
    issued = test_ca.issue(["torn.test"])
    listener = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(
        target=_serve_torn_record,
        args=(listener, server_context(issued.cert, issued.key)), daemon=True,
    )
    thread.start()
    sock = socket.create_connection(listener.getsockname(), timeout=5)
    channel = tls.BioChannel.connect(tls.make_context(test_ca.cert_path), sock, "torn.test", 5)
    started = time.monotonic()
    buf = bytearray(65536)
    assert channel.recv_into(buf) == 0  # the partial record never becomes data
    assert time.monotonic() - started < 3
    channel.close()
    listener.close()
    thread.join(5)
