"""The campaign-scale analysis store: run folders ingested once into a Parquet dataset.

A dataset folder holds one sub-folder per table (`runs`, `measurements`, `transfers`,
`samples`, `tcpinfo`, `dns`, `tls`, `tcp`, `verdicts`, `skipped`), each partitioned
Hive-style by `day`, `cc` and `asn`; `dataset.json` marks the folder and stamps the
verdict rules, and `batches/` records which runs are in (docs/data-format.md, "Analysis
dataset"). Modules: `layout` (paths, marker, batch records), `schema` (column types),
`derive` (one batch of run folders into tables), `ingest` (plan, write, commit,
recompute), `distributed` (Dask), `query` (DuckDB), `command` (`probe analyze ingest`).
"""
