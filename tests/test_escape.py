"""Hostile texts from result folders (target names, run ids, labels, AS names) reach the
Markdown and HTML reports, the plots and the terminal as text, never as markup, math,
escape sequences or extra lines."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from markdown_it import MarkdownIt  # noqa: E402
from rich.console import Console  # noqa: E402

from analysis import load  # noqa: E402
from analysis.cli import analyze  # noqa: E402
from analysis.commands import aggregate, report, verdicts  # noqa: E402
from analysis.datasets import russia_twitter as rt  # noqa: E402
from analysis.report import VERDICT_COLUMNS  # noqa: E402
from analysis.report_dataset import render_markdown  # noqa: E402
from analysis.report_dataset import write_report as write_dataset_report  # noqa: E402
from probe.escape import for_html, for_markdown, for_plot, for_terminal, visible  # noqa: E402
from probe.progress import TerminalProgress, summary_table  # noqa: E402
from tests.fixtures_results import (  # noqa: E402
    CONTROL_HOSTS,
    FAST,
    POLICED,
    TWITTER_HOSTS,
    RunSpec,
    Spec,
    write_run,
)
from tests.test_dataset import _dataset, _row  # noqa: E402

pytestmark = pytest.mark.timeout(180)

HOSTILE = ["tw\nx | y", "<script>alert(1)</script>", "![p](http://evil.example/p.png)",
           "$\\undefinedmacro$", "\x1b]0;title\x07", "\x1b[2J", "tw[/]", "[bold red]boo",
           "a\u202eb", "`code` *em* _u_ ~~s~~ &lt; <b>"]
TWITTER = "tw[/]\n<script>alert(1)</script>![p](http://evil.example/p.png)\x1b]0;title\x07"
CONTROL = "ctl [bold red]x\x1b[2J $\\undefinedmacro$ | </td>"
RUN_ID = "20210312T090000Z-$\\undefinedmacro$"
LABEL = "lab\x1b]0;pwned\x07[bold]net\n<img src=x>"
MD = MarkdownIt("commonmark").enable("table").enable("strikethrough")


@pytest.mark.parametrize("text", HOSTILE)
def test_each_helper_keeps_the_text_literal(text: str) -> None:
    shown = visible(text)
    assert "\x1b" not in shown and "\n" not in shown and "\u202e" not in shown
    # Markdown: one paragraph of plain text whose characters are what `visible` shows
    rendered = MD.render(for_markdown(text))
    assert rendered.startswith("<p>") and rendered.count("<") == 2, rendered
    (inline,) = MD.parseInline(for_markdown(text))
    assert "".join(c.content for c in inline.children or []) == shown
    assert "<" not in for_html(text) and '"' not in for_html(text)
    assert for_terminal(text).plain == shown and not for_terminal(text).spans
    fig, ax = plt.subplots()
    ax.set_title(for_plot(text))
    ax.plot([0, 1], label=for_plot(text))
    ax.legend()
    fig.savefig(io.BytesIO(), format="png")  # mathtext would fail on \undefinedmacro
    assert ax.title.get_text() == for_plot(text)
    plt.close(fig)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run whose target names, run id and label are hostile (as a folder may be)."""
    out = tmp_path_factory.mktemp("hostile")
    targets = [Spec(TWITTER, "twitter", "image", TWITTER_HOSTS["image"], POLICED, pair=CONTROL),
               Spec(CONTROL, "control", "image", CONTROL_HOSTS["image"], FAST)]
    folder = write_run(out, RunSpec(targets, seed=1, label=LABEL))
    old = folder.name
    for f in folder.iterdir():
        quoted = json.dumps(RUN_ID)[1:-1] if f.suffix in (".json", ".jsonl") else RUN_ID
        f.write_text(f.read_text().replace(old, quoted))
    folder.rename(folder.with_name(RUN_ID))
    assert set(load([out]).measurements["run_id"]) == {RUN_ID}
    return out


def _unescaped_pipes(line: str) -> int:
    return re.sub(r"\\.", "", line).count("|")


