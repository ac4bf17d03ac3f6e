"""Ingest over a real `dask.distributed` cluster (a scheduler and two worker processes)
builds the same dataset as an ingest in this process."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import analysis
from analysis.store.distributed import cluster
from analysis.store.ingest import ingest
from tests.fixtures_campaign import write_campaign

pytestmark = pytest.mark.timeout(180)
TABLES = ("runs", "measurements", "transfers", "samples", "tcpinfo", "dns", "tls", "tcp")


def _rows(path: Path, name: str) -> pd.DataFrame:
    r = analysis.load_dataset(path)
    df = r.stored_verdicts() if name == "verdicts" else getattr(r, name)
    return df.sort_values(list(df.columns[:3]) if name != "runs" else ["run_id"],
                          ignore_index=True)


def test_dask_dataset_equals_the_local_one(tmp_path: Path) -> None:
    from distributed import LocalCluster, Nanny

    runs = write_campaign(tmp_path / "runs")
    local = ingest([runs], tmp_path / "local", batch_runs=2)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as dask_cluster:
        assert all(isinstance(w, Nanny) for w in dask_cluster.workers.values())  # processes
        with cluster(scheduler=dask_cluster.scheduler_address) as mapper:  # --scheduler
            done = ingest([runs], tmp_path / "dask", batch_runs=1, mapper=mapper)
        assert len(dask_cluster.scheduler_info["workers"]) == 2
    assert done.total == local.total == 5 and done.batches == 5
    for name in ("verdicts", *TABLES):
        a, b = _rows(tmp_path / "local", name), _rows(tmp_path / "dask", name)
        if name == "verdicts":
            a["controls"], b["controls"] = a["controls"].map(tuple), b["controls"].map(tuple)
        pd.testing.assert_frame_equal(b, a, obj=name)
