"""What one `probe collect` takes in, and what a volunteer sends it, on loopback.

(a) Measurements accepted per second by one `probe collect` process, plain HTTP and
HTTPS: N client processes (the probe's own collector client, one connection per
request as the collector allows) each open a report and append copies of a real run
line, each with its own measurement_id, for a fixed time. Accepted = answered 200 and
found on disk afterwards, so a collector's capacity can be weighed against its volunteers.

(b) Bytes a volunteer uploads per run: `probe submit` of one real run folder (a
`probe run` on loopback against test origins), counted by a TCP relay in front of the
collector: plain HTTP (request lines, headers and bodies) and HTTPS (on the wire, TLS
included), against the run's measurements.jsonl.

    .venv/bin/python bench/collector_throughput.py [--clients 4] [--seconds 5]
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probe.collection import protocol  # noqa: E402
from probe.collection.client import Collector  # noqa: E402
from probe.lab.ca import CertificateAuthority  # noqa: E402
from probe.lab.dns_server import DnsServer  # noqa: E402
from tests.probe_world import PROBE, run_probe, targets  # noqa: E402
from tests.servers.http_servers import TestServer, closed_port, server_context  # noqa: E402

RUN_TARGETS = """
[[target]]
name = "tw-image"
url = "https://pbs.twimg.com:PORT/bytes/40000"
family = "twitter"
kind = "image"

[[target]]
name = "control-image"
url = "https://images.control.test:PORT/bytes/40000"
family = "control"
kind = "image"
"""
REPEAT = 3  # six measurements, a small run


def real_run(tmp: Path, ca: CertificateAuthority) -> Path:
    """A run folder written by `probe run` against loopback origins (the test world)."""
    issued = ca.issue(["pbs.twimg.com", "images.control.test"], tmp / "origin-cert")
    zone = {"ttl": 60, "records": {"pbs.twimg.com": {"A": ["127.0.0.1"]},
                                   "images.control.test": {"A": ["127.0.0.1"]}}}
    with TestServer(server_context(issued.cert, issued.key)) as origin, \
            DnsServer(zone) as dns:
        world = {"origin": origin, "dns": dns, "ca": ca.cert_path, "closed": closed_port(),
                 "dir": tmp}
        res = run_probe(world, targets(world, RUN_TARGETS), tmp / "results", "--quiet",
                        "--repeat", str(REPEAT))
    if res.returncode != 0:
        raise SystemExit(f"probe run failed: {res.stderr[-2000:]}")
    return Path(res.stdout.strip().splitlines()[-1])


@contextmanager
def collect(data: Path, cert: Path | None, key: Path | None) -> Iterator[str]:
    """`probe collect` on a free loopback port, as its own process; its base URL."""
    port = closed_port()
    argv = [*PROBE, "collect", "--data", str(data), "--listen", f"127.0.0.1:{port}",
            "--log-file", str(data.parent / f"{data.name}.log"),
            # the process's capacity, not its per-client limits: every client here is 127.0.0.1
            "--rate-limit", "0", "--max-open-reports-per-client", "0"]
    argv += ["--cert", str(cert), "--key", str(key)] if cert and key else ["--plain-http"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("listening "):
            raise SystemExit(f"probe collect did not start: {line!r}")
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def client(url: str, ca: str | None, line: dict, seconds: float, n: int) -> tuple[int, float]:
    """Client `n`: open a report, append copies of `line` until `seconds` pass; how many
    the collector answered 200, in how many seconds (process start and open left out)."""
    accepted = 0
    with Collector(url, ca_bundle=Path(ca) if ca else None, delays=()) as c:
        report_id = c.open(protocol.open_body(line))
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            m = json.loads(json.dumps(line))
            m["annotations"]["measurement_id"] = f"bench-{n}-{accepted}"
            c.update(report_id, {**m, "report_id": report_id})
            accepted += 1
        elapsed = time.monotonic() - started
        c.close(report_id)
    return accepted, elapsed


def throughput(url: str, ca: Path | None, line: dict, clients: int, seconds: float,
               data: Path) -> tuple[float, int]:
    """Measurements per second accepted and stored, and how many were stored."""
    with mp.get_context("spawn").Pool(clients) as pool:
        done = pool.starmap(client, [(url, str(ca) if ca else None, line, seconds, n)
                                     for n in range(clients)])
    answered = sum(count for count, _ in done)
    elapsed = max(spent for _, spent in done)
    kept = sum(len(gzip.decompress(p.read_bytes()).splitlines())
               for p in data.glob("raw/**/*.jsonl.gz"))  # the closed reports, sealed
    if kept != answered:
        raise SystemExit(f"{answered} answered 200 but {kept} stored")
    return kept / elapsed, kept


class Relay:
    """A TCP relay to `target` that counts the bytes a client sends through it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.upload = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(conn,), daemon=True).start()

    def _pipe(self, conn: socket.socket) -> None:
        with conn, socket.create_connection(self.target) as up:
            peers = {conn: up, up: conn}
            while True:
                ready, _, _ = select.select(list(peers), [], [], 30)
                if not ready:
                    return
                for s in ready:
                    chunk = s.recv(65536)
                    if not chunk:
                        return
                    if s is conn:
                        with self._lock:
                            self.upload += len(chunk)
                    peers[s].sendall(chunk)

    def close(self) -> None:
        self._listener.close()


