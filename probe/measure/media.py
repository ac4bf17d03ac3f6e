"""What a target's kind means on the wire: one GET, an HLS stream, or a progressive MP4.

The 2021 throttling hit Twitter's images and videos; videos are fetched the way
a player does (playlist, then segments over one kept-alive connection) so that
the measured flow looks like the throttled one. One media object is bounded as
a whole by `limits.max_bytes` and `limits.max_seconds`.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from .transfer import Limits, Session, StopWhen

PLAYLIST_CAP = 1_000_000  # a playlist larger than this is not one we can use
MIN_FETCH_SECONDS = 1.0  # an HLS object with less time left starts no further fetch
_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')
SIMPLE_KINDS = ("image", "script", "page")


@dataclass
class Segment:
    """One thing to fetch from a media playlist; byte_range is inclusive."""

    uri: str
    role: str  # "init" (EXT-X-MAP) or "segment"
    byte_range: tuple[int, int] | None = None


def measure_target(
    session: Session, url: str, kind: str, limits: Limits, stop_when: StopWhen | None = None
) -> list[dict]:
    """Fetch one target as its kind demands; returns its transfer records in order."""
    if kind in SIMPLE_KINDS:
        return [session.fetch(url, max_bytes=limits.max_bytes, max_seconds=limits.max_seconds,
                              stop_when=stop_when)]
    if kind != "video":
        raise ValueError(f"unknown target kind {kind!r}")
    path = urlsplit(url).path.lower()
    if path.endswith(".mp4"):
        # By range, as a player reads it: the fetch asks for the cap as a Range itself.
        return [session.fetch(url, max_bytes=limits.max_bytes, max_seconds=limits.max_seconds,
                              stop_when=stop_when, role="progressive")]
    return _video(session, url, limits, stop_when)


def _video(session: Session, url: str, limits: Limits, stop_when: StopWhen | None) -> list[dict]:
    """HLS: playlist (master -> one variant) then segments until the object's allowance is spent.

    A URL that is not .m3u8 is fetched once; it is followed as HLS only if the
    server calls it a playlist (content-type mpegurl).
    """
    started = time.monotonic()
    records: list[dict] = []
    allowance = _Allowance(limits, started, records)
    playlist_url = url
    for _ in range(2):  # master, then media playlist
        if records and allowance.spent():
            return records
        text, record = _fetch_playlist(session, playlist_url, allowance)
        records.append(record)
        if text is None:
            return records
        variant = pick_variant(text, playlist_url)
        if variant is None:
            break
        if urlsplit(variant).hostname != urlsplit(playlist_url).hostname:
            return records  # the session is pinned to this host's address
        playlist_url = variant
    else:
        return records  # a master pointing at another master: give up
    host = urlsplit(playlist_url).hostname
    for segment in parse_media_playlist(text, playlist_url):
        # The session is pinned to one address: another host's segments are not ours to fetch.
        if allowance.spent() or urlsplit(segment.uri).hostname != host:
            break
        record = session.fetch(
            segment.uri, byte_range=segment.byte_range, max_bytes=allowance.bytes_left(),
            max_seconds=allowance.seconds_left(), stop_when=stop_when, role=segment.role,
        )
        records.append(record)
        if record["failure"] is not None or record["stopped_by"] != "complete":
            break
    return records


class _Allowance:
    """Bytes and seconds left of the whole media object's limits."""

    def __init__(self, limits: Limits, started: float, records: list[dict]) -> None:
        self.limits = limits
        self.started = started
        self.records = records

    def bytes_left(self) -> int:
        return self.limits.max_bytes - sum(r["bytes"] for r in self.records)

    def seconds_left(self) -> float:
        return self.limits.max_seconds - (time.monotonic() - self.started)

    def spent(self) -> bool:
        """No room for another fetch: one started with less time than this would be cut
        before its first byte and recorded as a timeout that never happened."""
        return self.bytes_left() <= 0 or self.seconds_left() < MIN_FETCH_SECONDS


