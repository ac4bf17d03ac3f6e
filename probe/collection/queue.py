"""Which runs can be sent, and what each collector already has of them.

A run is sent only once it has ended (run.json has an end status) and only if its
run.json says its files were scrubbed as written. What a collector acknowledged is
kept in `<run>/submission.json` (written atomically after every answer), so a later
`probe submit` sends only what is missing and never a measurement twice.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from probe.results.atomic import write_text

STATE_FILE = "submission.json"
END_STATUSES = frozenset({"complete", "interrupted", "budget-exhausted", "error", "write-error"})


class Busy(Exception):
    """Another `probe submit` is sending this run right now."""


@dataclass
class Run:
    """A run folder and why it cannot be sent (None: it can)."""

    folder: Path
    info: dict
    problem: str | None = None
    running: bool = False


def find(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The run folders named by `paths` (each a run folder or a folder of them), and an
    error for each path that is neither."""
    found: list[Path] = []
    errors: list[str] = []
    for p in paths:
        if (p / "run.json").is_file():
            found.append(p)
            continue
        runs = sorted(d for d in p.iterdir() if (d / "run.json").is_file())
        if not runs:
            errors.append(f"{p}: neither a run folder nor a folder of runs (no run.json)")
        found.extend(runs)
    return list(dict.fromkeys(found)), errors


def load(folder: Path) -> Run:
    """The run with the reason it may not be sent: still running (or killed), an unknown
    end, or no record that its files were scrubbed."""
    try:
        info = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError) as exc:
        return Run(folder, {}, f"run.json unreadable ({exc})")
    if not isinstance(info, dict):
        return Run(folder, {}, "run.json is not a JSON object")
    status = info.get("status")
    if status == "running" or not info.get("end"):
        return Run(folder, info, "still running (or killed: it never ended)", running=True)
    if status not in END_STATUSES:
        return Run(folder, info, f"unknown status {status!r}")
    if info.get("scrubbed") is not True:
        return Run(folder, info, "run.json does not say its files were scrubbed of this "
                                 "machine's addresses (a probe before 0.2.0 wrote it)")
    return Run(folder, info)


def now_iso(now: dt.datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


class State:
    """`<run>/submission.json`: per collector URL, the report in use (`report_id`,
    `opened_at`, `closed`), a refusal to open one (`refused`), once all is sent the
    number of measurements and the JSONL's size (`total`, `sent_bytes`), and each
    measurement's outcome by line number (`measurement_id`, `status` sent or rejected,
    `report_id`, and the collector's `measurement_uid` or its `http_status` and `error`)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / STATE_FILE
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise OSError(f"{self.path}: unreadable ({exc}); move it away to send again") \
                from exc
        self.data: dict = data if isinstance(data, dict) else {}
        self.data.setdefault("collectors", {})

    def report(self, collector: str) -> dict:
        return self.data["collectors"].setdefault(collector, {
            "report_id": None, "opened_at": None, "closed": False, "refused": None,
            "measurements": {}})

    def save(self) -> None:
        write_text(self.path, json.dumps(self.data, indent=1) + "\n")


def done(report: dict) -> dict[int, str]:
    """Line -> measurement_id of every measurement with an outcome (sent or rejected)."""
    return {int(line): m["measurement_id"] for line, m in report["measurements"].items()}


def jsonl_bytes(folder: Path) -> int:
    try:
        return (folder / "measurements.jsonl").stat().st_size
    except FileNotFoundError:
        return 0


def finished(report: dict, folder: Path) -> bool:
    """All sent (or rejected) and the report closed, the JSONL unchanged since: a later
    submit need not read the run again (`total` is its number of measurements)."""
    return bool(report["closed"]) and report.get("sent_bytes") == jsonl_bytes(folder)


def summary(report: dict | None, total: int) -> str:
    """`queued`, `partial (n of m)`, `sent (m of m)` or `rejected`, for `--status`."""
    if report is None:
        return f"queued (0 of {total})"
    if report.get("refused"):
        r = report["refused"]
        return f"rejected (opening the report: {r['http_status']} {r['error']})"
    outcomes = [m["status"] for m in report["measurements"].values()]
    sent, rejected = outcomes.count("sent"), outcomes.count("rejected")
    extra = f", {rejected} rejected" if rejected else ""
    if sent + rejected < total:
        word = "partial" if sent else "queued"
        return f"{word} ({sent} of {total}{extra})"
    if not sent and rejected:
        return f"rejected ({rejected} of {total})"
    return f"sent ({sent} of {total}{extra})"


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold the run folder while sending it, so two `probe submit` (a scheduled one and
    one at a terminal) never send the same run at once."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"{folder}: another probe submit is sending it") from None
        yield
    finally:
        os.close(fd)