def upload_bytes(run: Path, url: str, ca: Path | None, tmp: Path) -> tuple[int, str]:
    """Bytes `probe submit` sends to the collector for a fresh copy of `run`, and what it
    said it sent."""
    host, port = url.split("//")[1].rsplit(":", 1)
    relay = Relay((host, int(port)))
    copy = tmp / f"submit-{relay.port}" / run.name
    copy.mkdir(parents=True)
    for f in run.iterdir():
        if f.is_file() and f.name != "submission.json":
            (copy / f.name).write_bytes(f.read_bytes())
    argv = [*PROBE, "submit", str(copy), "--collector",
            f"{url.split('//')[0]}//127.0.0.1:{relay.port}", "--yes"]
    argv += ["--ca-bundle", str(ca)] if ca else []
    env = {**os.environ, "PROBE_STATE_DIR": str(tmp / "submit-state")}
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    relay.close()
    if res.returncode != 0:
        raise SystemExit(f"probe submit failed: {res.stdout}{res.stderr}")
    return relay.upload, next(x for x in res.stdout.splitlines() if " sent" in x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="concurrent client processes")
    parser.add_argument("--seconds", type=float, default=5.0, help="sending time per scheme")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        os.environ["PROBE_STATE_DIR"] = str(tmp / "state")
        ca = CertificateAuthority(tmp / "ca", name="Bench CA")
        run = real_run(tmp, ca)
        lines = (run / "measurements.jsonl").read_bytes().splitlines()
        line = json.loads(lines[0])
        issued = ca.issue(["127.0.0.1"], tmp / "collector-cert")
        print(f"one real measurement line: {len(lines[0]):,} bytes; {args.clients} clients, "
              f"{args.seconds:g} s each")
        for scheme, cert, key, bundle in (("http", None, None, None),
                                          ("https", issued.cert, issued.key, ca.cert_path)):
            data = tmp / f"collected-{scheme}"
            with collect(data, cert, key) as url:
                rate, kept = throughput(url, bundle, line, args.clients, args.seconds, data)
                print(f"{scheme:5} accepted {rate:8.1f} measurements/s "
                      f"({kept:,} stored, {rate * len(lines[0]) / 1e6:.2f} MB/s of JSON)")
        size = sum(len(x) + 1 for x in lines)
        print(f"one run: {len(lines)} measurements, measurements.jsonl {size:,} bytes")
        for scheme, cert, key, bundle in (("http", None, None, None),
                                          ("https", issued.cert, issued.key, ca.cert_path)):
            data = tmp / f"submitted-{scheme}"
            with collect(data, cert, key) as url:
                sent, said = upload_bytes(run, url, bundle, tmp)
            outcome = said.split(": ", 1)[-1].split(" (")[0]
            print(f"{scheme:5} upload {sent:,} bytes = {sent / len(lines):,.0f} per measurement "
                  f"({sent / size:.2f}x the JSONL); submit: {outcome}")


if __name__ == "__main__":
    main()
