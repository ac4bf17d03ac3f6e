"""`probe analyze ingest`: add run folders to a dataset, once each, safely.

Runs already in the dataset are skipped by run id. The rest are sorted by partition
(day, country, ASN) and cut into batches, so a batch writes few files; each batch is
derived (derive.py, on this machine or a Dask cluster), written file by file, and
committed by its batch record (layout.py). A killed ingest loses at most the batches
in flight: run it again and it resumes.

Verdicts and transfer rates are stored as the verdict rules of the time derived them
(rules.py). After a change of rules, `--recompute` re-derives them from the dataset's
own tables, batch by batch (resumable the same way); until then ingest refuses to mix
verdicts of two rule sets in one dataset.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ..collected import is_archive_file
from ..load import run_folders
from . import rules
from .derive import RunKey, derive, judged, run_keys, tag
from .distributed import Mapper, local_map
from .layout import Batch, Dataset, DatasetError, is_dataset, new_batch_id, parquet_bytes
from .query import StoredResults, frame
from .schema import PARTITION

BATCH_RUNS = 200  # runs per batch: a few hundred MB of memory at most while derived
LOCK = ".ingest.lock"


@dataclass
class Summary:
    """What an ingest did."""

    ingested: int = 0  # runs added now
    present: int = 0  # runs given that were in the dataset already
    batches: int = 0
    recomputed: int = 0  # batches re-derived under the current rules
    removed: int = 0  # files of killed ingests deleted
    total: int = 0  # runs in the dataset now


Progress = Callable[[str, int, int], None]


def ingest(sources: Iterable[str | Path], into: str | Path, *, batch_runs: int = BATCH_RUNS,
           recompute: bool = False, mapper: Mapper = local_map,
           progress: Progress | None = None) -> Summary:
    """Add the run folders under `sources` to the dataset `into` (created if need be)."""
    sources = [Path(s) for s in sources]
    for s in sources:
        if is_dataset(s):
            raise DatasetError(f"{s}: a dataset, not run folders")
    folders = run_folders(sources)
    current = rules.version()
    ds = Dataset.create(into, current)
    done = Summary()
    with _locked(ds.root):
        done.removed = ds.clean()
        stale = [b for b in ds.batches if b.verdict_rules != current]
        if stale and not recompute:
            raise DatasetError(
                f"{ds.root}: {len(stale)} batch(es) hold verdicts of other verdict rules "
                f"({stale[0].verdict_rules}; these are {current}): add --recompute to "
                "re-derive them first")
        if stale:
            done.recomputed = _recompute(ds, stale, mapper, progress)
        if ds.verdict_rules != current:
            ds.stamp(current)
        present = ds.run_ids()
        todo: dict[str, list[RunKey]] = {}
        given: set[str] = set()  # runs given that are in the dataset already
        for key in run_keys(folders):
            if key.run_id in present:
                given.add(key.run_id)
            elif key.run_id not in todo or is_archive_file(Path(key.folder)):
                # A run folder of a run met before is a copy; a collector's archive file
                # of one is its next part (a report closed before all was sent).
                todo.setdefault(key.run_id, []).append(key)
        done.present = len(given)
        plan = sorted(todo.values(), key=lambda ks: (ks[0].day, ks[0].cc, ks[0].asn,
                                                     ks[0].run_id))
        batches = [[k for run in plan[i:i + batch_runs] for k in run]
                   for i in range(0, len(plan), batch_runs)]
        for keys, tables in mapper(derive, batches):
            runs = list(dict.fromkeys(k.run_id for k in keys))
            ds.commit(write_batch(ds, new_batch_id(), runs, tables, current))
            done.ingested += len(runs)
            done.batches += 1
            if progress:
                progress("ingest", done.ingested, len(plan))
        done.total = len(ds.run_ids())
    return done


def write_batch(ds: Dataset, batch_id: str, runs: list[str], tables: dict[str, pa.Table],
                verdict_rules: str, stem: str | None = None) -> Batch:
    """Write a batch's tables, one file per table and partition; returns the record to
    commit (not committed yet)."""
    files: dict[str, list[str]] = {}
    for name, table in tables.items():
        files[name] = [ds.write_file(name, part, stem or batch_id, parquet_bytes(t))
                       for part, t in _partitions(table)]
    return Batch(batch_id, runs, files, verdict_rules,
                 {name: t.num_rows for name, t in tables.items()})


def _partitions(table: pa.Table) -> Iterator[tuple[dict[str, str], pa.Table]]:
    """(partition, its rows without the partition columns) for each partition present."""
    if not table.num_rows:
        return
    keys = pd.DataFrame({k: table.column(k).to_numpy(zero_copy_only=False)
                         for k in PARTITION})
    for values, rows in keys.groupby(list(PARTITION), sort=True).indices.items():
        yield dict(zip(PARTITION, values, strict=True)), table.take(rows).drop_columns(
            list(PARTITION))


def rederive(job: tuple[str, Batch]) -> dict[str, pa.Table]:
    """A committed batch's rates, signatures and verdicts derived anew from its stored
    tables (a worker's task under --recompute)."""
    root, batch = job
    ds = Dataset(root)
    runs = frame(ds, "runs", ["folder", "run_id", *PARTITION, "network"], [batch])
    keys = [RunKey(*row) for row in runs.astype(object).where(runs.notna(), None)
            .itertuples(index=False)]
    return tag(judged(StoredResults(ds, [batch])), keys)


def _recompute(ds: Dataset, stale: list[Batch], mapper: Mapper,
               progress: Progress | None) -> int:
    """Re-derive the stale batches: new files, then the record swapped, then the old
    files deleted (a kill before that leaves them to the next clean)."""
    current = rules.version()
    done = 0
    for (_, batch), tables in mapper(rederive, [(str(ds.root), b) for b in stale]):
        fresh = write_batch(ds, batch.batch, batch.runs, tables, current, new_batch_id())
        old = [f for name in tables for f in batch.files.get(name, [])]
        ds.commit(Batch(batch.batch, batch.runs, {**batch.files, **fresh.files}, current,
                        {**batch.rows, **fresh.rows}))
        for f in old:
            (ds.root / f).unlink(missing_ok=True)
        done += 1
        if progress:
            progress("recompute", done, len(stale))
    return done


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One ingest at a time per dataset (a second one fails at once)."""
    fd = os.open(root / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise DatasetError(f"{root}: another ingest is writing this dataset") from exc
        yield
    finally:
        os.close(fd)
