"""Load run folders into tidy pandas DataFrames (the Python API for notebooks).

    >>> import analysis
    >>> r = analysis.load(["results/"])          # run folders, or folders holding them
    >>> r.transfers.groupby("family").goodput_kbps.median()

Tables (columns as in docs/data-format.md): `transfers`, `samples`, `tcpinfo`,
`dns`, `tls`, `tcp`; `runs` (one row per run.json) and `measurements` (one row
per measurement: target name, host, SNI, `pair`, final `failure`). Each table
is read when first used, so asking for `transfers` never parses samples.

Why it is fast: the CSVs of all folders that share a header are joined as
text and parsed by pandas in one call (pyarrow's engine when installed), so
1,000 folders cost one parse, not 1,000. A folder whose run did not complete
(killed, interrupted) or has no CSVs is read from its JSONL with the probe's
own row derivation (`probe.results.csvs.rows`), so its tables match.
`measurements` reads only each JSON line's envelope (everything before
`test_keys`) and its final keys, falling back to a full parse.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

import pandas as pd

from probe.results import csvs, jsonl
from probe.results.schema import FILES

TABLES = {"transfers": "transfers.csv", "samples": "samples.csv", "tcpinfo": "tcpinfo.csv",
          "dns": "dns.csv", "tls": "tls.csv", "tcp": "tcp.csv"}
MEASUREMENT_COLUMNS = ["run_id", "measurement_id", "measurement_start_time", "repetition",
                       "experiment", "target", "family", "kind", "url", "host", "sni", "pair",
                       "connect_to", "address", "failure"]
RUN_COLUMNS = ["run_id", "folder", "start", "end", "status", "label", "asn", "probe_version",
               "measurements", "targets", "source"]
_STRINGS = {"run_id", "measurement_id", "transfer_id", "target", "family", "kind",
            "experiment", "url", "host", "sni", "address", "direction", "method", "stopped_by",
            "failure", "hostname", "query_type", "engine", "resolver", "rcode", "answers",
            "cname_chain", "bogons", "server_name", "tls_version", "cipher_suite", "alpn",
            "verify_error", "cert_subject", "cert_issuer", "cert_sans", "cert_sha256"}


def run_folders(paths: Iterable[str | Path]) -> list[Path]:
    """The run folders under `paths`: each path is a run folder or a folder of run folders."""
    found: list[Path] = []
    for p in map(Path, paths):
        if _is_run(p):
            found.append(p)
        elif p.is_dir():
            found += sorted(c for c in p.iterdir() if c.is_dir() and _is_run(c))
        else:
            raise FileNotFoundError(f"{p}: not a run folder (no run.json or measurements.jsonl)")
    # One run counts once: the same folder by two spellings, or a copy of it (a folder
    # is named by its run id), would pool its repetitions twice.
    unique: dict[str, Path] = {}
    for folder in dict.fromkeys(f.resolve() for f in found):
        if folder.name in unique:
            print(f"{folder}: skipped, a copy of run {folder.name} ({unique[folder.name]})",
                  file=sys.stderr)
            continue
        unique[folder.name] = folder
    return list(unique.values())


def _is_run(p: Path) -> bool:
    return (p / "run.json").is_file() or (p / "measurements.jsonl").is_file()


class Results:
    """The tables of a set of run folders; each table is loaded on first access."""

    def __init__(self, folders: list[Path]) -> None:
        self.folders = folders
        self._info = {f: _run_info(f) for f in folders}
        self._derived: dict[Path, dict[str, list[dict]]] = {}

    def _from_jsonl(self, folder: Path) -> bool:
        info = self._info[folder]
        if info.get("status") != "complete":
            return (folder / "measurements.jsonl").is_file()
        return not all((folder / name).is_file() for name in FILES)

    def _rows(self, folder: Path) -> dict[str, list[dict]]:
        if folder not in self._derived:
            self._derived[folder] = csvs.rows(jsonl.read(folder / "measurements.jsonl"))
        return self._derived[folder]

    def table(self, name: str) -> pd.DataFrame:
        """One CSV table (`transfers`, `samples`, ...) across all folders."""
        file = TABLES[name]
        texts = []
        for folder in self.folders:
            if self._from_jsonl(folder):
                texts.append(csvs.render(FILES[file], self._rows(folder)[file]))
            elif (folder / file).is_file():
                texts.append((folder / file).read_text(encoding="utf-8"))
        return _parse([c.name for c in FILES[file]], texts)

    @cached_property
    def transfers(self) -> pd.DataFrame:
        return self.table("transfers")

    @cached_property
    def samples(self) -> pd.DataFrame:
        return self.table("samples")

    @cached_property
    def tcpinfo(self) -> pd.DataFrame:
        return self.table("tcpinfo")

    @cached_property
    def dns(self) -> pd.DataFrame:
        return self.table("dns")

    @cached_property
    def tls(self) -> pd.DataFrame:
        return self.table("tls")

    @cached_property
    def tcp(self) -> pd.DataFrame:
        return self.table("tcp")

    @cached_property
    def runs(self) -> pd.DataFrame:
        rows = []
        for folder, info in self._info.items():
            rows.append({
                "run_id": info.get("run_id") or folder.name, "folder": str(folder),
                "start": info.get("start"), "end": info.get("end"),
                "status": info.get("status"), "label": info.get("label"),
                "asn": info.get("asn"), "probe_version": info.get("probe_version"),
                "measurements": info.get("measurements"), "targets": info.get("targets"),
                "source": "jsonl" if self._from_jsonl(folder) else "csv",
            })
        df = pd.DataFrame(rows, columns=RUN_COLUMNS)
        for col in ("start", "end"):
            df[col] = pd.to_datetime(df[col], utc=True, errors="coerce", format="ISO8601")
        return df

    @cached_property
    def measurements(self) -> pd.DataFrame:
        rows = [row for folder in self.folders for row in _measurement_rows(folder)]
        df = pd.DataFrame(rows, columns=MEASUREMENT_COLUMNS)
        df["measurement_start_time"] = pd.to_datetime(df["measurement_start_time"], utc=True,
                                                      errors="coerce")
        return df


def load(paths: Iterable[str | Path] | str | Path) -> Results:
    """Read run folders (or folders of run folders) into tidy DataFrames, loaded lazily."""
    if isinstance(paths, str | Path):
        paths = [paths]
    return Results(run_folders(paths))


def _run_info(folder: Path) -> dict:
    try:
        info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"run_id": folder.name, "status": None}
    return info if isinstance(info, dict) else {"run_id": folder.name, "status": None}


def _engine() -> str:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return "c"
    return "pyarrow"


def _parse(columns: list[str], texts: list[str]) -> pd.DataFrame:
    """Parse many CSV texts at once: texts with the same header are joined, then read once."""
    by_header: dict[str, list[str]] = {}
    for text in texts:
        header, _, body = text.partition("\n")
        if body.strip():
            by_header.setdefault(header, []).append(body if body.endswith("\n") else body + "\n")
    frames = []
    for header, bodies in by_header.items():
        names = next(csv.reader([header]))
        dtype = {c: "string" for c in names if c in _STRINGS}
        frames.append(pd.read_csv(io.StringIO("".join(bodies)), names=names, header=None,
                                  dtype=dtype, true_values=["true"], false_values=["false"],
                                  keep_default_na=False, na_values=[""], engine=_engine()))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="string" if c in _STRINGS else "float64")
                             for c in columns})
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if "measurement_start_time" in df:
        df["measurement_start_time"] = pd.to_datetime(df["measurement_start_time"], utc=True,
                                                      errors="coerce")
    return df


def _measurement_rows(folder: Path) -> list[dict]:
    path = folder / "measurements.jsonl"
    if not path.is_file():
        return []
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            m = _envelope(line)
            if m is None:
                print(f"{path}:{lineno}: skipped unreadable line", file=sys.stderr)
                continue
            target = m.get("target") or {}
            keys = m.get("test_keys") or {}
            out.append({
                "run_id": m.get("run_id"), "measurement_id": m.get("measurement_id"),
                "measurement_start_time": m.get("measurement_start_time"),
                "repetition": m.get("repetition"), "experiment": m.get("experiment"),
                "target": target.get("name"), "family": target.get("family"),
                "kind": target.get("kind"), "url": target.get("url"),
                "host": target.get("host"), "sni": target.get("sni"),
                "pair": target.get("pair"), "connect_to": target.get("connect_to"),
                "address": keys.get("address"), "failure": keys.get("failure"),
            })
    return out


def _envelope(line: str) -> dict | None:
    """The envelope and the final test keys of one JSON line, without parsing the samples.

    The runner writes `test_keys` last and, inside it, `address`, `dns_consistency`
    and `failure` after the bulky lists; anything else is parsed whole (also when
    the tail found this way does not parse).
    """
    head_end = line.find(',"test_keys":')
    tail_start = line.rfind('"dns_consistency":')
    address = line.rfind('"address":', 0, tail_start) if tail_start > 0 else -1
    if address > head_end:
        tail_start = address
    if head_end > 0 and tail_start > head_end:
        try:
            head = json.loads(line[:head_end] + "}")
            tail = json.loads("{" + line[tail_start:].rstrip()[:-1])
        except ValueError:
            pass
        else:
            head["test_keys"] = tail
            return head
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None
