"""Answers from a dataset with DuckDB (embedded, no server), and `analysis.load`'s
tables read back from it.

Every read names the committed files (layout.py) rather than globbing the folders, so
files a killed ingest left behind are never read. Partition values come from the
paths (Hive style) as text: `day` is `YYYY-MM-DD` or `unknown`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from probe.names import SERVICES
from probe.results.jsonl import Skip
from probe.results.schema import FILES

from ..aggregate import COLUMNS as AGGREGATE_COLUMNS
from ..load import MEASUREMENT_COLUMNS, RUN_COLUMNS, TABLES, Results
from ..verdicts import FIELDS
from .layout import Batch, Dataset
from .schema import PARTITION, SCHEMAS, UNKNOWN

FAILED = ("blocked", "dns-tampered", "tls-tampered")
# The families whose targets the per-day figures count, as an SQL list (names of our own).
_SERVICE_FAMILIES = "(" + ", ".join(f"'{f}'" for f in SERVICES) + ")"
# Every file of a table has the table's schema (schema.py), so DuckDB need not read every
# file's footer first to unite them.
_SCAN = "read_parquet($files, hive_partitioning=true, hive_types_autocast=false)"


def connect():  # noqa: ANN201 - duckdb's connection type, imported lazily
    """A DuckDB connection that reads times in UTC."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")  # never on a command's output
    return con


def frame(ds: Dataset, table: str, columns: Iterable[str] | None = None,
          batches: Iterable[Batch] | None = None, where: str = "", order: str = "",
          params: dict | None = None) -> pd.DataFrame:
    """Rows of one table (all committed batches, or `batches`) as a DataFrame."""
    cols = list(columns) if columns is not None else SCHEMAS[table].names + list(PARTITION)
    files = ds.files(table, batches)
    if not files:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    stored = _stored_columns(files)
    sql = (f"SELECT {', '.join(_selected(c, stored) for c in cols)} FROM {_SCAN}"
           + (f" WHERE {where}" if where else "") + (f" ORDER BY {order}" if order else ""))
    return connect().execute(sql, {"files": files, **(params or {})}).df()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _selected(name: str, stored: set[str]) -> str:
    """A column of the files, or null for one added since they were written (a dataset of
    older verdict rules reads until `ingest --recompute` re-derives it)."""
    return _quote(name) if name in stored else f"NULL AS {_quote(name)}"


def _stored_columns(files: list[str]) -> set[str]:
    described = connect().execute(f"SELECT * FROM {_SCAN} LIMIT 0", {"files": files})
    return {d[0] for d in described.description}


_VERDICT_ORDER = "run_id, experiment, target, direction"


def verdicts(ds: Dataset) -> pd.DataFrame:
    """The stored verdict rows (verdicts.FIELDS), by run, experiment, target, direction."""
    df = frame(ds, "verdicts", FIELDS, order=_VERDICT_ORDER)
    df["controls"] = [list(v) if v is not None else [] for v in df["controls"]]
    return df


