"""Sealing closed reports into the raw archive: the gzip layout, a crash at each step,
sealing again, each measurement archived once, a full disk, and the archive ingested
into a dataset by the collector's background ingest."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from analysis.collected import preferred
from analysis.load import load
from analysis.store.command import ingest
from analysis.store.layout import Dataset
from probe.collection import archive, protocol
from probe.collection.ingester import Ingester
from probe.collection.store import Store
from tests.test_collect import measurement, open_report, running, update
from tests.test_collect_store import with_id

RUN = "20261130T150000Z-abcd"  # measurement()'s run id


class Crash(BaseException):
    """The process stops here (not an error anything may catch)."""


def opened_with(store: Store, *ids: str) -> str:
    """A report holding measurements of run RUN with these measurement ids."""
    m = measurement()
    report_id = store.open(protocol.open_body(m))
    for mid in ids:
        store.append(report_id, with_id({**m, "report_id": report_id}, mid))
    return report_id


def meta(store: Store, report_id: str) -> dict:
    return json.loads((store.reports / report_id / "meta.json").read_text())


def sealed_lines(data: Path, report_id: str) -> list[dict]:
    path = data / "raw" / "date=2026-11-30" / "cc=ZZ" / "asn=AS0" / f"{report_id}.jsonl.gz"
    return [json.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines()]


def ids(lines: list[dict]) -> list[str]:
    return [x["annotations"]["measurement_id"] for x in lines]


def test_a_closed_report_is_sealed_as_gzip_jsonl_by_day_country_and_network(
        tmp_path: Path) -> None:
    store = Store(tmp_path)
    report_id = opened_with(store, "m1", "m2")
    working = (store.reports / report_id / "measurements.jsonl").read_bytes()
    store.close(report_id)
    sealed = meta(store, report_id)
    assert sealed["state"] == "sealed" and sealed["measurements"] == 2
    assert sealed["archive"] == f"raw/date=2026-11-30/cc=ZZ/asn=AS0/{report_id}.jsonl.gz"
    assert gzip.decompress((tmp_path / sealed["archive"]).read_bytes()) == working
    assert not (store.reports / report_id / "measurements.jsonl").exists()
    assert store.archive.pending(10) == [(report_id, sealed["archive"])]
    assert load(tmp_path / "raw").measurements["measurement_id"].tolist() == ["m1", "m2"]


def crash_on(monkeypatch: pytest.MonkeyPatch, name: str, call: int, after: bool) -> None:
    """Make the `call`-th call of os.`name` from now on stop the process, before or after
    it did its work."""
    real: Callable = getattr(os, name)
    calls = [0]

    def stop(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call and not after:
            raise Crash(name)
        result = real(*args, **kwargs)
        if calls[0] == call:
            raise Crash(name)
        return result

    monkeypatch.setattr(os, name, stop)


# Closing a report renames meta.json (closed), the archive file, meta.json (sealed), then
# deletes measurements.jsonl: a crash before or after each.
KILL_POINTS = [("replace", 1, False), ("replace", 1, True), ("replace", 2, False),
               ("replace", 2, True), ("replace", 3, False), ("replace", 3, True),
               ("unlink", 1, True)]


@pytest.mark.parametrize(("name", "call", "after"), KILL_POINTS)
def test_a_crash_at_any_step_of_sealing_loses_nothing_and_doubles_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, call: int,
        after: bool) -> None:
    store = Store(tmp_path)
    report_id = opened_with(store, "m1", "m2")
    acknowledged = (store.reports / report_id / "measurements.jsonl").read_bytes()
    crash_on(monkeypatch, name, call, after)
    with pytest.raises(Crash):
        store.close(report_id)
    monkeypatch.undo()
    store.archive.close()
    again = Store(tmp_path)  # the restart seals what was closed
    if meta(again, report_id)["state"] == "open":  # the close itself was lost
        again.close(report_id)
    assert meta(again, report_id)["state"] == "sealed"
    path = tmp_path / meta(again, report_id)["archive"]
    assert gzip.decompress(path.read_bytes()) == acknowledged
    assert [p.name for p in tmp_path.rglob("*.jsonl.gz")] == [path.name]
    assert not list(tmp_path.rglob("*.tmp"))
    assert not (again.reports / report_id / "measurements.jsonl").exists()
    assert again.archive.pending(10) == [(report_id, meta(again, report_id)["archive"])]
    sealed = path.read_bytes()
    again.archive.close()
    Store(tmp_path)  # sealing is not repeated, nor anything rewritten
    assert path.read_bytes() == sealed


def test_sealing_again_writes_the_same_bytes(tmp_path: Path) -> None:
    store = Store(tmp_path)
    report_id = opened_with(store, "m1", "m2")
    working = tmp_path / "working.jsonl"
    working.write_bytes((store.reports / report_id / "measurements.jsonl").read_bytes())
    store.close(report_id)
    path = tmp_path / meta(store, report_id)["archive"]
    first = path.read_bytes()
    path.unlink()
    (tmp_path / "other").mkdir()
    fresh = archive.Archive(tmp_path / "other")  # no record: the file is written anew
    assert fresh.seal(report_id, working).kept == 2
    assert (tmp_path / "other" / meta(store, report_id)["archive"]).read_bytes() == first
    assert fresh.seal(report_id, working) == archive.Sealed(meta(store, report_id)["archive"],
                                                          2, 0)


def test_a_run_sent_again_in_a_new_report_is_archived_once(tmp_path: Path) -> None:
    for _, url in running(tmp_path, plain_http=True, dataset=False):
        with httpx.Client(base_url=url, timeout=10) as client:
            m = measurement()
            first = open_report(client, m)
            uids = [update(client, first, with_id(m, mid)).json()["measurement_uid"]
                    for mid in ("m1", "m2")]
            assert client.post(protocol.close_path(first)).status_code == 200
            second = open_report(client, m)  # the client lost its state: all sent again
            again = [update(client, second, with_id(m, mid)) for mid in ("m1", "m2", "m3")]
            assert [r.status_code for r in again] == [200, 200, 200]
            assert [r.json()["measurement_uid"] for r in again[:2]] == uids
            assert client.post(protocol.close_path(second)).status_code == 200
            assert client.post(protocol.close_path(second)).status_code == 200  # sealed
            assert update(client, second, with_id(m, "m4")).status_code == 409
    data = tmp_path / "data"
    assert ids(sealed_lines(data, first)) == ["m1", "m2"]
    assert ids(sealed_lines(data, second)) == ["m3"]
    log = [json.loads(x) for x in (tmp_path / "collect.log").read_text().splitlines()]
    assert sum(bool(x.get("duplicate")) for x in log) == 2


def test_copies_in_two_reports_open_at_once_are_archived_once(tmp_path: Path) -> None:
    events: list[dict] = []
    store = Store(tmp_path, log=events.append)
    first = opened_with(store, "m1", "m2")
    second = opened_with(store, "m2", "m3")  # both open: each stores its copy of m2
    store.close(second)
    store.close(first)
    assert ids(sealed_lines(tmp_path, second)) == ["m2", "m3"]
    assert ids(sealed_lines(tmp_path, first)) == ["m1"]
    assert [(e["report_id"], e["measurements"], e["dropped"]) for e in events] == [
        (second, 2, 0), (first, 1, 1)]
    rows = sqlite3.connect(tmp_path / "index.sqlite").execute(
        "SELECT measurement_id, report_id FROM measurements ORDER BY measurement_id")
    assert rows.fetchall() == [("m1", first), ("m2", second), ("m3", second)]


def test_a_full_disk_leaves_the_report_closed_and_it_is_sealed_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[dict] = []
    store = Store(tmp_path, log=events.append)
    report_id = opened_with(store, "m1")
    real_fsync = os.fsync
    fsyncs = [0]

    def full(fd: int) -> None:
        fsyncs[0] += 1
        if fsyncs[0] > 1:  # meta.json says closed; the archive file finds the disk full
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    store.close(report_id)  # the client's close succeeds: the report is closed
    monkeypatch.undo()
    assert meta(store, report_id)["state"] == "closed"
    assert events[0]["event"] == "seal-failed" and "No space left" in events[0]["error"]
    assert not list(tmp_path.rglob("*.jsonl.gz")) and not list(tmp_path.rglob("*.tmp"))
    store.maintain()
    assert meta(store, report_id)["state"] == "sealed"
    assert ids(sealed_lines(tmp_path, report_id)) == ["m1"]


def test_the_archive_is_ingested_once_and_a_run_in_two_reports_is_one_run(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    first = opened_with(store, "m1", "m2")
    store.close(first)
    second = opened_with(store, "m3")  # the run went on in a new report
    store.close(second)
    dataset = tmp_path / "dataset"
    res = CliRunner().invoke(ingest, [str(tmp_path / "data"), "--into", str(dataset)])
    assert res.exit_code == 0, res.output
    assert "ingested 1 run(s)" in res.output
    stored = load(dataset)
    assert stored.runs["run_id"].tolist() == [RUN, RUN]  # a row per archive file
    assert [b.runs for b in Dataset(dataset).batches] == [[RUN]]
    assert sorted(stored.measurements["measurement_id"]) == ["m1", "m2", "m3"]
    again = CliRunner().invoke(ingest, [str(tmp_path / "data" / "raw"), "--into",
                                        str(dataset)])
    assert "ingested 0 run(s)" in again.output and "1 already in the dataset" in again.output
    bad = CliRunner().invoke(ingest, [str(tmp_path / "data" / "index.sqlite"), "--into",
                                      str(dataset)])
    assert bad.exit_code == 2 and "nor a collector's .jsonl.gz file" in bad.output


def test_the_background_ingest_retries_until_the_dataset_takes_the_reports(
        tmp_path: Path) -> None:
    events: list[dict] = []
    store = Store(tmp_path, log=events.append)
    report_id = opened_with(store, "m1")
    store.close(report_id)
    assert preferred(tmp_path) == tmp_path  # no dataset yet: the archive is read
    (tmp_path / "dataset").write_text("not a folder")
    ingester = Ingester(tmp_path, store.archive, every=3600, log=events.append)
    assert not ingester.catch_up()
    assert events[-1]["event"] == "ingest-failed" and events[-1]["status"] == 2
    assert store.archive.pending(10) == [(report_id, meta(store, report_id)["archive"])]
    (tmp_path / "dataset").unlink()
    assert ingester.catch_up()
    assert events[-1]["event"] == "ingested" and events[-1]["reports"] == 1
    assert store.archive.pending(10) == []
    assert preferred(tmp_path) == tmp_path / "dataset"
    assert load(tmp_path).measurements["measurement_id"].tolist() == ["m1"]


def test_a_collector_started_again_ingests_what_was_sealed_before(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = Store(data)
    store.close(opened_with(store, "m1"))
    store.archive.close()
    for collector, _ in running(tmp_path, plain_http=True, ingest_every=3600):
        deadline = time.monotonic() + 60
        while collector.store.archive.pending(1):  # the round at start, not the hourly one
            assert time.monotonic() < deadline, "nothing was ingested at start"
            time.sleep(0.1)
    assert preferred(data) == data / "dataset"
    log = [json.loads(x) for x in (tmp_path / "collect.log").read_text().splitlines()]
    assert [x["reports"] for x in log if x.get("event") == "ingested"] == [1]
