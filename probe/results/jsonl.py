"""`measurements.jsonl`: the run's source of truth, appended one fsynced line at a time.

A measurement is on disk before the next one starts, so `kill -9` loses at most
the measurement in flight; a torn last line is skipped when reading.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path


class JsonlWriter:
    """Appends JSON objects as lines, flushing and fsyncing each."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def append(self, obj: dict) -> None:
        line = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)
        self._f.write(line + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read(path: Path, warn: bool = True) -> Iterator[dict]:
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
                if warn:
                    print(f"{path}:{lineno}: skipped unreadable line ({exc.msg})", file=sys.stderr)
                continue
            if isinstance(obj, dict):
                yield obj
