"""Talking to a collector (bk-003): open, append, close, with bounded retries.

A network failure or a 5xx (or 408/429) is retried after each of RETRY_DELAYS (or
the collector's longer `Retry-After`, up to MAX_RETRY_AFTER_S) and then given up as
`Unreachable`: the run stays queued for a later `probe submit`. A 4xx is
the collector's answer about this one request (`Refused`). TLS is always verified;
`--ca-bundle` adds a trust root to the system's. A proxy (`socks5://`, `socks5h://`,
`http://`) carries every request, e.g. Tor's SOCKS port; the collector's name is then
resolved by the proxy, not here.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from probe import __version__

from . import protocol

RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0)
MAX_RETRY_AFTER_S = 60.0  # a longer wait asked for is cut to this: the retries stay bounded
TIMEOUT_S = 60.0  # generous: over Tor a request can take many seconds
TRANSIENT = frozenset({408, 429})
PROXY_SCHEMES = ("socks5", "socks5h", "http", "https")


class Unreachable(Exception):
    """No answer, or only server errors, after every retry: try again later."""


class Refused(Exception):
    """A 4xx: the collector will not take this request."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(f"{status} {error}")
        self.status = status
        self.error = error


def collector_url(url: str) -> str:
    """The collector's base URL (http or https, maybe with a path), without a trailing
    slash; ValueError says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r}: expected an https:// (or http://) URL of a collector")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: a collector URL has no query or fragment")
    return url.rstrip("/")


def proxy_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in PROXY_SCHEMES or not parts.hostname:
        raise ValueError(f"{url!r}: expected socks5://HOST:PORT (e.g. Tor's "
                         "socks5://127.0.0.1:9050) or http://HOST:PORT")
    if parts.scheme.startswith("socks"):
        try:
            import socksio  # noqa: F401 - httpx needs it for SOCKS
        except ImportError:
            raise ValueError("a SOCKS proxy needs the socksio package "
                             "(pip install socksio)") from None
    return url


def tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """The system's trust roots, plus `ca_bundle`'s; verification always on."""
    context = ssl.create_default_context()
    if ca_bundle:
        try:
            context.load_verify_locations(cafile=str(ca_bundle))
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"--ca-bundle {ca_bundle}: not a PEM file of CA certificates "
                             f"({getattr(exc, 'reason', None) or exc})") from exc
    return context


def _error_text(response: httpx.Response) -> str:
    """What the collector said, short: its JSON `error`, else the start of the body."""
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"][:500]
    except ValueError:
        pass
    return response.text[:200].strip() or response.reason_phrase


def _retry_after(response: httpx.Response) -> float:
    """The seconds a `Retry-After` header asks to wait (0: none, or an HTTP date, which
    our collector never sends), at most MAX_RETRY_AFTER_S."""
    text = response.headers.get("Retry-After", "").strip()
    return min(float(text), MAX_RETRY_AFTER_S) if text.isascii() and text.isdigit() else 0.0


class Collector:
    """One collector, reached directly or through a proxy."""

    def __init__(self, url: str, *, ca_bundle: Path | None = None, proxy: str | None = None,
                 delays: Sequence[float] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = collector_url(url)
        self.proxy = proxy_url(proxy) if proxy else None
        self.delays = tuple(RETRY_DELAYS if delays is None else delays)
        self.sleep = sleep
        self._http = httpx.Client(
            verify=tls_context(ca_bundle), proxy=self.proxy, timeout=TIMEOUT_S,
            headers={"User-Agent": f"throttle-probe/{__version__}"}, follow_redirects=False)

    def open(self, body: Mapping[str, str]) -> str:
        """Open a report; its id as the collector assigned it."""
        answer = self._post(protocol.OPEN_PATH, body)
        report_id = answer.get("report_id") if isinstance(answer, dict) else None
        if not isinstance(report_id, str) or not report_id:
            raise Unreachable(f"{self.url} opened a report but named no report_id")
        return report_id

    def update(self, report_id: str, content: Mapping[str, Any]) -> str | None:
        """Append one measurement (its report_id already the report's); the collector's
        measurement_uid if it gave one."""
        return protocol.measurement_uid(
            self._post(protocol.update_path(report_id), {"format": "json", "content": content}))

    def close(self, report_id: str) -> None:
        self._post(protocol.close_path(report_id), None)

    def _post(self, path: str, body: object) -> object:
        """POST, retried on network failures and server errors; the JSON answer of a 200."""
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        last, asked = "", 0.0
        for attempt in range(len(self.delays) + 1):
            if attempt:
                self.sleep(max(self.delays[attempt - 1], asked))
                asked = 0.0
            try:
                response = self._http.post(self.url + path, content=data, headers=headers)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            if response.status_code >= 500 or response.status_code in TRANSIENT:
                last = f"{response.status_code} {_error_text(response)}"
                asked = _retry_after(response)
                continue
            if response.status_code != 200:
                raise Refused(response.status_code, _error_text(response))
            try:
                return response.json()
            except ValueError:
                return None
        raise Unreachable(f"{self.url}: {last} (tried {len(self.delays) + 1} times)")

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()
