"""Session.fetch against real hostile servers: every record field and every way a transfer ends."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.lab.ca import CertificateAuthority
from probe.measure import tls
from probe.measure.clock import Clock
from probe.measure.keys import TestKeys
from probe.measure.transfer import Limits, Session
from tests.servers.http_servers import SilentServer, TestServer, closed_port, server_context

pytestmark = pytest.mark.timeout(60)
NAME = "media.example"
DECOY = "decoy.example"


@pytest.fixture(scope="module")
def tls_server(test_ca: CertificateAuthority, tmp_path_factory) -> Iterator[TestServer]:
    issued = test_ca.issue([NAME, DECOY], tmp_path_factory.mktemp("certs"))
    with TestServer(server_context(issued.cert, issued.key)) as server:
        yield server


@pytest.fixture
def server(tls_server: TestServer) -> TestServer:
    """The module's TLS server with a fresh view of what it saw."""
    tls_server.seen.sni.clear()
    tls_server.seen.requests.clear()
    tls_server.seen.connections = 0
    return tls_server


@pytest.fixture
def keys() -> TestKeys:
    return TestKeys()


def _session(keys: TestKeys, ca_bundle: Path, sni: str | None = None,
             address: str | None = "127.0.0.1", handshake=tls.handshake_bio,
             **limits: float) -> Session:
    return Session(keys, Clock(), address=address, sni=sni,
                   ssl_context=tls.make_context(ca_bundle), limits=Limits(**limits),
                   transfer_prefix="m1", handshake=handshake)


BOTH = pytest.mark.parametrize(
    "handshake", [tls.handshake_bio, tls.handshake], ids=["bio", "sslsocket"])


def _gaps(samples: list[list[float]]) -> list[float]:
    return [b[0] - a[0] for a, b in zip(samples, samples[1:], strict=False)]


@BOTH
def test_fast_download_record(
    server: TestServer, keys: TestKeys, ca_bundle: Path, handshake
) -> None:
    url = server.url("/bytes/300000", NAME)
    with _session(keys, ca_bundle, handshake=handshake) as s:
        rec = s.fetch(url)
    assert rec["transfer_id"] == "m1-1" and rec["role"] == "object"
    assert (rec["url"], rec["host"], rec["sni"]) == (url, NAME, NAME)
    assert (rec["address"], rec["port"], rec["direction"], rec["method"]) == (
        "127.0.0.1", server.port, "down", "GET")
    assert rec["status_code"] == 200 and rec["failure"] is None
    assert rec["stopped_by"] == "complete" and rec["bytes"] == 300_000
    assert 300_000 < rec["wire_bytes"] < 300_000 * 1.05  # TLS records and headers on top
    assert rec["connection_reused"] is False
    assert 0 < rec["ttfb_ms"] <= rec["last_byte_ms"] == pytest.approx(rec["duration_s"] * 1000)
    assert rec["goodput_kbps"] == pytest.approx(300_000 * 8 / 1000 / rec["duration_s"], rel=1e-3)
    samples = rec["samples"]
    assert samples[-1][1] == 300_000
    assert all(b[0] >= a[0] and b[1] >= a[1] for a, b in zip(samples, samples[1:], strict=False))
    final = rec["tcp_info"][-1]  # at least the end-of-transfer snapshot
    assert final["bytes_received"] >= 300_000 and final["rtt_us"] > 0
    assert set(final) >= {"t_ms", "min_rtt_us", "total_retrans", "snd_cwnd", "busy_time_us"}
    # The OONI-style lists: one connect, one handshake, one request.
    assert keys.tcp_connect[0]["ip"] == "127.0.0.1" and keys.tcp_connect[0]["status"]["success"]
    assert keys.tls_handshakes[0]["server_name"] == NAME
    assert keys.tcp_connect[0]["transfer_id"] == keys.tls_handshakes[0]["transfer_id"] == "m1-1"
    req = keys.requests[0]
    assert req["transfer_id"] == "m1-1" and req["failure"] is None
    assert req["request"]["url"] == url and req["request"]["method"] == "GET"
    assert req["response"]["code"] == 200 and req["response"]["body_length"] == 300_000
    assert ["content-length", "300000"] in req["response"]["headers_list"]
    assert ["server", "probe-test"] in req["response"]["headers_list"]
    ops = [e["operation"] for e in keys.network_events]
    assert ops[:3] == ["http_transaction_start", "connect", "tls_handshake_start"]
    assert ops[-1] == "http_transaction_done"
    assert keys.transfers == [rec]


