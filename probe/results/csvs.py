"""Derive the tidy CSVs of a run from its `measurements.jsonl`.

The CSVs are a view: they are rebuilt whole from the JSONL (also after a
killed run) and written atomically, so they never disagree with it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from pathlib import Path

from . import jsonl
from .atomic import write_text
from .schema import FILES, Column


def context(measurement: dict) -> dict:
    """The envelope fields that every per-measurement row repeats."""
    target = measurement.get("target") or {}
    return {
        "run_id": measurement.get("run_id"),
        "measurement_id": measurement.get("measurement_id"),
        "measurement_start_time": measurement.get("measurement_start_time"),
        "repetition": measurement.get("repetition"),
        "target": target.get("name"),
        "family": target.get("family"),
        "kind": target.get("kind"),
        "experiment": measurement.get("experiment"),
    }


def rows(measurements: Iterable[dict]) -> dict[str, list[dict]]:
    """Flatten measurements into the record rows of each CSV file (before column selection)."""
    out: dict[str, list[dict]] = {name: [] for name in FILES}
    for m in measurements:
        ctx = context(m)
        keys = m.get("test_keys") or {}
        inconsistent = bool((keys.get("dns_consistency") or {}).get("inconsistent"))
        for q in keys.get("queries") or []:
            out["dns.csv"].append({**q, **ctx, "inconsistent": inconsistent})
        for c in keys.get("tcp_connect") or []:
            out["tcp.csv"].append({**c, **ctx})
        for h in keys.get("tls_handshakes") or []:
            out["tls.csv"].append({**h, **ctx})
        for t in keys.get("transfers") or []:
            out["transfers.csv"].append({**t, **ctx})
            for t_ms, n in t.get("samples") or []:
                out["samples.csv"].append(
                    {"run_id": ctx["run_id"], "transfer_id": t.get("transfer_id"),
                     "t_ms": t_ms, "bytes": n}
                )
            for snap in t.get("tcp_info") or []:
                out["tcpinfo.csv"].append(
                    {**snap, "run_id": ctx["run_id"], "transfer_id": t.get("transfer_id")}
                )
    return out


def render(columns: list[Column], records: Iterable[dict]) -> str:
    """CSV text with a header; None becomes an empty cell, booleans true/false."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c.name for c in columns])
    for rec in records:
        w.writerow([_cell(c.get(rec)) for c in columns])
    return buf.getvalue()


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def write_all(folder: Path, measurements: Iterable[dict]) -> list[Path]:
    """Write every CSV of a run folder from its measurements; returns the paths."""
    by_file = rows(measurements)
    paths = []
    for name, columns in FILES.items():
        path = Path(folder) / name
        write_text(path, render(columns, by_file[name]))
        paths.append(path)
    return paths


def rebuild(folder: Path) -> list[Path]:
    """Re-derive the CSVs of a run folder from its JSONL (e.g. after `kill -9`)."""
    return write_all(folder, _read(Path(folder) / "measurements.jsonl"))


def _read(path: Path) -> Iterator[dict]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no measurements.jsonl in this folder")
    yield from jsonl.read(path)
