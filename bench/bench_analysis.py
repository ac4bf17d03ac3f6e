"""Analysis speed: loading 1,000 run folders, verdicts, and the cost of one stop_when call.

Run folders are synthetic (tests/fixtures_results.py: simulated policed
Twitter and fast controls, 4 targets x 3 repetitions), one written and then
copied under new run and measurement ids, so the figure is the analysis' cost,
not the simulator's.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import analysis  # noqa: E402
from analysis import rates  # noqa: E402
from analysis.verdicts import verdicts  # noqa: E402
from tests.fixtures_results import FAST, POLICED, RunSpec, pairs, simulate, write_run  # noqa: E402

RUNS = 1000


def timed(label: str, fn):  # noqa: ANN001, ANN201 - a tiny helper
    t = time.perf_counter()
    out = fn()
    print(f"{label:<48} {time.perf_counter() - t:7.2f} s")
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        first = write_run(root / "src", RunSpec(pairs(("image", "video"), POLICED, FAST)))
        for i in range(RUNS):  # copies with their own run and measurement ids, as real runs
            copy = root / "runs" / f"{first.name[:-4]}{i:04x}"
            copy.mkdir(parents=True)
            for f in first.iterdir():
                (copy / f.name).write_text(f.read_text().replace(first.name, copy.name))
        size = sum(p.stat().st_size for p in (root / "runs").rglob("*")) / 1e6
        print(f"{RUNS} run folders, {size:.0f} MB")
        r = analysis.load(root / "runs")
        tr = timed("load(...).transfers", lambda: r.transfers)
        timed("load(...).measurements (JSONL envelopes)", lambda: r.measurements)
        s = timed("load(...).samples", lambda: r.samples)
        print(f"  {len(tr)} transfers, {len(s)} samples")
        timed(f"verdicts of all {RUNS} runs", lambda: verdicts(r))
    series = simulate(POLICED, seed=0).samples
    n = 200
    t = time.perf_counter()
    for _ in range(n):
        rates.stop_when(series)
    per = (time.perf_counter() - t) / n * 1e6
    print(f"stop_when on {len(series)} samples: {per:.0f} us per call")


if __name__ == "__main__":
    main()
