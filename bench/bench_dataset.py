"""Time loading, summarising and reporting the Russia Twitter Throttle dataset.

Usage: python bench/bench_dataset.py [DATASET_DIR]  (default: ../shared/datasets/...)
Prints seconds per stage (best of 3); not a test: wall-clock depends on the machine.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from analysis.datasets import russia_twitter as rt
from analysis.report_dataset import write_report

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "datasets" / "russia-twitter-throttle"


def best_of(n: int, fn):  # noqa: ANN001, ANN201 (tiny timing helper)
    best, value = float("inf"), None
    for _ in range(n):
        t = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t)
    return best, value


def main() -> None:
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    t_load, df = best_of(3, lambda: rt.load(directory))
    t_sum, summary = best_of(3, lambda: rt.summarize(df))
    with tempfile.TemporaryDirectory() as tmp:
        t_rep, _ = best_of(3, lambda: write_report(summary, Path(tmp) / "report.html"))
    print(
        f"rows={len(df)} load={t_load:.2f}s summarize={t_sum:.2f}s report={t_rep:.2f}s "
        f"total={t_load + t_sum + t_rep:.2f}s"
    )


if __name__ == "__main__":
    main()
