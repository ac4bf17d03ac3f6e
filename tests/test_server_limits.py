"""`probe serve`'s slot limits: per address and network, eviction, lifetime, request cap."""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from probe.server.admission import Client, Refused, SlotLimits, Slots, Standing
from probe.server.app import Server
from probe.server.cli import serve
from probe.server.config import ServerConfig
from tests.test_server import closed_by_server

pytestmark = pytest.mark.timeout(60)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "server.md"


@pytest.mark.parametrize("host,address,network", [
    ("203.0.113.7", "203.0.113.7", "203.0.113.0/24"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.9", "198.51.100.9", "198.51.100.0/24"),
    ("fe80::1%eth0", "fe80::1", "fe80::/64"),
])
def test_client_is_counted_in_its_24_or_64(host, address, network):
    assert Client.of(host) == Client(address, network)


@dataclass(eq=False)
class Fake:
    client: Client
    silent: bool = False
    stalled: float = 0.0

    def standing(self, now: float) -> Standing:
        return Standing(self.silent, self.stalled)


def slots(total=4, per_address=2, per_network=3, evict_after=1.0) -> Slots[Fake]:
    return Slots(SlotLimits(total, per_address, per_network, evict_after))


def fill(pool: Slots[Fake], *holders: Fake) -> None:
    for holder in holders:
        assert pool.admit(holder.client, 0.0) is None
        pool.add(holder)


def test_the_narrowest_full_group_gives_the_slot():
    pool = slots()
    a1, a2 = Fake(Client.of("10.0.0.1"), stalled=5), Fake(Client.of("10.0.0.1"), stalled=2)
    other = Fake(Client.of("10.0.0.2"), stalled=9)
    fill(pool, a1, a2, other)
    # its address holds 2 of 2: its own longest-stalled goes, not the network's
    assert pool.admit(Client.of("10.0.0.1"), 0.0) is a1
    # the network holds 3 of 3: anyone in it
    assert pool.admit(Client.of("10.0.0.3"), 0.0) is other
    # a fresh network: a slot is still free
    assert pool.admit(Client.of("10.9.0.1"), 0.0) is None


def test_a_holder_making_progress_is_never_evicted_but_a_silent_one_is():
    pool = slots(total=2, evict_after=1.0)
    busy, silent = Fake(Client.of("10.0.0.1"), stalled=0.5), Fake(Client.of("10.1.0.1"))
    fill(pool, busy, silent)
    silent.silent = True
    assert pool.admit(Client.of("10.2.0.1"), 0.0) is silent
    silent.silent = False
    with pytest.raises(Refused):
        pool.admit(Client.of("10.2.0.1"), 0.0)
    busy.stalled = 1.0
    assert pool.admit(Client.of("10.2.0.1"), 0.0) is busy


def test_the_network_holding_most_gives_first_and_never_to_an_equal():
    pool = slots(total=4, per_address=4, per_network=4)
    big = [Fake(Client.of(f"10.0.0.{i}"), stalled=2) for i in (1, 2, 3)]
    lone = Fake(Client.of("10.1.0.1"), stalled=60)  # stalled longest, but alone in its network
    fill(pool, *big, lone)
    assert pool.admit(Client.of("10.2.0.1"), 0.0) in big
    # a newcomer whose network already holds one may not take the lone network's only
    # slot, only its own network's
    pool = slots(total=2, per_address=4, per_network=4)
    own, lone = Fake(Client.of("10.0.0.1"), stalled=1), Fake(Client.of("10.1.0.1"), stalled=60)
    fill(pool, own, lone)
    assert pool.admit(Client.of("10.0.0.2"), 0.0) is own
    own.stalled = 0
    with pytest.raises(Refused):
        pool.admit(Client.of("10.0.0.2"), 0.0)


def make_server(tmp_path: Path, **limits) -> Server:
    config = ServerConfig(listen=[("127.0.0.1", 0)], log=tmp_path / "serve.jsonl",
                          idle_timeout=5, header_timeout=5, **limits)
    return Server(config)


def request(sock: socket.socket, path: str = "/bytes?n=10") -> dict[str, str]:
    """Send one GET and read its response (Content-Length framed); the headers, lower-case."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, "closed before a response"
        buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")[1:]
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return headers


def connection_records(log: Path, count: int) -> list[dict]:
    """The log's connection lines once `count` are written (bounded wait: they come at close)."""
    deadline = time.monotonic() + 10
    while True:
        records = [json.loads(line) for line in log.read_text().splitlines()]
        found = [r for r in records if r["event"] == "connection"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_the_last_request_allowed_is_answered_with_connection_close(tmp_path):
    with make_server(tmp_path, max_requests_per_connection=3) as srv:
        with socket.create_connection(srv.addresses[0]) as sock:
            assert [request(sock)["connection"] for _ in range(3)] == [
                "keep-alive", "keep-alive", "close"]
            assert closed_by_server(sock, within=5)
        (record,) = connection_records(tmp_path / "serve.jsonl", 1)
    assert (record["requests"], record["end"]) == (3, "server_closed")


def test_a_connection_lasts_no_longer_than_its_lifetime_however_active(tmp_path):
    with make_server(tmp_path, max_connection_time=1.0) as srv:
        started = time.monotonic()
        with socket.create_connection(srv.addresses[0]) as active:
            answers = []
            while time.monotonic() - started < 3:  # "close" after the lifetime, or cut
                try:
                    answers.append(request(active)["connection"])
                except (AssertionError, ConnectionResetError):
                    break
                if answers[-1] == "close":
                    break
                time.sleep(0.1)
            assert set(answers[:5]) == {"keep-alive"}
            assert 0.9 < time.monotonic() - started < 1.6
        # a client that stopped reading a large response is cut by the sweep
        started = time.monotonic()
        with socket.create_connection(srv.addresses[0]) as reader:
            reader.sendall(b"GET /bytes?n=100000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(1.5)
            assert closed_by_server(reader, within=0.5)
        records = connection_records(tmp_path / "serve.jsonl", 2)
    (cut,) = [r for r in records if r["bytes_out"] > 1_000_000]
    (kept,) = [r for r in records if r["bytes_out"] < 1_000_000]
    assert cut["end"] == "lifetime" and kept["end"] in ("lifetime", "server_closed")


def test_when_full_the_stalled_reader_is_evicted_and_the_active_client_kept(tmp_path):
    with make_server(tmp_path, max_connections=2, evict_after=0.5) as srv:
        with socket.create_connection(srv.addresses[0]) as slow, \
                socket.create_connection(srv.addresses[0]) as active:
            slow.sendall(b"GET /bytes?n=100000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = time.monotonic() + 2.0  # the slow reader's buffers fill, then it stalls
            while time.monotonic() < deadline:
                request(active)
                time.sleep(0.1)
            with socket.create_connection(srv.addresses[0]) as fresh:
                assert request(fresh)["connection"] == "keep-alive"
            assert closed_by_server(slow, within=3)
            assert request(active)["connection"] == "keep-alive"
        assert srv.evicted == 1
        ends = [r["end"] for r in connection_records(tmp_path / "serve.jsonl", 2)]
    assert ends.count("evicted") == 1


def test_every_option_is_documented_with_its_default():
    help_text = " ".join(CliRunner().invoke(serve, ["--help"]).output.split())
    docs = DOCS.read_text()
    defaults = ServerConfig()
    for option, default in [
        ("--max-connections-per-network", defaults.max_connections_per_network),
        ("--evict-after", defaults.evict_after),
        ("--max-connection-time", defaults.max_connection_time),
        ("--max-requests-per-connection", defaults.max_requests_per_connection),
    ]:
        assert re.search(rf"{option} [^\[]*\[default: {default};", help_text), option
        row = next(line for line in docs.splitlines() if line.startswith(f"| `{option}"))
        assert f"| {default:g} |" in row.replace(",", ""), row
