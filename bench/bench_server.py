"""Throughput of `probe serve` /bytes on loopback, measured by curl (HTTPS and plain HTTP).

The server must never be the bottleneck of a throttling measurement; this shows
how far above a 150 kbps throttle (and a fast home line) it streams.

    .venv/bin/python bench/bench_server.py [--mb 500] [--runs 3] [--parallel 4]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from probe.server.app import Server
from probe.server.config import ServerConfig


def curl_speed(url: str, timeout: float) -> float:
    """Bytes per second as curl reports it (`%{speed_download}`)."""
    out = subprocess.run(
        ["curl", "-sk", "--fail", "-o", "/dev/null", "-w", "%{speed_download}",
         "--max-time", str(timeout), url],
        check=True, capture_output=True, text=True, timeout=timeout + 5,
    )
    return float(out.stdout)


def measure(url: str, runs: int, parallel: int, timeout: float) -> float:
    """Median over runs of the summed speed of `parallel` simultaneous downloads."""
    totals = []
    with ThreadPoolExecutor(parallel) as pool:
        for _ in range(runs):
            totals.append(sum(pool.map(lambda _: curl_speed(url, timeout), range(parallel))))
    return statistics.median(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="MB per download")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=1, help="simultaneous downloads")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per download")
    args = parser.parse_args()
    n = args.mb * 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        config = ServerConfig(
            listen=[("127.0.0.1", 0)], log=Path(tmp) / "bench.jsonl", max_bytes=n,
            max_connections=max(16, args.parallel * 2),
        )
        with Server(config) as server:
            port = server.addresses[0][1]
            for scheme in ("https", "http"):
                speed = measure(f"{scheme}://127.0.0.1:{port}/bytes?n={n}", args.runs,
                                args.parallel, args.timeout)
                print(f"{scheme:5} /bytes {args.mb} MB x{args.parallel}: "
                      f"{speed / 1e6:8.1f} MB/s = {speed * 8 / 1e9:6.2f} Gbit/s "
                      f"(median of {args.runs})")


if __name__ == "__main__":
    main()
