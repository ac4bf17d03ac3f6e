"""Files under --media: confinement to the folder, content types, single byte ranges.

The probe fetches Twitter-like media (images, HLS playlists and segments,
progressive MP4 by range) from here, so types and ranges must be what a CDN sends.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .http import HttpError, Response

CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mp4": "video/mp4",
    ".m4s": "video/iso.segment",
    ".m4a": "audio/mp4",
    ".ts": "video/mp2t",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
READ_CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")  # ASCII digits: int() must parse


def _not_found() -> HttpError:
    return HttpError(404, "not found", close=False)


def resolve(root: Path, relative: str) -> Path:
    """The file `relative` names inside `root`, or 404: never anything outside it.

    `relative` is already percent-decoded; resolving symlinks before the
    containment check catches `..`, absolute paths and links that leave the folder.
    """
    if "\x00" in relative or "\\" in relative:
        raise _not_found()
    root = root.resolve()
    try:
        target = (root / relative.lstrip("/")).resolve(strict=True)
    except (OSError, RuntimeError):
        raise _not_found() from None
    if not target.is_relative_to(root) or not target.is_file():
        raise _not_found()
    return target


def content_type(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Inclusive (first, last) of a single byte range, None to send the whole file.

    Invalid or multi-range headers are ignored (RFC 9110 14.2 allows it);
    a syntactically valid range that misses the file is 416.
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if not match or match.group(1) == match.group(2) == "":
        return None
    first_s, last_s = match.groups()
    if first_s == "":  # suffix range: the last N bytes
        n = int(last_s)
        if n == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(size - n, 0), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if last_s and last < first:
        return None
    if first >= size:
        raise _unsatisfiable(size)
    return first, min(last, size - 1)


def _unsatisfiable(size: int) -> HttpError:
    return HttpError(
        416, "range not satisfiable", close=False, headers=[("Content-Range", f"bytes */{size}")]
    )


class FileBody:
    """`length` bytes of an open file from `offset`; the connection closes it when done."""

    def __init__(self, handle: BinaryIO, offset: int, length: int) -> None:
        self.handle = handle
        self.offset = offset
        self.length = length

    def __iter__(self) -> Iterator[bytes]:
        self.handle.seek(self.offset)
        left = self.length
        while left > 0:
            chunk = self.handle.read(min(READ_CHUNK, left))
            if not chunk:
                raise OSError("file shrank while being served")
            left -= len(chunk)
            yield chunk

    def close(self) -> None:
        self.handle.close()


def file_response(root: Path, relative: str, range_header: str | None) -> Response:
    """200 or 206 response streaming the file (or 404/416 as HttpError)."""
    path = resolve(root, relative)
    try:
        handle = path.open("rb")
    except OSError:  # unreadable (permissions): as good as absent to a client
        raise _not_found() from None
    size = os.fstat(handle.fileno()).st_size
    try:
        span = parse_range(range_header, size)
    except HttpError:
        handle.close()
        raise
    headers = [("Content-Type", content_type(path)), ("Accept-Ranges", "bytes")]
    if span is None:
        first, last, status = 0, size - 1, 200
    else:
        first, last, status = span[0], span[1], 206
        headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
    length = last - first + 1 if size else 0
    return Response(status, headers, FileBody(handle, first, length), length)
