"""Load run folders into tidy pandas DataFrames (the Python API for notebooks).

    >>> import analysis
    >>> r = analysis.load(["results/"])          # run folders, or folders holding them
    >>> r = analysis.load("/srv/collect")        # a collector's data folder (collected.py)
    >>> r.transfers.groupby("family").goodput_kbps.median()

Tables (columns as in docs/data-format.md): `transfers`, `samples`, `tcpinfo`,
`dns`, `tls`, `tcp`; `runs` (one row per run.json) and `measurements` (one row
per measurement: target name, host, SNI, `pair`, final `failure`). Each table
is read when first used, so asking for `transfers` never parses samples.

Why it is fast: the CSVs of all folders that share a header are joined as
text and parsed by pandas in one call (its C engine: pyarrow's takes no
per-column missing values, and a text cell "nan" is a name, not a gap), so
1,000 folders cost one parse, not 1,000. A folder whose run did not complete
(killed, interrupted) or has no CSVs is read from its JSONL with the probe's
own row derivation (`probe.results.csvs.rows`), so its tables match.
`measurements` reads only each JSON line's envelope (everything before
`test_keys`) and its final keys, falling back to a full parse.

Folders come from other people's machines, so nothing in them may stop the
others being read: a JSON line that cannot be flattened into the schema
(`probe.results.csvs.problem`), a line longer than
`probe.results.jsonl.MAX_LINE_BYTES`, a CSV line with a cell that is not of its
column's kind or the wrong number of cells, a CSV whose header names unknown
columns, and a run.json field of the wrong type are each skipped with a warning
naming the file and line (at most WARNINGS_PER_FILE per file), and counted in
`Results.skipped`. A number that is not finite (NaN, inf) is read as missing.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections import Counter
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

import pandas as pd

from probe.results import csvs, identity, jsonl
from probe.results.jsonl import MAX_LINE_BYTES, OnSkip, Skip
from probe.results.schema import FILES, Column

from . import collected
from .store.layout import is_dataset

TABLES = {"transfers": "transfers.csv", "samples": "samples.csv", "tcpinfo": "tcpinfo.csv",
          "dns": "dns.csv", "tls": "tls.csv", "tcp": "tcp.csv"}
MEASUREMENT_COLUMNS = ["run_id", "measurement_id", "measurement_start_time", "repetition",
                       "experiment", "target", "family", "kind", "url", "host", "sni", "pair",
                       "connect_to", "address", "failure"]
RUN_COLUMNS = ["run_id", "folder", "start", "end", "status", "label", "asn", "probe_version",
               "measurements", "targets", "source"]
_STRINGS = {c.name for columns in FILES.values() for c in columns if c.kind == "text"}
# How a number that is not finite is spelled in a CSV (Python's own writer): read as missing.
_NOT_FINITE = ["nan", "inf", "-inf"]
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_CELL_OK = {"number": lambda c: c in _NOT_FINITE or _NUMBER.fullmatch(c) is not None,
            "bool": lambda c: c in ("true", "false"),
            "text": lambda c: "\x00" not in c}  # pandas ends a cell at a NUL byte
# The cells that tie a row to its run, measurement and transfer: a row without one is lost.
_KEYS = ("run_id", "measurement_id", "transfer_id")
WARNINGS_PER_FILE = 20
# run.json fields the analysis reads, and the type each must have to be used.
_RUN_FIELDS = {"run_id": str, "start": str, "end": str, "status": str, "label": str,
               "asn": str, "probe_version": str, "measurements": int, "targets": int}


def run_folders(paths: Iterable[str | Path]) -> list[Path]:
    """The runs under `paths`: each path is a run folder or a folder of run folders, or a
    collector's archive (its data folder, raw/, a partition or one `.jsonl.gz` file), whose
    files each stand for a run folder."""
    found: list[Path] = []
    for p in map(Path, paths):
        if _is_run(p) or collected.is_archive_file(p):
            found.append(p)
        elif collected.holds_archive(p):
            found += collected.archive_files(p)
        elif p.is_dir():
            found += sorted(c for c in p.iterdir() if c.is_dir() and _is_run(c))
        else:
            raise FileNotFoundError(f"{p}: not a run folder (no run.json or measurements.jsonl)"
                                    f" nor a collector's {collected.SUFFIX} file")
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
    """The tables of a set of run folders; each table is loaded on first access.

    `skipped` lists every malformed line left out so far (file, line, why).
    """

    def __init__(self, folders: list[Path]) -> None:
        self.folders = folders
        self.skipped: list[Skip] = []
        self._seen: set[tuple[Path, int]] = set()
        self._warned: Counter[Path] = Counter()
        self._info = {f: (collected.run_info(f, self._skip) if collected.is_archive_file(f)
                          else _run_info(f, self._skip)) for f in folders}
        self._derived: dict[Path, tuple[dict[str, list[dict]], list[dict]]] = {}

    def _skip(self, skip: Skip) -> None:
        """Count a skipped line once (two tables may read the same line) and warn about the
        first WARNINGS_PER_FILE of each file."""
        if (skip.path, skip.line) in self._seen:
            return
        self._seen.add((skip.path, skip.line))
        self.skipped.append(skip)
        self._warned[skip.path] += 1
        if self._warned[skip.path] <= WARNINGS_PER_FILE:
            jsonl.warn(skip)
        elif self._warned[skip.path] == WARNINGS_PER_FILE + 1:
            print(f"{skip.path}: more lines skipped; warnings for this file stop here",
                  file=sys.stderr)

    def _from_jsonl(self, folder: Path) -> bool:
        if collected.is_archive_file(folder):
            return True
        info = self._info[folder]
        if info.get("status") != "complete":
            return (folder / "measurements.jsonl").is_file()
        return not all((folder / name).is_file() for name in FILES)

    def _derive(self, folder: Path) -> tuple[dict[str, list[dict]], list[dict]]:
        """The CSV rows and the measurement rows of a folder read from its JSONL, from one
        pass over the measurements that can be flattened."""
        if folder not in self._derived:
            ms = list(collected.measurements(folder, self._skip)
                      if collected.is_archive_file(folder)
                      else csvs.measurements(folder / "measurements.jsonl", self._skip))
            self._derived[folder] = csvs.rows(ms), [_measurement_row(m) for m in ms]
        return self._derived[folder]

    def table(self, name: str) -> pd.DataFrame:
        """One CSV table (`transfers`, `samples`, ...) across all folders."""
        file = TABLES[name]
        texts = []
        for folder in self.folders:
            if self._from_jsonl(folder):
                rows = self._derive(folder)[0][file]
                texts.append((folder / file, csvs.render(FILES[file], rows)))
            elif (folder / file).is_file():
                texts.append((folder / file, _read_text(folder / file, self._skip)))
        return _parse(FILES[file], texts, self._skip)

    def for_runs(self, run_ids: Iterable[str]) -> Results:
        """Results to read these runs' tables from: run folders are read whole, once, so
        this is all of them; a dataset (analysis.store.query) reads just these runs."""
        return self

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
        rows = [row for folder in self.folders
                for row in (self._derive(folder)[1] if self._from_jsonl(folder)
                            else _measurement_rows(folder, self._skip))]
        df = pd.DataFrame(rows, columns=MEASUREMENT_COLUMNS)
        df["measurement_start_time"] = pd.to_datetime(df["measurement_start_time"], utc=True,
                                                      errors="coerce")
        return df


def load(paths: Iterable[str | Path] | str | Path) -> Results:
    """Read run folders (or folders of run folders) into tidy DataFrames, loaded lazily;
    a dataset folder (`probe analyze ingest`), or a collector's data folder whose dataset
    is complete, is read with `load_dataset`."""
    if isinstance(paths, str | Path):
        paths = [paths]
    paths = [collected.preferred(Path(p)) for p in paths]
    if any(is_dataset(p) for p in paths):
        if len(paths) != 1:
            raise ValueError("give one dataset, or run folders, not both")
        return load_dataset(paths[0])
    return Results(run_folders(paths))


def load_dataset(path: str | Path) -> Results:
    """The same tables from a dataset folder, read with DuckDB (analysis.store.query)."""
    from .store.query import load_dataset as read

    return read(path)


def _run_info(folder: Path, on_skip: OnSkip) -> dict:
    """The fields of run.json the analysis uses; a field of the wrong type is left out
    (and named), an unreadable run.json leaves the folder without any."""
    path = folder / "run.json"
    none = {"run_id": folder.name, "status": None}
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_LINE_BYTES + 1)
    except OSError:
        return none
    text = raw.decode("utf-8", errors="replace")
    info = (jsonl.parse(text) if len(raw) <= MAX_LINE_BYTES
            else f"longer than {MAX_LINE_BYTES} bytes")
    if isinstance(info, str):
        on_skip(Skip(path, 1, info))
        return none
    out = {}
    for field, kind in _RUN_FIELDS.items():
        value = info.get(field)
        if value is None or (isinstance(value, kind) and not isinstance(value, bool)):
            out[field] = value
        else:
            line = text.count("\n", 0, max(text.find(f'"{field}"'), 0)) + 1
            what = "an integer" if kind is int else "a string"
            on_skip(Skip(path, line, f"field {field} is not {what}"))
    return out


def _read_text(path: Path, on_skip: OnSkip) -> str:
    """A CSV file's text; a line longer than MAX_LINE_BYTES becomes a blank line (named),
    so it is never held whole and the other lines keep their numbers."""
    try:
        if path.stat().st_size <= MAX_LINE_BYTES:
            return path.read_bytes().decode("utf-8", errors="replace")
        kept: dict[int, str] = dict(jsonl.lines(path, on_skip))
    except OSError as exc:
        on_skip(Skip(path, 1, f"unreadable ({exc.strerror or exc})"))
        return ""
    last = max(kept, default=0)
    return "".join(kept.get(n, "\n") for n in range(1, last + 1))


def _parse(columns: list[Column], texts: list[tuple[Path, str]], on_skip: OnSkip
           ) -> pd.DataFrame:
    """Parse many CSV texts at once: texts with the same header are joined, then read once.

    Only when that fails or a column comes out of the wrong kind are the texts of that
    header checked line by line, to name and leave out the malformed lines.
    """
    kinds = {c.name: c.kind for c in columns}
    by_header: dict[str, list[tuple[Path, str]]] = {}
    for path, text in texts:
        header, _, body = text.partition("\n")
        if not body.strip():
            continue
        names = next(csv.reader([header]), [])
        unknown = [n for n in names if n not in kinds]
        if unknown or len(set(names)) != len(names) or not names:
            on_skip(Skip(path, 1, f"header is not of {path.name} (columns {unknown[:3]} "
                                  "unknown or repeated); the whole file is left out"))
            continue
        by_header.setdefault(header, []).append((path, body if body.endswith("\n")
                                                 else body + "\n"))
    frames = []
    for header, bodies in by_header.items():
        names = next(csv.reader([header]))
        try:
            frame = _read_csv(names, "".join(body for _, body in bodies), kinds)
        except (ValueError, csv.Error):  # pandas' ParserError is a ValueError
            frame = None
        if frame is None or _wrong_kind(frame, kinds):
            text = "".join(_good_lines(path, names, body, kinds, on_skip)
                           for path, body in bodies)
            frame = _coerce(_read_csv(names, text, kinds), kinds)
        frames.append(frame)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="string" if c in _STRINGS else "float64")
                             for c in kinds})
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    for name in kinds:
        if name not in df:  # a file of an older format, without this column
            df[name] = pd.Series(pd.NA if name in _STRINGS else float("nan"), index=df.index,
                                 dtype="string" if name in _STRINGS else "float64")
    if "measurement_start_time" in df:
        df["measurement_start_time"] = pd.to_datetime(df["measurement_start_time"], utc=True,
                                                      errors="coerce")
    return df


def _read_csv(names: list[str], text: str, kinds: dict[str, str]) -> pd.DataFrame:
    dtype = {c: "string" for c in names if c in _STRINGS}
    na = {c: [""] + (_NOT_FINITE if kinds[c] == "number" else []) for c in names}
    return pd.read_csv(io.StringIO(text), names=names, header=None, dtype=dtype,
                       true_values=["true"], false_values=["false"], keep_default_na=False,
                       na_values=na, engine="c")


def _wrong_kind(frame: pd.DataFrame, kinds: dict[str, str]) -> bool:
    """Whether a column holds values its kind does not allow (pandas fell back to text), or
    a row lacks one of its keys."""
    if any(frame[k].isna().any() for k in _KEYS if k in frame):
        return True
    for name in frame.columns:
        col = frame[name]
        if kinds[name] == "number" and col.dtype.kind not in "iuf":
            return True
        if kinds[name] == "bool" and col.dtype.kind != "b" and not all(
                isinstance(v, bool) for v in col.dropna()):
            return True
    return False


def _coerce(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Numbers as floats whatever pandas inferred (e.g. integers too long for int64)."""
    for name in frame.columns:
        if kinds[name] == "number" and frame[name].dtype.kind not in "iuf":
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    return frame


