"""The dataset on disk: its marker file, its batch records and its Parquet files.

Crash safety rests on one rule: a file belongs to the dataset only when a batch
record under `batches/` names it. Files are written under a temporary name and
renamed into place; the batch record, naming the batch's runs and files, is written
(atomically) last. A killed ingest therefore leaves at most files no record names:
readers here never see them, and the next ingest deletes them.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from probe.results.atomic import write_bytes, write_text

if TYPE_CHECKING:
    import pyarrow as pa

MARKER = "dataset.json"
FORMAT = "throttle-probe-dataset"
FORMAT_VERSION = 1
BATCHES = "batches"


class DatasetError(ValueError):
    """A folder is not a usable dataset (a user-fixable problem)."""


def is_dataset(path: str | Path) -> bool:
    return (Path(path) / MARKER).is_file()


def new_batch_id() -> str:
    """Sortable by time, unique by a random suffix."""
    return f"{time.time_ns():x}-{secrets.token_hex(3)}"


@dataclass
class Batch:
    """One committed batch: its runs and, per table, its files (relative to the root)."""

    batch: str
    runs: list[str]
    files: dict[str, list[str]]
    verdict_rules: str
    rows: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> str:
        return json.dumps({"batch": self.batch, "runs": self.runs, "files": self.files,
                           "verdict_rules": self.verdict_rules, "rows": self.rows}) + "\n"


class Dataset:
    """An open dataset folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not is_dataset(self.root):
            raise DatasetError(f"{self.root}: not a dataset (no {MARKER})")
        try:
            self.meta = json.loads((self.root / MARKER).read_text())
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{self.root / MARKER}: unreadable ({exc})") from exc
        if self.meta.get("format") != FORMAT or self.meta.get("version") != FORMAT_VERSION:
            raise DatasetError(f"{self.root}: not a dataset of format {FORMAT} "
                               f"version {FORMAT_VERSION}")

    @classmethod
    def create(cls, root: str | Path, verdict_rules: str) -> Dataset:
        """Open `root`, making it a new empty dataset first if it is not one."""
        root = Path(root)
        if not is_dataset(root):
            if root.exists() and (not root.is_dir() or any(root.iterdir())):
                raise DatasetError(f"{root}: exists and is not a dataset (nor an empty folder)")
            (root / BATCHES).mkdir(parents=True, exist_ok=True)
            from .schema import PARTITION, TABLE_NAMES  # pyarrow: only to make a dataset

            write_text(root / MARKER, json.dumps({
                "format": FORMAT, "version": FORMAT_VERSION, "partitioning": list(PARTITION),
                "tables": list(TABLE_NAMES), "verdict_rules": verdict_rules}, indent=2) + "\n")
        return cls(root)

    @property
    def verdict_rules(self) -> str:
        return str(self.meta.get("verdict_rules"))

    def stamp(self, verdict_rules: str) -> None:
        """Record that every batch's verdicts now come from `verdict_rules`."""
        self.meta["verdict_rules"] = verdict_rules
        write_text(self.root / MARKER, json.dumps(self.meta, indent=2) + "\n")

    @cached_property
    def batches(self) -> list[Batch]:
        out = []
        for path in sorted((self.root / BATCHES).glob("*.json")):
            d = json.loads(path.read_text())
            out.append(Batch(d["batch"], d["runs"], d["files"], d["verdict_rules"],
                             d.get("rows", {})))
        return out

    def run_ids(self) -> set[str]:
        return {r for b in self.batches for r in b.runs}

    def files(self, table: str, batches: Iterable[Batch] | None = None) -> list[str]:
        """Absolute paths of the committed files of `table`."""
        chosen = self.batches if batches is None else batches
        return [str(self.root / f) for b in chosen for f in b.files.get(table, [])]

    def write_file(self, table: str, partition: dict[str, str], batch: str, data: bytes
                   ) -> str:
        """Write one Parquet file into place (temporary name, then rename); returns its
        path relative to the root."""
        rel = Path(table, *(f"{k}={v}" for k, v in partition.items()), f"{batch}.parquet")
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_bytes(self.root / rel, data)
        return rel.as_posix()

    def commit(self, batch: Batch) -> None:
        """Make a batch part of the dataset (or replace its record): the commit point."""
        write_text(self.root / BATCHES / f"{batch.batch}.json", batch.as_json())
        self.__dict__.pop("batches", None)

    def clean(self) -> int:
        """Delete files no batch record names (left by a killed ingest); returns how many."""
        named = {self.root / f for b in self.batches for fs in b.files.values() for f in fs}
        removed = 0
        for dirpath, _, names in os.walk(self.root):
            for name in names:
                path = Path(dirpath, name)
                stray = path.suffix == ".parquet" and path not in named
                if stray or (name.startswith(".") and name.endswith(".tmp")):
                    path.unlink()
                    removed += 1
        return removed


def parquet_bytes(table: pa.Table) -> bytes:
    """A pyarrow Table as the bytes of one zstd-compressed Parquet file."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()
