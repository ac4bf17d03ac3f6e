"""analysis.verdicts on real probe runs in every lab scenario: the right verdict per target.

The result folders are those of tests/test_lab_probe.py when both modules run
in one session (tests/lab_e2e.py), else this module's own lab makes them.
Judged targets: the Twitter image, t.co and the collateral www.reddit.com
(family control-tco, paired with a plain control); plain controls are never
judged. Clean and congestion runs have three repetitions each, so a false
"throttled" would have to survive the repetition-level bootstrap.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from analysis.verdicts import verdicts
from tests.lab_e2e import RATE_KBPS, REPEAT, LabRuns, lab_runs

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.timeout(300)]

IMAGE, TCO, REDDIT = "lab-twitter-image", "lab-twitter-tco-page", "lab-collateral-reddit-page"
EXPECTED = {
    "sni-throttle": {IMAGE: "throttled", TCO: "throttled", REDDIT: "ok"},
    "ip-throttle": {IMAGE: "throttled", TCO: "throttled", REDDIT: "ok"},
    "collateral": {IMAGE: "ok", TCO: "throttled", REDDIT: "throttled"},
    "upload-throttle": {IMAGE: "ok", TCO: "ok", REDDIT: "ok"},  # downloads only
    "rst-block": {IMAGE: "blocked", TCO: "blocked", REDDIT: "ok"},
    "blackhole": {IMAGE: "blocked", TCO: "blocked", REDDIT: "ok"},
    "dns-poison": {IMAGE: "dns-tampered", TCO: "dns-tampered", REDDIT: "ok"},
    "tls-mitm": {IMAGE: "tls-tampered", TCO: "tls-tampered", REDDIT: "ok"},
    "clean": {IMAGE: "ok", TCO: "ok", REDDIT: "ok"},
}




@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRuns]:
    yield from lab_runs(tmp_path_factory, "tpv-")


def judged(runs: LabRuns, scenario: str) -> pd.DataFrame:
    v = verdicts([runs.folder(scenario)])
    print(v[["target", "verdict", "rate_kbps", "control_rate_kbps", "ratio", "ci_high",
             "p_value", "signature", "explanation"]].to_string())
    return v.set_index("target")


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_verdicts_name_what_the_lab_does(runs: LabRuns, scenario: str) -> None:
    v = judged(runs, scenario)
    assert set(v.index) == set(EXPECTED[scenario])  # control-tco judged, plain controls not
    for target, expected in EXPECTED[scenario].items():
        row = v.loc[target]
        assert row["verdict"] == expected, (target, row.to_dict())
    assert (v["repetitions"] == REPEAT.get(scenario, 1)).all()
    assert (v["experiment"] == "target").all()


@pytest.mark.parametrize("scenario", ["sni-throttle", "ip-throttle", "collateral"])
def test_throttled_rates_are_the_policers(runs: LabRuns, scenario: str) -> None:
    """The rate behind a throttled verdict is the lab's, and the controls are far faster."""
    v = judged(runs, scenario)
    throttled = v[v["verdict"] == "throttled"]
    assert len(throttled) == 2
    for target, row in throttled.iterrows():
        # 30 KB pages are two 16 KB TLS records: their steady-state estimate is coarse.
        assert 0.5 * RATE_KBPS < row["rate_kbps"] < 2.5 * RATE_KBPS, (target, row.to_dict())
        assert row["control_rate_kbps"] > 10 * RATE_KBPS, (target, row.to_dict())
        assert row["ci_high"] < 0.7 and row["p_value"] <= 0.01, (target, row.to_dict())
        assert row["trigger"] == "unknown"  # no differential experiment in these runs


def test_congestion_is_never_throttling(runs: LabRuns) -> None:
    """Everything shaped to 130 kbit/s: slow controls make any slowness inconclusive."""
    v = judged(runs, "congestion")
    assert set(v.index) == {IMAGE, TCO, REDDIT}
    assert not (v["verdict"] == "throttled").any(), v["explanation"].to_dict()
    assert set(v["verdict"]) <= {"ok", "inconclusive"}
    assert (v["control_rate_kbps"] < 2 * RATE_KBPS).all()
    ok = v[v["verdict"] == "ok"]
    assert ok["explanation"].str.contains("every flow is slow").all(), ok["explanation"]
    assert (v["repetitions"] == REPEAT["congestion"]).all()
