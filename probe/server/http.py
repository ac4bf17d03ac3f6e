"""HTTP/1.1 framing: bounded request heads, bodies sunk without storing, response heads.

Written by hand (not http.server) because every byte and every wait must be
bounded and counted, and the body of an upload is measured, never kept.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import unquote

from .stream import PeerClosed, Stream

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
DECIMAL = re.compile(r"[0-9]{1,19}")  # ASCII digits, at most 19 (int() parses; < 2**63)
_CHUNK_LINE_MAX = 1024


class IdleTimeout(Exception):
    """No new request arrived within the idle timeout: a normal end of keep-alive."""


class HttpError(Exception):
    """A request answered with `status`; `close` unless the framing is known to be intact."""

    def __init__(
        self,
        status: int,
        reason: str,
        close: bool = True,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.close = close
        self.headers = headers or []


@dataclass
class Limits:
    max_request_line: int
    max_header_bytes: int
    max_headers: int
    header_timeout: float


@dataclass
class Request:
    method: str
    target: str
    path: str  # percent-decoded, without the query
    query: str
    version: str
    headers: dict[str, str]
    started: float  # monotonic time the first byte of the request was seen
    keep_alive: bool = True
    content_length: int | None = None
    chunked: bool = False

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


@dataclass
class BodyStats:
    """What arrived of a request body; times are monotonic seconds."""

    bytes: int = 0
    first_byte_at: float | None = None
    last_byte_at: float | None = None


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | Iterable[bytes | memoryview] = b""  # chunks totalling `length` bytes
    length: int = 0
    close: bool = False


def read_request(stream: Stream, limits: Limits) -> Request | None:
    """Read one request head; None if the client closed between requests.

    The first byte may come at any time while the connection is not idle
    (`Stream.fill_or_idle`); from then on the whole head must arrive within
    `header_timeout` (defeats slowloris).
    """
    while stream.buf[:2] == b"\r\n":  # RFC 9112 2.2: ignore empty lines before a request
        del stream.buf[:2]
    if not stream.buf:
        try:
            if not stream.fill_or_idle():
                return None
        except TimeoutError:
            raise IdleTimeout() from None
    started = time.monotonic()
    deadline = started + limits.header_timeout
    while True:
        end = stream.buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        line_end = stream.buf.find(b"\n")
        if (line_end < 0 and len(stream.buf) > limits.max_request_line) or (
            line_end > limits.max_request_line
        ):
            raise HttpError(414, "request line too long")
        if len(stream.buf) > limits.max_header_bytes:
            raise HttpError(431, "request header fields too large")
        try:
            if not stream.fill_until(deadline):
                raise PeerClosed("closed inside the request head")
        except TimeoutError:
            raise HttpError(408, "request head not received in time") from None
    if end + 4 > limits.max_header_bytes:
        raise HttpError(431, "request header fields too large")
    head = bytes(stream.buf[:end])
    del stream.buf[: end + 4]
    return _parse_head(head, started, limits)


def _parse_head(head: bytes, started: float, limits: Limits) -> Request:
    lines = head.split(b"\r\n")
    if len(lines[0]) > limits.max_request_line:
        raise HttpError(414, "request line too long")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        raise HttpError(400, "malformed request line")
    method, target, version = (p.decode("latin-1") for p in parts)
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        if re.fullmatch(r"HTTP/\d\.\d", version):
            raise HttpError(505, "only HTTP/1.x is served")
        raise HttpError(400, "malformed HTTP version")
    if not target.startswith("/") or any(c in target for c in "\x00\r\n\t#"):
        raise HttpError(400, "only origin-form request targets are served")
    if len(lines) - 1 > limits.max_headers:
        raise HttpError(431, "too many header fields")
    headers: dict[str, str] = {}
    lengths: set[str] = set()
    for raw in lines[1:]:
        name, sep, value = raw.partition(b":")
        if not sep or not _TOKEN.fullmatch(name) or b"\n" in value or b"\r" in value:
            raise HttpError(400, "malformed header field")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        if key == "content-length":
            lengths.update(v.strip() for v in text.split(","))
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    raw_path, _, query = target.partition("?")
    try:
        path = unquote(raw_path, errors="strict")
    except UnicodeDecodeError:
        raise HttpError(400, "request path is not UTF-8") from None
    request = Request(
        method=method, target=target, path=path, query=query,
        version=version, headers=headers, started=started,
    )
    _framing(request, lengths)
    connection = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    request.keep_alive = (
        "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    )
    return request


def _framing(request: Request, lengths: set[str]) -> None:
    """Body length per RFC 9112 6.3; ambiguous framing (smuggling) is refused."""
    te = request.headers.get("transfer-encoding")
    if te is not None:
        if lengths:
            raise HttpError(400, "both Transfer-Encoding and Content-Length")
        codings = [c.strip().lower() for c in te.split(",")]
        if codings != ["chunked"]:
            raise HttpError(501, "only chunked transfer coding is accepted")
        request.chunked = True
    elif lengths:
        if len(lengths) != 1 or not DECIMAL.fullmatch(next(iter(lengths))):
            raise HttpError(400, "invalid Content-Length")
        request.content_length = int(next(iter(lengths)))


def sink_body(stream: Stream, request: Request, limit: int) -> BodyStats:
    """Read and discard the body, counting bytes and timing them; raise 413 past `limit`."""
    stats = BodyStats()
    if request.content_length is not None:
        if request.content_length > limit:
            raise HttpError(413, "body larger than --max-upload-bytes")
        _sink(stream, request.content_length, stats)
    elif request.chunked:
        while True:
            size = _chunk_size(_read_line(stream))
            if size == 0:
                break
            if stats.bytes + size > limit:
                raise HttpError(413, "body larger than --max-upload-bytes")
            _sink(stream, size, stats)
            if _read_line(stream):
                raise HttpError(400, "chunk not followed by CRLF")
        trailer_bytes = 0
        while line := _read_line(stream):  # trailers: read and ignored, bounded
            trailer_bytes += len(line)
            if trailer_bytes > _CHUNK_LINE_MAX * 8:
                raise HttpError(431, "trailer too large")
    return stats


def _sink(stream: Stream, n: int, stats: BodyStats) -> None:
    while n:
        if not stream.buf and not stream.fill(stream.idle_timeout):
            raise PeerClosed("closed inside the request body")
        got = stream.take(n)
        now = time.monotonic()
        if stats.first_byte_at is None:
            stats.first_byte_at = now
        stats.last_byte_at = stream.progressed_at = now
        stats.bytes += got
        n -= got


def _read_line(stream: Stream) -> bytes:
    while (end := stream.buf.find(b"\r\n")) < 0:
        if len(stream.buf) > _CHUNK_LINE_MAX:
            raise HttpError(400, "chunk line too long")
        if not stream.fill(stream.idle_timeout):
            raise PeerClosed("closed inside a chunk line")
    line = bytes(stream.buf[:end])
    del stream.buf[: end + 2]
    return line


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip()
    if not size or len(size) > 16 or not re.fullmatch(rb"[0-9A-Fa-f]+", size):
        raise HttpError(400, "malformed chunk size")
    return int(size, 16)


def response_head(response: Response, keep_alive: bool) -> bytes:
    """Status line and headers; Content-Length always, so keep-alive framing is exact."""
    reason = HTTPStatus(response.status).phrase
    lines = [f"HTTP/1.1 {response.status} {reason}", f"Date: {formatdate(usegmt=True)}"]
    lines += [f"{k}: {v}" for k, v in response.headers]
    lines.append(f"Content-Length: {response.length}")
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def error_response(error: HttpError) -> Response:
    """The status and its standard phrase only: our own reasons would tell what the
    server is (and its option names) to anyone who sends a malformed request."""
    body = f"{error.status} {HTTPStatus(error.status).phrase}\n".encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), *error.headers]
    return Response(error.status, headers, body, len(body), close=error.close)
