"""The collector's Parquet dataset, DIR/dataset: sealed reports appended in batches by
a background thread.

The probe never imports the analysis (the layers' rule), so each batch is one run of
`probe analyze ingest FILE... --into DIR/dataset` in a child process, over at most
BATCH_REPORTS sealed reports not yet ingested; its success is recorded in the index.
Ingest is incremental by run id and crash-safe, so a batch repeated after a crash or a
failure adds nothing twice. A failure (a full disk, another ingest holding the dataset)
is logged and retried at the next round; the server goes on serving.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from .archive import Archive
from .store import Log

DATASET = "dataset"
BATCH_REPORTS = 500  # archive files per ingest: a command line far below the system's cap
INGEST_EVERY_S = 60.0
INGEST_TIMEOUT_S = 3600.0
_ERROR_CHARS = 500  # of the child's stderr, in the log


class Ingester:
    """Every `every` seconds, and once at start (resuming what an earlier collector left),
    ingests the sealed reports not yet in the dataset."""

    def __init__(self, root: Path, archive: Archive, every: float, log: Log) -> None:
        self.root = Path(root)
        self.dataset = self.root / DATASET
        self.archive = archive
        self.every = every
        self._log = log
        self._stop = threading.Event()
        self._child: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop at once: an ingest in flight is terminated (the next start resumes it)."""
        self._stop.set()
        with self._lock:
            if self._child is not None:
                self._child.terminate()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.catch_up()
            except Exception as exc:  # never let the thread die: the next round retries
                self._log({"event": "ingest-failed", "error": repr(exc)})
            self._stop.wait(self.every)

    def catch_up(self) -> bool:
        """Ingest batch after batch until none is pending (True) or one fails (False)."""
        while not self._stop.is_set():
            pending = self.archive.pending(BATCH_REPORTS)
            if not pending:
                return True
            if not self._ingest(pending):
                return False
        return False

    def _ingest(self, pending: list[tuple[str, str]]) -> bool:
        argv = [sys.executable, "-m", "probe", "analyze", "ingest",
                *(str(self.root / path) for _, path in pending), "--into", str(self.dataset)]
        with self._lock:
            if self._stop.is_set():
                return False
            self._child = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           text=True, errors="replace")
        try:
            out, err = self._child.communicate(timeout=INGEST_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._child.kill()
            out, err = self._child.communicate()
            err += f"\nno result after {INGEST_TIMEOUT_S:.0f} s"
        finally:
            with self._lock:
                child, self._child = self._child, None
        if child.returncode != 0:
            self._log({"event": "ingest-failed", "reports": len(pending),
                       "status": child.returncode, "error": err.strip()[-_ERROR_CHARS:]})
            return False
        self.archive.ingested([report_id for report_id, _ in pending])
        self._log({"event": "ingested", "reports": len(pending), "summary": out.strip()})
        return True