def _good_lines(path: Path, names: list[str], body: str, kinds: dict[str, str],
                on_skip: OnSkip) -> str:
    """The rows of a CSV body whose cells fit their columns, written anew by the csv module
    (so pandas reads exactly what was checked); the others are named and left out."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    checks = [_CELL_OK[kinds[n]] for n in names]
    reader = csv.reader(io.StringIO(body))
    line = 1  # the header's
    while True:
        start = line + 1
        try:
            row = next(reader)
        except StopIteration:
            return out.getvalue()
        except csv.Error as exc:
            on_skip(Skip(path, start, f"not CSV ({exc})"))
            line = reader.line_num + 1
            continue
        line = reader.line_num + 1
        if not row:
            continue
        if len(row) != len(names):
            on_skip(Skip(path, start, f"{len(row)} cells, the header has {len(names)}"))
        elif missing := next((k for k, c in zip(names, row, strict=True)
                              if k in _KEYS and not c), None):
            on_skip(Skip(path, start, f"no {missing}"))
        elif bad := next((n for n, c, ok in zip(names, row, checks, strict=True)
                          if c and not ok(c)), None):
            on_skip(Skip(path, start, f"column {bad} is not a {kinds[bad]}"
                                      if kinds[bad] != "text" else f"column {bad} holds a NUL"))
        else:
            writer.writerow(row)


def _measurement_rows(folder: Path, on_skip: OnSkip) -> list[dict]:
    """The measurement table's rows of a folder whose tables come from its CSVs: from each
    line's envelope and final keys only (see `_envelope`)."""
    path = folder / "measurements.jsonl"
    if not path.is_file():
        return []
    out = []
    for lineno, line in jsonl.lines(path, on_skip):
        m = _envelope(line)
        why = m if isinstance(m, str) else csvs.problem(m)
        if why is None:
            out.append(_measurement_row(m))
        else:
            on_skip(Skip(path, lineno, why))
    return out