def test_connect_to_keeps_host_and_sni(
    server: TestServer, keys: TestKeys, ca_bundle: Path
) -> None:
    body: list[bytes] = []
    with _session(keys, ca_bundle) as s:
        rec = s.fetch(server.url("/echo", NAME), sink=body.append)
    assert rec["failure"] is None
    assert b"".join(body) == f"{NAME}:{server.port}".encode()  # Host header as the server saw it
    assert server.seen.sni == [NAME]


def test_sni_chosen_independently_of_url_host(
    server: TestServer, keys: TestKeys, ca_bundle: Path
) -> None:
    with _session(keys, ca_bundle, sni=DECOY) as s:
        rec = s.fetch(server.url("/echo", NAME))
    assert rec["failure"] is None and rec["sni"] == DECOY and rec["host"] == NAME
    assert server.seen.sni == [DECOY]
    assert server.seen.requests[0]["headers"]["host"] == f"{NAME}:{server.port}"


def test_empty_sni_sends_none(server: TestServer, keys: TestKeys, ca_bundle: Path) -> None:
    with _session(keys, ca_bundle, sni="") as s:
        rec = s.fetch(server.url("/bytes/1000", NAME))
    assert rec["failure"] is None and rec["sni"] == "" and rec["bytes"] == 1000
    assert server.seen.sni == [None]
    assert keys.tls_handshakes[0]["hostname_checked"] is False


def test_slow_server_goodput_and_sampling(
    server: TestServer, keys: TestKeys, ca_bundle: Path
) -> None:
    with _session(keys, ca_bundle) as s:
        rec = s.fetch(server.url("/slow/40000?kbps=200", NAME))
    assert rec["failure"] is None and rec["stopped_by"] == "complete"
    assert 130 < rec["goodput_kbps"] < 260  # paced at 200 kbit/s by the server
    assert max(_gaps(rec["samples"])) < 250  # ticks at 100 ms, generous for a busy machine
    assert len(rec["tcp_info"]) >= 8  # ~1.6 s at one snapshot per 100 ms
    ticks = [e for e in keys.network_events if e["operation"] == "bytes_received_cumulative"]
    assert len(ticks) >= 8 and all(e["transfer_id"] == "m1-1" for e in ticks)
    assert [e["num_bytes"] for e in ticks] == sorted(e["num_bytes"] for e in ticks)


@BOTH
def test_stall_after_progress_is_a_timeout_not_a_failure(
    server: TestServer, keys: TestKeys, ca_bundle: Path, handshake
) -> None:
    with _session(keys, ca_bundle, read_timeout=1.0, handshake=handshake) as s:
        rec = s.fetch(server.url("/stall/1000000?after=20000", NAME))
    assert rec["stopped_by"] == "timeout" and rec["failure"] is None
    assert rec["bytes"] == 20_000
    assert rec["duration_s"] >= 0.95  # the stall counts in the rate
    during = [x for x in rec["samples"] if x[0] > rec["last_byte_ms"]]
    assert len(during) >= 6 and max(_gaps(during)) < 250  # sampled while nothing arrived
    assert all(x[1] == 20_000 for x in during)


def test_no_progress_timeout_is_a_failure(
    server: TestServer, keys: TestKeys, ca_bundle: Path
) -> None:
    with _session(keys, ca_bundle, read_timeout=0.5) as s:
        rec = s.fetch(server.url("/stall/1000?after=0", NAME))
    assert rec["stopped_by"] == "timeout" and rec["failure"] == "generic_timeout_error"
    assert rec["status_code"] == 200 and rec["bytes"] == 0


