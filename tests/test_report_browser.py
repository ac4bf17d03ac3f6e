"""The reports as a reader's browser shows them: headless Chromium (Debian's package, which
.ci/run installs) loads each page with no console error and every image drawn; a
screenshot of each is kept in $TEST_ARTIFACTS (default: the test's temporary folder)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from analysis.commands import report
from tests.browser_page import PageCheck, check_page
from tests.fixtures_results import FAST, POLICED, RunSpec, copy_run, pairs, write_run

CHROMIUM = shutil.which("chromium")
pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH "
                                 "(Debian: apt-get install chromium; .ci/run installs it)")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 runs on two networks over 12 days, one of them throttled from day 6."""
    base = tmp_path_factory.mktemp("base")
    policed = write_run(base, RunSpec(pairs(("image", "video"), POLICED, FAST), seed=1))
    clean = write_run(base, RunSpec(pairs(("image", "video"), FAST, FAST), seed=2))
    out = tmp_path_factory.mktemp("runs")
    start = dt.datetime(2021, 3, 5, 10, tzinfo=dt.UTC)
    for day in range(12):
        for asn in ("AS100", "AS200"):
            src = policed if asn == "AS100" and day >= 6 else clean
            copy_run(src, out, f"run-{asn}-{day:02d}", start + dt.timedelta(days=day), asn)
    return out


def _artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _open(page: Path, tmp_path: Path, name: str) -> PageCheck:
    profile = tmp_path / f"profile-{name}"
    profile.mkdir()
    check = check_page(CHROMIUM or "chromium", page, profile)
    shot = _artifacts(tmp_path) / f"{name}.png"
    shot.write_bytes(check.screenshot)
    print(f"screenshot of {page.name}: {shot}")
    return check


@pytest.mark.parametrize("args, name", [([], "collection-report"),
                                        (["--run", "run-AS100-08"], "run-report")])
def test_the_report_loads_cleanly(runs: Path, tmp_path: Path, args: list[str],
                                  name: str) -> None:
    out = tmp_path / "site" / f"{name}.html"
    res = CliRunner().invoke(report, [str(runs), *args, "-o", str(out)])
    assert res.exit_code == 0, res.output
    check = _open(out, tmp_path, name)
    assert check.errors == []
    assert check.images and all(done and width > 0 for _, done, width in check.images), \
        check.images
    assert len(check.images) == (1 if name == "collection-report" else 3)
    assert check.screenshot.startswith(b"\x89PNG")


def test_the_check_sees_a_broken_page(tmp_path: Path) -> None:
    """The check itself: an error logged, an exception and broken images are all caught."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><img src='data:image/png;base64,AAAA'>"
                    "<img src='missing.png'><script>console.error('boom'); nope();</script>"
                    "</body></html>")
    check = _open(page, tmp_path, "broken")
    assert any("boom" in e for e in check.errors)
    assert any("nope" in e for e in check.errors)
    assert any("missing.png" in e for e in check.errors)
    assert [width for _, _, width in check.images] == [0, 0]
