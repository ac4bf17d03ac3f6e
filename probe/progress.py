"""What a person at a terminal sees during and after a run (nothing with --quiet)."""

from __future__ import annotations

import math
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from probe.escape import for_terminal
from probe.results import identity


class TerminalProgress:
    """A rich progress bar on stderr, fed by the runner's observer events."""

    def __init__(self) -> None:
        self.console = Console(file=sys.stderr)
        self.progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(), console=self.console, transient=True,
        )
        self.task = None

    def __call__(self, event: str, payload: object) -> None:
        if event == "start":
            self.progress.start()
            self.task = self.progress.add_task("starting", total=payload)
        elif event == "measuring" and self.task is not None:
            target = getattr(payload, "target", payload)  # an experiment carries its target
            self.progress.update(self.task,
                                 description=for_terminal(f"measuring {target.name}").plain)
        elif event == "measured" and self.task is not None:
            self.progress.advance(self.task)

    def stop(self) -> None:
        self.progress.stop()


def outcome(measurement: dict) -> tuple[str, float | None, int]:
    """(outcome, goodput kbps over all its transfers, bytes) of one measurement."""
    keys = measurement.get("test_keys") or {}
    transfers = keys.get("transfers") or []
    total = sum(t.get("bytes") or 0 for t in transfers)
    seconds = sum(t.get("duration_s") or 0 for t in transfers)
    goodput = round(total * 8 / 1000 / seconds, 1) if seconds > 0 and total else None
    return keys.get("failure") or "ok", goodput, total


def print_summary(measurements: list[dict], verdicts: dict[str, str], notes: list[str]) -> None:
    """The table of what was measured, then one line per note, on stdout."""
    # A pipe or a log file has no width: use a wide one rather than fold every cell.
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(summary_table(measurements, verdicts))
    for note in notes:
        console.print(for_terminal(note), soft_wrap=True)
    console.print("Verdicts compare each service target (Twitter, YouTube, ...) with its "
                  "controls on this run; "
                  "`probe analyze report` explains them with plots.", style="dim")


def row_label(target: str, experiment: str | None) -> str:
    """A target's row in the summary: its name, marked when it was fetched over HTTP/3
    (a row and a verdict of its own, not merged with the TCP ones)."""
    return f"{target} (HTTP/3)" if experiment == "target-h3" else target


def summary_table(measurements: list[dict], verdicts: dict[str, str] | None = None) -> Table:
    """One row per target (and per transport): outcome of each repetition, median goodput,
    and the verdict (keyed by `row_label`)."""
    table = Table(title="What was measured (goodput = payload kbit/s, median over repetitions)")
    columns = ["target", "family", "kind", "outcome", "goodput kbps", "bytes"]
    if verdicts:
        columns.append("verdict")
    for col in columns:
        numeric = col in ("goodput kbps", "bytes")
        table.add_column(col, justify="right" if numeric else "left",
                         overflow="ellipsis" if numeric else "fold")
    by_target: dict[str, list[dict]] = {}
    for m in measurements:
        label = row_label(identity.target_field(m, "name"), identity.field(m, "experiment"))
        by_target.setdefault(label, []).append(m)
    for name, ms in by_target.items():
        results = [outcome(m) for m in ms]
        outcomes = sorted({r[0] for r in results})
        rates = sorted(r[1] for r in results if r[1] is not None)
        median = rates[len(rates) // 2] if rates else None
        family, kind = (identity.target_field(ms[0], k) for k in ("family", "kind"))
        row = [name, family, kind, ", ".join(outcomes),
               f"{median:,.0f}" if median is not None else "-",
               f"{sum(r[2] for r in results):,}"]
        if verdicts:
            row.append(verdicts.get(name, "(control)" if family == "control"
                                    else "-"))
        table.add_row(*(for_terminal(cell) for cell in row))
    return table


def slow_network_note(verdicts: list[dict], min_kbps: float) -> str | None:
    """One sentence when the controls themselves were slow: the volunteer should know that
    the whole network is slow (congestion), and that a throttle is hard to see on it."""
    rates = [r for v in verdicts
             if (r := v.get("control_rate_kbps")) is not None and not math.isnan(r)]
    if not rates:
        return None
    median = sorted(rates)[len(rates) // 2]
    if median >= min_kbps:
        return None
    return (f"Every flow was slow (controls at about {median:.0f} kbit/s, under "
            f"{min_kbps:.0f}): this network is slow or congested, which is not aimed at "
            "one service; measure again when it is faster to see a throttle.")
