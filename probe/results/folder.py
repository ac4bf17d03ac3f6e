"""The run folder: `<out>/<UTC start>-<short id>/` with run.json, the JSONL and the CSVs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import secrets
import sys
from pathlib import Path

from probe import __version__

from .atomic import write_text


class OutputError(Exception):
    """The results folder cannot be created or written (a user-fixable problem)."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_run_id(start: dt.datetime) -> str:
    """Sortable by time, unique by a random suffix: `20210310T120000Z-3fa9c1`."""
    return f"{start.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def create(out: Path, run_id: str) -> Path:
    """Create the run folder, failing with a clear message if `out` is unusable."""
    folder = Path(out) / run_id
    try:
        folder.mkdir(parents=True, exist_ok=False)
        probe_file = folder / ".write-test"
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write results under {out}: {exc.strerror or exc}") from exc
    return folder


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def platform_info() -> dict:
    """What the results need to be interpreted; deliberately no hostname or addresses."""
    return {
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "root": os.geteuid() == 0 if hasattr(os, "geteuid") else None,
    }


def write_run_json(folder: Path, info: dict) -> None:
    write_text(Path(folder) / "run.json", json.dumps(info, indent=2, default=str) + "\n")


def base_run_info(run_id: str, start: dt.datetime) -> dict:
    return {
        "run_id": run_id,
        "software_name": "throttle-probe",
        "probe_version": __version__,
        "start": iso(start),
        "end": None,
        "status": "running",
        "platform": platform_info(),
    }
