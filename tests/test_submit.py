"""`probe submit` against a real collector on loopback: the protocol, resuming, retries,
rejections and the one-hour rule."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from probe.collection import client, queue
from probe.collection import submit as submit_mod
from probe.collection.client import Collector as Client
from probe.collection.client import Unreachable
from probe.collection.submit import NO_IDENTITY, Sender, default_scrubber
from probe.collection.submit_cli import submit
from tests.servers.collector import Collector, Fault
from tests.servers.http_servers import server_context
from tests.submit_runs import START, make_run


@pytest.fixture(autouse=True)
def fast_and_private(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real back-off waits; consent records in this test's own state folder."""
    monkeypatch.setattr(client, "RETRY_DELAYS", (0.0, 0.0, 0.0))
    monkeypatch.setenv("PROBE_STATE_DIR", str(tmp_path / "state"))


def _submit(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(submit, [*args, "--yes"])
    return result.exit_code, result.output


def _state(run: Path, url: str) -> dict:
    return json.loads((run / "submission.json").read_text())["collectors"][url]


def test_a_run_is_sent_with_the_collectors_report_id_and_the_file_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path / "results", 3)
    before = (run / "measurements.jsonl").read_bytes()
    with Collector() as c:
        code, out = _submit(str(tmp_path / "results"), "--collector", c.url)
        assert code == 0, out
        [(report_id, report)] = c.reports.items()
        assert report.closed and report.body["probe_asn"] == "AS0"
        assert [m["report_id"] for m in report.measurements] == [report_id] * 3
        assert [m["annotations"]["measurement_id"] for m in report.measurements] == [
            f"{run.name}-{i:04x}" for i in range(3)]
        assert "3 of 3 sent" in out and NO_IDENTITY in out
        state = _state(run, c.url)
        assert state["report_id"] == report_id and state["closed"]
        assert {m["measurement_uid"] for m in state["measurements"].values()} == {
            "uid-1", "uid-2", "uid-3"}
        assert (state["total"], state["sent_bytes"]) == (3, len(before))
        requests = len(c.requests)
        monkeypatch.setattr(submit_mod, "check_scrubbed", None)  # sent: not read again
        code, out = _submit(str(run), "--collector", c.url)  # again: nothing to send
        assert code == 0 and len(c.requests) == requests and "3 of 3 sent" in out
    assert (run / "measurements.jsonl").read_bytes() == before


def test_https_with_a_ca_bundle_and_never_unverified(tmp_path: Path, test_ca) -> None:
    issued = test_ca.issue(["127.0.0.1"])
    run = make_run(tmp_path, 2, network={"asn": "AS64500", "cc": "RU", "as_name": "x",
                                         "source": "local database (--asn-db)"})
    with Collector(server_context(issued.cert, issued.key)) as c:
        assert c.url.startswith("https://")
        code, out = _submit(str(run), "--collector", c.url)
        assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in out and not c.stored()
        code, out = _submit(str(run), "--collector", c.url, "--ca-bundle",
                            str(test_ca.cert_path))
        assert code == 0, out
        assert len(c.stored()) == 2 and NO_IDENTITY not in out
        [report] = c.reports.values()
        assert (report.body["probe_asn"], report.body["probe_cc"]) == ("AS64500", "RU")


def test_a_failure_mid_run_leaves_it_partial_and_a_rerun_sends_only_the_rest(
        tmp_path: Path) -> None:
    run = make_run(tmp_path, 5)
    with Collector() as c:
        c.fail(Fault("drop", after=2, times=4))  # every try of the third measurement
        code, out = _submit(str(run), "--collector", c.url)
        assert code == 1 and "unreachable" in out and "left queued" in out
        assert len(c.stored()) == 2
        state = _state(run, c.url)
        assert sorted(state["measurements"]) == ["1", "2"] and not state["closed"]
        code, out = _submit(str(run), "--collector", c.url)
        assert code == 0, out
        ids = [m["annotations"]["measurement_id"] for m in c.stored()]
        assert sorted(ids) == sorted(set(ids)) and len(ids) == 5  # each once
        assert len(c.reports) == 1  # the open report (< 1 h) was reused
        assert [k for k, _ in c.requests].count("open") == 1


