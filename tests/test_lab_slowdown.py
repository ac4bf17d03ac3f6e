"""A 3x slowdown on a modest network, in real kernel parts: Wehe cannot flag a
slowdown under 50 %; we aim to call a 3x one `throttled` and never call the same
network without the throttle anything but `ok`.

The lab's access link is shaped to 3 Mbit/s (`--link-rate`) and the throttler
polices Twitter flows to 1 Mbit/s. The judged pair is the progressive MP4 and its
control, cut at 800 KB: long enough at 3 Mbit/s (about 2 s) for a steady rate.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from analysis.verdicts import verdicts
from probe.lab import Lab
from probe.lab.demo import run_probe, write_targets

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.timeout(400)]

LINK_KBPS, THROTTLE_KBPS = 3000.0, 1000.0
REPEAT = 3
TWITTER, CONTROL = "lab-twitter-mp4", "lab-control-mp4"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the lab uses network namespaces, iptables and tc")
    lab = Lab(tmp_path_factory.mktemp("tps-lab"), "tps-")
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def judge(lab: Lab, tmp_path: Path, scenario: str) -> dict:
    lab.scenario(scenario, rate_kbps=THROTTLE_KBPS, link_kbps=LINK_KBPS)
    assert lab.state["scenario"]["link_kbps"] == LINK_KBPS
    targets = write_targets(tmp_path / "targets.toml", (TWITTER, CONTROL))
    folder = run_probe(lab, targets, tmp_path / "results", repeat=REPEAT, max_seconds=8.0,
                       extra=("--max-bytes", "800000"))
    v = verdicts([folder])
    print(v[["target", "verdict", "rate_kbps", "control_rate_kbps", "ratio", "ci_high",
             "p_value", "explanation"]].to_string())
    (row,) = v[v["target"] == TWITTER].to_dict("records")
    return row


def test_a_3x_slowdown_is_throttled(lab: Lab, tmp_path: Path) -> None:
    row = judge(lab, tmp_path, "sni-throttle")
    assert row["verdict"] == "throttled", row
    assert row["repetitions"] == REPEAT
    assert 0.6 * THROTTLE_KBPS < row["rate_kbps"] < 1.25 * THROTTLE_KBPS, row
    assert 0.6 * LINK_KBPS < row["control_rate_kbps"] < 1.1 * LINK_KBPS, row
    assert row["ratio"] < 0.5 and row["p_value"] <= 0.01, row


def test_the_same_network_without_the_throttle_is_ok(lab: Lab, tmp_path: Path) -> None:
    row = judge(lab, tmp_path, "clean")
    assert row["verdict"] == "ok", row
    assert 0.6 * LINK_KBPS < row["rate_kbps"] < 1.1 * LINK_KBPS, row
