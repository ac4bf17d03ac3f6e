"""Verdicts on simulated networks: the table of docs/analysis.md, "Validation (synthetic)".

A packet-level TCP simulation (tests/fixtures_results.py) through clean links,
congested FIFOs, a token-bucket policer or a shaper; 40 runs per scenario, one
Twitter image and its paired control, seeds 0-39, odd seeds with 3 repetitions
and even seeds with 1. Prints one Markdown row per scenario with its verdict
counts, split by repetitions. About five minutes on two cores.
"""

from __future__ import annotations

import collections
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

RUNS = 40


def scenarios() -> dict[str, tuple]:
    """Name -> (Twitter's path, the control's path)."""
    from fixtures_results import Path_, congested

    heavy = Path_("congested", 1500, 60, buffer_pkts=40, loss=0.02, wander=0.35)
    return {
        "clean 20 Mbit/s both": (Path_("clean", 20_000, 40),) * 2,
        "clean 2 Mbit/s both": (Path_("clean", 2000, 40, buffer_pkts=40),) * 2,
        "congested ~1.5 Mbit/s both": (congested(1500),) * 2,
        "congested ~800 kbit/s, RTT 100 ms both": (congested(800, 100),) * 2,
        "heavily congested (2 % loss) both": (heavy,) * 2,
        "Twitter policed at 1/3 of a clean 1.5 Mbit/s":
            (Path_("policed", 500, 40), Path_("clean", 1500, 40, buffer_pkts=40)),
        "Twitter policed 500 kbit/s, controls congested 1.5 Mbit/s":
            (Path_("policed", 500, 40), congested(1500)),
        "Twitter shaped 500 kbit/s, controls congested 1.5 Mbit/s":
            (Path_("shaped", 500, 40), congested(1500)),
        "Twitter policed 140 kbit/s, controls clean 20 Mbit/s (2021)":
            (Path_("policed", 140, 40), Path_("clean", 20_000, 40)),
    }


def main() -> int:
    from fixtures_results import RunSpec, pairs, write_run

    from analysis.verdicts import verdicts

    print("| scenario | 1 repetition (20 runs) | 3 repetitions (20 runs) |\n| --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (twitter, control) in scenarios().items():
            counts = {1: collections.Counter(), 3: collections.Counter()}
            for seed in range(RUNS):
                repeat = 1 + 2 * (seed % 2)
                folder = write_run(Path(tmp) / f"{len(name)}-{seed}",
                                   RunSpec(pairs(("image",), twitter, control), seed=seed,
                                           repeat=repeat))
                counts[repeat].update(verdicts([folder])["verdict"])
            cells = [", ".join(f"{n} {v}" for v, n in c.most_common()) for c in counts.values()]
            print(f"| {name} | {cells[0]} | {cells[1]} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
