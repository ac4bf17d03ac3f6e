"""The Russia Twitter Throttle dataset: loading, both rules, change-points, CLI and reports.

Real-data tests read the dataset from $DATASET_DIR (default: the repository's sibling
../shared/datasets/russia-twitter-throttle) and skip when it is absent; the rules, the
detector and the error handling are also tested on small synthetic inputs.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.changepoint import Settings, detect
from analysis.cli import analyze
from analysis.datasets import DatasetError, get
from analysis.datasets import russia_twitter as rt
from analysis.report_dataset import write_report

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[1]
DATASET_DIR = Path(
    os.environ.get("DATASET_DIR")
    or REPO.parent / "shared" / "datasets" / "russia-twitter-throttle"  # beside the checkout
)
needs_data = pytest.mark.skipif(
    not (DATASET_DIR / "data").is_dir(),
    reason=f"real dataset not found at {DATASET_DIR} (set DATASET_DIR to its folder)",
)

HEADER = ",".join(rt.REQUIRED_COLUMNS)


def _row(
    time: str,
    test: float,
    control: float,
    taco: float = 4000.0,
    *,
    asn: str = "12389",
    country: str = "RU",
    org: str = "PJSC Rostelecom",
    org_id: str = "ORG-JR8-RIPE",
    ip: str = "77.82.37.0",
) -> str:
    return f"{time} UTC,{ip},77.82.32.0/20,{asn},{country},{org},{org_id},4,{test},{control},{taco}"


def _dataset(root: Path, files: dict[str, list[str]]) -> Path:
    """A dataset folder with data/YYYY-MM/DD.csv files holding the given rows."""
    for name, rows in files.items():
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join([HEADER, *rows]) + "\n")
    return root


# ------------------------------------------------------------------ rules (synthetic)


def test_rules_on_synthetic_rows(tmp_path: Path) -> None:
    t = "2021-05-01 10:00:00"
    rows = [
        _row(t, 110, 3000),  # classic throttle: both rules
        _row(t, 400, 3000),  # slow but above the 2021 band: page yes, ours no
        _row(t, 110, 800),  # control too slow for ours: inconclusive; page yes
        _row(t, 110, 500),  # control slow: page no, ours inconclusive
        _row(t, 150, 1200),  # in band, ratio 0.125 > 0.1: ours inconclusive; page yes
        _row(t, 5000, 3000),  # fast: neither
        _row(t, 110, -16304.35),  # invalid control: page no, ours inconclusive
        _row(t, 5000, 3000, taco=120),  # t.co host throttled: collateral flag
        _row(t, 0, 3000),  # an invalid (zero) test speed: ours inconclusive, not "fast"
    ]
    df = rt.apply_rules(rt.load(_dataset(tmp_path, {"2021-05/01.csv": rows})))
    assert df["page_throttled"].tolist() == [True, True, True, False, True, False, False, False,
                                             True]
    ours = [None if pd.isna(v) else bool(v) for v in df["ours_throttled"]]
    assert ours == [True, False, None, None, None, False, None, False, None]
    taco = [None if pd.isna(v) else bool(v) for v in df["taco_throttled"]]
    assert taco == [False, False, None, None, False, False, None, True, False]
    summary = rt.summarize(df, min_as_measurements=1)
    assert summary["rules"]["page"]["overall"] == {
        "measurements": 9,
        "decided": 9,
        "throttled": 5,
        "throttled_share": 0.5556,
        "median_throttled_kbps": 110.0,  # median of 110, 400, 110, 150, 0
    }
    assert summary["rules"]["ours"]["overall"]["decided"] == 4
    assert summary["rules"]["ours"]["overall"]["throttled"] == 1
    assert summary["collateral_taco"]["overall"]["throttled"] == 1


def test_only_russian_ases_count_and_access_classes(tmp_path: Path) -> None:
    t = "2021-05-01 10:00:00"
    rows = [
        _row(t, 110, 3000),
        _row(t, 110, 3000, asn="31133", org="PJSC MegaFon", org_id="ORG-OM1-RIPE"),
        _row(t, 110, 3000, asn="8402", org='"PJSC ""Vimpelcom"""', org_id="ORG-CTAM1-RIPE"),
        _row(
            t,
            110,
            3000,
            asn="16345",
            org="Public Joint Stock Company Vimpel-Communications",
            org_id="ORG-JA8-RIPE",
        ),
        _row(t, 110, 3000, asn="1", org="Example Yota LLC", org_id="ORG-NEW-RIPE"),
        _row(t, 110, 3000, asn="34058", country="UA", org="lifecell", org_id="ORG-LLC4-RIPE"),
        _row(t, 110, 3000, asn="", country="", org="", org_id=""),
    ]
    df = rt.load(_dataset(tmp_path, {"2021-05/01.csv": rows}))
    assert df["russia"].tolist() == [True] * 5 + [False] * 2
    access = [None if pd.isna(v) else v for v in df["access"]]
    assert access == ["landline", "mobile", "landline", "mobile", "mobile", None, None]
    assert df["asn"].isna().tolist() == [False] * 6 + [True]
    summary = rt.summarize(df)
    assert summary["overall"]["measurements"] == 5
    assert summary["outside_russia"]["page"]["measurements"] == 2


