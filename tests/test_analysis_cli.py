"""`verdicts`, `aggregate` and `report` commands: output formats, fields, report files."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from analysis.commands import aggregate, report, verdicts
from tests.fixtures_results import FAST, POLICED, RunSpec, pairs, write_run

pytestmark = pytest.mark.timeout(120)
REQUIRED = {"run_id", "target", "host", "family", "kind", "verdict", "trigger", "rate_kbps",
            "control_rate_kbps", "ratio", "p_value", "explanation"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results")
    write_run(out, RunSpec(pairs(("image", "video"), POLICED, FAST), seed=1, label="lab"))
    write_run(out, RunSpec(pairs(("image",), FAST, FAST), seed=2, label="lab"))
    return out


def test_json_has_the_contract_fields(results: Path) -> None:
    res = CliRunner().invoke(verdicts, [str(results), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert len(rows) == 3 and all(REQUIRED <= set(r) for r in rows)
    throttled = [r for r in rows if r["verdict"] == "throttled"]
    assert {r["target"] for r in throttled} == {"twitter-image", "twitter-video"}
    assert all(isinstance(r["p_value"], float) and r["trigger"] == "unknown" for r in throttled)
    ok = [r for r in rows if r["verdict"] == "ok"]
    assert len(ok) == 1 and ok[0]["trigger"] is None


def test_csv_and_table(results: Path) -> None:
    res = CliRunner().invoke(verdicts, [str(results), "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(res.output)))
    assert len(rows) == 3 and REQUIRED <= set(rows[0])
    assert rows[0]["controls"] in ("control-image", "control-video")  # a list, ';'-joined
    table = CliRunner().invoke(verdicts, [str(results)])
    assert table.exit_code == 0 and "throttled" in table.output and "twitter-video" in table.output


def test_bad_input_exits_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(verdicts, [str(tmp_path)])
    assert res.exit_code == 2 and "no run folders" in res.output


def test_aggregate_json(results: Path) -> None:
    res = CliRunner().invoke(aggregate, [str(results), "--format", "json"])
    (row,) = json.loads(res.output)
    assert row["network"] == "lab" and row["runs"] == 2 and row["throttled"] == 2
    assert row["share_throttled"] == pytest.approx(2 / 3)


def test_report_is_self_contained_with_a_markdown_twin(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "site" / "report.html"
    res = CliRunner().invoke(report, [str(results), "-o", str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert "throttled" in page and "twitter-video" in page
    assert not re.search(r'src="(?!data:)', page)  # nothing loaded from elsewhere
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    md = (tmp_path / "site" / "report.md").read_text()
    linked = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert len(linked) == 3
    assert all((tmp_path / "site" / name).read_bytes().startswith(b"\x89PNG") for name in linked)
    assert re.search(r"\| twitter-image \| target \| tcp \| throttled \|", md)
    assert not list((tmp_path / "site").glob(".*"))  # no temp files left behind


@pytest.mark.parametrize("name, message", [("report.md", "must end in .html"),
                                           ("afile/report.html", "cannot write the report")])
def test_report_output_problems_exit_2(results: Path, tmp_path: Path, name: str,
                                       message: str) -> None:
    (tmp_path / "afile").write_text("")  # a file where a folder would have to be
    res = CliRunner().invoke(report, [str(results), "-o", str(tmp_path / name)])
    assert res.exit_code == 2 and message in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
