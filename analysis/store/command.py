"""`probe analyze ingest`: the click command over store/ingest.py."""

from __future__ import annotations

import sys
from pathlib import Path

import click

EXIT_BAD_INPUT = 2


@click.command()
@click.argument("sources", metavar="SRC...", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--into", "into", required=True, metavar="DATASET",
              type=click.Path(file_okay=False, path_type=Path),
              help="Dataset folder to add to (created if missing).")
@click.option("--batch-runs", type=click.IntRange(min=1), default=None,
              help="Runs per batch (default 200): what a worker holds in memory at once.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Spread the work over N local worker processes (a Dask LocalCluster).")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Spread the work over the Dask cluster at ADDRESS (tcp://host:8786).")
@click.option("--recompute", is_flag=True,
              help="Re-derive stored rates and verdicts made by other verdict rules first.")
def ingest(sources: tuple[Path, ...], into: Path, batch_runs: int | None, workers: int | None,
           scheduler: str | None, recompute: bool) -> None:
    """Add run folders to a Parquet dataset that verdicts, aggregate and report then read.

    SRC are run folders or folders holding run folders, or a collector's data folder
    (`probe collect --data`), its raw/ archive or `.jsonl.gz` files of it, each holding
    the measurements of one run (a run sent in two reports is one run). A run already in
    the dataset
    (same run id) is skipped, so ingesting the same folders daily adds only new runs. A
    killed ingest leaves the dataset valid; run it again to finish.
    """
    from .distributed import cluster
    from .ingest import BATCH_RUNS
    from .ingest import ingest as run
    from .layout import DatasetError

    if workers is not None and scheduler is not None:
        click.echo("error: give --workers or --scheduler, not both", err=True)
        sys.exit(EXIT_BAD_INPUT)

    def progress(what: str, done: int, total: int) -> None:
        click.echo(f"{what}: {done}/{total} runs" if what == "ingest"
                   else f"{what}: {done}/{total} batches", err=True)

    try:
        with cluster(scheduler, workers) as mapper:
            done = run(sources, into, batch_runs=batch_runs or BATCH_RUNS,
                       recompute=recompute, mapper=mapper, progress=progress)
    except (DatasetError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if done.removed:
        click.echo(f"removed {done.removed} file(s) left by an interrupted ingest", err=True)
    if done.recomputed:
        click.echo(f"re-derived {done.recomputed} batch(es) under the current verdict rules",
                   err=True)
    click.echo(f"ingested {done.ingested} run(s) in {done.batches} batch(es); "
               f"{done.present} already in the dataset; {done.total} run(s) in {into}")
