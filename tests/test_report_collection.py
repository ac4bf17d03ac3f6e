"""The report of a collection: per network and day, with intervals and change points, in a
page whose size does not grow with the number of runs; --run for one run's detail."""

from __future__ import annotations

import base64
import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from analysis.aggregate import aggregate, wilson, with_intervals
from analysis.commands import report
from analysis.report_collection import (
    COLLECTION_THRESHOLD,
    MAX_DAY_ROWS,
    NAME_CHARS,
    write_collection_report,
)
from tests.fixtures_results import FAST, POLICED, RunSpec, copy_run, pairs, write_run

pytestmark = pytest.mark.timeout(240)
DAYS = 22  # AS100 is throttled from day 11 on; AS101 never; AS102 every other run
START = dt.datetime(2021, 3, 1, 8, tzinfo=dt.UTC)
MAX_PAGE_BYTES = 3_000_000


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 networks x DAYS days, one run each: copies of one throttled and one clean run."""
    base = tmp_path_factory.mktemp("base")
    policed = write_run(base, RunSpec(pairs(("image", "video"), POLICED, FAST), seed=1))
    clean = write_run(base, RunSpec(pairs(("image", "video"), FAST, FAST), seed=2))
    out = tmp_path_factory.mktemp("many")
    for day in range(DAYS):
        for i, asn in enumerate(("AS100", "AS101", "AS102")):
            hit = (asn == "AS100" and day >= 11) or (asn == "AS102" and day % 2)
            copy_run(policed if hit else clean, out, f"run-{asn}-{day:02d}",
                     START + dt.timedelta(days=day, hours=i), asn)
    return out


def test_wilson_interval() -> None:
    low, high = wilson(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-3) and high == pytest.approx(0.7634, abs=1e-3)
    assert wilson(0, 0) is None and wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0


def test_many_runs_get_the_collection_report(many: Path, tmp_path: Path) -> None:
    assert 3 * DAYS > COLLECTION_THRESHOLD
    out = tmp_path / "report.html"
    res = CliRunner().invoke(report, [str(many), "-o", str(out)])
    assert res.exit_code == 0, res.output
    page, md = out.read_text(), out.with_suffix(".md").read_text()
    assert "Throttling report: collection" in page
    assert "twitter-image" not in page  # no per-row verdicts
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 1 and base64.b64decode(images[0]).startswith(b"\x89PNG")
    assert (tmp_path / "report-timeline.png").read_bytes() == base64.b64decode(images[0])
    assert f"{3 * DAYS} run(s) on 3 network(s) from 2021-03-01 to 2021-03-22" in md
    # the switch on AS100 is found on its first throttled day, and only there
    assert re.search(r"\| AS100 \| 2021-03-12 \| 0% \| 100% \| 11 \| 11 \|", md), md
    assert md.count("2021-03-12: 0% → 100%") == 1
    assert re.search(r"\| AS101 \| 22 \| 22 \| 0% \| 0%–8% \| - \| none \|", md), md
    assert re.search(r"\| AS102 \| 2021-03-02 \| 1 \| 2 \| 100% \| 34%–100% \| 1\d\d \|", md)


def test_the_aggregate_has_intervals_and_reads_a_dataset_s_rows(many: Path) -> None:
    from analysis import load
    from analysis.verdicts import verdicts

    r = load(many)
    rows = verdicts(r)
    plain = aggregate(rows, r)
    # rows from a dataset carry their network; the runs' network is the one used
    tagged = aggregate(rows.assign(network="elsewhere", day="1970-01-01"), r.runs)
    pd.testing.assert_frame_equal(plain, tagged)
    table = with_intervals(plain)
    assert (table["share_low"] <= table["share_throttled"]).all()
    assert (table["share_throttled"] <= table["share_high"]).all()


def test_run_writes_that_run_s_detail_only(many: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.html"
    res = CliRunner().invoke(report, [str(many), "--run", "run-AS100-15", "-o", str(out)])
    assert res.exit_code == 0, res.output
    md = out.with_suffix(".md").read_text()
    assert "1 run(s)" in md and "| run-AS100-15 | twitter-image | target | tcp | throttled |" in md
    assert "run-AS100-14" not in md and "collection" not in out.read_text()


def test_collection_and_run_write_both_linked(many: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    res = CliRunner().invoke(report, [str(many), "--collection", "--run", "run-AS101-03",
                                      "--run", "run-AS102-03", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "href='report-runs.html'" in out.read_text()
    assert "](report-runs.md)" in out.with_suffix(".md").read_text()
    detail = (tmp_path / "report-runs.md").read_text()
    assert "2 run(s)" in detail and "run-AS102-03" in detail
    assert {p.name for p in tmp_path.iterdir()} >= {
        "report.html", "report.md", "report-timeline.png", "report-runs.html", "report-runs.md"}


def test_few_runs_with_collection(many: Path, tmp_path: Path) -> None:
    few = [str(p) for p in sorted(many.iterdir())[:3]]
    out = tmp_path / "report.html"
    res = CliRunner().invoke(report, [*few, "--collection", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "3 run(s) on" in out.with_suffix(".md").read_text()


def test_an_unknown_run_exits_2(many: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(report, [str(many), "--run", "nope", "-o",
                                      str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "no run 'nope' among the 66 run(s)" in res.output


def test_the_help_names_the_threshold() -> None:
    res = CliRunner().invoke(report, ["--help"])
    assert f"past {COLLECTION_THRESHOLD} runs" in " ".join(res.output.split())


def _synthetic(runs: int, networks: int, days: int, seed: int = 0) -> tuple[pd.DataFrame,
                                                                             pd.DataFrame]:
    """Verdict rows (4 Twitter targets a run) and runs, as verdicts() and load() give them."""
    rng = np.random.default_rng(seed)
    ids = [f"run-{i:06d}" for i in range(runs)]
    net = rng.integers(0, networks, runs)
    day = rng.integers(0, days, runs)
    run_table = pd.DataFrame({
        "run_id": ids, "asn": [f"AS{64500 + n}" for n in net], "label": None,
        "start": pd.Timestamp("2021-01-01", tz="UTC") + pd.to_timedelta(day, unit="D")})
    throttled = (net % 3 == 0) & (day > days // 2)
    rows = pd.DataFrame({
        "run_id": np.repeat(ids, 4),
        "target": np.tile(["twitter-image", "twitter-video", "twitter-script", "twitter-x"],
                          runs),
        "family": "twitter", "experiment": "target",
        "verdict": np.where(np.repeat(throttled, 4), "throttled",
                            rng.choice(["ok", "ok", "ok", "inconclusive"], 4 * runs)),
        "rate_kbps": rng.uniform(100, 20_000, 4 * runs)})
    rows.loc[rows["verdict"] == "throttled", "rate_kbps"] = 140.0
    return rows, run_table


def test_the_page_stays_small_for_10000_runs(tmp_path: Path) -> None:
    rows, runs = _synthetic(10_000, networks=120, days=365)
    runs.loc[0, "asn"] = "AS" + "9" * 100_000  # a very long name is shortened, not repeated
    out = tmp_path / "report.html"
    paths = write_collection_report(rows, runs, out)
    sizes = {p.name: p.stat().st_size for p in paths}
    print(f"10,000 runs: {sizes}")
    assert sizes["report.html"] < MAX_PAGE_BYTES and sizes["report.md"] < MAX_PAGE_BYTES / 2
    md = out.with_suffix(".md").read_text()
    assert f"Showing the first {MAX_DAY_ROWS} of " in md
    assert "9" * NAME_CHARS not in md and "10000 run(s) on 121 network(s)" in md
    assert "→" in md  # the throttled networks' switch is found


def test_each_service_is_counted_apart() -> None:
    """A network that slows YouTube and not Twitter is 100 % and 0 %, not 50 %."""
    runs = pd.DataFrame({"run_id": ["r1", "r2"], "asn": ["AS100", "AS100"],
                         "label": [None, None],
                         "start": pd.to_datetime(["2024-07-20T10:00Z", "2024-07-20T11:00Z"],
                                                 utc=True)})
    rows = pd.DataFrame([{"run_id": run, "experiment": "target", "family": family,
                          "verdict": verdict, "rate_kbps": rate}
                         for run in ("r1", "r2")
                         for family, verdict, rate in (("twitter", "ok", 5000.0),
                                                       ("youtube", "throttled", 128.0))])
    a = aggregate(rows, runs).set_index("service")
    assert sorted(a.index) == ["twitter", "youtube"] and set(a["network"]) == {"AS100"}
    assert a.loc["youtube", "share_throttled"] == 1.0 and a.loc["youtube", "runs"] == 2
    assert a.loc["youtube", "median_throttled_kbps"] == 128.0
    assert a.loc["twitter", "share_throttled"] == 0.0