def verdicts_csv(ds: Dataset, out: BinaryIO) -> None:
    """The stored verdict rows as the CSV `probe analyze verdicts --format csv` prints for
    run folders (pandas' layout: `;`-joined controls, empty cells for nulls), written by
    DuckDB: a campaign's million rows in seconds, never as Python objects."""
    files = ds.files("verdicts")
    if not files:
        out.write((",".join(FIELDS) + "\n").encode())
        return
    stored = _stored_columns(files)
    cols = ", ".join("array_to_string(controls, ';') AS controls" if f == "controls"
                     else _selected(f, stored) for f in FIELDS)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "verdicts.csv")
        connect().execute(f"COPY (SELECT {cols} FROM {_SCAN} ORDER BY {_VERDICT_ORDER}) "
                          f"TO '{path}' (HEADER, DELIMITER ',')", {"files": files})
        with open(path, "rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)


def aggregate(ds: Dataset) -> pd.DataFrame:
    """aggregate.aggregate's table, computed by DuckDB from the stored verdicts."""
    files = ds.files("verdicts")
    if not files:
        return pd.DataFrame(columns=AGGREGATE_COLUMNS)
    count = "count(*) FILTER (WHERE verdict = '{}')"
    sql = f"""
        SELECT network, day, family AS service, count(DISTINCT run_id) AS runs,
               count(*) AS targets,
               {count.format('throttled')} AS throttled, {count.format('ok')} AS ok,
               {count.format('inconclusive')} AS inconclusive,
               count(*) FILTER (WHERE verdict IN {FAILED}) AS failed,
               median(rate_kbps) FILTER (WHERE verdict = 'throttled') AS median_throttled_kbps
        FROM {_SCAN}
        WHERE experiment = 'target' AND family IN {_SERVICE_FAMILIES} AND network IS NOT NULL
        GROUP BY network, day, family ORDER BY network, day, service"""
    df = connect().execute(sql, {"files": files}).df()
    judged = df["throttled"] + df["ok"]
    df["share_throttled"] = (df["throttled"] / judged).where(judged > 0)
    return df[AGGREGATE_COLUMNS].astype(object).where(df[AGGREGATE_COLUMNS].notna(), None)


def skipped(ds: Dataset, batches: Iterable[Batch] | None = None) -> list[Skip]:
    """The malformed lines ingest left out (named on its standard error then)."""
    df = frame(ds, "skipped", ["path", "line", "reason"], batches)
    return [Skip(Path(p), int(n), str(why)) for p, n, why in df.itertuples(index=False)]


CAMPAIGN_COLUMNS = ["network", "day", "service", "runs", "judged", "throttled", "share_throttled",
                    "ci_low", "ci_high", "median_throttled_kbps"]
Z95 = 1.959964


def campaign(ds: Dataset) -> pd.DataFrame:
    """Per network, day and service, over service targets of the main experiment: the runs behind
    the figures, targets judged ok or throttled, the throttled share with its 95 % Wilson
    interval (honest for a handful of runs, unlike share +- 2 standard errors), and the
    median throttled rate."""
    files = ds.files("verdicts")
    if not files:
        return pd.DataFrame(columns=CAMPAIGN_COLUMNS)
    sql = f"""
        SELECT network, day, family AS service, count(DISTINCT run_id) AS runs,
               count(*) FILTER (WHERE verdict IN ('ok', 'throttled')) AS judged,
               count(*) FILTER (WHERE verdict = 'throttled') AS throttled,
               median(rate_kbps) FILTER (WHERE verdict = 'throttled') AS median_throttled_kbps
        FROM {_SCAN}
        WHERE experiment = 'target' AND family IN {_SERVICE_FAMILIES} AND network IS NOT NULL
        GROUP BY network, day, family ORDER BY network, day, service"""
    df = connect().execute(sql, {"files": files}).df()
    n = df["judged"].astype(float)
    share = (df["throttled"] / n).where(n > 0)
    centre = (share + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * np.sqrt(share * (1 - share) / n + Z95**2 / (4 * n**2)) / (1 + Z95**2 / n)
    df["share_throttled"], df["ci_low"], df["ci_high"] = share, centre - half, centre + half
    return df[CAMPAIGN_COLUMNS]


class StoredResults(Results):
    """`analysis.load`'s tables, read from a dataset (all its runs, or some batches').

    Columns are the same as from run folders; numbers are float64 throughout (the
    dataset's schema), and `runs.asn` is None where the partition says `AS0`.
    """

    def __init__(self, ds: Dataset, batches: list[Batch] | None = None,
                 run_ids: set[str] | None = None) -> None:
        # Results.__init__ reads run folders; here every table comes from the dataset.
        self.dataset = ds
        self.folders = []
        self._batches = ds.batches if batches is None else batches
        self._run_ids = run_ids
        self.skipped = skipped(ds, self._batches)

    def _read(self, table: str, columns: list[str]) -> pd.DataFrame:
        where, params = "", None
        if self._run_ids is not None:
            where, params = "list_contains($runs, run_id)", {"runs": sorted(self._run_ids)}
        return frame(self.dataset, table, columns, self._batches, where, params=params)

    def for_runs(self, run_ids: Iterable[str]) -> StoredResults:
        """Only these runs: their batches' files, filtered by run id."""
        ids = set(map(str, run_ids))
        return StoredResults(self.dataset, [b for b in self._batches if ids & set(b.runs)], ids)

    def table(self, name: str) -> pd.DataFrame:
        columns = FILES[TABLES[name]]
        df = self._read(name, [c.name for c in columns])
        for c in columns:
            if c.name == "measurement_start_time":
                df[c.name] = _utc(df[c.name])
            elif c.kind == "text":
                df[c.name] = df[c.name].astype("string")
            elif c.kind == "number":
                df[c.name] = pd.to_numeric(df[c.name]).astype("float64")
            elif c.kind == "bool" and df[c.name].isna().any():
                # as read from a CSV: True/False objects, NaN where the cell is empty
                df[c.name] = df[c.name].astype(object).where(df[c.name].notna(), np.nan)
        return df

    @cached_property
    def runs(self) -> pd.DataFrame:
        df = self._read("runs", [c for c in RUN_COLUMNS if c != "asn"] + ["asn"])
        df["asn"] = df["asn"].where(df["asn"] != UNKNOWN["asn"], None)
        for col in ("start", "end"):
            df[col] = _utc(df[col])
        for col in ("measurements", "targets"):  # as pandas infers them from run.json
            df[col] = df[col].astype("float64" if df[col].isna().any() else "int64")
        return df[RUN_COLUMNS]

    @cached_property
    def measurements(self) -> pd.DataFrame:
        df = self._read("measurements", MEASUREMENT_COLUMNS)
        df["measurement_start_time"] = _utc(df["measurement_start_time"])
        return df

    def stored_verdicts(self) -> pd.DataFrame:
        """The verdict rows stored at ingest (no samples read)."""
        df = self._read("verdicts", FIELDS).sort_values(
            ["run_id", "experiment", "target", "direction"], ignore_index=True)
        df["controls"] = [list(v) if v is not None else [] for v in df["controls"]]
        return df

    def stored_transfers(self) -> pd.DataFrame:
        """`verdicts.transfer_table`'s rows from the rates and signatures stored at ingest."""
        cols = ["run_id", "transfer_id", "target", "family", "kind", "experiment",
                "direction", "sni", "bytes", "goodput_kbps", "rate_kbps", "signature",
                "measurement_start_time"]
        df = self._read("transfers", cols)
        df["measurement_start_time"] = _utc(df["measurement_start_time"])
        return df


def _utc(col: pd.Series) -> pd.Series:
    """Times as `analysis.load` gives them: UTC, in nanoseconds."""
    return pd.to_datetime(col, utc=True).dt.as_unit("ns")


def load_dataset(path: str | Path) -> StoredResults:
    """The tables of a dataset folder, as `analysis.load` gives them for run folders."""
    return StoredResults(Dataset(path))
