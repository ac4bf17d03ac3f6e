"""Click commands `verdicts`, `report` and `aggregate` (added to the `probe analyze` group).

Each takes run folders or one dataset folder (`probe analyze ingest`), or a collector's
data folder (`probe collect --data`: its dataset once complete, else its raw archive); a
dataset is answered from what ingest stored, with DuckDB, without reading samples again.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click
import pandas as pd

if TYPE_CHECKING:
    from probe.results.jsonl import Skip

    from .load import Results
    from .store.layout import Dataset

EXIT_BAD_INPUT = 2
_FOLDERS = click.argument("folders", nargs=-1, required=True,
                          type=click.Path(exists=True, file_okay=False, path_type=Path))


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _load(folders: tuple[Path, ...]) -> Results:  # the import stays lazy: start-up time
    from .load import load

    try:
        results = load(folders)
    except FileNotFoundError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if not results.folders:
        click.echo("error: no run folders found (a run folder holds run.json)", err=True)
        sys.exit(EXIT_BAD_INPUT)
    return results


def _dataset(folders: tuple[Path, ...]) -> Dataset | None:
    """The dataset given instead of run folders, if one was (a collector's data folder
    counts as its dataset once that holds every sealed report); warns when its verdicts
    came from other verdict rules than these."""
    from .collected import preferred
    from .store import rules
    from .store.layout import Dataset, DatasetError, is_dataset

    folders = tuple(preferred(f) for f in folders)
    if not any(is_dataset(f) for f in folders):
        return None
    if len(folders) != 1:
        _fail("give one dataset, or run folders, not both")
    try:
        ds = Dataset(folders[0])
    except DatasetError as exc:
        _fail(str(exc))
    if ds.verdict_rules != rules.version():
        click.echo(f"warning: {ds.root} holds verdicts of other verdict rules "
                   f"({ds.verdict_rules}; these are {rules.version()}); "
                   f"`probe analyze ingest --recompute --into {ds.root}` re-derives them",
                   err=True)
    return ds


def _count_skipped(skipped: list[Skip]) -> None:
    """The closing line on stderr when malformed lines were left out (each was named above,
    or, for a dataset, when it was ingested)."""
    if skipped:
        files = len({s.path for s in skipped})
        click.echo(f"skipped {len(skipped)} malformed line(s) in {files} file(s); "
                   "the results above are from the rest", err=True)


def _records(df: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts: NaN becomes null."""
    out = []
    for row in df.to_dict("records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in row.items()})
    return out


def _emit(df: pd.DataFrame, fmt: str, table_columns: list[str]) -> None:
    if fmt == "json":
        click.echo(json.dumps(_records(df), indent=2, default=str))
    elif fmt == "csv":
        flat = df.copy()
        for col in flat.columns:
            if flat[col].map(lambda v: isinstance(v, list)).any():
                flat[col] = flat[col].map(lambda v: ";".join(v) if isinstance(v, list) else v)
        click.echo(flat.to_csv(index=False), nl=False)
    else:
        from rich.console import Console
        from rich.table import Table

        from probe.escape import for_terminal

        table = Table(show_lines=False)
        for col in table_columns:
            table.add_column(col)
        for row in _records(df[table_columns]):
            table.add_row(*(for_terminal("" if v is None else
                                         (f"{v:g}" if isinstance(v, float) else v))
                            for v in row.values()))
        Console(width=200).print(table)


@click.command()
@_FOLDERS
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="table for people, csv or json for programs.")
def verdicts(folders: tuple[Path, ...], fmt: str) -> None:
    """One verdict per target and run: ok, throttled, blocked, dns-tampered, tls-tampered or
    inconclusive, with the rates, their ratio, a bootstrap p-value and a one-line explanation.

    FOLDERS are run folders or folders holding run folders, or one dataset folder
    (`probe analyze ingest`), or a collector's data folder (`probe collect --data`). A
    malformed line (in a JSONL, a CSV or run.json) is skipped with a warning naming its
    file and line, and counted at the end; the other lines and folders are judged as usual.
    """
    from .verdicts import verdicts as compute

    # The experiment names the transport (target-h3, sni-h3: QUIC); csv and json have it.
    columns = ["run_id", "target", "experiment", "verdict", "trigger", "rate_kbps",
               "control_rate_kbps", "ratio", "p_value", "explanation"]
    ds = _dataset(folders)
    if ds is not None:
        from .store import query

        if fmt == "csv":  # the bulk format: straight from DuckDB
            sys.stdout.flush()
            query.verdicts_csv(ds, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            _emit_verdicts(query.verdicts(ds), fmt, columns)
        _count_skipped(query.skipped(ds))
        return
    results = _load(folders)
    _emit_verdicts(compute(results), fmt, columns)
    _count_skipped(results.skipped)


def _emit_verdicts(rows: pd.DataFrame, fmt: str, columns: list[str]) -> None:
    """The verdicts, and below the table one line per target whose TCP and QUIC verdicts
    differ (csv and json carry them in the `across_transports` column)."""
    from probe.escape import for_terminal

    from .transports import across_lines

    _emit(rows, fmt, columns)
    lines = across_lines(rows) if fmt == "table" else []
    if lines:
        click.echo("Across transports (TCP vs QUIC):")
        for line in lines:
            click.echo(f"  {for_terminal(line)}")


@click.command()
@_FOLDERS
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="HTML file to write; a Markdown twin (same name, .md) and its PNGs go beside.")
@click.option("--collection", is_flag=True,
              help="The collection report (per network and day), whatever the number of "
                   "runs; it is the default past 20 runs.")