def _fetch_playlist(session: Session, url: str, allowance: _Allowance) -> tuple[str | None, dict]:
    """GET a (supposed) playlist keeping its text; None when it is not a usable playlist."""
    parts: list[bytes] = []
    kept = [0]

    def keep(chunk: bytes) -> None:
        # Stop keeping as soon as the body cannot be a playlist (a video served as is).
        if kept[0] < PLAYLIST_CAP and (kept[0] or chunk.lstrip(b"\xef\xbb\xbf").startswith(b"#")):
            parts.append(chunk[: PLAYLIST_CAP - kept[0]])
            kept[0] += len(parts[-1])

    record = session.fetch(url, max_bytes=allowance.bytes_left(),
                           max_seconds=allowance.seconds_left(),
                           sink=keep, role="playlist")
    if record["failure"] is not None or record["stopped_by"] != "complete":
        return None, record
    text = b"".join(parts).decode("utf-8", "replace")
    content_type = record["content_type"] or ""
    is_playlist = text.lstrip("\ufeff").startswith("#EXTM3U")
    if not is_playlist or not (
        urlsplit(url).path.lower().endswith(".m3u8") or "mpegurl" in content_type.lower()
    ):
        record["role"] = "object"
        return None, record
    return text, record


def pick_variant(text: str, base: str) -> str | None:
    """The lowest-bandwidth variant of a master playlist (None for a media playlist).

    Lowest, because the choice must not depend on the speed we are measuring
    (a player's adaptive choice would) and it is what a throttled player ends
    up on; it also spends the fewest of the volunteer's bytes per segment.
    """
    best: tuple[int, str] | None = None
    lines = [line.strip() for line in text.splitlines()]
    for i, line in enumerate(lines):
        if not line.startswith("#EXT-X-STREAM-INF:"):
            continue
        attrs = _attributes(line.split(":", 1)[1])
        uri = next((u for u in lines[i + 1:] if u and not u.startswith("#")), None)
        url = _url(base, uri) if uri is not None else None
        if url is None:
            continue
        bandwidth = _number(attrs.get("BANDWIDTH"))
        if best is None or bandwidth < best[0]:
            best = (bandwidth, url)
    return best[1] if best else None


def parse_media_playlist(text: str, base: str) -> list[Segment]:
    """Init section (EXT-X-MAP) and segments in order, with absolute URIs and byte ranges."""
    segments: list[Segment] = []
    pending_range: str | None = None
    next_offset = 0
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXT-X-MAP:"):
            attrs = _attributes(line.split(":", 1)[1])
            url = _url(base, attrs["URI"]) if "URI" in attrs else None
            if url is not None:
                segments.append(Segment(url, "init", _byte_range(attrs.get("BYTERANGE"), 0)))
        elif line.startswith("#EXT-X-BYTERANGE:"):
            pending_range = line.split(":", 1)[1]
        elif line and not line.startswith("#"):
            rng = _byte_range(pending_range, next_offset)
            if rng is not None:
                next_offset = rng[1] + 1
            url = _url(base, line)
            if url is not None:
                segments.append(Segment(url, "segment", rng))
            pending_range = None
    return segments


def _attributes(text: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in _ATTR.findall(text)}


def _byte_range(spec: str | None, default_offset: int) -> tuple[int, int] | None:
    """HLS "length[@offset]" to an inclusive (first, last); offset defaults to the previous end.
    A malformed range (the playlist is the server's, or a censor's) means the whole file."""
    if not spec:
        return None
    length_s, _, offset_s = spec.partition("@")
    try:
        first = int(offset_s) if offset_s else default_offset
        length = int(length_s)
    except ValueError:
        return None
    return (first, first + length - 1) if length > 0 and first >= 0 else None


def _number(text: str | None) -> float:
    """An attribute's number (BANDWIDTH=1.5e6 is not an int); unreadable ones sort last."""
    try:
        value = float(text) if text else math.inf
    except ValueError:
        return math.inf
    return value if value == value else math.inf


def _url(base: str, ref: str) -> str | None:
    """`ref` resolved against `base`, or None when it is no fetchable http(s) URL."""
    try:
        url = urljoin(base, ref.strip())
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return None
    if parsed.scheme not in ("http", "https") or not parsed.host or any(c.isspace() for c in url):
        return None
    return url