def test_server_errors_are_retried_with_backoff(tmp_path: Path) -> None:
    run = make_run(tmp_path, 3)
    with Collector() as c:
        c.fail(Fault("503", after=1, times=3))  # the second measurement: three 503s
        code, out = _submit(str(run), "--collector", c.url)
        assert code == 0, out
        assert len(c.stored()) == 3
        assert [k for k, _ in c.requests].count("update") == 6
        c.fail(Fault("500", on="open", times=9))
        slept: list[float] = []
        with Client(c.url, delays=(1, 2, 4), sleep=slept.append) as collector, \
                pytest.raises(Unreachable, match=r"500 injected 500 \(tried 4 times\)"):
            collector.open({"test_name": "x"})
        assert slept == [1, 2, 4]


def test_a_4xx_rejects_that_measurement_only_and_is_recorded(tmp_path: Path) -> None:
    run = make_run(tmp_path, 3)
    with Collector() as c:
        c.fail(Fault("400", after=1))
        code, out = _submit(str(run), "--collector", c.url)
        assert code == 0, out
        assert "2 of 3 sent, 1 rejected" in out
        rejected = _state(run, c.url)["measurements"]["2"]
        assert rejected["status"] == "rejected"
        assert (rejected["http_status"], rejected["error"]) == (400, "injected 400")
        code, out = _submit(str(run), "--collector", c.url)  # not sent again
        assert code == 0 and len(c.stored()) == 2


def test_a_refused_open_marks_the_run_rejected(tmp_path: Path) -> None:
    run = make_run(tmp_path, 2)
    with Collector() as c:
        c.fail(Fault("403", on="open"))
        code, out = _submit(str(run), "--collector", c.url)
        assert code == 0 and "would not open a report (403 injected 403)" in out
        result = CliRunner().invoke(submit, [str(run), "--status"])
        assert "rejected (opening the report: 403 injected 403)" in result.output


class Clock:
    """A UTC clock that moves on by `step` at every reading."""

    def __init__(self, step: dt.timedelta, start: dt.datetime = START) -> None:
        self.t, self.step = start, step

    def __call__(self) -> dt.datetime:
        self.t += self.step
        return self.t


def _send(run: Path, url: str, clock: Clock) -> None:
    with Client(url, delays=()) as collector:
        Sender(collector, default_scrubber(), now=clock).send(queue.load(run))


def test_a_refusal_in_a_report_over_an_hour_old_is_resent_in_a_new_one(
        tmp_path: Path) -> None:
    run = make_run(tmp_path, 3)
    with Collector() as c:
        c.fail(Fault("404", after=1))  # the report was closed by the collector meanwhile
        _send(run, c.url, Clock(dt.timedelta(minutes=35)))
        first, second = c.reports
        assert [len(r.measurements) for r in c.reports.values()] == [1, 2]
        assert c.reports[second].measurements[0]["annotations"]["measurement_id"].endswith("-0001")
        state = _state(run, c.url)
        assert state["report_id"] == second
        assert [m["report_id"] for m in state["measurements"].values()] == [
            first, second, second]


def test_a_rerun_after_an_hour_opens_a_new_report(tmp_path: Path) -> None:
    run = make_run(tmp_path, 3)
    with Collector() as c:
        c.fail(Fault("drop", after=1))
        with pytest.raises(Unreachable):
            _send(run, c.url, Clock(dt.timedelta(minutes=1)))
        _send(run, c.url, Clock(dt.timedelta(minutes=1), START + dt.timedelta(hours=2)))
        assert [len(r.measurements) for r in c.reports.values()] == [1, 2]
        assert len(c.stored()) == 3


def test_status_lists_queued_partial_sent_and_not_sendable(tmp_path: Path) -> None:
    results = tmp_path / "results"
    a, b = make_run(results, 5), make_run(results, 2)
    running = make_run(results, 1, status="running")

    def status() -> str:
        result = CliRunner().invoke(submit, [str(results), "--status"])
        assert result.exit_code == 0, result.output
        return result.output

    out = status()
    assert f"{a}: queued (0 of 5)" in out and f"{b}: queued (0 of 2)" in out
    assert f"{running}: not sendable, still running" in out
    with Collector() as c:
        c.fail(Fault("drop", after=2, times=4))
        assert _submit(str(a), "--collector", c.url)[0] == 1
        report_id = next(iter(c.reports))
        assert f"{a}: partial (2 of 5) to {c.url}, report {report_id}" in status()
        assert _submit(str(results), "--collector", c.url)[0] == 0
        out = status()
        assert f"{a}: sent (5 of 5) to {c.url}, report {report_id}" in out
        assert f"{b}: sent (2 of 2) to {c.url}" in out
