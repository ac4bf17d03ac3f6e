"""The collector's storage: a working folder per report, sealed into the raw archive
once the report is closed.

    DIR/reports/<report_id>/meta.json           the open body, state open/closed/sealed,
                                                UTC times
    DIR/reports/<report_id>/measurements.jsonl  one measurement a line, with its
                                                measurement_uid (until sealed)
    DIR/raw/...                                 the sealed reports (archive.py)

An open report's folder reads like a run folder of `probe run` (a `measurements.jsonl`
of df-000 envelopes). A measurement is on disk (written and fsynced) before its uid is
handed out. Closing a report seals it: its measurements go to the archive, then its
meta.json says "sealed" and its measurements.jsonl goes; a report closed but not sealed
(a crash, a full disk) is sealed at the next start or the next maintenance round.
Open reports are bounded in number, in all and per client network, as each holds
memory until closed (`OpenLimits`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.results import atomic, identity

from . import protocol
from .archive import Archive, Sealed, fsync_dir, key_of

IDLE_CLOSE_S = 2 * 3600.0  # bk-003: not stale before two hours without an update
SWEEP_EVERY_S = 60.0
MEASUREMENTS = "measurements.jsonl"
META = "meta.json"


class StoreError(Exception):
    """The data folder cannot be used."""


class UnknownReport(Exception):
    """No report has this id."""


class ClosedReport(Exception):
    """The report was closed (by its client or after two idle hours)."""


class TooManyOpen(Exception):
    """No report may be opened now: `per_client` says whose cap was reached, the
    client's or the collector's."""

    def __init__(self, per_client: bool) -> None:
        super().__init__("per client" if per_client else "in all")
        self.per_client = per_client


@dataclass(frozen=True)
class OpenLimits:
    """How many reports may be open at once, in all and per client (0: no cap)."""

    total: int = 10_000
    per_client: int = 100


def encode_line(measurement: Mapping[str, Any]) -> bytes:
    """One JSONL line; ValueError for what UTF-8 JSON cannot hold (a lone surrogate)."""
    try:
        text = json.dumps(measurement, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False)
        return text.encode("utf-8") + b"\n"
    except (UnicodeEncodeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Open:
    """An open report in memory: its lock, its idle timer and the uids by measurement_id."""

    last_active: float
    uids: dict[str, str] = field(default_factory=dict)
    owner: str | None = None  # the opener's network, in memory only (None: resumed)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False


Log = Callable[[dict[str, Any]], None]


class Store:
    """Reports under `root/reports`, sealed into `root/raw`; safe to use from many threads.
    `log` hears of each report sealed and of each sealing that failed (to be retried)."""

    def __init__(self, root: Path, idle_close: float = IDLE_CLOSE_S,
                 clock: Callable[[], float] = time.monotonic,
                 limits: OpenLimits = OpenLimits(), log: Log = lambda record: None) -> None:
        self.reports = Path(root) / "reports"
        self.idle_close = idle_close
        self.limits = limits
        self._clock = clock
        self._log = log
        try:
            self.reports.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.reports):
                pass
            self.archive = Archive(Path(root))
        except OSError as exc:
            raise StoreError(f"{root}: not a writable folder ({exc.strerror or exc})") from None
        except sqlite3.Error as exc:
            raise StoreError(f"{root}: its index cannot be used ({exc})") from None
        self._lock = threading.Lock()
        self._open: dict[str, _Open] = {}
        self._owned: Counter[str] = Counter()  # open reports per owner
        self._unsealed: set[str] = set()  # closed, not sealed yet (a failure: retried)
        self._last_sweep = clock()
        self._resume()

    def _resume(self) -> None:
        """Take back the reports left open by an earlier collector (their idle time so far
        is the wall clock's, the only clock that outlives a process) and seal those it
        closed but did not seal."""
        for meta_path in self.reports.glob(f"*/{META}"):
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(meta, dict):
                continue
            folder = meta_path.parent
            data = folder / MEASUREMENTS
            if meta.get("state") == "open":
                last = (data if data.exists() else meta_path).stat().st_mtime
                idle = max(0.0, time.time() - last)
                self._open[folder.name] = _Open(self._clock() - idle, _stored_uids(data))
            elif meta.get("state") == "closed":
                self._unsealed.add(folder.name)
            elif meta.get("state") == "sealed":
                data.unlink(missing_ok=True)  # a crash right after sealing
        self.seal_closed()

    def open(self, body: Mapping[str, Any], owner: str | None = None) -> str:
        """Create a report for this (checked) open body, counted as `owner`'s (the
        client's network); returns its new id. TooManyOpen if a cap is reached even
        after closing the reports idle too long."""
        report_id = protocol.new_report_id(body)
        self._reserve(report_id, owner)
        try:
            folder = self.reports / report_id
            folder.mkdir()
            meta = {"report_id": report_id, "state": "open", "opened_at": _utc_now(),
                    "closed_at": None, "close_reason": None, "open": dict(body)}
            atomic.write_text(folder / META, json.dumps(meta, indent=1) + "\n")
        except BaseException:
            self._forget(report_id)
            raise
        return report_id

    def _reserve(self, report_id: str, owner: str | None) -> None:
        """Count the report as open before its folder exists, so concurrent opens
        cannot overshoot a cap."""
        with self._lock:
            full = self._full(owner)
        if full is not None:
            self._sweep(force=True)
        with self._lock:
            full = self._full(owner)
            if full is not None:
                raise TooManyOpen(per_client=full)
            self._open[report_id] = _Open(self._clock(), owner=owner)
            if owner is not None:
                self._owned[owner] += 1

    def _full(self, owner: str | None) -> bool | None:
        """Which cap opening one more report for `owner` would pass: True the owner's,
        False the collector's, None neither. Called with the lock held."""
        per_client = self.limits.per_client
        if owner is not None and per_client and self._owned[owner] >= per_client:
            return True
        if self.limits.total and len(self._open) >= self.limits.total:
            return False
        return None

    def _forget(self, report_id: str) -> None:
        """No longer count a report as open."""
        with self._lock:
            report = self._open.pop(report_id, None)
            if report is not None and report.owner is not None:
                self._owned[report.owner] -= 1
                if not self._owned[report.owner]:
                    del self._owned[report.owner]

    def check_open(self, report_id: str) -> None:
        """UnknownReport or ClosedReport unless measurements may be appended (bk-003 3.2:
        checked before the measurement is)."""
        self._open_report(report_id)

    def append(self, report_id: str, content: Mapping[str, Any]) -> tuple[str, bool]:
        """Store one (checked) measurement; returns its uid and whether it was stored
        before: a measurement_id already in the report gets its first uid back."""
        report = self._open_report(report_id)
        with report.lock:
            if report.closed:
                raise ClosedReport(report_id)
            report.last_active = self._clock()
            mid = identity.field(content, "measurement_id")
            if isinstance(mid, str) and mid in report.uids:
                return report.uids[mid], True
            key = key_of(dict(content))
            if key is not None and (first := self.archive.uid(key)) is not None:
                return first, True  # sent again in a new report after its first was sealed
            uid = protocol.new_measurement_uid(content)
            _append(self.reports / report_id / MEASUREMENTS,
                    encode_line({**content, "measurement_uid": uid}))
            if isinstance(mid, str):
                report.uids[mid] = uid
            return uid, False

    def close(self, report_id: str, reason: str = "client") -> None:
        """Close a report (again: nothing changes) and seal it; UnknownReport if there is
        none. A sealing that fails (a full disk) leaves the report closed, to be sealed
        by `seal_closed`."""
        with self._lock:
            report = self._open.get(report_id)
        if report is None:
            if not self._exists(report_id):
                raise UnknownReport(report_id)
            return
        with report.lock:
            if not report.closed:
                path = self.reports / report_id / META
                meta = json.loads(path.read_text(encoding="utf-8"))
                meta.update(state="closed", closed_at=_utc_now(), close_reason=reason)
                atomic.write_text(path, json.dumps(meta, indent=1) + "\n")
                report.closed = True
                with self._lock:
                    self._unsealed.add(report_id)
        self._forget(report_id)
        self.seal_closed()

    def seal_closed(self) -> None:
        """Seal every report closed but not sealed yet; one that fails is logged and
        tried again at the next call."""
        with self._lock:  # taken: two threads never seal one report at once
            todo, self._unsealed = sorted(self._unsealed), set()
        for report_id in todo:
            try:
                sealed = self._seal(report_id)
            except (OSError, ValueError, sqlite3.Error) as exc:
                self._log({"event": "seal-failed", "report_id": report_id,
                           "error": repr(exc)})
                with self._lock:
                    self._unsealed.add(report_id)
                continue
            self._log({"event": "sealed", "report_id": report_id, "archive": sealed.path,
                       "measurements": sealed.kept, "dropped": sealed.dropped})

    def _seal(self, report_id: str) -> Sealed:
        """Archive a closed report, then mark its folder sealed and drop its working file:
        each step safe to repeat after a crash at any point."""
        folder = self.reports / report_id
        data = folder / MEASUREMENTS
        sealed = self.archive.seal(report_id, data)
        path = folder / META
        meta = json.loads(path.read_text(encoding="utf-8"))
        meta.update(state="sealed", sealed_at=_utc_now(), archive=sealed.path,
                    measurements=sealed.kept)
        atomic.write_text(path, json.dumps(meta, indent=1) + "\n")
        data.unlink(missing_ok=True)
        fsync_dir(folder)
        return sealed

    def maintain(self) -> None:
        """What no request may come to do: close the reports idle too long and seal the
        closed ones (a background thread calls this)."""
        self._sweep()
        self.seal_closed()

    def _exists(self, report_id: str) -> bool:
        return (protocol.REPORT_ID.match(report_id) is not None
                and (self.reports / report_id / META).is_file())

    def _open_report(self, report_id: str) -> _Open:
        """The open report, after closing those idle too long (checked here, lazily)."""
        self._sweep()
        with self._lock:
            report = self._open.get(report_id)
        if report is None:
            raise ClosedReport(report_id) if self._exists(report_id) else UnknownReport(report_id)
        if self._clock() - report.last_active > self.idle_close:
            self.close(report_id, "idle")
            raise ClosedReport(report_id)
        return report

    def _sweep(self, force: bool = False) -> None:
        """Close every report idle too long, at most once a minute unless forced (a
        cap is reached: the idle ones go before a client is refused)."""
        now = self._clock()
        with self._lock:
            if not force and now - self._last_sweep < SWEEP_EVERY_S:
                return
            self._last_sweep = now
            stale = [rid for rid, r in self._open.items()
                     if now - r.last_active > self.idle_close]
        for rid in stale:
            self.close(rid, "idle")


def _append(path: Path, line: bytes) -> None:
    """Append one whole line and fsync it; on failure cut the file back to what it was,
    so a refused measurement leaves no half line."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def _stored_uids(path: Path) -> dict[str, str]:
    """measurement_id -> uid of a report's stored lines; a torn last line (a crash
    mid-write, never acknowledged) is cut off so the next line starts whole."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
    uids: dict[str, str] = {}
    for raw in data.splitlines():
        try:
            line = json.loads(raw)
            mid, uid = identity.field(line, "measurement_id"), line.get("measurement_uid")
        except (ValueError, AttributeError):
            continue
        if isinstance(mid, str) and isinstance(uid, str):
            uids.setdefault(mid, uid)
    return uids