def test_an_as_without_an_organisation_name_is_summarised(tmp_path: Path) -> None:
    t = "2021-05-01 10:00:00"
    rows = [_row(t, 110, 3000, asn="64500", org="", org_id="")] * 3
    summary = rt.summarize(rt.load(_dataset(tmp_path, {"2021-05/01.csv": rows})),
                           min_as_measurements=1)
    (row,) = [a for a in summary["rules"]["page"]["per_as"] if a["asn"] == 64500]
    assert row["as_organization"] is None and row["measurements"] == 3


@pytest.mark.parametrize("rows", [
    [_row("2021-05-01 10:00:00", 110, 3000, asn="64500", org="", org_id="")] * 12,
    [_row("2021-05-01 10:00:00", 110, 3000, asn="3320", country="DE", org="DTAG",
          org_id="ORG-DT1-RIPE")] * 3,  # no Russian visit at all
], ids=["as-without-name", "no-russian-rows"])
def test_report_of_odd_datasets(tmp_path: Path, rows: list[str]) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(analyze, ["dataset", "russia-twitter-throttle",
                                          str(_dataset(tmp_path / "d", {"2021-05/01.csv": rows})),
                                          "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "<table>" in out.read_text() and out.with_suffix(".md").is_file()


# ------------------------------------------------------------------ malformed input


@pytest.mark.parametrize(
    ("content", "where", "what"),
    [
        ([_row("2021-05-01 10:00:00", 1, 2), "a,b"], ":3:", "fields"),
        (
            [
                _row("2021-05-01 10:00:00", 1, 2),
                _row("2021-05-01 10:05:00", 1, 2).replace(",1,2,", ",fast,2,"),
            ],
            ":3:",
            "test_result 'fast'",
        ),
        ([_row("2021-05-01 25:00:00", 1, 2)], ":2:", "datetime_rounded"),
        ([_row("2021-05-02 10:00:00", 1, 2)], ":2:", "file's day"),
        ([_row("2021-05-01 10:00:00", 1, 2).replace(",12389,", ",AS12389,")], ":2:", "asn"),
        (
            [_row("2021-05-01 10:00:00", 1, 2), '2021-05-01 10:00:00 UTC,"unterminated'],
            ":3:",
            "malformed CSV",
        ),
    ],
)
def test_malformed_csv_names_file_and_line(
    tmp_path: Path, content: list[str], where: str, what: str
) -> None:
    root = _dataset(tmp_path, {"2021-05/01.csv": content})
    with pytest.raises(DatasetError) as err:
        rt.load(root)
    message = str(err.value)
    assert f"2021-05{os.sep}01.csv{where}" in message
    assert what in message


def test_missing_header_column_and_bad_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "data" / "2021-05" / "01.csv"
    path.parent.mkdir(parents=True)
    path.write_text("datetime_rounded,asn\n")
    with pytest.raises(DatasetError, match=r"01\.csv:1: header lacks column\(s\) anonymized_ip"):
        rt.load(tmp_path / "a")
    with pytest.raises(DatasetError, match="no such dataset folder"):
        rt.load(tmp_path / "missing")
    (tmp_path / "b").mkdir()
    with pytest.raises(DatasetError, match="no data/ sub-folder"):
        rt.load(tmp_path / "b")
    with pytest.raises(DatasetError, match="unknown dataset 'nope'; known datasets: russia-"):
        get("nope")


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds", {"2021-05/01.csv": [_row("2021-05-01 10:00:00", 1, 2), "x,y"]})
    out = tmp_path / "out"
    out.mkdir()
    runner = CliRunner()
    cases = [
        (["dataset", "russia-twitter-throttle", str(root), "-o", str(out / "r.html")], "01.csv:3:"),
        (["dataset", "no-such-dataset", str(root)], "unknown dataset 'no-such-dataset'"),
        (
            ["dataset", "russia-twitter-throttle", str(tmp_path / "nowhere")],
            "no such dataset folder",
        ),
        (
            ["dataset", "russia-twitter-throttle", str(root), "-o", str(tmp_path / "x" / "r.html")],
            "does not exist",
        ),
    ]
    for args, message in cases:
        result = runner.invoke(analyze, args)
        assert result.exit_code == 2, result.output
        assert message in result.stderr
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------ change-point detector


def test_step_change_found_at_the_right_day() -> None:
    n = np.full(40, 30)
    k = np.where(np.arange(40) < 25, 24, 1)  # 80% -> 3%
    (change,) = detect(k, n)
    assert change.index == 25
    assert change.before_share == pytest.approx(0.8)
    assert change.after_share == pytest.approx(1 / 30)
    assert change.before_n == 25 * 30 and change.after_n == 15 * 30


def test_constant_share_gives_no_change() -> None:
    rng = np.random.default_rng(7)
    n = rng.integers(5, 80, size=60)
    assert detect(rng.binomial(n, 0.3), n) == []


def test_gaps_and_minimum_segment() -> None:
    n = np.array([20] * 10 + [0, 0, 0] + [20] * 10)
    k = np.array([18] * 10 + [0, 0, 0] + [1] * 10)
    (change,) = detect(k, n)
    assert change.index == 13  # first day with data after the gap
    # a change two days before the end is shorter than min_segment_days=3: not placed there
    n2, k2 = np.full(30, 20), np.array([18] * 28 + [0, 0])
    assert 28 not in [c.index for c in detect(k2, n2)]
    assert [c.index for c in detect(k2, n2, Settings(min_segment_days=2))] == [28]


def test_a_small_significant_change_does_not_hide_a_large_one() -> None:
    """50% -> 60% on 1000 visits a day is very significant but below min_effect; the later
    60% -> 0% drop on 5 visits a day must still be found."""
    n = np.array([1000] * 60 + [5] * 10)
    k = np.array([500] * 30 + [600] * 30 + [0] * 10)
    assert [c.index for c in detect(k, n)] == [60]


def test_small_effect_and_overdispersion_are_not_changes() -> None:
    n = np.full(40, 5000)
    k = np.where(np.arange(40) < 20, 2500, 2900)  # 50% -> 58%: significant, but small
    assert detect(k, n) == []
    # day-to-day swings far beyond binomial noise (one visitor reloading) but no regime change
    rng = np.random.default_rng(3)
    n = np.full(50, 100)
    k = (rng.uniform(0.0, 1.0, size=50) * 100).round()
    assert detect(k, n) == []


def test_detector_rejects_bad_counts() -> None:
    with pytest.raises(ValueError):
        detect([3], [2])
    with pytest.raises(ValueError):
        detect([1, 2], [3])


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    days=st.integers(12, 60),
    at_frac=st.floats(0.25, 0.75),
    p0=st.floats(0.0, 1.0),
    jump=st.floats(0.45, 0.9),
    per_day=st.integers(15, 60),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_single_large_step_is_found_near_its_day(
    days: int, at_frac: float, p0: float, jump: float, per_day: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    at = int(days * at_frac)
    p1 = p0 + jump if p0 + jump <= 1 else p0 - jump
    if not 0 <= p1 <= 1:
        p1 = 1 - p0 if abs(1 - 2 * p0) >= 0.45 else (0.0 if p0 > 0.5 else 1.0)
    p = np.where(np.arange(days) < at, p0, p1)
    n = np.full(days, per_day)
    changes = detect(rng.binomial(n, p), n)
    assert len(changes) == 1
    assert abs(changes[0].index - at) <= 1


@settings(max_examples=40, deadline=None, derandomize=True)
@given(days=st.integers(5, 70), p=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_property_no_change_no_changepoint(days: int, p: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = rng.integers(0, 80, size=days)
    assert detect(rng.binomial(n, p), n) == []


# ------------------------------------------------------------------ the real dataset


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    return rt.load(DATASET_DIR)


@pytest.fixture(scope="module")
def real_summary(real: pd.DataFrame) -> dict:
    return rt.summarize(real)


@needs_data
def test_real_load_is_typed_and_traceable(real: pd.DataFrame) -> None:
    assert list(real.columns) == list(rt.COLUMNS_DOC)
    assert len(real) == 40345 and int(real["russia"].sum()) == 36071
    assert str(real["time"].dtype) == "datetime64[ns, UTC]"
    assert real["test_kbps"].dtype == "float64" and str(real["asn"].dtype) == "Int64"
    assert real["day"].min() == pd.Timestamp("2021-03-13")
    assert real["day"].max() == pd.Timestamp("2021-05-19")
    row = real.iloc[12345]
    path, line = row["source"].rsplit(":", 1)
    text = Path(path).read_text().splitlines()[int(line) - 1]
    assert text.startswith(row["time"].strftime("%Y-%m-%d %H:%M:%S UTC"))
    assert f"{row['test_kbps']:g}" in text


@needs_data
def test_real_headline_figures(real_summary: dict) -> None:
    s = real_summary
    json.dumps(s, allow_nan=False)
    assert s["overall"] == s["rules"]["page"]["overall"]
    assert s["overall"]["measurements"] == 36071
    assert s["overall"]["throttled_share"] == pytest.approx(0.331, abs=0.001)
    assert s["overall"]["median_throttled_kbps"] == pytest.approx(109.0)
    ours = s["rules"]["ours"]["overall"]
    assert ours["decided"] < ours["measurements"]
    assert 100 <= ours["median_throttled_kbps"] <= 150  # the 2021 band
    for rule in ("page", "ours"):
        r = s["rules"][rule]
        assert (
            r["by_access"]["mobile"]["throttled_share"]
            > r["by_access"]["landline"]["throttled_share"]
        )
        assert s["outside_russia"][rule]["throttled_share"] < 0.05
    assert s["attribution"]["license"] == "CC BY 4.0"
    assert "Viktorov" in s["attribution"]["text"] and "CAIDA" in s["attribution"]["text"]


@needs_data
@pytest.mark.parametrize("rule", ["page", "ours"])
def test_real_landline_lift_on_17_may(real_summary: dict, rule: str) -> None:
    r = real_summary["rules"][rule]
    rostelecom = [c for c in r["changes"] if c["asn"] == 12389]
    assert [c["date"] for c in rostelecom] == ["2021-05-17"]
    assert rostelecom[0]["direction"] == "down"
    assert rostelecom[0]["before_share"] > 0.25 and rostelecom[0]["after_share"] < 0.05
    landline = r["groups"]["landline"]
    assert landline["lift_check"]["changepoint_found"]
    assert landline["lift_check"]["drop_significant"]
    # mobile throttling was not lifted: no downward change near 17 May
    mobile = r["groups"]["mobile"]
    assert not mobile["lift_check"]["changepoint_found"]
    assert not mobile["lift_check"]["drop_significant"]


@needs_data
def test_real_cli_json_and_report(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        analyze,
        [
            "dataset",
            "russia-twitter-throttle",
            str(DATASET_DIR),
            "--format",
            "json",
            "--rule",
            "ours",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.stderr
    s = json.loads(result.stdout)
    assert s["primary_rule"] == "ours"
    assert s["overall"] == s["rules"]["ours"]["overall"]
    assert {"asn", "as_organization", "date", "before_share", "after_share"} <= set(s["changes"][0])
    page = out.read_text()
    assert page.count("src='data:image/png;base64,") == 2
    assert not re.search(r"src=['\"](?!data:)", page)  # self-contained
    assert "Russia Twitter Throttle Dataset" in page and "CC BY 4.0" in page
    md = (tmp_path / "report.md").read_text()
    for png in re.findall(r"\]\(([^)]+\.png)\)", md):
        assert (tmp_path / png).read_bytes().startswith(b"\x89PNG")
    assert "Viktorov" in md and "2021-05-17" in md
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "report.html",
        "report.md",
        "report_daily_share.png",
        "report_overall.png",
    ]


def test_report_from_synthetic_summary(tmp_path: Path) -> None:
    rows = [
        _row(f"2021-05-{d:02d} 10:00:00", 110 if d < 10 else 5000, 3000, ip=f"77.82.{i}.0")
        for d in range(1, 15)
        for i in range(4)
    ]
    files: dict[str, list[str]] = {}
    for r in rows:
        files.setdefault(f"2021-05/{r[8:10]}.csv", []).append(r)
    summary = rt.summarize(rt.load(_dataset(tmp_path / "ds", files)), min_as_measurements=10)
    (change,) = summary["changes"]
    assert (change["asn"], change["date"], change["before_share"], change["after_share"]) == (
        12389,
        "2021-05-10",
        1.0,
        0.0,
    )
    written = write_report(summary, tmp_path / "r.html")
    assert {p.name for p in written} == {"r.html", "r.md", "r_daily_share.png", "r_overall.png"}
    assert not list(tmp_path.glob(".*.tmp"))
    assert "2021-05-10" in (tmp_path / "r.md").read_text()
