"""Ingest on more workers: the same run folders ingested in this process, then on a
Dask LocalCluster of 1 and of 2 worker processes.

Usage: python bench/ingest_workers.py [--runs N] [--source DIR] [--keep DIR]

Each ingest is `probe analyze ingest` in a process of its own into a fresh dataset;
the figure is runs per second from start to end (the cluster's start included), and
the speed-up of 2 workers over 1. The three datasets must give the same verdicts.
Not a test: figures depend on the machine (and on its cores: beyond them, workers
only wait for each other).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.dataset_scale import analyze, in_workspace, make_runs, parser  # noqa: E402

RUNS = 400  # a few batches per worker, small enough for `make bench`
BATCH_RUNS = 100  # batches of the size a real ingest uses (200), halved so two workers share evenly


def main() -> None:
    in_workspace(parser(__doc__, RUNS).parse_args(), "ingest-workers-", run)


def run(args: argparse.Namespace, work: Path) -> None:
    make_runs(args, work)
    runs = str(work / "runs")
    rates, answers = {}, {}
    for name, extra in (("this process", []), ("1 worker", ["--workers", "1"]),
                        ("2 workers", ["--workers", "2"])):
        ds = str(work / name.replace(" ", "-"))
        step = analyze("ingest", runs, "--into", ds, "--batch-runs", str(BATCH_RUNS), *extra)
        rates[name] = args.runs / step.seconds
        print(f"ingest {args.runs} runs, {name:<13} {step.seconds:7.1f} s "
              f"{rates[name]:7.1f} runs/s", flush=True)
        answers[name] = sorted(analyze("verdicts", ds, "--format", "csv").output.splitlines())
    same = all(a == answers["this process"] for a in answers.values())
    print(f"speed-up of 2 workers over 1: {rates['2 workers'] / rates['1 worker']:.2f}x; "
          f"the three datasets' verdicts are equal: {same}", flush=True)
    if not same:
        raise SystemExit("the datasets' verdicts differ")


if __name__ == "__main__":
    main()
