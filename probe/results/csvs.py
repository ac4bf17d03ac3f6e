"""Derive the tidy CSVs of a run from its `measurements.jsonl`.

The CSVs are a view: they are rebuilt whole from the JSONL (also after a
killed run) and written atomically, so they never disagree with it. A JSONL
from another machine may hold anything: `problem` says whether a measurement
can be flattened into cells of the schema's kinds, and `measurements` reads only
those that can, naming the lines it skips.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from . import identity, jsonl
from .atomic import write_text
from .schema import FILES, Column


def context(measurement: dict) -> dict:
    """The envelope fields that every per-measurement row repeats."""
    return {
        "run_id": identity.field(measurement, "run_id"),
        "measurement_id": identity.field(measurement, "measurement_id"),
        "measurement_start_time": measurement.get("measurement_start_time"),
        "repetition": identity.field(measurement, "repetition"),
        "target": identity.target_field(measurement, "name"),
        "family": identity.target_field(measurement, "family"),
        "kind": identity.target_field(measurement, "kind"),
        "experiment": identity.field(measurement, "experiment"),
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


_RECORD_LISTS = ("queries", "tcp_connect", "tls_handshakes", "transfers")
# Envelope fields that the analysis reads as text straight from the JSONL, not via a CSV.
_TEXT_FIELDS = ("run_id", "measurement_id", "measurement_start_time", "experiment")
_TEXT_PARTS = {"target": ("name", "family", "kind", "url", "host", "sni", "pair", "connect_to"),
               "test_keys": ("address", "failure")}


def problem(measurement: dict) -> str | None:
    """Why a measurement cannot be flattened into the CSVs, or None when it can: objects
    and lists where the format has them, `[t_ms, bytes]` pairs in `samples`, and every
    cell of its rows a number, a boolean or a text as its column says (or empty)."""
    if not isinstance(measurement.get("annotations"), dict | None):
        return "annotations is not an object"
    for field in _TEXT_FIELDS:
        value = (identity.field(measurement, field) if field in identity.IDENTITY
                 else measurement.get(field))
        if not isinstance(value, str | None):
            return f"{field} is not a string"
    keys = measurement.get("test_keys") or {}
    if not isinstance(keys, dict):
        return "test_keys is not an object"
    for name, fields in _TEXT_PARTS.items():
        part = identity.target(measurement) if name == "target" else keys
        if not isinstance(part, dict | None):
            return f"{name} is not an object"
        for field in fields:
            if not isinstance((part or {}).get(field), str | None):
                return f"{name}.{field} is not a string"
    if not isinstance(keys.get("dns_consistency"), dict | None):
        return "test_keys.dns_consistency is not an object"
    for name in _RECORD_LISTS:
        records = keys.get(name)
        if not isinstance(records, list | None) or any(not isinstance(r, dict)
                                                        for r in records or []):
            return f"test_keys.{name} is not a list of objects"
    for i, t in enumerate(keys.get("transfers") or []):
        where = f"test_keys.transfers[{i}]"
        samples, snaps = t.get("samples"), t.get("tcp_info")
        if not isinstance(samples, list | None) or any(
                not isinstance(s, list) or len(s) != 2 for s in samples or []):
            return f"{where}.samples is not a list of [t_ms, bytes] pairs"
        if not isinstance(snaps, list | None) or any(not isinstance(s, dict)
                                                      for s in snaps or []):
            return f"{where}.tcp_info is not a list of objects"
    for name, records in rows([measurement]).items():
        for record in records:
            for column in FILES[name]:
                try:
                    value = column.get(record)
                except Exception as exc:  # noqa: BLE001 - any failure means a malformed record
                    return f"{name} column {column.name} cannot be derived ({type(exc).__name__})"
                if not _fits(column.kind, value):
                    return (f"{name} column {column.name} holds a {type(value).__name__}, "
                            f"not a {column.kind}")
    return None


def _fits(kind: str, value: object) -> bool:
    if value is None:
        return True
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def measurements(path: Path, on_skip: jsonl.OnSkip = jsonl.warn,
                 lines: Callable[[Path, jsonl.OnSkip], Iterator[tuple[int, str]]] = jsonl.lines
                 ) -> Iterator[dict]:
    """The measurements of a JSONL file (read by `lines`: a gzip one too) that can be
    flattened; the others are reported to `on_skip` with their line and left out."""
    for lineno, text in lines(path, on_skip):
        m = jsonl.parse(text)
        why = m if isinstance(m, str) else problem(m)
        if why is None:
            yield m
        else:
            on_skip(jsonl.Skip(Path(path), lineno, why))


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


def rebuild(folder: Path, on_skip: jsonl.OnSkip = jsonl.warn) -> list[Path]:
    """Re-derive the CSVs of a run folder from its JSONL (e.g. after `kill -9`); lines that
    cannot be flattened are reported to `on_skip` and left out."""
    path = Path(folder) / "measurements.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no measurements.jsonl in this folder")
    return write_all(folder, measurements(path, on_skip))
