"""Byte caps that hold: a server that honours ranges sends no more than the cap."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.lab.ca import CertificateAuthority
from probe.measure import tls
from probe.measure.clock import Clock
from probe.measure.keys import TestKeys
from probe.measure.media import measure_target
from probe.measure.transfer import Limits, Session
from tests.servers.http_servers import MP4_BYTES, TestServer, server_context

pytestmark = pytest.mark.timeout(60)
NAME = "media.example"


@pytest.fixture(scope="module")
def server(test_ca: CertificateAuthority, tmp_path_factory) -> Iterator[TestServer]:
    issued = test_ca.issue([NAME], tmp_path_factory.mktemp("certs"))
    with TestServer(server_context(issued.cert, issued.key)) as srv:
        yield srv


def _fetch(server: TestServer, ca_bundle: Path, path: str, **kwargs) -> tuple[dict, TestKeys]:
    keys = TestKeys()
    with Session(keys, Clock(), address="127.0.0.1", sni=None,
                 ssl_context=tls.make_context(ca_bundle), limits=Limits(),
                 transfer_prefix="c") as session:
        record = session.fetch(server.url(path, NAME), **kwargs)
    return record, keys


def _sent_range(keys: TestKeys) -> str | None:
    return dict(keys.requests[0]["request"]["headers_list"]).get("Range")


@pytest.mark.parametrize("cap", [65_536, 524_288])
def test_an_image_moves_no_more_than_its_cap_on_a_fast_path(
    server: TestServer, ca_bundle: Path, cap: int
) -> None:
    """Stopping to read at the cap let a whole receive window (~1 MB on loopback) in."""
    keys = TestKeys()
    with Session(keys, Clock(), address="127.0.0.1", sni=None,
                 ssl_context=tls.make_context(ca_bundle), limits=Limits(max_bytes=cap),
                 transfer_prefix="c") as session:
        (record,) = measure_target(session, server.url("/video.mp4", NAME), "image",
                                   Limits(max_bytes=cap))
    assert _sent_range(keys) == f"bytes=0-{cap - 1}"
    assert record["status_code"] == 206 and record["bytes"] == cap
    assert record["stopped_by"] == "max_bytes" and record["failure"] is None
    # Response head and TLS framing included: the payload is within the cap's slack.
    assert cap < record["wire_bytes"] <= cap + max(16_000, cap // 10)


def test_a_range_the_caller_asked_for_is_cut_to_the_cap(
    server: TestServer, ca_bundle: Path
) -> None:
    record, keys = _fetch(server, ca_bundle, "/video.mp4", byte_range=(100, 999_999),
                          max_bytes=50_000)
    assert _sent_range(keys) == "bytes=100-50099"
    assert record["bytes"] == 50_000 and record["stopped_by"] == "max_bytes"


def test_a_range_within_the_cap_is_sent_as_asked_and_complete(
    server: TestServer, ca_bundle: Path
) -> None:
    record, keys = _fetch(server, ca_bundle, "/video.mp4", byte_range=(100, 10_099),
                          max_bytes=50_000)
    assert _sent_range(keys) == "bytes=100-10099"
    assert record["bytes"] == 10_000 and record["stopped_by"] == "complete"


def test_an_object_smaller_than_the_cap_is_complete(server: TestServer, ca_bundle: Path) -> None:
    record, keys = _fetch(server, ca_bundle, "/video.mp4", max_bytes=2 * MP4_BYTES)
    assert _sent_range(keys) == f"bytes=0-{2 * MP4_BYTES - 1}"
    assert record["status_code"] == 206 and record["bytes"] == MP4_BYTES
    assert record["stopped_by"] == "complete"


def test_a_server_that_ignores_ranges_is_still_read_to_the_cap_only(
    server: TestServer, ca_bundle: Path
) -> None:
    record, _ = _fetch(server, ca_bundle, "/bytes/3000000", max_bytes=100_000)
    assert record["status_code"] == 200 and record["stopped_by"] == "max_bytes"
    assert 100_000 <= record["bytes"] < 3_000_000


def test_a_post_carries_no_range(server: TestServer, ca_bundle: Path) -> None:
    _, keys = _fetch(server, ca_bundle, "/upload", method="POST", max_bytes=1_000)
    assert _sent_range(keys) is None
