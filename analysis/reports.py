"""Which report `probe analyze report` writes: per row for a few runs or chosen ones, per
network and day for a collection.

A per-row report grows with every run (10,000 runs: a page of 40,000 verdicts), so past
COLLECTION_THRESHOLD runs, or with `collection`, the collection report is written
instead; `run_ids` asks for the per-row detail of those runs only, written to OUT, or
beside the collection report (OUT-runs.html, linked from it) when both are asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .load import Results, load
from .report import write_report
from .report_collection import COLLECTION_THRESHOLD, write_collection_report
from .verdicts import verdicts


class UnknownRun(LookupError):
    """A run asked for by id is not among those given."""


def only_runs(results: Results, run_ids: tuple[str, ...]) -> Results:
    """The runs `run_ids` of `results`: from a dataset its rows of them (`for_runs`),
    else read again from their folders alone."""
    runs = results.runs
    missing = [r for r in run_ids if r not in set(runs["run_id"])]
    if missing:
        raise UnknownRun(f"no run {missing[0]!r} among the {len(runs)} run(s) given")
    from .store.query import StoredResults

    if isinstance(results, StoredResults):
        return results.for_runs(run_ids)
    return load(runs.loc[runs["run_id"].isin(run_ids), "folder"].drop_duplicates())


def write_reports(results: Results, out: Path, collection: bool = False,
                  run_ids: tuple[str, ...] = (), rows: pd.DataFrame | None = None,
                  per_row: Callable[[Results, Path], list[Path]] = write_report,
                  ) -> tuple[list[Path], Results]:
    """Write the report(s) asked for; returns the paths written and the results judged
    (whose skipped lines the caller reports). `rows` are the verdicts when already known
    (a dataset stores them), `per_row` writes the per-row report."""
    chosen = only_runs(results, run_ids) if run_ids else None
    if not collection and (chosen or len(results.runs) <= COLLECTION_THRESHOLD):
        return per_row(chosen or results, out), chosen or results
    detail = out.with_name(f"{out.stem}-runs.html")
    paths = per_row(chosen, detail) if chosen else []
    rows = verdicts(results) if rows is None else rows
    return write_collection_report(rows, results.runs, out, skipped=len(results.skipped),
                                   run_report=detail.stem if chosen else None) + paths, results
