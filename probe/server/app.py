"""The server: listeners, an accept thread, one thread per connection, clean stop.

Threads with blocking sockets: TLS bulk sends happen inside OpenSSL with the
GIL released, so each connection streams at full speed without an event loop.
HTTP/3 over QUIC answers on the same ports over UDP (server/h3.py), on an asyncio loop
of its own. The accept thread also admits (`admission.Slots`: per address, per network, in
all; a silent or stalled holder is evicted for a newcomer) and, twice a second,
sweeps: it refreshes each connection's progress and cuts those past their lifetime.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

from probe import __version__

from .admission import Refused, SlotLimits, Slots
from .config import ServerConfig, label
from .connection import Connection, Shared
from .h3 import Http3Listener, configuration
from .handlers import Handlers, utc_now
from .http import Limits
from .log import JsonLog
from .tls import Certificates

_STOP_JOIN_S = 5.0
_ACCEPT_BACKOFF_S = 0.05
_SWEEP_S = 0.5
# Evicted connections keep their thread for the moment they take to close: threads
# are bounded by this many times --max-connections even under a flood of newcomers.
_THREADS_PER_SLOT = 2


class Server:
    """`start()` binds every --listen address and serves until `stop()`."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.certificates = Certificates(config.cert, config.key, config.cert_dir)
        self.log = JsonLog(config.log)
        self.shared = Shared(
            config=config,
            certificates=self.certificates,
            handlers=Handlers(config),
            log=self.log,
            limits=Limits(
                max_request_line=config.max_request_line,
                max_header_bytes=config.max_header_bytes,
                max_headers=config.max_headers,
                header_timeout=config.header_timeout,
            ),
        )
        self.http3: Http3Listener | None = None
        self.addresses: list[tuple[str, int]] = []
        self.accepted = 0
        self.rejected = 0
        self.evicted = 0
        self._listeners: list[socket.socket] = []
        self._connections: dict[Connection, threading.Thread] = {}  # every running thread
        self._slots: Slots[Connection] = Slots(SlotLimits(
            total=config.max_connections,
            per_address=config.max_connections_per_client,
            per_network=config.max_connections_per_network,
            evict_after=config.evict_after,
        ))
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._accept_thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> list[tuple[str, int]]:
        """Bind and start accepting; returns the bound (host, port) pairs (port 0 resolved)."""
        try:
            for host, port in self.config.listen:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = socket.create_server((host, port), family=family, backlog=128)
                self._listeners.append(sock)
                self.addresses.append(sock.getsockname()[:2])
            if self.config.http3:  # UDP on the ports the TCP listeners got
                self.http3 = Http3Listener(
                    self.config, self.shared.handlers, self.log,
                    configuration(self.certificates.cert_pem, self.certificates.key_pem,
                                  self.config))
                self.http3.start(self.addresses)
        except OSError:
            self.http3 = None
            self._close_listeners()
            raise
        self._accept_thread = threading.Thread(target=self._accept_loop, name="probe-accept")
        self._accept_thread.start()
        self.log.write(
            {
                "event": "start",
                "time": utc_now(),
                "version": __version__,
                "listen": [label(h, p) for h, p in self.addresses],
                "http3": self.http3 is not None,
                "path_prefix": self.config.path_prefix,
                "certificate_sha256": self.certificates.fingerprint,
                "self_signed": self.certificates.generated,
                "sni_names": sorted(self.certificates.by_name),
            }
        )
        return list(self.addresses)

    def stop(self) -> None:
        """Stop accepting, cut every open connection, wait for their threads, close the log."""
        if self._stopping:
            return
        self._stopping = True
        self._wake_w.send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join()
        if self.http3 is not None:
            self.http3.stop()
        with self._lock:
            running = dict(self._connections)
        for conn in running:
            conn.cut("server_stopping")
        for thread in running.values():
            thread.join(_STOP_JOIN_S)
        counts = {"accepted": self.accepted, "rejected": self.rejected, "evicted": self.evicted}
        self.log.write({"event": "stop", "time": utc_now(), **counts})
        self.log.close()
        self._wake_r.close()
        self._wake_w.close()

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._connections)

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            for index, sock in enumerate(self._listeners):
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ, index)
            next_sweep = time.monotonic() + _SWEEP_S
            while not self._stopping:
                for key, _ in selector.select(_SWEEP_S):
                    if key.fileobj is self._wake_r:
                        break
                    self._guarded(self._accept, key.fileobj, key.data)
                if time.monotonic() >= next_sweep:
                    self._guarded(self._sweep)
                    next_sweep = time.monotonic() + _SWEEP_S
        self._close_listeners()

    def _guarded(self, step: Callable[..., None], *args: object) -> None:
        """Run one step of the accept loop; an error is logged, never stops accepting."""
        try:
            step(*args)
        except Exception as exc:
            self.log.write({"event": "accept_error", "time": utc_now(),
                            "error": f"{type(exc).__name__}: {exc}"[:200]})
            time.sleep(_ACCEPT_BACKOFF_S)

    def _sweep(self) -> None:
        """Refresh every holder's progress (the eviction ranking) and cut those past their
        lifetime."""
        now = time.monotonic()
        with self._lock:
            for conn in list(self._slots.holders):
                conn.standing(now)
                if now - conn.started >= self.config.max_connection_time:
                    self._slots.remove(conn)
                    conn.cut("lifetime")

    def _accept(self, listener: socket.socket, index: int) -> None:
        try:
            sock, peer = listener.accept()
        except BlockingIOError:  # the client gave up between SYN and accept
            return
        except OSError:  # out of descriptors: back off instead of spinning on a ready listener
            time.sleep(_ACCEPT_BACKOFF_S)
            return
        sock.setblocking(True)
        conn = Connection(sock, peer, label(*self.addresses[index]), self.shared)
        with self._lock:
            try:
                if len(self._connections) >= _THREADS_PER_SLOT * self.config.max_connections:
                    raise Refused()
                victim = self._slots.admit(conn.client, time.monotonic())
            except Refused:
                self.rejected += 1
                sock.close()
                return
            if victim is not None:
                self._slots.remove(victim)
                victim.cut("evicted")
                self.evicted += 1
            self.accepted += 1
            self._slots.add(conn)
            thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self._connections[conn] = thread
        try:
            thread.start()
        except RuntimeError:  # no thread to spare (a thread or PID limit): refuse this one
            with self._lock:
                self._connections.pop(conn, None)
                self._slots.remove(conn)
                self.accepted -= 1
                self.rejected += 1
            sock.close()
            time.sleep(_ACCEPT_BACKOFF_S)

    def _run(self, conn: Connection) -> None:
        try:
            conn.run()
        finally:
            with self._lock:
                self._connections.pop(conn, None)
                self._slots.remove(conn)

    def _close_listeners(self) -> None:
        for sock in self._listeners:
            sock.close()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
