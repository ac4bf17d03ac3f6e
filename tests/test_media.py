"""Media kinds on the wire: HLS (master -> lowest variant -> fMP4 segments), progressive MP4."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.lab.ca import CertificateAuthority
from probe.measure import tls
from probe.measure.clock import Clock
from probe.measure.keys import TestKeys
from probe.measure.media import Segment, measure_target, parse_media_playlist, pick_variant
from probe.measure.transfer import Limits, Session
from tests.servers.http_servers import (
    HLS_SEGMENT_BYTES,
    HLS_SEGMENTS,
    MP4_BYTES,
    TestServer,
    server_context,
)

pytestmark = pytest.mark.timeout(60)
NAME = "video.example"


@pytest.fixture
def server(test_ca: CertificateAuthority, tmp_path: Path) -> Iterator[TestServer]:
    issued = test_ca.issue([NAME], tmp_path)
    with TestServer(server_context(issued.cert, issued.key)) as srv:
        yield srv


def _measure(server: TestServer, ca_bundle: Path, path: str, kind: str,
             limits: Limits) -> tuple[list[dict], TestKeys]:
    keys = TestKeys()
    with Session(keys, Clock(), address="127.0.0.1", sni=None,
                 ssl_context=tls.make_context(ca_bundle), limits=limits,
                 transfer_prefix="v") as session:
        records = measure_target(session, server.url(path, NAME), kind, limits)
    return records, keys


def test_hls_master_picks_lowest_variant_and_fetches_all_segments(
    server: TestServer, ca_bundle: Path
) -> None:
    records, keys = _measure(server, ca_bundle, "/hls/master.m3u8", "video", Limits())
    roles = [r["role"] for r in records]
    assert roles == ["playlist", "playlist", "init"] + ["segment"] * HLS_SEGMENTS
    paths = [r["url"].split(str(server.port), 1)[1] for r in records]
    assert paths[1] == "/hls/low/index.m3u8"  # 256 kbps variant, though listed last
    assert paths[3:] == [f"/hls/low/seg{i}.m4s" for i in range(HLS_SEGMENTS)]  # rel, /abs, URL
    assert all(r["failure"] is None and r["stopped_by"] == "complete" for r in records)
    assert [r["bytes"] for r in records[3:]] == [HLS_SEGMENT_BYTES] * HLS_SEGMENTS
    assert [r["transfer_id"] for r in records] == [f"v-{i}" for i in range(1, len(records) + 1)]
    # One kept-alive connection, as a player would use.
    assert server.seen.connections == 1 and len(keys.tls_handshakes) == 1
    assert [r["connection_reused"] for r in records] == [False] + [True] * (len(records) - 1)
    assert keys.transfers == records


def test_hls_limits_bound_the_whole_object(server: TestServer, ca_bundle: Path) -> None:
    limits = Limits(max_bytes=100_000)
    records, _ = _measure(server, ca_bundle, "/hls/low/index.m3u8", "video", limits)
    total = sum(r["bytes"] for r in records)
    assert 100_000 <= total < 100_000 + HLS_SEGMENT_BYTES
    # The last segment may arrive whole in one read; either way nothing follows it.
    assert records[-1]["stopped_by"] in ("max_bytes", "complete")
    assert all(r["failure"] is None for r in records)
    assert len(records) < 2 + HLS_SEGMENTS  # stopped before the playlist ran out


def test_playlist_recognised_by_content_type(server: TestServer, ca_bundle: Path) -> None:
    records, _ = _measure(server, ca_bundle, "/hls/low/index", "video", Limits())
    assert [r["role"] for r in records][:2] == ["playlist", "init"]
    assert records[0]["content_type"] == "application/vnd.apple.mpegurl"


def test_video_url_that_is_not_a_playlist_is_one_object(
    server: TestServer, ca_bundle: Path
) -> None:
    records, _ = _measure(server, ca_bundle, "/bytes/50000", "video", Limits())
    assert len(records) == 1 and records[0]["role"] == "object"
    assert records[0]["bytes"] == 50_000


def test_progressive_mp4_by_range(server: TestServer, ca_bundle: Path) -> None:
    records, keys = _measure(server, ca_bundle, "/video.mp4", "video", Limits(max_bytes=300_000))
    (rec,) = records
    assert rec["role"] == "progressive" and rec["status_code"] == 206
    assert rec["bytes"] == 300_000 and rec["stopped_by"] == "max_bytes"  # the cap cut it
    assert ["Range", "bytes=0-299999"] in keys.requests[0]["request"]["headers_list"]
    assert 300_000 < MP4_BYTES  # the range, not the object, bounded the transfer


@pytest.mark.parametrize("kind", ["image", "script", "page"])
def test_simple_kinds_are_one_get(server: TestServer, ca_bundle: Path, kind: str) -> None:
    records, keys = _measure(server, ca_bundle, "/bytes/20000", kind,
                             Limits(max_bytes=2_000_000))
    assert len(records) == 1 and records[0]["bytes"] == 20_000
    # No range of its own: only the byte cap's (a server that ignores it sends the whole).
    assert ["Range", "bytes=0-1999999"] in keys.requests[0]["request"]["headers_list"]


def test_unknown_kind_is_a_programming_error(server: TestServer, ca_bundle: Path) -> None:
    with pytest.raises(ValueError, match="audio"):
        _measure(server, ca_bundle, "/bytes/1", "audio", Limits())


def test_pick_variant_lowest_bandwidth() -> None:
    master = (
        "#EXTM3U\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=832000,CODECS="avc1.4d401f,mp4a.40.2"\nmid.m3u8\n'
        "#EXT-X-STREAM-INF:BANDWIDTH=2176000\nhttps://cdn.example/hi.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=256000,RESOLUTION=320x180\n../lo/pl.m3u8\n"
    )
    assert pick_variant(master, "https://v.example/a/b/master.m3u8") == (
        "https://v.example/a/lo/pl.m3u8")
    assert pick_variant("#EXTM3U\n#EXTINF:3,\nseg.ts\n", "https://v.example/x.m3u8") is None


def test_parse_media_playlist_map_and_byteranges() -> None:
    text = (
        "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\",BYTERANGE=\"720@0\"\n"
        "#EXTINF:3,\n#EXT-X-BYTERANGE:1000@720\nmedia.mp4\n"
        "#EXTINF:3,\n#EXT-X-BYTERANGE:500\nmedia.mp4\n"
        "#EXTINF:3,\n/abs/seg.m4s\n"
    )
    assert parse_media_playlist(text, "https://v.example/p/index.m3u8") == [
        Segment("https://v.example/p/init.mp4", "init", (0, 719)),
        Segment("https://v.example/p/media.mp4", "segment", (720, 1719)),
        Segment("https://v.example/p/media.mp4", "segment", (1720, 2219)),  # follows previous
        Segment("https://v.example/abs/seg.m4s", "segment", None),
    ]


def test_a_malformed_playlist_is_read_as_far_as_it_makes_sense() -> None:
    """Playlists are the server's (or a censor's): bad entries are skipped, never raised on."""
    master = ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1.5e6\nfloat.m3u8\n"
              "#EXT-X-STREAM-INF:BANDWIDTH=lots\nword.m3u8\n"
              "#EXT-X-STREAM-INF:BANDWIDTH=900000\nbad uri.m3u8\n")
    assert pick_variant(master, "https://v.example/m.m3u8") == "https://v.example/float.m3u8"
    text = ("#EXTM3U\n#EXT-X-BYTERANGE:@100\na.m4s\n#EXT-X-BYTERANGE:x@y\nb.m4s\n"
            "#EXT-X-BYTERANGE:-5@0\nc.m4s\nwith space.m4s\nftp://v.example/d.m4s\n"
            '#EXT-X-MAP:URI="http://[bad"\n')
    assert parse_media_playlist(text, "https://v.example/p.m3u8") == [
        Segment(f"https://v.example/{n}.m4s", "segment", None) for n in "abc"]


def test_no_hls_fetch_starts_without_time_for_its_first_byte() -> None:
    """A segment started with 50 ms left would be cut before any byte and recorded as a
    timeout that never happened: the object stops instead."""
    import time

    from probe.measure.media import MIN_FETCH_SECONDS, _Allowance

    limits = Limits(max_bytes=1_000_000, max_seconds=10.0)
    now = time.monotonic()
    assert not _Allowance(limits, now - 8.0, []).spent()
    assert _Allowance(limits, now - (10.0 - MIN_FETCH_SECONDS / 2), []).spent()
    assert _Allowance(limits, now, [{"bytes": 1_000_000}]).spent()
