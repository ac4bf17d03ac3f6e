"""The endpoints: /bytes, /media/<path>, /upload, /meta (under --path-prefix, if any).

Each handler turns a parsed request (its body already sunk and timed) into a
Response; measurement numbers are computed here so /upload and the log agree.
Nothing else answers: `/` and every other path are a plain 404, and no response
names the server (no `Server` header), so a scan of the address finds a web
server and nothing that says what it is for.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import parse_qs

from probe import __version__

from . import media
from .config import ServerConfig
from .http import DECIMAL, BodyStats, HttpError, Request, Response

POOL_SIZE = 4 * 1024 * 1024


class ConnectionView(Protocol):
    """What a handler may know about the connection its request came on."""

    def snapshot(self) -> dict[str, Any]: ...

    def tcp_info(self) -> dict[str, int | None] | None: ...


def kbps(n_bytes: int, seconds: float | None) -> float | None:
    """Goodput in kilobits (1000 bits) per second; None when no time elapsed."""
    if not seconds or seconds <= 0:
        return None
    return round(n_bytes * 8 / 1000 / seconds, 3)


def utc_now() -> str:
    """UTC now as ISO 8601 with milliseconds and a Z."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Handlers:
    """Routes requests; holds the random pool /bytes is cut from (made once, never compressed)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.pool = memoryview(os.urandom(POOL_SIZE))

    def handle(self, request: Request, body: BodyStats, conn: ConnectionView) -> Response:
        prefix = self.config.path_prefix
        if not request.path.startswith(prefix + "/"):
            raise HttpError(404, "not found", close=False)
        path = request.path[len(prefix):]
        if path == "/bytes":
            _allow(request, "GET", "HEAD")
            response = self.random_bytes(request)
        elif path.startswith("/media/"):
            _allow(request, "GET", "HEAD")
            if self.config.media is None:
                raise HttpError(404, "no --media folder", close=False)
            response = media.file_response(
                self.config.media, path[len("/media/"):], request.headers.get("range")
            )
        elif path == "/upload":
            _allow(request, "POST")
            response = _json(upload_result(request, body, conn.tcp_info()))
        elif path == "/meta":
            _allow(request, "GET", "HEAD")
            meta = {"version": __version__, "server_time": utc_now(), "connection": conn.snapshot()}
            response = _json(meta)
        else:
            raise HttpError(404, "not found", close=False)
        return response

    def random_bytes(self, request: Request) -> Response:
        values = parse_qs(request.query).get("n", [])
        if len(values) != 1 or not DECIMAL.fullmatch(values[0]):
            raise HttpError(400, "expected /bytes?n=<non-negative integer>", close=False)
        n = int(values[0])
        if n > self.config.max_bytes:
            raise HttpError(400, f"n exceeds --max-bytes ({self.config.max_bytes})", close=False)
        headers = [("Content-Type", "application/octet-stream"), ("Cache-Control", "no-store"),
                   ("Accept-Ranges", "bytes")]
        # A single byte range is honoured like a file's, so a client's cap holds here too.
        span = media.parse_range(request.headers.get("range"), n)
        if span is None:
            return Response(200, headers, self._slices(0, n), n)
        first, last = span
        headers.append(("Content-Range", f"bytes {first}-{last}/{n}"))
        return Response(206, headers, self._slices(first, last - first + 1), last - first + 1)

    def _slices(self, offset: int, n: int) -> Iterator[memoryview]:
        """`n` bytes of the object from `offset`: the pool repeated end to end."""
        while n > 0:
            start = offset % POOL_SIZE
            chunk = self.pool[start: start + min(n, POOL_SIZE - start)]
            offset += len(chunk)
            n -= len(chunk)
            yield chunk


def upload_result(
    request: Request, body: BodyStats, tcp_info: dict[str, int | None] | None
) -> dict:
    """Server-side view of an upload, timed from the request's first byte to its last.

    `first_byte_ms`: request start to first body byte (includes a 100-continue wait).
    """
    end = body.last_byte_at or request.started
    duration = end - request.started
    first_byte_ms = (
        round((body.first_byte_at - request.started) * 1000, 3) if body.first_byte_at else None
    )
    return {
        "bytes": body.bytes,
        "duration_s": round(duration, 6),
        "goodput_kbps": kbps(body.bytes, duration) if body.bytes else None,
        "first_byte_ms": first_byte_ms,
        "tcp_info": tcp_info,
    }


def _allow(request: Request, *methods: str) -> None:
    if request.method not in methods:
        raise HttpError(
            405, "method not allowed", close=False, headers=[("Allow", ", ".join(methods))]
        )


def _json(data: dict) -> Response:
    body = json.dumps(data).encode() + b"\n"
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
    return Response(200, headers, body, len(body))
