"""`measurements.jsonl`: the run's source of truth, appended one fsynced line at a time.

A measurement is on disk before the next one starts, so `kill -9` loses at most
the measurement in flight; a torn last line is skipped when reading. A write
that fails (a full disk) is rolled back, so the file stays valid JSONL.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path


class JsonlWriter:
    """Appends JSON objects as lines, each written whole and fsynced, or not at all."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, obj: dict) -> None:
        line = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str) + "\n"
        data = memoryview(line.encode("utf-8"))
        before = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(self._fd, data):]
            os.fsync(self._fd)
        except OSError:
            os.ftruncate(self._fd, before)  # no torn line left behind
            raise

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read(path: Path) -> Iterator[dict]:
    """Yield the measurements of a JSONL file, skipping (and naming) lines that do not parse.

    Only the last line of a killed run can be torn; a bad line elsewhere is
    reported with its `file:line` but does not stop the others being read.
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                print(f"{path}:{lineno}: skipped unreadable line ({exc.msg})", file=sys.stderr)
                continue
            if isinstance(obj, dict):
                yield obj