def test_max_seconds_without_any_body_is_a_failure(
    server: TestServer, keys: TestKeys, ca_bundle: Path
) -> None:
    started = time.monotonic()
    with _session(keys, ca_bundle, read_timeout=30, max_seconds=0.5) as s:
        rec = s.fetch(server.url("/stall/1000?after=0", NAME))
    assert rec["stopped_by"] == "max_seconds" and rec["failure"] == "generic_timeout_error"
    assert time.monotonic() - started < 2.5


@BOTH
def test_max_seconds_holds_during_a_blocked_read(
    server: TestServer, keys: TestKeys, ca_bundle: Path, handshake
) -> None:
    started = time.monotonic()
    with _session(keys, ca_bundle, read_timeout=30, max_seconds=1.0, handshake=handshake) as s:
        rec = s.fetch(server.url("/stall/1000000?after=5000", NAME))
        elapsed = time.monotonic() - started
        assert rec["stopped_by"] == "max_seconds" and rec["failure"] is None
        assert elapsed < 3.0 and 0.95 <= rec["duration_s"] < 2.0
        # The aborted connection is not reused: the next fetch opens a new one and works.
        again = s.fetch(server.url("/bytes/1000", NAME))
    assert again["failure"] is None and again["connection_reused"] is False
    assert server.seen.connections == 2


def test_max_bytes_and_max_seconds_on_an_endless_body(
    server: TestServer, keys: TestKeys, ca_bundle: Path
) -> None:
    with _session(keys, ca_bundle) as s:
        by_bytes = s.fetch(server.url("/endless", NAME), max_bytes=500_000)
        by_time = s.fetch(server.url("/endless", NAME), max_bytes=10**12, max_seconds=0.5)
    assert by_bytes["stopped_by"] == "max_bytes" and by_bytes["failure"] is None
    assert 500_000 <= by_bytes["bytes"] < 500_000 + 300_000
    assert by_time["stopped_by"] == "max_seconds" and by_time["failure"] is None
    assert by_time["bytes"] > 0 and 0.5 <= by_time["duration_s"] < 1.5


def test_object_that_fits_the_byte_budget_exactly_is_complete(
    server: TestServer, keys: TestKeys, ca_bundle: Path
) -> None:
    with _session(keys, ca_bundle) as s:
        rec = s.fetch(server.url("/bytes/200000", NAME), max_bytes=200_000)
    assert rec["stopped_by"] == "complete" and rec["bytes"] == 200_000


@pytest.mark.parametrize("path, stop_when, stopped_by, failure", [
    ("/unframed/1000000?kbps=400", lambda s: s[-1][0] > 500, "stable", None),
    ("/unframed/1000000?kbps=400", None, "max_seconds", None),
    ("/unframed/0", None, "max_seconds", "generic_timeout_error"),  # headers, then nothing
])
def test_our_stop_of_an_unframed_body_is_not_its_end(
        server: TestServer, keys: TestKeys, ca_bundle: Path, path: str, stop_when,
        stopped_by: str, failure: str | None) -> None:
    """Without a Content-Length the body ends at the close, and our own stop closes the
    connection: that must read as our stop (or a stall), never as `complete`."""
    with _session(keys, ca_bundle, max_seconds=1.5) as s:
        rec = s.fetch(server.url(path, NAME), stop_when=stop_when)
    assert (rec["stopped_by"], rec["failure"]) == (stopped_by, failure), rec["stopped_by"]
    assert (rec["bytes"] > 0) == (failure is None)


def test_stop_when_ends_the_transfer(server: TestServer, keys: TestKeys, ca_bundle: Path) -> None:
    seen: list[list[tuple[float, int]]] = []

    def stable(samples: list[tuple[float, int]]) -> bool:
        seen.append(samples)
        return samples[-1][0] > 500

    with _session(keys, ca_bundle) as s:
        rec = s.fetch(server.url("/slow/1000000?kbps=400", NAME), stop_when=stable)
    assert rec["stopped_by"] == "stable" and rec["failure"] is None
    assert 0.5 <= rec["duration_s"] < 1.5
    assert seen and all(isinstance(t, float) and isinstance(n, int) for t, n in seen[-1])


