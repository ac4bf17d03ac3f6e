"""The collector's storage on its own: durable appends, torn lines, restarts, idle reports,
and a report folder the analysis reads like a run folder."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from probe.collection import protocol
from probe.collection.store import ClosedReport, Store, StoreError, UnknownReport
from tests.test_collect import measurement


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def with_id(m: dict, measurement_id: str) -> dict:
    """A copy of measurement `m` under another measurement id (an annotation)."""
    return {**m, "annotations": {**m["annotations"], "measurement_id": measurement_id}}


def opened(store: Store) -> tuple[str, dict]:
    m = measurement()
    report_id = store.open(protocol.open_body(m))
    return report_id, {**m, "report_id": report_id}


def lines(store: Store, report_id: str) -> list[dict]:
    path = store.reports / report_id / "measurements.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_an_unwritable_folder_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="not a writable folder"):
        Store(tmp_path / "file" / "data")


def test_concurrent_appends_are_whole_lines_and_one_per_measurement_id(tmp_path: Path) -> None:
    store = Store(tmp_path)
    report_id, m = opened(store)
    uids: list[str] = []

    def send(i: int) -> None:
        uids.append(store.append(report_id, with_id(m, f"m{i % 10}"))[0])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = lines(store, report_id)
    assert len(stored) == 10 and len(set(uids)) == 10
    assert {x["measurement_uid"] for x in stored} == set(uids)


def test_a_torn_last_line_is_cut_on_restart(tmp_path: Path) -> None:
    store = Store(tmp_path)
    report_id, m = opened(store)
    uid, _ = store.append(report_id, m)
    path = store.reports / report_id / "measurements.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"measurement_id": "m2", "tor')
    again = Store(tmp_path)
    assert again.append(report_id, m) == (uid, True)
    uid2, duplicate = again.append(report_id, with_id(m, "m2"))
    assert not duplicate
    assert [x["measurement_uid"] for x in lines(again, report_id)] == [uid, uid2]


def test_a_failed_write_leaves_no_half_line(tmp_path: Path, monkeypatch) -> None:
    store = Store(tmp_path)
    report_id, m = opened(store)
    store.append(report_id, m)

    def fail(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        store.append(report_id, with_id(m, "m2"))
    monkeypatch.undo()
    assert len(lines(store, report_id)) == 1
    assert not store.append(report_id, with_id(m, "m2"))[1]  # not remembered


def test_idle_reports_close_lazily_on_a_monotonic_clock(tmp_path: Path) -> None:
    clock = Clock()
    store = Store(tmp_path, idle_close=7200, clock=clock)
    report_id, m = opened(store)
    other, _ = opened(store)
    clock.now += 7000
    store.append(report_id, m)  # resets its timer
    clock.now += 7000
    store.append(report_id, with_id(m, "m2"))
    meta = json.loads((store.reports / other / "meta.json").read_text())
    assert meta["state"] == "sealed" and meta["close_reason"] == "idle"  # swept
    clock.now += 7201
    with pytest.raises(ClosedReport):
        store.append(report_id, m)


def test_a_report_left_open_by_a_stopped_collector_keeps_its_idle_time(tmp_path: Path) -> None:
    store = Store(tmp_path)
    report_id, m = opened(store)
    store.append(report_id, m)
    for name in ("meta.json", "measurements.jsonl"):
        os.utime(store.reports / report_id / name, (1, 1))  # last touched long ago
    with pytest.raises(ClosedReport):
        Store(tmp_path).append(report_id, m)


def test_unknown_reports(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(UnknownReport):
        store.append("nosuchreport", measurement())
    with pytest.raises(UnknownReport):
        store.close("../../etc")


def test_a_report_folder_reads_like_a_run_folder(tmp_path: Path) -> None:
    from analysis.load import load

    store = Store(tmp_path)
    report_id, m = opened(store)
    store.append(report_id, m)
    store.append(report_id, with_id(m, "m2"))
    results = load([store.reports])
    assert results.skipped == []
    assert sorted(results.measurements["measurement_id"]) == ["m1", "m2"]
