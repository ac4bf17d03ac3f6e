"""`probe analyze`: turn result folders and public datasets into verdicts and reports.

`dataset` lives here; `verdicts`, `report` and `aggregate` in analysis/commands.py;
`ingest` in analysis/store/command.py.
The group is wired into `probe` by probe/cli.py (lazily, so pandas and
matplotlib load only when analysing).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from analysis.commands import aggregate, report, verdicts
from analysis.datasets import DatasetError
from analysis.store.command import ingest

EXIT_BAD_INPUT = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def analyze() -> None:
    """Analyse probe results and public datasets."""


analyze.add_command(verdicts)
analyze.add_command(report)
analyze.add_command(aggregate)
analyze.add_command(ingest)


@analyze.command("dataset")
@click.argument("name", metavar="NAME")
@click.argument("directory", metavar="DIR", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="What to print on standard output.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write an HTML report here, with a Markdown twin (.md) and PNGs beside it.",
)
@click.option(
    "--rule",
    type=click.Choice(["page", "ours"]),
    default="page",
    show_default=True,
    help="Rule behind the top-level overall/changes/per_as/per_day figures.",
)
@click.option(
    "--min-as-measurements",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="ASes with at least this many rows get change-points.",
)
def dataset(
    name: str, directory: Path, fmt: str, output: Path | None, rule: str, min_as_measurements: int
) -> None:
    """Summarise public dataset NAME stored in folder DIR.

    NAME is one of: russia-twitter-throttle. Prints overall, per-AS and per-day
    throttled shares by the dataset's own rule and by ours, and change-points
    (when throttling started or stopped) for each large AS.
    """
    from analysis.datasets import get

    try:
        module = get(name)
        if output is not None:
            _check_output(output)
        df = module.load(directory)
    except DatasetError as exc:
        _bad_input(str(exc))
    summary = module.summarize(df, primary=rule, min_as_measurements=min_as_measurements)
    if output is not None:
        from analysis.report_dataset import write_report

        try:
            written = write_report(summary, output)
        except OSError as exc:
            _bad_input(f"{output}: cannot write the report ({exc.strerror or exc})")
        click.echo(f"wrote {', '.join(str(p) for p in written)}", err=True)
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False))
    else:
        _print_table(summary)


def _bad_input(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _check_output(output: Path) -> None:
    """Fail before any work if the report could not be written where asked."""
    if output.suffix.lower() not in (".html", ".htm"):
        raise DatasetError(f"{output}: the report name must end in .html (a .md twin goes beside)")
    if not output.parent.resolve().is_dir():
        raise DatasetError(f"{output}: folder {output.parent} does not exist")


def _print_table(summary: dict[str, Any]) -> None:
    """The report's tables (analysis/report_dataset.py), on the terminal."""
    from rich.console import Console
    from rich.table import Table

    from analysis.report_dataset import tables
    from probe.escape import for_terminal

    console = Console(file=sys.stdout, width=120)
    data = summary["data"]
    console.print(
        f"[bold]{summary['dataset']}[/bold]: {data['rows']} rows, "
        f"{data['rows_russia']} from Russian ASes, {data['first_day']} .. "
        f"{data['last_day']} ({data['files']} daily files)"
    )
    for title, header, rows in tables(summary):
        table = Table(title=title)
        for col in header:
            table.add_column(col)
        for row in rows:
            table.add_row(*(for_terminal(c) for c in row))  # AS names come from the data
        console.print(table if rows else f"{title}: none.")
    for rule in summary["rules"]:
        console.print(f"  {rule}: {summary['rules'][rule]['description']}")
    console.print(f"[dim]Attribution: {summary['attribution']['text']}[/dim]", soft_wrap=True)
