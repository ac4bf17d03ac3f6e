"""`measurements.jsonl`: the run's source of truth, appended one fsynced line at a time.

A measurement is on disk before the next one starts, so `kill -9` loses at most
the measurement in flight; a torn last line is skipped when reading. A write
that fails (a full disk) is rolled back, so the file stays valid JSONL.

Reading is bounded, because result folders come from other people's machines:
a line longer than MAX_LINE_BYTES is skipped without being held in memory, and
JSON nested deeper than the decoder's recursion limit is skipped, not a crash.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

# The longest measurement line read. The default caps (512 KiB, 10 s per object) write
# lines of about 100 KB; a 600 s transfer sampled every read stays under a few MB.
MAX_LINE_BYTES = 16 * 1024 * 1024


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


class Skip(NamedTuple):
    """A line left out of the results, and why (shown as `file:line: skipped, why`)."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: skipped, {self.reason}"


OnSkip = Callable[[Skip], None]


def warn(skip: Skip) -> None:
    """The default report of a skipped line: one warning on stderr."""
    print(skip, file=sys.stderr)


def lines(path: Path, on_skip: OnSkip = warn) -> Iterator[tuple[int, str]]:
    """Each non-blank line of a file with its number; a line longer than MAX_LINE_BYTES is
    skipped, read in pieces and dropped, so memory stays bounded by the limit."""
    with open(path, "rb") as f:
        yield from read_lines(f, Path(path), on_skip)


def read_lines(f: BinaryIO, path: Path, on_skip: OnSkip,
               counted: list[int] | None = None) -> Iterator[tuple[int, str]]:
    """`lines` of an open binary stream (a plain or a gzip file) that `path` names in
    skips; `counted`, if given, holds the number of lines read so far."""
    lineno = 0
    while raw := f.readline(MAX_LINE_BYTES + 1):
        lineno += 1
        if counted is not None:
            counted[:] = [lineno]
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            on_skip(Skip(path, lineno, f"line longer than {MAX_LINE_BYTES} bytes"))
            continue
        text = raw.decode("utf-8", errors="replace")
        if text.strip():
            yield lineno, text


def parse(text: str) -> dict | str:
    """One line as a JSON object, or why it is not one."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg})"
    except RecursionError:
        return "JSON nested too deeply"
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        return f"not JSON ({exc})"
    return obj if isinstance(obj, dict) else "not a JSON object"


def read(path: Path, on_skip: OnSkip = warn) -> Iterator[dict]:
    """Yield the JSON objects of a JSONL file, skipping (and naming) lines that are not one.

    Only the last line of a killed run can be torn; a bad line elsewhere is
    reported with its `file:line` but does not stop the others being read.
    """
    for lineno, text in lines(path, on_skip):
        obj = parse(text)
        if isinstance(obj, str):
            on_skip(Skip(Path(path), lineno, obj))
        else:
            yield obj