@pytest.mark.parametrize(
    ("path", "failure"),
    [("/reset?after=20000", "connection_reset"), ("/eof?after=20000", "eof_error"),
     ("/garbage", "http_invalid_response")],
    ids=["reset", "eof", "garbage"],
)
@BOTH
def test_broken_transfers_fail_with_df007_names(
    server: TestServer, keys: TestKeys, ca_bundle: Path, path: str, failure: str, handshake
) -> None:
    with _session(keys, ca_bundle, handshake=handshake) as s:
        rec = s.fetch(server.url(path, NAME))
    assert rec["failure"] == failure and rec["stopped_by"] == "error"
    assert keys.requests[0]["failure"] == failure
    if path != "/garbage":
        assert rec["bytes"] == 20_000  # what arrived before the fault is kept
    else:
        assert rec["status_code"] is None and keys.requests[0]["response"] is None


def test_refused_connection(keys: TestKeys, ca_bundle: Path) -> None:
    port = closed_port()
    with _session(keys, ca_bundle) as s:
        rec = s.fetch(f"https://{NAME}:{port}/")
    assert rec["failure"] == "connection_refused" and rec["stopped_by"] == "error"
    assert rec["duration_s"] is None and rec["samples"] == []
    assert keys.tcp_connect[0]["status"] == {  # no "blocked": that is a verdict's to say
        "success": False, "failure": "connection_refused"}
    assert keys.tls_handshakes == []


def test_handshake_timeout(keys: TestKeys, ca_bundle: Path) -> None:
    with SilentServer() as silent, _session(keys, ca_bundle, connect_timeout=0.5) as s:
        rec = s.fetch(f"https://{NAME}:{silent.port}/")
    assert rec["failure"] == "generic_timeout_error" and rec["stopped_by"] == "error"
    assert keys.tcp_connect[0]["status"]["success"] is True
    assert keys.tls_handshakes[0]["failure"] == "generic_timeout_error"


def test_untrusted_certificate_blocks_the_request(
    foreign_ca: CertificateAuthority, keys: TestKeys, ca_bundle: Path, tmp_path: Path
) -> None:
    issued = foreign_ca.issue([NAME], tmp_path)
    with TestServer(server_context(issued.cert, issued.key)) as evil, \
            _session(keys, ca_bundle) as s:
        rec = s.fetch(evil.url("/bytes/1000", NAME))
        assert evil.seen.requests == []  # nothing is ever sent over an unverified connection
    assert rec["failure"] == "ssl_unknown_authority" and rec["status_code"] is None
    assert keys.tls_handshakes[0]["chain_from_unverified_retry"] is True


def test_keep_alive_reuse_across_fetches(
    server: TestServer, keys: TestKeys, ca_bundle: Path
) -> None:
    with _session(keys, ca_bundle) as s:
        first = s.fetch(server.url("/bytes/1000", NAME))
        second = s.fetch(server.url("/bytes/2000", NAME))
    assert (first["connection_reused"], second["connection_reused"]) == (False, True)
    assert second["transfer_id"] == "m1-2" and second["bytes"] == 2000
    assert server.seen.connections == 1 and len(keys.tls_handshakes) == 1


def test_byte_range(server: TestServer, keys: TestKeys, ca_bundle: Path) -> None:
    with _session(keys, ca_bundle) as s:
        rec = s.fetch(server.url("/video.mp4", NAME), byte_range=(100, 10_099))
    assert rec["status_code"] == 206 and rec["bytes"] == 10_000
    assert ["Range", "bytes=100-10099"] in keys.requests[0]["request"]["headers_list"]
    assert ["content-range", "bytes 100-10099/1000000"] in keys.requests[0]["response"][
        "headers_list"]


def test_plain_http_with_normal_resolution(keys: TestKeys, ca_bundle: Path) -> None:
    with TestServer() as plain, _session(keys, ca_bundle, address=None) as s:
        rec = s.fetch(plain.url("/bytes/5000"))
    assert rec["failure"] is None and rec["bytes"] == 5000 and rec["address"] == "127.0.0.1"
    assert keys.tls_handshakes == [] and keys.tcp_connect[0]["port"] == plain.port
    assert rec["sni"] is None  # nothing was sent: plain HTTP has no SNI


