"""A small collector for tests: real HTTP(S) on loopback in a thread, following
probe.collection.protocol (bk-003), that can be told to fail.

It opens reports with the protocol's checks and ids, appends measurements whose
`report_id` matches (else 400), closes reports, and keeps everything in memory.
`fail(Fault(...))` makes some later requests fail: a 5xx, a 4xx, or a connection
dropped without an answer (before anything is stored).
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from probe.collection import protocol


@dataclass
class Fault:
    """Let `after` matching requests through, then fail the next `times` with `kind`:
    "500", "503", "drop" (close without answering) or a 4xx like "400"."""

    kind: str
    on: str = "update"  # open | update | close
    after: int = 0
    times: int = 1


@dataclass
class Report:
    body: dict
    closed: bool = False
    measurements: list[dict] = field(default_factory=list)


class Collector:
    """The collector; a context manager serving on 127.0.0.1 (TLS when given a context)."""

    __test__ = False

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.reports: dict[str, Report] = {}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []  # (kind, path), in order
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        if context is not None:
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True,
                                                      do_handshake_on_connect=False)
        self.port = self._server.server_address[1]
        self.url = f"{'https' if context else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def fail(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def stored(self) -> list[dict]:
        """Every measurement stored, over all reports."""
        return [m for r in self.reports.values() for m in r.measurements]

    def fault_for(self, kind: str) -> str | None:
        with self.lock:
            for f in self.faults:
                if f.on == kind and f.times > 0:
                    if f.after > 0:
                        f.after -= 1
                        return None
                    f.times -= 1
                    return f.kind
        return None

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(collector: Collector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet in tests
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = self.path.strip("/").split("/")
            kind = {1: "open", 2: "update", 3: "close"}.get(len(parts), "other")
            collector.requests.append((kind, self.path))
            fault = collector.fault_for(kind)
            if fault == "drop":
                self.close_connection = True
                return
            if fault:
                return self._answer(int(fault), {"error": f"injected {fault}"})
            if parts[0] != "report" or kind == "other" or (kind == "close"
                                                            and parts[2] != "close"):
                return self._answer(404, {"error": "no such path"})
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return self._answer(400, {"error": "not JSON"})
            getattr(self, f"_{kind}")(parts, body)

        def _open(self, parts: list[str], body: object) -> None:
            errors = protocol.open_errors(body)
            if errors:
                return self._answer(400, {"error": "; ".join(errors)})
            report_id = protocol.new_report_id(body)
            with collector.lock:
                collector.reports[report_id] = Report(body)
            self._answer(200, {"backend_version": protocol.BACKEND_VERSION,
                               "report_id": report_id, "supported_formats": ["json"]})

        def _update(self, parts: list[str], body: object) -> None:
            report = collector.reports.get(parts[1])
            if report is None or report.closed:
                return self._answer(404, {"error": "no such open report"})
            if not isinstance(body, dict) or body.get("format") != "json":
                return self._answer(400, {"error": "format must be json"})
            errors = protocol.measurement_errors(body.get("content"), parts[1])
            if errors:
                return self._answer(400, {"error": "; ".join(errors)})
            with collector.lock:
                report.measurements.append(body["content"])
                uid = f"uid-{len(collector.stored())}"
            self._answer(200, {"measurement_uid": uid})

        def _close(self, parts: list[str], body: object) -> None:
            report = collector.reports.get(parts[1])
            if report is None:
                return self._answer(404, {"error": "no such report"})
            report.closed = True
            self._answer(200, {"status": "success"})

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
