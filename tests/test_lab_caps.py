"""In the namespace lab: a capped Twitter image (and its control) moves no more than its
cap and 16 KB."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from probe.lab import running_lab
from probe.lab.demo import run_probe, write_targets

pytestmark = [pytest.mark.timeout(300), pytest.mark.root, pytest.mark.lab]
CAP = 100_000
SLACK = 16_000


def test_a_capped_twitter_image_moves_at_most_its_cap_and_16_kb(tmp_path: Path) -> None:
    """On the lab's fast path the whole 300 KB photo was in flight when the read stopped."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the lab uses network namespaces, iptables and tc")
    targets = write_targets(tmp_path / "targets.toml", ["lab-twitter-image", "lab-control-image"])
    with running_lab(tmp_path / "lab", prefix="tpc-") as lab:
        lab.scenario("clean")
        folder = run_probe(lab, targets, tmp_path / "out", extra=["--max-bytes", str(CAP)])
    lines = (folder / "measurements.jsonl").read_text().splitlines()
    transfers = {}
    for line in lines:
        keys = json.loads(line)["test_keys"]
        (transfer,) = keys["transfers"]
        assert ["Range", f"bytes=0-{CAP - 1}"] in keys["requests"][0]["request"]["headers_list"]
        transfers[transfer["sni"]] = transfer
    assert set(transfers) == {"pbs.twimg.com", "images.lab.test"}
    for transfer in transfers.values():
        assert transfer["failure"] is None and transfer["bytes"] == CAP
        assert transfer["stopped_by"] == "max_bytes"
        # The kernel's count: payload, response head and TLS framing together.
        assert transfer["wire_bytes"] <= CAP + SLACK
