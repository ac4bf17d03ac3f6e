"""What the collector accepts: routes, headers and bodies checked before anything is stored.

Pure functions, so every refusal is a `RequestError` with its HTTP status and a message
naming the problem (and never quoting the client's values back).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from . import protocol
from .store import encode_line


class RequestError(Exception):
    """A request the collector refuses: `status` (4xx) and what is wrong with it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Route:
    """Which protocol step a path asks for; `report_id` for update and close."""

    kind: str  # "open", "update" or "close"
    report_id: str = ""

    @property
    def shape(self) -> str:
        """The path with the id replaced: what the log may group requests by."""
        return {"open": protocol.OPEN_PATH, "update": "/report/{id}",
                "close": "/report/{id}/close"}[self.kind]


def route(path: str) -> Route:
    """The route of a request path (its query, if any, is ignored); 404 for any other."""
    parts = path.split("?", 1)[0].split("/")
    if parts[:2] == ["", "report"]:
        if len(parts) == 2:
            return Route("open")
        if protocol.REPORT_ID.match(parts[2]):
            if len(parts) == 3:
                return Route("update", parts[2])
            if len(parts) == 4 and parts[3] == "close":
                return Route("close", parts[2])
    raise RequestError(404, "no such path (POST /report, /report/{id}, /report/{id}/close)")


def body_limit(kind: str) -> int:
    """The largest body each step accepts: a measurement, or a small open/close body."""
    return protocol.MAX_MEASUREMENT_BYTES if kind == "update" else protocol.MAX_OPEN_BYTES


def body_length(headers: Mapping[str, str], limit: int) -> int:
    """The body's length from the headers: bk-003 lets the collector refuse any
    Content-Encoding it does not support (415); a body needs a Content-Length."""
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise RequestError(415, "Content-Encoding is not supported; send the body uncompressed")
    if "Transfer-Encoding" in headers:
        raise RequestError(411, "chunked bodies are not accepted; send a Content-Length")
    text = headers.get("Content-Length", "0").strip()
    if not text.isdigit():
        raise RequestError(400, "Content-Length is not a number")
    length = int(text)
    if length > limit:
        raise RequestError(413, f"body larger than {limit} bytes")
    return length


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (UTF-8, no NaN or Infinity, which JSON lacks)."""
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise RequestError(400, "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise RequestError(400, "the body is not a JSON object")
    return value


def open_request(body: bytes) -> dict[str, Any]:
    """The checked body that opens a report, without the probe's address (bk-003 3.1:
    never to be logged; the collector does not keep it either)."""
    opened = parse_object(body)
    errors = protocol.open_errors(opened)
    if errors:
        raise RequestError(400, "; ".join(errors))
    if "content" in opened or "test_helper" in opened:
        raise RequestError(400, "content and test_helper (deprecated) are not supported")
    opened.pop("probe_ip", None)
    return opened


def update_request(body: bytes, report_id: str) -> dict[str, Any]:
    """The measurement a report update carries, checked against df-000 and the report
    and storable as UTF-8 JSON; a probe's address in it becomes OONI's placeholder."""
    update = parse_object(body)
    if update.get("format") != "json":
        raise RequestError(400, "format: must be \"json\"")
    content = update.get("content")
    errors = protocol.measurement_errors(content, report_id)
    if errors:
        raise RequestError(400, "; ".join(errors))
    measurement = cast(dict[str, Any], content)
    if "probe_ip" in measurement:
        measurement["probe_ip"] = "127.0.0.1"
    try:
        encode_line(measurement)
    except ValueError:
        raise RequestError(400, "content holds text that is not valid Unicode") from None
    return measurement

