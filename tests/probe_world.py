"""A small world for `probe run` tests on loopback: TLS origins, a DNS server, the CLI.

The `world` fixture itself is in tests/conftest.py.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

PROBE = [sys.executable, "-m", "probe"]


def targets(world: dict, body: str) -> Path:
    path = world["dir"] / f"targets-{time.monotonic_ns()}.toml"
    path.write_text(body.replace("PORT", str(world["origin"].port))
                    .replace("CLOSED", str(world["closed"])))
    return path


def probe_cmd(world: dict, targets: Path, out: Path, *extra: str) -> list[str]:
    """`probe run` against the world: its DNS server only, its CA, loopback not a bogon;
    consent given with --yes (no terminal here)."""
    dns = world["dns"]
    return PROBE + ["run", "--yes", "--targets", str(targets), "--no-system-resolver",
                    "--resolver", f"{dns.host}:{dns.port}", "--ca-bundle", str(world["ca"]),
                    "--allow-net", "127.0.0.0/8", "--out", str(out), "--dns-timeout", "2",
                    *extra]


def run_probe(world: dict, targets: Path, out: Path, *extra: str,
              **kw) -> subprocess.CompletedProcess:
    cmd = probe_cmd(world, targets, out, *extra)
    kw.setdefault("env", {**os.environ, "PROBE_LOCK_FILE": str(out.parent / ".lock"),
                          "PROBE_STATE_DIR": str(out.parent / ".state")})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def read_csv(folder: Path, name: str) -> list[dict]:
    with open(folder / name) as f:
        return list(csv.DictReader(f))


