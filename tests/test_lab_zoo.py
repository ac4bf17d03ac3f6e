"""The verdict matrix's lean subset (bench/verdict_matrix.py) as a lab test.

Every throttler of the zoo at 128 kbit/s, the early t.co substring rule, the QUIC
scenarios (throttled by name and by address at 128 kbit/s, blocked by name and by
address), and the three networks where nothing is aimed at Twitter (clean, lossy,
and congestion at 1024 kbit/s): one repetition each, default options. The Twitter
image and its control are also fetched over QUIC. Every Twitter target must be
`throttled` at a cost of at most 256 KB and 10 s, every control and untouched site
`ok`, nothing `throttled` where no throttle was set, QUIC `throttled` or `blocked`
only under the QUIC scenarios (and TCP `ok` there), and under police and shape the
image's rate within 10 % of what curl gets through the same throttler.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.verdict_matrix import NEUTRAL, QUIC, THROTTLERS, Cell, run_matrix, table

pytestmark = [pytest.mark.root, pytest.mark.lab]
RATE = 128.0
CONGESTION_RATE = 1024.0
MAX_KB, MAX_SECONDS = 256.0, 10.0


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> list[Cell]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the lab uses network namespaces, iptables and tc")
    tmp = tmp_path_factory.mktemp("zoo")
    cells = run_matrix(tmp / "lab", tmp / "results", (*THROTTLERS, *QUIC, "clean", "lossy"),
                       (RATE,), prefix="tpz-")
    # Congestion at 128 kbit/s makes every object run to the 10 s cap (the matrix and
    # tests/test_lab_verdicts.py judge it there); at 1024 the same check takes a third.
    return cells + run_matrix(tmp / "lab", tmp / "congestion", ("congestion",),
                              (CONGESTION_RATE,), prefix="tpz-")


def test_every_cell_is_right(cells: list[Cell]) -> None:
    wrong = [c for c in cells if not c.right]
    assert not wrong, table(wrong) + "\n" + "\n".join(c.explanation for c in wrong)
    assert {c.scenario for c in cells} == {*THROTTLERS, *QUIC, *NEUTRAL}


def test_quic_is_judged_apart_from_tcp(cells: list[Cell]) -> None:
    image = [c for c in cells if c.target == "lab-twitter-image"]
    over_quic = {c.scenario: c.verdict for c in image if c.experiment == "target-h3"}
    over_tcp = {c.scenario: c.verdict for c in image if c.experiment == "target"}
    assert set(over_quic) == set(over_tcp) == {*THROTTLERS, *QUIC, *NEUTRAL}
    for name in QUIC:
        assert over_quic[name] == ("blocked" if "block" in name else "throttled"), name
        assert over_tcp[name] == "ok", name
    assert {over_quic[name] for name in THROTTLERS} == {"ok"}


def test_nothing_is_throttled_where_no_throttle_was_set(cells: list[Cell]) -> None:
    neutral = [c for c in cells if c.scenario in NEUTRAL]
    assert neutral and not [c for c in neutral if c.verdict == "throttled"], table(neutral)


def test_a_throttled_verdict_costs_at_most_256_kb_and_10_s(cells: list[Cell]) -> None:
    throttled = [c for c in cells if c.verdict == "throttled"]
    assert len(throttled) >= 2 * len(THROTTLERS)
    costly = [c for c in throttled if c.kb > MAX_KB or c.seconds > MAX_SECONDS]
    assert not costly, table(costly)


def test_rates_match_a_bulk_download_by_curl(cells: list[Cell]) -> None:
    held = [c for c in cells if c.curl_kbps is not None]
    assert {c.scenario for c in held} == {"police", "shape"}
    off = [c for c in held if abs(c.measured_kbps - c.curl_kbps) > 0.1 * c.curl_kbps]
    assert not off, table(off)


def test_the_matrix_keeps_no_lab_behind(cells: list[Cell]) -> None:
    import subprocess

    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "tpz-" not in names
    assert not list(Path("/etc/netns").glob("tpz-*"))
