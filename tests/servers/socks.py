"""A minimal SOCKS5 proxy for tests (RFC 1928: no authentication, CONNECT only), on
loopback in a thread; `targets` records each (host, port) a client asked for."""

from __future__ import annotations

import socket
import struct
import threading


class Socks5:
    """A context manager; `url` is the proxy URL for a client."""

    __test__ = False

    def __init__(self) -> None:
        self.targets: list[tuple[str, int]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socks5://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Socks5:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._session, args=(client,), daemon=True).start()

    def _session(self, client: socket.socket) -> None:
        with client:
            _, n = _read(client, 2)
            _read(client, n)
            client.sendall(b"\x05\x00")  # no authentication
            _, cmd, _, atyp = _read(client, 4)
            if atyp == 1:
                host = socket.inet_ntoa(bytes(_read(client, 4)))
            elif atyp == 3:
                host = bytes(_read(client, _read(client, 1)[0])).decode()
            else:
                host = socket.inet_ntop(socket.AF_INET6, bytes(_read(client, 16)))
            port = struct.unpack("!H", bytes(_read(client, 2)))[0]
            self.targets.append((host, port))
            if cmd != 1:
                client.sendall(b"\x05\x07\x00\x01" + bytes(6))  # command not supported
                return
            upstream = socket.create_connection((host, port))
            client.sendall(b"\x05\x00\x00\x01" + bytes(6))
            with upstream:
                pump = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
                pump.start()
                _pipe(client, upstream)
                pump.join()


def _read(sock: socket.socket, n: int) -> bytearray:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("SOCKS client went away")
        data += chunk
    return data


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass
