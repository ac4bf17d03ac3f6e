"""`make bench`: run every bench/bench_*.py, then bench/collector_throughput.py,
bench/dataset_scale.py and bench/ingest_workers.py (at their small default sizes), in
turn and show what each measured.

Benchmarks print their own figures; this runner only sequences them so they
never compete for the CPU, and fails if any of them fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).resolve().parent
    failed = []
    for script in [*sorted(here.glob("bench_*.py")), here / "collector_throughput.py",
                   here / "dataset_scale.py", here / "ingest_workers.py"]:
        print(f"\n== {script.name} ==", flush=True)
        if subprocess.run([sys.executable, str(script)], cwd=here.parent).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
