"""One batch of runs turned into the dataset's tables, with everything derived once.

This is the per-run work an ingest spreads over workers: it reads run folders (or,
to re-derive under new rules, a dataset's own tables of some runs), computes each
transfer's steady rate and signature and each run's verdicts, and returns Arrow
tables tagged with every row's network and partition. It writes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from probe.results import jsonl
from probe.results.jsonl import MAX_LINE_BYTES

from .. import collected
from ..load import TABLES, Results, _run_info
from ..verdicts import transfer_table, verdicts
from .schema import PARTITION, UNKNOWN, to_arrow

_CC = re.compile(r"[A-Z]{2}")
_ASN = re.compile(r"AS\d{1,10}")


@dataclass(frozen=True)
class RunKey:
    """Where a run's rows go: its id, partition and network (aggregate.py's key)."""

    folder: str
    run_id: str
    day: str
    cc: str
    asn: str
    network: str


def run_keys(folders: list[Path]) -> list[RunKey]:
    """The key of each run folder, from its run.json read as `analysis.load` reads it (of a
    collector's archive file, from its first measurement's envelope).

    A value that cannot name a folder safely (an ASN not `AS<digits>`, a country not two
    capital letters) is partitioned under OONI's "unknown" (`AS0`, `ZZ`); the network
    column keeps the run's own value.
    """
    infos = [collected.run_info(f, lambda skip: None) if collected.is_archive_file(f)
             else _run_info(f, lambda skip: None) for f in folders]
    starts = pd.to_datetime(pd.Series([i.get("start") for i in infos], dtype=object),
                            utc=True, errors="coerce", format="ISO8601")
    days = starts.dt.strftime("%Y-%m-%d").fillna(UNKNOWN["day"]).tolist()
    keys = []
    for folder, info, day in zip(folders, infos, days, strict=True):
        asn, label = info.get("asn"), info.get("label")
        network = asn if asn is not None else label if label is not None else "unlabelled"
        cc = info.get("cc") if collected.is_archive_file(folder) else _country(folder)
        keys.append(RunKey(str(folder), info.get("run_id") or folder.name, day,
                           cc if cc and _CC.fullmatch(cc) else UNKNOWN["cc"],
                           asn if asn and _ASN.fullmatch(asn) else UNKNOWN["asn"], network))
    return keys


def _country(folder: Path) -> str | None:
    """run.json's `network.cc` (only with --asn-db), if it is a string."""
    try:
        with open(folder / "run.json", "rb") as f:
            raw = f.read(MAX_LINE_BYTES + 1)
    except OSError:
        return None
    info = jsonl.parse(raw.decode("utf-8", errors="replace"))
    network = info.get("network") if isinstance(info, dict) else None
    cc = network.get("cc") if isinstance(network, dict) else None
    return cc if isinstance(cc, str) else None


def derive(keys: list[RunKey]) -> dict[str, pa.Table]:
    """The tables of these run folders, derived values included (a worker's task)."""
    return tables(Results([Path(k.folder) for k in keys]), keys)


def tables(r: Results, keys: list[RunKey]) -> dict[str, pa.Table]:
    """Every table of `r`, with transfer rates and signatures and the runs' verdicts,
    each row tagged with its run's network and partition."""
    frames = {name: getattr(r, name) for name in TABLES}  # each read once, kept by r
    frames["runs"] = r.runs
    frames["measurements"] = r.measurements
    frames.update(judged(r))
    run_of = {Path(k.folder).resolve(): k.run_id for k in keys}
    frames["skipped"] = pd.DataFrame(
        [{"run_id": run_of.get(s.path.resolve(), run_of.get(s.path.parent.resolve())),
          "path": str(s.path), "line": s.line,
          "reason": s.reason} for s in r.skipped],
        columns=["run_id", "path", "line", "reason"])
    return tag(frames, keys)


def judged(r: Results) -> dict[str, pd.DataFrame]:
    """What the verdict rules derive: transfers with their rate and signature, and the
    verdicts (the tables a change of rules re-derives)."""
    features = transfer_table(r)
    tr = r.transfers.copy()
    for col in ("rate_kbps", "signature"):  # one feature row per transfer row, in order
        tr[col] = features[col].to_numpy() if len(features) else np.array([], dtype=object)
    return {"transfers": tr, "verdicts": verdicts(r)}


def tag(frames: dict[str, pd.DataFrame], keys: list[RunKey]) -> dict[str, pa.Table]:
    """Each frame as an Arrow table of the dataset's schema, rows tagged by run."""
    by_run = {k.run_id: k for k in keys}
    return {name: to_arrow(_tag(df, by_run), name) for name, df in frames.items()}


def _tag(df: pd.DataFrame, by_run: dict[str, RunKey]) -> pd.DataFrame:
    """`df` with its rows' network and partition columns, looked up by run id (a row of a
    run not in the batch: network unknown, partition unknown)."""
    ids = df["run_id"].astype(object)
    df = df.copy()
    df["network"] = ids.map({i: k.network for i, k in by_run.items()})
    for col in PARTITION:
        df[col] = ids.map({i: getattr(k, col) for i, k in by_run.items()}).fillna(UNKNOWN[col])
    return df
