"""Benchmark: Session.fetch goodput against curl on the same loopback TLS object.

The probe must not be the bottleneck it is trying to measure: on loopback our
transfer should reach at least 80% of curl's speed. The server runs in its own
process so the client does not share a GIL with it.

Run: .venv/bin/python bench/bench_transfer.py [--mbytes 300] [--runs 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probe.lab.ca import CertificateAuthority  # noqa: E402
from probe.measure import tls  # noqa: E402
from probe.measure.clock import Clock  # noqa: E402
from probe.measure.keys import TestKeys  # noqa: E402
from probe.measure.transfer import Limits, Session  # noqa: E402
from tests.servers.http_servers import TestServer, server_context  # noqa: E402

HOST = "bench.example"


def _serve(cert: Path, key: Path, port_out: mp.connection.Connection, stop: mp.Event) -> None:
    with TestServer(server_context(cert, key)) as server:
        port_out.send(server.port)
        stop.wait(600)


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _probe_run(ca: Path, url: str, size: int) -> tuple[float, float]:
    """(goodput kbit/s, client CPU seconds per GB) of one Session.fetch."""
    limits = Limits(max_bytes=size, max_seconds=60, read_timeout=10)
    before = _cpu(resource.RUSAGE_SELF)
    with Session(TestKeys(), Clock(), address="127.0.0.1", sni=None,
                 ssl_context=tls.make_context(ca), limits=limits, transfer_prefix="b") as s:
        record = s.fetch(url)
    cpu = _cpu(resource.RUSAGE_SELF) - before
    assert record["bytes"] == size and record["failure"] is None, record["failure"]
    return record["goodput_kbps"], cpu / size * 1e9


def _curl_run(ca: Path, url: str, port: int, size: int) -> tuple[float, float]:
    """(goodput kbit/s, client CPU seconds per GB) of one curl download."""
    before = _cpu(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["curl", "-s", "--cacert", str(ca), "--connect-to", f"{HOST}:{port}:127.0.0.1:{port}",
         "-o", "/dev/null", "-w", "%{speed_download}", url],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout
    cpu = _cpu(resource.RUSAGE_CHILDREN) - before
    return float(out) * 8 / 1000, cpu / size * 1e9  # curl reports bytes per second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mbytes", type=int, default=300, help="object size in MB")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.mbytes * 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        ca = CertificateAuthority(Path(tmp) / "ca", name="Bench CA")
        issued = ca.issue([HOST], Path(tmp))
        receiver, sender = mp.Pipe(duplex=False)
        stop = mp.Event()
        proc = mp.Process(target=_serve, args=(issued.cert, issued.key, sender, stop), daemon=True)
        proc.start()
        try:
            port = receiver.recv()
            url = f"https://{HOST}:{port}/bytes/{size}"
            probe, curl = [], []
            for _ in range(args.runs):  # interleaved so drift hits both alike
                probe.append(_probe_run(ca.cert_path, url, size))
                curl.append(_curl_run(ca.cert_path, url, port, size))
        finally:
            stop.set()
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
    p, c = (statistics.median(x for x, _ in runs) for runs in (probe, curl))
    pc, cc = (statistics.median(y for _, y in runs) for runs in (probe, curl))
    print(f"object: {args.mbytes} MB over loopback TLS, median of {args.runs}")
    for name, runs, rate, cpu in (("probe Session.fetch", probe, p, pc), ("curl", curl, c, cc)):
        each = [round(x / 1000) for x, _ in runs]
        print(f"{name:20} {rate / 1000:8.1f} Mbit/s  {cpu:5.2f} CPU s/GB  runs {each}")
    print(f"ratio probe/curl:    {p / c:8.2f}  (target >= 0.8; CPU ratio {cc / pc:.2f})")


if __name__ == "__main__":
    main()
