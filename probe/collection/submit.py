"""Sending one run: check it is scrubbed, open (or reuse) a report, append what the
collector does not have yet, close it; every answer is recorded as it comes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from probe.operate.privacy import Scrubber, local_addresses
from probe.results import identity, jsonl

from . import protocol
from .client import Collector, Refused, Unreachable
from .queue import Run, State, done, finished, jsonl_bytes, now_iso, parse_iso

PLACEHOLDER_IP = "127.0.0.1"  # OONI's stand-in for the probe's address (envelope.py)
NO_IDENTITY = "sent without network identity: run without --asn-db (AS0, ZZ)"


class NotScrubbed(Exception):
    """A file of the run holds an address of this machine (or the home folder)."""


@dataclass
class Outcome:
    """What one `probe submit` did with one run."""

    folder: Path
    total: int
    sent: int = 0  # acknowledged so far, in any submit
    rejected: int = 0
    left: int = 0  # still queued (the collector was unreachable)
    report_id: str | None = None
    refused: str | None = None  # the collector would not open a report

    def describe(self) -> str:
        if self.refused:
            return f"rejected: the collector would not open a report ({self.refused})"
        parts = [f"{self.sent} of {self.total} sent"]
        if self.rejected:
            parts.append(f"{self.rejected} rejected")
        if self.left:
            parts.append(f"{self.left} left queued")
        return ", ".join(parts) + (f" (report {self.report_id})" if self.report_id else "")


def measurements(folder: Path) -> Iterator[tuple[int, dict]]:
    """Each readable line of the run's JSONL with its number (bad lines are named on
    stderr and never sent)."""
    path = folder / "measurements.jsonl"
    if not path.exists():
        return
    for line, text in jsonl.lines(path):
        obj = jsonl.parse(text)
        if isinstance(obj, str):
            jsonl.warn(jsonl.Skip(path, line, obj))
        else:
            yield line, obj


def check_scrubbed(run: Run, scrubber: Scrubber) -> dict[int, str]:
    """Line -> measurement_id of every measurement, once each is seen to hold none of this
    machine's current addresses nor the home folder (which scrubbing removes as the run is
    written: finding one means the file was not scrubbed, or was edited)."""
    if scrubber.record(run.info) != run.info:
        raise NotScrubbed(f"{run.folder / 'run.json'} holds an address of this machine")
    ids: dict[int, str] = {}
    for line, m in measurements(run.folder):
        if m.get("probe_ip", PLACEHOLDER_IP) != PLACEHOLDER_IP or scrubber.record(m) != m:
            raise NotScrubbed(f"{run.folder / 'measurements.jsonl'}:{line}: holds an "
                              "address of this machine")
        ids[line] = str(identity.field(m, "measurement_id") or "")
    return ids


def default_scrubber() -> Scrubber:
    return Scrubber(local_addresses(), home=str(Path.home()))


class Sender:
    """Sends runs to one collector; `now` is injectable so the one-hour rule is testable."""

    def __init__(self, collector: Collector, scrubber: Scrubber,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.collector = collector
        self.scrubber = scrubber
        self.now = now

    def send(self, run: Run) -> Outcome:
        """Send what the collector lacks of `run`; raises NotScrubbed before sending
        anything, Unreachable once the state of what was sent is saved."""
        state = State(run.folder)
        report = state.report(self.collector.url)
        if report["refused"] or finished(report, run.folder):  # nothing to check or send
            outcome = Outcome(run.folder, total=report.get("total") or 0)
            outcome.refused = report["refused"] and (
                f"{report['refused']['http_status']} {report['refused']['error']}")
            self._count(outcome, report)
            return outcome
        size = jsonl_bytes(run.folder)
        ids = check_scrubbed(run, self.scrubber)
        outcome = Outcome(run.folder, total=len(ids))
        have = done(report)
        pending = {line for line, mid in ids.items() if have.get(line) != mid}
        try:
            if pending:
                self._send_lines(run.folder, state, report, pending)
            if report["report_id"] and not report["closed"]:
                self._close(state, report)
        except Refused as exc:  # opening the report
            report["refused"] = {"http_status": exc.status, "error": exc.error,
                                 "at": now_iso(self.now())}
            state.save()
            outcome.refused = str(exc)
        except Unreachable:
            self._count(outcome, report, ids)
            raise
        if report["closed"] and not finished(report, run.folder):
            report.update(total=len(ids), sent_bytes=size)
            state.save()
        self._count(outcome, report, ids)
        return outcome

    def _count(self, outcome: Outcome, report: dict, ids: dict[int, str] | None = None) -> None:
        """Sent and rejected among the run's measurements (`ids`; None: all recorded)."""
        statuses = [m["status"] for line, m in report["measurements"].items()
                    if ids is None or ids.get(int(line)) == m["measurement_id"]]
        outcome.sent, outcome.rejected = statuses.count("sent"), statuses.count("rejected")
        outcome.left = outcome.total - outcome.sent - outcome.rejected
        outcome.report_id = report["report_id"]

    def _report(self, state: State, report: dict, first: dict, fresh: bool = False) -> str:
        """The report to append to: the open one if younger than an hour, else a new one
        (opened with the fields of `first`, the same on every measurement of a run)."""
        if (not fresh and report["report_id"] and not report["closed"]
                and self.now() - parse_iso(report["opened_at"]) < protocol.REOPEN_AFTER):
            return report["report_id"]
        report["report_id"] = self.collector.open(protocol.open_body(first))
        report["opened_at"], report["closed"] = now_iso(self.now()), False
        state.save()
        return report["report_id"]

    def _send_lines(self, folder: Path, state: State, report: dict, pending: set[int]) -> None:
        report_id = None
        for line, m in measurements(folder):
            if line not in pending:
                continue
            report_id = report_id or self._report(state, report, m)
            try:
                uid = self._update(report_id, m)
            except Refused as exc:
                if self.now() - parse_iso(report["opened_at"]) <= protocol.REOPEN_AFTER:
                    self._record(state, report, line, m, report_id, rejected=exc)
                    continue
                # bk-003 3.2: refused in a report over an hour old: a new report, once.
                report_id = self._report(state, report, m, fresh=True)
                try:
                    uid = self._update(report_id, m)
                except Refused as again:
                    self._record(state, report, line, m, report_id, rejected=again)
                    continue
            self._record(state, report, line, m, report_id, uid=uid)

    def _update(self, report_id: str, m: dict) -> str | None:
        """Append a copy of `m` carrying the collector's report id (the file keeps its own)."""
        return self.collector.update(report_id, {**m, "report_id": report_id})

    def _record(self, state: State, report: dict, line: int, m: dict, report_id: str, *,
                uid: str | None = None, rejected: Refused | None = None) -> None:
        entry = {"measurement_id": str(identity.field(m, "measurement_id") or ""),
                 "report_id": report_id,
                 "at": now_iso(self.now())}
        if rejected:
            entry.update(status="rejected", http_status=rejected.status, error=rejected.error)
        else:
            entry.update(status="sent", measurement_uid=uid)
        report["measurements"][str(line)] = entry
        state.save()

    def _close(self, state: State, report: dict) -> None:
        """Close the report once nothing is left to send. A refusal means it is closed or
        unknown already; an unreachable collector closes it itself when it goes stale."""
        try:
            self.collector.close(report["report_id"])
        except Refused:
            pass
        except Unreachable:
            return
        report["closed"] = True
        state.save()
