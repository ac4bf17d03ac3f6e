"""The lab's QUIC scenarios against the real probe: QUIC throttled by the name in its
Initial (the NFQUEUE classifier) and by address, QUIC dropped by name and by address,
while TCP to the same hosts runs free.

One lab (prefix `tpk-`), one probe run per scenario from the client namespace: the
Twitter image and its control, each over TCP and over HTTP/3. The throttle is set at
512 kbit/s, YouTube's QUIC rate in 2024. Last, the classifier is killed: QUIC must
then pass (the NFQUEUE rule's --queue-bypass), as a device that fails open.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from analysis import load
from analysis.verdicts import verdicts
from probe.lab import running_lab, system
from probe.lab.demo import run_probe
from probe.lab.targets import targets_toml

pytestmark = [pytest.mark.root, pytest.mark.lab]
PREFIX = "tpk-"
RATE_KBPS = 512.0
PAIR = ("lab-twitter-image", "lab-control-image")
SCENARIOS = ("quic-throttle-name", "quic-throttle-ip", "quic-block-name", "quic-block-ip")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Per scenario: its verdict rows and measurement failures by (target, experiment),
    the classifier's log and the lab's processes."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the lab uses network namespaces, iptables and tc")
    tmp = tmp_path_factory.mktemp("quic")
    targets = tmp / "targets.toml"
    targets.write_text(targets_toml(PAIR, http3=PAIR))
    out: dict[str, dict] = {}
    with running_lab(tmp / "lab", PREFIX) as lab:
        for name in SCENARIOS:
            lab.scenario(name, rate_kbps=RATE_KBPS)
            folder = run_probe(lab, targets, tmp / name, max_seconds=10.0)
            log = Path(lab.state["logs"]) / "quic-classifier.out"
            ms = load([folder]).measurements
            out[name] = {
                "rows": {(r["target"], r["experiment"]): r
                         for r in verdicts([folder]).to_dict("records")},
                "failures": {(t, e): f for t, e, f in
                             ms[["target", "experiment", "failure"]].itertuples(index=False)},
                "classifier": [json.loads(line) for line in log.read_text().splitlines()]
                if name.endswith("-name") else [],
                "processes": [p["name"] for p in lab.state["processes"]],
            }
            log.unlink(missing_ok=True)
        # The classifier gone (crashed), the kernel lets the queued packets pass.
        lab.scenario("quic-throttle-name", rate_kbps=RATE_KBPS)
        (classifier,) = [p for p in lab.state["processes"] if p["name"] == "quic-classifier"]
        system.kill([classifier["pid"]])
        folder = run_probe(lab, targets, tmp / "classifier-gone", max_seconds=10.0)
        out["classifier-gone"] = {"rows": {(r["target"], r["experiment"]): r
                                           for r in verdicts([folder]).to_dict("records")}}
    return out


@pytest.mark.parametrize("name", ["quic-throttle-name", "quic-throttle-ip"])
def test_quic_is_throttled_to_the_rate_and_tcp_is_not(runs: dict, name: str) -> None:
    rows = runs[name]["rows"]
    quic = rows[("lab-twitter-image", "target-h3")]
    assert quic["verdict"] == "throttled", quic["explanation"]
    assert quic["rate_kbps"] == pytest.approx(RATE_KBPS, rel=0.2), quic["explanation"]
    tcp = rows[("lab-twitter-image", "target")]
    assert tcp["verdict"] == "ok", tcp["explanation"]


@pytest.mark.parametrize("name", ["quic-block-name", "quic-block-ip"])
def test_dropped_quic_is_blocked_and_tcp_is_not(runs: dict, name: str) -> None:
    rows = runs[name]["rows"]
    quic = rows[("lab-twitter-image", "target-h3")]
    assert quic["verdict"] == "blocked", quic["explanation"]
    failures = runs[name]["failures"]
    assert failures[("lab-twitter-image", "target-h3")] == "generic_timeout_error"
    assert pd.isna(failures[("lab-control-image", "target-h3")])  # its control's QUIC works
    assert rows[("lab-twitter-image", "target")]["verdict"] == "ok"


def test_the_classifier_decides_by_the_name_in_the_initial(runs: dict) -> None:
    for name in ("quic-throttle-name", "quic-block-name"):
        assert "quic-classifier" in runs[name]["processes"]
        flows = [e for e in runs[name]["classifier"] if e["event"] == "flow"]
        marks = {(e["sni"], e["mark"]) for e in flows}
        assert ("pbs.twimg.com", "0x10") in marks, flows
        assert ("images.lab.test", "0x20") in marks, flows
        assert not [e for e in runs[name]["classifier"] if e["event"] == "error"]
    assert "quic-classifier" not in runs["quic-throttle-ip"]["processes"]


def test_without_the_classifier_quic_passes(runs: dict) -> None:
    quic = runs["classifier-gone"]["rows"][("lab-twitter-image", "target-h3")]
    assert quic["verdict"] == "ok", quic["explanation"]


def test_no_lab_is_left_behind(runs: dict) -> None:
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert PREFIX not in names
    assert not list(Path("/etc/netns").glob(f"{PREFIX}*"))