@click.option("--run", "run_ids", multiple=True, metavar="ID",
              help="The per-row report of this run only (repeatable); with --collection, "
                   "written beside OUT as OUT-runs.html and linked from it.")
def report(folders: tuple[Path, ...], out: Path, collection: bool,
           run_ids: tuple[str, ...]) -> None:
    """A self-contained HTML report (and a Markdown twin): verdicts, throughput over time,
    CDFs and timelines across runs, each plot explained in a sentence. Past 20 runs, the
    report of the collection instead: per network and day, the throttled share with its
    95% interval, the median throttled rate, change points and the runs behind each figure.
    The per-row report lists at most 2,000 verdicts (beyond that, `verdicts --format csv`
    does); from a dataset it adds the throttled share per network and day.

    Malformed lines are skipped, named and counted as for `verdicts`.
    """
    from .report import write_report
    from .reports import UnknownRun, write_reports

    if out.suffix.lower() not in (".html", ".htm"):
        _fail(f"{out}: the report name must end in .html (a .md twin goes beside)")
    ds = _dataset(folders)
    try:
        if ds is not None:
            from .store.query import StoredResults, campaign

            stored = StoredResults(ds)
            paths, results = write_reports(
                stored, out, collection, run_ids, rows=stored.stored_verdicts(),
                per_row=lambda r, o: write_report(r, o, r.stored_verdicts(),
                                                  r.stored_transfers(), campaign(ds)))
        else:
            paths, results = write_reports(_load(folders), out, collection, run_ids)
    except UnknownRun as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write the report {out}: {exc.strerror or exc}")
    for p in paths:
        click.echo(str(p))
    _count_skipped(results.skipped)


@click.command()
@_FOLDERS
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="table for people, csv or json for programs.")
def aggregate(folders: tuple[Path, ...], fmt: str) -> None:
    """Per network (ASN, else run label), day and service: runs, share throttled, median
    throttled rate (each service counted apart).

    Malformed lines are skipped, named and counted as for `verdicts`.
    """
    from .aggregate import COLUMNS
    from .aggregate import aggregate as compute
    from .verdicts import verdicts as verdict_rows

    ds = _dataset(folders)
    if ds is not None:
        from .store import query

        _emit(query.aggregate(ds), fmt, COLUMNS)
        _count_skipped(query.skipped(ds))
        return
    results = _load(folders)
    _emit(compute(verdict_rows(results), results), fmt, COLUMNS)
    _count_skipped(results.skipped)
