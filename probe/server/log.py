"""JSON-lines log: one object per line, whole lines only, safe from many threads."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import TextIO


class JsonLog:
    """Appends to FILE (created if needed) or writes to stderr when no file is given."""

    def __init__(self, path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._own = path is not None
        self._out: TextIO = open(path, "a", encoding="utf-8") if path else sys.stderr  # noqa: SIM115

    def write(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            if not self._out.closed:  # a straggler thread after stop() drops its line
                self._out.write(line)
                self._out.flush()

    def close(self) -> None:
        with self._lock:
            if self._own and not self._out.closed:
                self._out.close()
