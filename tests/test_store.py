"""The Parquet dataset: ingest (incremental, crash-safe, re-derivable) and answers from it
equal to the answers from the run folders it was made of."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

import analysis
from analysis import report
from analysis.cli import analyze
from analysis.store import rules
from analysis.store.ingest import ingest
from analysis.store.layout import BATCHES, Dataset, DatasetError
from analysis.store.query import StoredResults
from tests.fixtures_campaign import write_campaign

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_campaign(tmp_path_factory.mktemp("campaign") / "runs")


@pytest.fixture(scope="module")
def dataset(runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("store") / "ds"
    ingest([runs], out, batch_runs=2)
    return out


def _json(*args: str) -> list[dict]:
    result = CliRunner().invoke(analyze, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _sorted(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def test_verdicts_from_the_dataset_equal_those_from_the_folders(runs: Path,
                                                                dataset: Path) -> None:
    from_folders = _json("verdicts", str(runs))
    from_dataset = _json("verdicts", str(dataset))
    assert len(from_folders) == 7
    assert {r["verdict"] for r in from_folders} >= {"throttled", "dns-tampered"}
    assert _sorted(from_dataset) == _sorted(from_folders)  # row by row, every field
    csvs = [CliRunner().invoke(analyze, ["verdicts", str(src), "--format", "csv"]).stdout
            for src in (runs, dataset)]  # the dataset's is written by DuckDB
    assert csvs[0].splitlines()[0] == csvs[1].splitlines()[0]
    assert sorted(csvs[0].splitlines()) == sorted(csvs[1].splitlines())


def test_aggregate_from_the_dataset_equals_the_folders(runs: Path, dataset: Path) -> None:
    from_folders = _json("aggregate", str(runs))
    from_dataset = _json("aggregate", str(dataset))
    assert [(r["network"], r["day"]) for r in from_dataset] == [
        (r["network"], r["day"]) for r in from_folders]
    for a, b in zip(from_dataset, from_folders, strict=True):
        assert a == pytest.approx(b)
    assert {r["network"] for r in from_dataset} == {"AS12389", "AS8359", "home-dsl",
                                                     "unlabelled"}


def test_report_from_the_dataset_is_the_folders_report(runs: Path, dataset: Path,
                                                       tmp_path: Path) -> None:
    for name, src in (("a", dataset), ("b", runs)):
        result = CliRunner().invoke(analyze, ["report", str(src), "-o",
                                              str(tmp_path / f"{name}.html")])
        assert result.exit_code == 0, result.output
        assert "skipped 1 malformed line(s) in 1 file(s)" in result.stderr
    a = (tmp_path / "a.md").read_text()
    b = (tmp_path / "b.md").read_text().replace("b-", "a-")
    # The folders' report, rows ordered by run id, and the campaign's section on top.
    before, _, rest = a.partition("## Per network and day")
    section, rest = rest[:rest.index("## Verdicts")], rest[rest.index("## Verdicts"):]
    assert sorted((before + rest).splitlines()) == sorted(b.splitlines())
    assert "1 malformed line(s)" in a
    assert "| AS12389 | 2021-03-12 | twitter | 2 | 3 | 3 | 1 | 0.439 | 1 | 139 |" in section


def test_a_campaign_report_stays_small(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(report, "MAX_VERDICT_ROWS", 3)
    result = CliRunner().invoke(analyze, ["report", str(dataset), "-o",
                                          str(tmp_path / "c.html")])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "c.md").read_text()
    assert "7 verdicts are too many to list here" in md and "| twitter-image |" not in md
    html = (tmp_path / "c.html").read_text()
    assert "<h2>Per network and day</h2>" in html and "too many to list" in html


def test_load_gives_the_same_tables_from_a_dataset(runs: Path, dataset: Path) -> None:
    folders, stored = analysis.load(runs), analysis.load(dataset)
    assert isinstance(stored, StoredResults)
    for name in ("transfers", "samples", "tcpinfo", "dns", "tls", "tcp", "measurements",
                 "runs"):
        a, b = getattr(folders, name), getattr(stored, name)
        assert list(b.columns) == list(a.columns), name
        key = [c for c in ("run_id", "measurement_id", "transfer_id", "t_ms", "hostname")
               if c in a.columns]
        a = a.sort_values(key, ignore_index=True)
        b = b.sort_values(key, ignore_index=True)
        if name == "runs":
            a, b = a.drop(columns="folder"), b.drop(columns="folder")
        pd.testing.assert_frame_equal(b, a, check_dtype=False, check_exact=False,
                                      obj=name)
    assert [(s.line, s.reason) for s in stored.skipped] == [
        (s.line, s.reason) for s in folders.skipped] and len(stored.skipped) == 1


def test_rates_and_signatures_are_stored_once(runs: Path, dataset: Path) -> None:
    stored = analysis.load_dataset(dataset).stored_transfers()
    fresh = analysis.verdicts.transfer_table(analysis.load(runs))
    merged = stored.merge(fresh, on="transfer_id", suffixes=("", "_fresh"))
    assert len(merged) == len(fresh) > 0
    assert merged["rate_kbps"].equals(merged["rate_kbps_fresh"].astype(float))
    assert (merged["signature"].fillna("") == merged["signature_fresh"].fillna("")).all()


def test_partitions_and_plain_duckdb_and_pandas(dataset: Path) -> None:
    parts = {p.relative_to(dataset / "verdicts").parent.as_posix()
             for p in (dataset / "verdicts").rglob("*.parquet")}
    assert "day=2021-03-12/cc=RU/asn=AS12389" in parts
    assert "day=2021-03-13/cc=ZZ/asn=AS0" in parts  # the label-only network
    # What docs/data-format.md shows a researcher: no code of ours needed.
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{dataset}/verdicts/**/*.parquet', "
                   "hive_partitioning=true) WHERE verdict = 'throttled'").fetchall()[0][0]
    assert n >= 2
    df = pd.read_parquet(dataset / "transfers")
    assert {"rate_kbps", "signature", "network", "day", "asn"} <= set(df.columns)
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["verdict_rules"] == rules.version() and meta["partitioning"] == [
        "day", "cc", "asn"]


def test_ingest_is_incremental_by_run_id(runs: Path, tmp_path: Path) -> None:
    some = tmp_path / "some"
    some.mkdir()
    folders = sorted(p for p in runs.iterdir() if p.is_dir())
    for f in folders[:2]:
        shutil.copytree(f, some / f.name)
    first = ingest([some], tmp_path / "ds")
    assert (first.ingested, first.present) == (2, 0)
    again = ingest([runs], tmp_path / "ds")
    assert (again.ingested, again.present, again.total) == (len(folders) - 2, 2, len(folders))
    assert ingest([runs], tmp_path / "ds").ingested == 0


def test_a_killed_ingest_leaves_a_valid_dataset_and_resumes(runs: Path, tmp_path: Path,
                                                            monkeypatch) -> None:
    commits = 0
    real = Dataset.commit

    def killed_after_the_first_batch(self: Dataset, batch) -> None:  # noqa: ANN001
        nonlocal commits
        if commits == 1:  # the second batch's files are in place, its record is not
            raise KeyboardInterrupt
        commits += 1
        real(self, batch)

    monkeypatch.setattr(Dataset, "commit", killed_after_the_first_batch)
    with pytest.raises(KeyboardInterrupt):
        ingest([runs], tmp_path / "ds", batch_runs=2)
    monkeypatch.undo()
    ds = Dataset(tmp_path / "ds")
    assert len(ds.run_ids()) == 2
    rows = _json("verdicts", str(tmp_path / "ds"))  # the stray files are not read
    assert {r["run_id"] for r in rows} <= ds.run_ids()
    done = ingest([runs], tmp_path / "ds", batch_runs=2)
    assert done.removed > 0 and done.total == len([p for p in runs.iterdir() if p.is_dir()])
    assert _sorted(_json("verdicts", str(tmp_path / "ds"))) == _sorted(
        _json("verdicts", str(runs)))


def test_a_change_of_rules_is_re_derived_from_the_dataset(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    ingest([runs], out, batch_runs=3)
    before = _sorted(_json("verdicts", str(out)))
    ds = Dataset(out)
    for path in (out / BATCHES).glob("*.json"):  # as if written by other rules
        path.write_text(path.read_text().replace(rules.version(), "older-rules"))
    ds.stamp("older-rules")
    result = CliRunner().invoke(analyze, ["verdicts", str(out)])
    assert result.exit_code == 0 and "--recompute" in result.stderr
    with pytest.raises(DatasetError, match="--recompute"):
        ingest([runs], out)
    old_files = set(Dataset(out).files("verdicts"))
    done = ingest([runs], out, recompute=True)
    assert done.recomputed == 2 and done.ingested == 0
    assert not old_files & set(Dataset(out).files("verdicts"))
    assert not any(Path(f).exists() for f in old_files)
    assert Dataset(out).verdict_rules == rules.version()
    assert _sorted(_json("verdicts", str(out))) == before


def test_cli_ingest_and_bad_input(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    result = CliRunner().invoke(analyze, ["ingest", str(runs), "--into", str(out)])
    assert result.exit_code == 0, result.output
    assert "ingested 5 run(s) in 1 batch(es)" in result.stdout
    result = CliRunner().invoke(analyze, ["ingest", str(out), "--into", str(tmp_path / "x")])
    assert result.exit_code == 2 and "a dataset, not run folders" in result.stderr
    result = CliRunner().invoke(analyze, ["verdicts", str(out), str(runs)])
    assert result.exit_code == 2 and "not both" in result.stderr
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    result = CliRunner().invoke(analyze, ["ingest", str(runs), "--into", str(busy)])
    assert result.exit_code == 2 and "not a dataset" in result.stderr


def test_an_empty_dataset_answers_with_no_rows(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    ingest([empty], tmp_path / "ds")
    assert _json("verdicts", str(tmp_path / "ds")) == []
    assert _json("aggregate", str(tmp_path / "ds")) == []


def test_a_run_s_report_from_the_dataset_is_its_folder_s(runs: Path, dataset: Path,
                                                          tmp_path: Path) -> None:
    all_runs = list(StoredResults(Dataset(dataset)).runs["run_id"])
    run_id, others = all_runs[0], all_runs[1:]
    for name, src in (("a", dataset), ("b", runs)):
        result = CliRunner().invoke(analyze, ["report", str(src), "--run", run_id, "-o",
                                              str(tmp_path / f"{name}.html")])
        assert result.exit_code == 0, result.output
    a, b = (tmp_path / "a.md").read_text(), (tmp_path / "b.md").read_text()
    rows = [line for line in a.splitlines() if line.startswith("| ") and run_id in line]
    assert rows and all(line in b for line in rows)
    assert others and not any(other in a for other in others)  # that run's rows only
    result = CliRunner().invoke(analyze, ["report", str(dataset), "--run", "nope", "-o",
                                          str(tmp_path / "c.html")])
    assert result.exit_code == 2 and "no run 'nope'" in result.output


def test_the_transport_columns_survive_the_dataset(tmp_path: Path) -> None:
    """A run with HTTP/3 fetches: its verdict rows' transport, QUIC/TCP ratio and line
    across transports come back from the dataset as they were judged."""
    from tests.fixtures_results import RunSpec, policed_tcp_fast_quic, write_run

    runs = tmp_path / "runs"
    write_run(runs, RunSpec(policed_tcp_fast_quic()))
    ingest([runs], tmp_path / "ds")
    from_folders = _json("verdicts", str(runs))
    from_dataset = _json("verdicts", str(tmp_path / "ds"))
    assert _sorted(from_dataset) == _sorted(from_folders)
    (quic,) = [r for r in from_dataset if r["transport"] == "quic"]
    assert quic["across_transports"].startswith("TCP throttled at ")
    assert quic["transport_ratio"] > 2
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{tmp_path}/ds/verdicts/**/*.parquet', "
                   "hive_partitioning=true) WHERE transport = 'quic'").fetchall()[0][0]
    assert n == 1


def test_a_dataset_of_older_rules_reads_without_the_new_columns(runs: Path,
                                                                 tmp_path: Path) -> None:
    """Verdict files written before the transport columns: null there, the rest as stored."""
    import pyarrow.parquet as pq

    out = tmp_path / "ds"
    ingest([runs], out)
    for f in Dataset(out).files("verdicts"):
        table = pq.read_table(f)
        pq.write_table(table.drop_columns(["transport", "transport_ratio",
                                           "across_transports"]), f)
    rows = _json("verdicts", str(out))
    assert len(rows) == 7 and {r["transport"] for r in rows} == {None}
    csv = CliRunner().invoke(analyze, ["verdicts", str(out), "--format", "csv"])
    assert csv.exit_code == 0 and len(csv.stdout.splitlines()) == 8
