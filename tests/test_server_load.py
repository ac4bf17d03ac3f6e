"""`probe serve` under the two slot-holding attacks of issue 11, scaled down, on loopback.

Attackers bind source addresses of 127.0.0.0/8, so one host plays many
addresses and networks. Throughout each attack a fresh client connects every
0.2 s (plain HTTP and TLS in turn) and must get its whole response within 1 s,
retrying at once if it is turned away; the worst latency is printed.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from probe.server.app import Server
from probe.server.config import ServerConfig

pytestmark = pytest.mark.timeout(120)

# The server's limits scaled down together: 32 slots, 4 per address, 8 per /24.
LIMITS = dict(
    max_connections=32, max_connections_per_client=4, max_connections_per_network=8,
    idle_timeout=3.0, header_timeout=3.0, evict_after=0.5,
)
KEEPALIVE_EVERY = 2.0  # a request well within the idle timeout, like every 20 s within 30 s
RAMP_S = 1.5  # attackers take the slots before the first fresh client comes
PROBE_FOR_S = 5.0
PROBE_EVERY = 0.2
SERVED_WITHIN = 1.0
REQUEST = b"GET /bytes?n=100 HTTP/1.1\r\nHost: x\r\n\r\n"


def addresses(networks: int, per_network: int) -> list[str]:
    """Loopback source addresses: `per_network` hosts in each of `networks` /24s."""
    return [f"127.1.{n}.{h + 1}" for n in range(networks) for h in range(per_network)]


def response_complete(sock: socket.socket) -> bool:
    """Read one response to REQUEST (100 bytes of body); False if the server closed first."""
    buf = b""
    while not (b"\r\n\r\n" in buf and len(buf.partition(b"\r\n\r\n")[2]) >= 100):
        data = sock.recv(4096)
        if not data:
            return False
        buf += data
    return buf.startswith(b"HTTP/1.1 200")


@dataclass
class Attack:
    """Threads that each hold one connection from one source address, renewing it when cut."""

    port: int
    sources: list[str]
    keepalive: bool  # False: silent connections that never send a byte
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    connections: int = 0

    def start(self) -> None:
        for source in self.sources:
            thread = threading.Thread(target=self._hold, args=(source,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _hold(self, source: str) -> None:
        deadline = time.monotonic() + RAMP_S + PROBE_FOR_S + 10  # bounded even if never stopped
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                with socket.socket() as sock:
                    sock.bind((source, 0))
                    sock.settimeout(LIMITS["idle_timeout"] * 2)
                    sock.connect(("127.0.0.1", self.port))
                    self.connections += 1
                    self._occupy(sock)
            except OSError:
                pass
            self.stop.wait(0.25)  # renew the connection, at a bounded rate

    def _occupy(self, sock: socket.socket) -> None:
        while not self.stop.is_set():
            if self.keepalive:
                sock.sendall(REQUEST)
                if not response_complete(sock):
                    return
                self.stop.wait(KEEPALIVE_EVERY)
            elif sock.recv(1) == b"":  # silent: wait for the server to close
                return

    def __enter__(self) -> Attack:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(LIMITS["idle_timeout"] * 2 + 1)
        assert not any(t.is_alive() for t in self.threads)


def fresh_client(port: int, source: str, tls: bool) -> float | None:
    """Seconds until a new client had its whole response, retrying while turned away;
    None if not served within twice SERVED_WITHIN."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    started = time.monotonic()
    while time.monotonic() - started < 2 * SERVED_WITHIN:
        try:
            with socket.socket() as raw:
                raw.bind((source, 0))
                raw.settimeout(2 * SERVED_WITHIN)
                raw.connect(("127.0.0.1", port))
                sock = ctx.wrap_socket(raw, server_hostname="pbs.twimg.com") if tls else raw
                sock.sendall(REQUEST)
                if response_complete(sock):
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.02)
    return None


def probe_while(port: int, sources: list[str]) -> list[float | None]:
    """Fresh clients every PROBE_EVERY seconds for PROBE_FOR_S, from `sources` in turn."""
    latencies: list[float | None] = []
    end = time.monotonic() + PROBE_FOR_S
    while time.monotonic() < end:
        n = len(latencies)
        latencies.append(fresh_client(port, sources[n % len(sources)], tls=n % 2 == 1))
        time.sleep(PROBE_EVERY)
    return latencies


# (attacker sources, keep-alive?, fresh clients' sources)
SCENARIOS = {
    # the audit's first attack: keep-alive connections from 16 addresses of one /24
    "keepalive-one-network": (addresses(1, 16) * 4, True, ["127.0.0.1", "127.2.0.1"]),
    # the same spread over 8 /24s, enough to fill every slot: eviction must make room
    "keepalive-many-networks": (addresses(8, 4) * 4, True, ["127.0.0.1", "127.2.0.1"]),
    # the audit's second attack: silent connections from 32 addresses, renewed when cut
    "silent-many-networks": (addresses(8, 4) * 3, False, ["127.0.0.1", "127.2.0.1"]),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_fresh_client_is_served_within_a_second_under_attack(scenario: str, tmp_path: Path):
    sources, keepalive, fresh = SCENARIOS[scenario]
    config = ServerConfig(listen=[("127.0.0.1", 0)], log=tmp_path / "serve.jsonl", **LIMITS)
    with Server(config) as srv:
        port = srv.addresses[0][1]
        with Attack(port, sources, keepalive) as attack:
            time.sleep(RAMP_S)
            held = srv.active
            latencies = probe_while(port, fresh)
    served = [x for x in latencies if x is not None]
    worst = max(served, default=None)
    summary = (f"{scenario}: {len(sources)} attacker threads, {attack.connections} attacker "
               f"connections, {held} slots held at start; {len(latencies)} fresh clients, "
               f"{len(served)} served, worst {worst and round(worst * 1000)} ms; "
               f"server rejected {srv.rejected}, evicted {srv.evicted}")
    print(summary)
    assert held >= min(len(sources), LIMITS["max_connections_per_network"]), summary
    assert len(served) == len(latencies) and worst < SERVED_WITHIN, summary
