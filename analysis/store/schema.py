"""Column types of every table in the dataset, fixed so that every file agrees.

pandas infers a column's type from the values of one batch (a count without a missing
value becomes int64, with one float64); files of one table written from different
batches must share a schema, so every frame is cast to the schema here before writing.
Numbers of the CSV tables are float64, as the CSVs do not say which are integers.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from probe.results.schema import FILES

from ..load import MEASUREMENT_COLUMNS, RUN_COLUMNS, TABLES
from ..verdicts import FIELDS

# Hive partition keys, in path order; they are not stored inside the files.
PARTITION = ("day", "cc", "asn")
UNKNOWN = {"day": "unknown", "cc": "ZZ", "asn": "AS0"}  # OONI's spelling of "not known"
_TIME = pa.timestamp("us", tz="UTC")
_KIND = {"number": pa.float64(), "bool": pa.bool_(), "text": pa.string()}


def _csv_schema(file: str) -> list[pa.Field]:
    return [pa.field(c.name, _TIME if c.name == "measurement_start_time" else _KIND[c.kind])
            for c in FILES[file]]


_VERDICT_TYPES = {"rate_kbps": pa.float64(), "control_rate_kbps": pa.float64(),
                  "ratio": pa.float64(), "ci_low": pa.float64(), "ci_high": pa.float64(),
                  "p_value": pa.float64(), "transport_ratio": pa.float64(),
                  "repetitions": pa.int64(),
                  "controls": pa.list_(pa.string())}
_RUN_TYPES = {"start": _TIME, "end": _TIME, "measurements": pa.int64(), "targets": pa.int64()}
_MEASUREMENT_TYPES = {"measurement_start_time": _TIME, "repetition": pa.float64()}
# Every row also carries the network it was measured on (aggregate.py's key: the run's
# ASN, else its label, else "unlabelled"); day, cc and asn come from the partition path.
_NETWORK = pa.field("network", pa.string())

# A transfer's steady-state rate and signature, computed once at ingest (transfer_table).
_FEATURES = {"transfers": [pa.field("rate_kbps", pa.float64()), pa.field("signature", pa.string())]}

SCHEMAS: dict[str, pa.Schema] = {
    **{name: pa.schema(_csv_schema(file) + _FEATURES.get(name, []) + [_NETWORK])
       for name, file in TABLES.items()},
    "runs": pa.schema([pa.field(c, _RUN_TYPES.get(c, pa.string())) for c in RUN_COLUMNS
                       if c != "asn"] + [_NETWORK]),
    "measurements": pa.schema([pa.field(c, _MEASUREMENT_TYPES.get(c, pa.string()))
                               for c in MEASUREMENT_COLUMNS] + [_NETWORK]),
    "verdicts": pa.schema([pa.field(c, _VERDICT_TYPES.get(c, pa.string())) for c in FIELDS]
                          + [_NETWORK]),
    "skipped": pa.schema([pa.field("run_id", pa.string()), pa.field("path", pa.string()),
                          pa.field("line", pa.int64()), pa.field("reason", pa.string()),
                          _NETWORK]),
}
TABLE_NAMES = tuple(SCHEMAS)


def to_arrow(df: pd.DataFrame, name: str) -> pa.Table:
    """`df` cast column by column to table `name`'s schema; a missing column is all null.

    The partition columns (`day`, `cc`, `asn`) are kept for the writer to split on.
    """
    schema = SCHEMAS[name]
    arrays, fields = [], []
    for f in schema:
        arrays.append(_column(df[f.name], f.type) if f.name in df
                      else pa.nulls(len(df), f.type))
        fields.append(f)
    for key in PARTITION:
        arrays.append(pa.array(df[key].astype(str).to_numpy(), pa.string()))
        fields.append(pa.field(key, pa.string()))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _column(col: pd.Series, kind: pa.DataType) -> pa.Array:
    if pa.types.is_floating(kind):
        return pa.array(pd.to_numeric(col, errors="coerce").astype("float64"), kind,
                        from_pandas=True)
    if pa.types.is_integer(kind):
        return pa.array(pd.to_numeric(col, errors="coerce").astype("Int64"), kind)
    if pa.types.is_boolean(kind):
        return pa.array(col.astype("boolean"), kind)
    if pa.types.is_timestamp(kind):
        return pa.array(pd.to_datetime(col, utc=True, errors="coerce"), kind)
    if pa.types.is_list(kind):
        return pa.array([list(v) if isinstance(v, list | tuple) else None for v in col], kind)
    return pa.array(col.astype("string"), kind)