def test_the_report_keeps_hostile_names_as_text(hostile: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    res = CliRunner().invoke(report, [str(hostile), "-o", str(out)])
    assert res.exit_code == 0, res.output  # the run id's $\undefinedmacro$ is no math
    md = out.with_suffix(".md").read_text()
    rows = [x for x in md.splitlines() if x.startswith("| ")]
    assert len(rows) == 3  # header, separator, one verdict: no row broken by a newline
    assert all(_unescaped_pipes(x) == len(VERDICT_COLUMNS) + 1 for x in rows)
    rendered = MD.render(md)
    images = re.findall(r'<img src="([^"]*)"', rendered)
    assert len(images) == 3 and all(x.startswith("report-") for x in images)  # ours only
    assert "<script" not in rendered
    assert rendered.count("<tr>") == 2 and "\x1b" not in md
    assert "tw[/]\\n&lt;script&gt;" in rendered  # the name, shown as written
    page = out.read_text()
    assert "<script" not in page and "\x1b" not in page and "&lt;script&gt;" in page


def test_the_collection_report_keeps_hostile_names_as_text(hostile: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    res = CliRunner().invoke(report, [str(hostile), "--collection", "--run", RUN_ID,
                                      "-o", str(out)])
    assert res.exit_code == 0, res.output  # the label in the legend is no math either
    md = out.with_suffix(".md").read_text()
    tables = re.findall(r"(?:^\|.*\n)+", md, flags=re.M)
    assert len(tables) == 3  # networks, per network and day, runs worth a look
    for table in tables:  # no row broken by a newline, no cell split by a pipe
        assert len({_unescaped_pipes(x) for x in table.splitlines()}) == 1, table
    rendered = MD.render(md)
    assert "<td>lab\\x1b]0;pwned\\x07[bold]net\\n&lt;img src=x&gt;</td>" in rendered
    assert re.findall(r'<img src="([^"]*)"', rendered) == ["report-timeline.png"]
    assert "<script" not in rendered and "\x1b" not in md and "<img src=x" not in rendered
    page = out.read_text()
    assert "<script" not in page and "\x1b" not in page and "&lt;img src=x&gt;" in page
    assert "20210312T090000Z-$\\undefinedmacro$" in page  # the run worth a look, as text
    detail = (tmp_path / "report-runs.html").read_text()
    assert "<script" not in detail and "&lt;script&gt;" in detail


@pytest.mark.parametrize("command", [verdicts, aggregate])
def test_terminal_tables_show_hostile_names_without_obeying_them(
        hostile: Path, command: object) -> None:
    res = CliRunner().invoke(command, [str(hostile)])
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.output and "\x07" not in res.output
    # the table folds long cells over several lines: look for pieces of them
    if command is verdicts:
        pieces = ["tw[/]\\n<script>alert(1)</script>", "$\\undefinedmacro$"]
    else:
        pieces = ["\\x1b]0;pwned\\x07[bold]net\\n<img"]
    assert all(p in res.output for p in pieces), res.output


def test_the_end_of_run_summary_and_the_progress_bar(
        hostile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    measurements = [json.loads(x) for x in
                    next(hostile.glob("*/measurements.jsonl")).read_text().splitlines()]
    measurements[0]["test_keys"]["failure"] = "\x1b[2J[bold red]reset[/]"
    console = Console(file=io.StringIO(), width=300, color_system=None)
    console.print(summary_table(measurements, {TWITTER: "throttled [/] \x1b]0;t\x07"}))
    text = console.file.getvalue()
    assert "\x1b" not in text and "tw[/]\\n<script>" in text and "[bold red]reset[/]" in text
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    progress = TerminalProgress()
    progress("start", 2)
    progress("measuring", type("T", (), {"name": TWITTER})())
    try:
        console.print(progress.progress.get_renderable())
    finally:
        progress.stop()
    assert "measuring tw[/]\\n<script>" in console.file.getvalue()
    assert "\x1b" not in console.file.getvalue()


def test_the_dataset_report_keeps_hostile_as_names_as_text(tmp_path: Path) -> None:
    org = "$\\undefinedmacro$ <script>x</script> ![p](http://evil.example/p.png) tw[/]\x1b[2J"
    rows = [_row(f"2021-05-{d:02d} 10:00:00", 110 if d < 10 else 5000, 3000,
                 ip=f"77.82.{i}.0", org=org) for d in range(1, 15) for i in range(4)]
    files: dict[str, list[str]] = {}
    for r in rows:
        files.setdefault(f"2021-05/{r[8:10]}.csv", []).append(r)
    summary = rt.summarize(rt.load(_dataset(tmp_path / "ds", files)), min_as_measurements=10)
    written = write_dataset_report(summary, tmp_path / "r.html")  # legends: no math text
    assert len(written) == 4
    rendered = MD.render(render_markdown(summary, {"daily_share": "a.png", "overall": "b.png"}))
    assert "<script" not in rendered and "evil.example/p.png\"" not in rendered
    assert "&lt;script&gt;x&lt;/script&gt;" in rendered and "\x1b" not in rendered
    page = (tmp_path / "r.html").read_text()
    assert "<script" not in page and "\x1b" not in page
    res = CliRunner().invoke(analyze, ["dataset", "russia-twitter-throttle",
                                       str(tmp_path / "ds"), "--min-as-measurements", "10"])
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.output and "tw[/]" in res.output
