"""The raw archive: closed reports sealed as gzip-compressed JSONL, partitioned by the
run's day, country and network, and the index that keeps each measurement there once.

    DIR/raw/date=YYYY-MM-DD/cc=XX/asn=ASnnnn/<report_id>.jsonl.gz
    DIR/index.sqlite   measurements sealed (run_id, measurement_id -> uid, report) and
                       reports sealed (report -> archive file, whether ingested yet)

A sealed file is written to a temporary sibling, fsynced, renamed and its folder
fsynced; only then does one SQLite transaction record its measurements and the report
as sealed (the commit point). Its bytes depend only on the report's lines and on what
was sealed before, so sealing again after a crash rewrites the same file.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from probe.results import identity

from . import protocol

RAW = "raw"
INDEX = "index.sqlite"
SUFFIX = ".jsonl.gz"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    run_id TEXT NOT NULL, measurement_id TEXT NOT NULL, uid TEXT NOT NULL,
    report_id TEXT NOT NULL, PRIMARY KEY (run_id, measurement_id));
CREATE TABLE IF NOT EXISTS sealed (
    report_id TEXT PRIMARY KEY, path TEXT, measurements INTEGER NOT NULL,
    ingested INTEGER NOT NULL DEFAULT 0);
"""


@dataclass(frozen=True)
class Sealed:
    """What sealing a report kept: its file (None for a report without measurements,
    relative to the data folder), the measurements kept and those dropped as copies of
    measurements sealed in other reports."""

    path: str | None
    kept: int
    dropped: int


def key_of(line: dict) -> tuple[str, str] | None:
    """(run_id, measurement_id) of a measurement, None unless both are strings."""
    run_id, mid = identity.field(line, "run_id"), identity.field(line, "measurement_id")
    return (run_id, mid) if isinstance(run_id, str) and isinstance(mid, str) else None


def partition(first: dict) -> Path:
    """The folder of a report under raw/, from its first measurement (validated: the
    country, network and start time match bk-003's patterns, so each is a safe name)."""
    start, cc, asn = (first.get(k) for k in ("test_start_time", "probe_cc", "probe_asn"))
    day = start[:10] if isinstance(start, str) and protocol.TIME.match(start) else "unknown"
    cc = cc if isinstance(cc, str) and protocol.CC.match(cc) else "ZZ"
    asn = asn if isinstance(asn, str) and protocol.ASN.match(asn) else "AS0"
    return Path(RAW, f"date={day}", f"cc={cc}", f"asn={asn}")


class Archive:
    """The raw archive and its index under a data folder; safe to use from many threads."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / INDEX, check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def uid(self, key: tuple[str, str]) -> str | None:
        """The uid a measurement got when it was first stored, if it is sealed."""
        with self._lock:
            row = self._db.execute("SELECT uid FROM measurements WHERE run_id=? AND "
                                   "measurement_id=?", key).fetchone()
        return row[0] if row else None

    def seal(self, report_id: str, source: Path) -> Sealed:
        """Archive a closed report's working file `source` (its lines as stored, uids
        included, streamed), leaving out measurements sealed before under another
        report; durable when it returns. A report sealed already is left as it is."""
        with self._lock:
            row = self._db.execute("SELECT path, measurements FROM sealed WHERE report_id=?",
                                   (report_id,)).fetchone()
            if row is not None:
                return Sealed(row[0], row[1], 0)
            uids: dict[tuple[str, str], str] = {}
            kept = dropped = 0
            out: _GzipFile | None = None
            try:
                for raw, line in _lines(source):
                    key = key_of(line)
                    if key is not None:
                        if key in uids or self._sealed_elsewhere(key, report_id):
                            dropped += 1
                            continue
                        uids[key] = str(line.get("measurement_uid", ""))
                    if out is None:
                        out = _GzipFile(self.root / partition(line) / f"{report_id}{SUFFIX}")
                    out.write(raw)
                    kept += 1
                path = out.commit(self.root) if out is not None else None
            finally:
                if out is not None:
                    out.discard()
            with self._transaction():
                self._db.executemany("INSERT OR IGNORE INTO measurements VALUES (?, ?, ?, ?)",
                                     [(*key, uid, report_id) for key, uid in uids.items()])
                self._db.execute("INSERT OR IGNORE INTO sealed (report_id, path, measurements,"
                                 " ingested) VALUES (?, ?, ?, ?)",
                                 (report_id, path, kept, int(path is None)))
        return Sealed(path, kept, dropped)

    def _sealed_elsewhere(self, key: tuple[str, str], report_id: str) -> bool:
        row = self._db.execute("SELECT report_id FROM measurements WHERE run_id=? AND "
                               "measurement_id=?", key).fetchone()
        return row is not None and row[0] != report_id

    def pending(self, limit: int) -> list[tuple[str, str]]:
        """(report_id, archive file) of up to `limit` sealed reports not yet in the dataset,
        oldest first."""
        with self._lock:
            return self._db.execute("SELECT report_id, path FROM sealed WHERE ingested=0 "
                                    "ORDER BY rowid LIMIT ?", (limit,)).fetchall()

    def ingested(self, report_ids: list[str]) -> None:
        """Record that these reports are in the dataset."""
        with self._lock, self._transaction():
            self._db.executemany("UPDATE sealed SET ingested=1 WHERE report_id=?",
                                 [(r,) for r in report_ids])

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _lines(source: Path) -> Iterator[tuple[bytes, dict]]:
    """Each whole line of a working file (bytes, newline included) with its object; a
    line that is not one (torn by a crash, never acknowledged) is left out."""
    if not source.exists():
        return
    with open(source, "rb") as f:
        for raw in f:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict) and raw.endswith(b"\n"):
                yield raw, line


class _GzipFile:
    """An archive file being written: a temporary sibling until `commit` renames it into
    place, durably; `discard` removes what a failure left. Its bytes depend only on the
    lines written (no time or name in the gzip header)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        make_folders(path.parent)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a crash mid-write
            stale.unlink(missing_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                        dir=path.parent)
        os.fchmod(fd, 0o644)
        self._file = os.fdopen(fd, "wb")
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._file, mtime=0)

    def write(self, data: bytes) -> None:
        self._gzip.write(data)

    def commit(self, root: Path) -> str:
        """Finish, fsync, rename into place, fsync the folder; the path relative to root."""
        self._gzip.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.path)
        fsync_dir(self.path.parent)
        return self.path.relative_to(root).as_posix()

    def discard(self) -> None:
        self._gzip.close()
        self._file.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def make_folders(folder: Path) -> None:
    """Create `folder` and its missing parents, each made durable in its parent."""
    if folder.is_dir():
        return
    make_folders(folder.parent)
    folder.mkdir(exist_ok=True)
    fsync_dir(folder.parent)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