def test_a_crashing_stop_when_surfaces_in_fetch(
    server: TestServer, keys: TestKeys, ca_bundle: Path
) -> None:
    def broken(samples: list[tuple[float, int]]) -> bool:
        raise KeyError("bug in the caller")

    started = time.monotonic()
    with _session(keys, ca_bundle) as s, pytest.raises(KeyError):
        s.fetch(server.url("/slow/1000000?kbps=100", NAME), stop_when=broken)
    assert time.monotonic() - started < 2  # the transfer ended with the bug, not at its bounds


@pytest.mark.parametrize("code, name", [
    (errno.ECONNRESET, "connection_reset"), (errno.ECONNREFUSED, "connection_refused"),
    (errno.ECONNABORTED, "connection_aborted"), (errno.ENETDOWN, "network_down"),
    (errno.ENETRESET, "network_reset"), (errno.ENETUNREACH, "network_unreachable"),
    (errno.EHOSTUNREACH, "host_unreachable"), (errno.ETIMEDOUT, "generic_timeout_error")])
def test_os_errors_get_their_df007_names(code: int, name: str) -> None:
    """Named as OONI's df-007 names them, also when wrapped (httpx wraps the OS error)."""
    from probe.measure.failures import classify

    assert classify(OSError(code, os.strerror(code))) == name
    try:
        try:
            raise OSError(code, os.strerror(code))
        except OSError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert classify(outer) == name


def test_goodput_of_a_cut_transfer_counts_what_arrived_not_whole_records() -> None:
    """An early stop at 128 kbit/s leaves up to a second of a TLS record undecrypted: the
    kernel's count, less the header and the framing, is what arrived."""
    from probe.measure.transfer import TLS_OVERHEAD, _arrived

    body, wire, header = 65_536, 78_677, 180
    records = -(-wire // (16_384 + TLS_OVERHEAD))
    assert _arrived(body, "stable", None, wire, header, tls=True) == wire - header - records * \
        TLS_OVERHEAD
    assert _arrived(body, "max_seconds", None, wire, header, tls=False) == wire - header
    # the object's own end, or no kernel count: the body read is exact
    assert _arrived(body, "complete", None, wire, header, tls=True) == body
    assert _arrived(body, "stable", None, None, header, tls=True) == body
    # the byte cap ends the span at the last byte read: later bytes are over the cap
    assert _arrived(body, "max_bytes", None, wire, header, tls=True) == body
    # a failure (nothing of the body came) reports the body, not headers or tickets
    assert _arrived(0, "max_seconds", "generic_timeout_error", 900, 0, tls=True) == 0
    # never fewer than the bytes read
    assert _arrived(body, "stable", None, body, header, tls=True) == body


def test_a_stopped_transfer_reports_goodput_of_the_bytes_that_arrived(
    server: TestServer, keys: TestKeys, ca_bundle: Path
) -> None:
    with _session(keys, ca_bundle) as s:
        rec = s.fetch(server.url("/slow/400000?kbps=400", NAME), max_seconds=1.5)
    assert rec["stopped_by"] == "max_seconds" and rec["wire_bytes"] >= rec["bytes"]
    body_rate = rec["bytes"] * 8 / 1000 / rec["duration_s"]
    assert rec["goodput_kbps"] >= body_rate
    assert rec["goodput_kbps"] <= rec["wire_bytes"] * 8 / 1000 / rec["duration_s"]


def test_a_range_cut_by_the_cap_is_max_bytes_only_if_the_object_goes_on() -> None:
    from probe.measure.transfer import cut_by_cap

    sent = (0, 299_999)
    assert cut_by_cap(None, sent, "bytes 0-299999/2000000")
    assert not cut_by_cap(None, sent, "bytes 0-299999/300000")  # the object ended there
    assert cut_by_cap((0, 999_999), sent, "bytes 0-299999/*")
    # the caller asked past the object's end, and the object ends exactly at the cap
    assert not cut_by_cap((0, 999_999), sent, "bytes 0-299999/300000")
    assert not cut_by_cap(sent, sent, "bytes 0-299999/2000000")  # the caller's own range
