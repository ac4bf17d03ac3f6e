"""A collector's data folder (`probe collect --data DIR`) as the analysis reads it.

The collector seals each closed report into its raw archive,
`DIR/raw/date=YYYY-MM-DD/cc=XX/asn=ASn/<report_id>.jsonl.gz` (gzip JSONL, one run's
measurements), and appends it to the Parquet dataset `DIR/dataset`. The analysis reads
the dataset when it holds every sealed report (the collector's index, `DIR/index.sqlite`,
says none is pending), else the archive, each file as the measurements of one run, so
the verdicts are those of the volunteers' own run folders. Reports still open (or closed
but not yet sealed) are in neither.
"""

from __future__ import annotations

import datetime as dt
import gzip
import sqlite3
import zlib
from collections.abc import Iterator
from pathlib import Path

from probe.results import csvs, identity, jsonl
from probe.results.jsonl import OnSkip, Skip

from .store.layout import is_dataset

RAW = "raw"
DATASET = "dataset"
INDEX = "index.sqlite"
SUFFIX = ".jsonl.gz"
_UNKNOWN_ASN = "AS0"  # OONI's "not known"


def is_collection(path: Path) -> bool:
    """Whether `path` is a collector's data folder."""
    return (path / INDEX).is_file() and (path / RAW).is_dir()


def is_archive_file(path: Path) -> bool:
    return path.name.endswith(SUFFIX) and path.is_file()


def holds_archive(path: Path) -> bool:
    """A collector's data folder, its raw/ folder or one of its partitions."""
    return path.is_dir() and (is_collection(path) or path.name == RAW
                              or path.name.split("=")[0] in ("date", "cc", "asn"))


def archive_files(path: Path) -> list[Path]:
    """The sealed reports under a collector's data folder or a part of its archive."""
    root = path / RAW if is_collection(path) else path
    return sorted(p for p in root.rglob(f"*{SUFFIX}") if p.is_file())


def preferred(path: Path) -> Path:
    """What to read for `path`: a collector's dataset when it holds every sealed report,
    else `path` itself (read as run folders or archive files)."""
    if not is_collection(path) or not is_dataset(path / DATASET):
        return path
    try:
        db = sqlite3.connect(f"{(path / INDEX).resolve().as_uri()}?mode=ro", uri=True)
        try:
            (pending,) = db.execute("SELECT count(*) FROM sealed WHERE ingested=0").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return path
    return path / DATASET if pending == 0 else path


def lines(path: Path, on_skip: OnSkip) -> Iterator[tuple[int, str]]:
    """Each non-blank line of a gzip JSONL file with its number, as `jsonl.lines` reads a
    plain one; a file cut short or not gzip ends with a skip naming where."""
    read = [0]
    try:
        with gzip.open(path, "rb") as f:
            yield from jsonl.read_lines(f, path, on_skip, read)
    except (OSError, EOFError, zlib.error) as exc:
        on_skip(Skip(path, read[0] + 1, f"not a whole gzip file ({exc})"))


def measurements(path: Path, on_skip: OnSkip) -> Iterator[dict]:
    """The measurements of an archive file that can be flattened (`csvs.measurements`)."""
    return csvs.measurements(path, on_skip, lines)


def run_info(path: Path, on_skip: OnSkip) -> dict:
    """What run.json says of a run, from the envelope of the archive file's first
    measurement: run id, start, network (`asn`, `cc`); `status` None (no run.json)."""
    first = next(iter(measurements(path, on_skip)), None)
    if first is None:
        return {"run_id": path.name.removesuffix(SUFFIX), "status": None}
    asn, cc = first.get("probe_asn"), first.get("probe_cc")
    run_id = identity.field(first, "run_id")
    return {"run_id": run_id if isinstance(run_id, str) else path.name.removesuffix(SUFFIX),
            "start": _iso(first.get("test_start_time")), "status": None,
            "asn": asn if isinstance(asn, str) and asn != _UNKNOWN_ASN else None,
            "cc": cc if isinstance(cc, str) else None}


def _iso(text: object) -> str | None:
    """df-000's "%Y-%m-%d %H:%M:%S" (UTC) as run.json's ISO 8601."""
    if not isinstance(text, str):
        return None
    try:
        when = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