def _measurement_row(m: dict) -> dict:
    target = identity.target(m) or {}
    keys = m.get("test_keys") or {}
    return {
        "run_id": identity.field(m, "run_id"),
        "measurement_id": identity.field(m, "measurement_id"),
        "measurement_start_time": m.get("measurement_start_time"),
        "repetition": identity.field(m, "repetition"),
        "experiment": identity.field(m, "experiment"),
        "target": target.get("name"), "family": target.get("family"),
        "kind": target.get("kind"), "url": target.get("url"),
        "host": target.get("host"), "sni": target.get("sni"),
        "pair": target.get("pair"), "connect_to": target.get("connect_to"),
        "address": keys.get("address"), "failure": keys.get("failure"),
    }


def _envelope(line: str) -> dict | str:
    """The envelope and the final test keys of one JSON line, without parsing the samples,
    or why the line is not JSON.

    The runner writes `test_keys` last and, inside it, `address`, `dns_consistency`,
    `failure` and `target` after the bulky lists; anything else is parsed whole (also
    when the tail found this way does not parse).
    """
    head_end = line.find(',"test_keys":')
    tail_start = line.rfind('"dns_consistency":')
    address = line.rfind('"address":', 0, tail_start) if tail_start > 0 else -1
    if address > head_end:
        tail_start = address
    if head_end > 0 and tail_start > head_end:
        head = jsonl.parse(line[:head_end] + "}")
        tail = jsonl.parse("{" + line[tail_start:].rstrip()[:-1])
        if isinstance(head, dict) and isinstance(tail, dict):
            head["test_keys"] = tail
            return head
    return jsonl.parse(line)
