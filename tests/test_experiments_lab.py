"""The differential experiments and `probe locate` against the lab's censors.

`probe run` runs inside the lab's client namespace as a subprocess, exactly as
a volunteer would run it; the assertions read its result folder (transfers.csv,
the JSONL) and the analysis' verdicts. One lab for the module, own prefix.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from analysis.verdicts import verdicts
from probe.lab import Lab, running_lab
from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.root, pytest.mark.lab, pytest.mark.timeout(180)]

PREFIX = f"tpx{os.getpid() % 100000}-"
PROBE = str(Path(sys.executable).with_name("probe"))
RATE = 130.0  # kbit/s, the scenarios' default
SLOW = 3 * RATE  # a throttled transfer stays under this
FAST = 30 * RATE  # an unthrottled one in the lab is far above this
IMAGE = """
[[target]]
name = "lab-twitter-image"
url = "https://pbs.twimg.com/media/img/photo.jpg"
family = "twitter"
kind = "image"
pair = "lab-control-image"

[[target]]
name = "lab-control-image"
url = "https://images.lab.test/media/img/photo.jpg"
family = "control"
kind = "image"
"""
NEUTRAL_ON_TWITTER_IP = """
[[target]]
name = "lab-neutral-sni-on-twitter-ip"
url = "https://images.lab.test/media/img/photo.jpg"
family = "control"
kind = "image"
connect_to = "203.0.113.10"
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("lab"), PREFIX) as lab:
        yield lab


def run_probe(lab: Lab, tmp: Path, targets: str, experiments: str, repeat: int = 1) -> Path:
    """`probe run` with the experiments in the client namespace; the result folder."""
    (tmp / "targets.toml").write_text(targets)
    state = lab.state
    cmd = [PROBE, "run", "--yes", "--targets", str(tmp / "targets.toml"), "--server",
           f"https://{state['measure']['name']}:{state['measure']['port']}",
           "--experiments", experiments, "--ca-bundle", state["ca"]["cert"],
           "--max-seconds", "5", "--repeat", str(repeat), "--out", str(tmp / "out"), "-q"]
    for net in ("203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24"):
        cmd += ["--allow-net", net]
    proc = lab.exec(cmd, timeout=150)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (folder,) = (tmp / "out").iterdir()
    return folder


def transfers(folder: Path, repetition: int = 0) -> dict[str, dict]:
    """transfers.csv by target name (one transfer per measurement here)."""
    with (folder / "transfers.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if int(r["repetition"]) == repetition]
    out = {r["target"]: r for r in rows}
    assert len(out) == len(rows)
    return out


def rate(row: dict) -> float:
    assert not row["failure"], row
    return float(row["goodput_kbps"])


def verdict_of(folder: Path, target: str, direction: str = "down") -> dict:
    v = verdicts([folder])
    (row,) = v[(v["target"] == target) & (v["direction"] == direction)].to_dict("records")
    return row


def test_sni_throttle(lab: Lab, tmp_path: Path) -> None:
    lab.scenario("sni-throttle", rate_kbps=RATE, hop=2)
    folder = run_probe(lab, tmp_path, IMAGE, "sni,split,upload")
    t = transfers(folder)
    for name in ("sni-pbs.twimg.com", "sni-twitter.com", "upload-pbs.twimg.com"):
        assert rate(t[name]) < SLOW, name
    for name in ("sni-neutral", "sni-none", "split-sni-pbs.twimg.com",
                 "split-header-pbs.twimg.com", "split-padded-pbs.twimg.com", "upload-neutral"):
        assert rate(t[name]) > FAST, name
    assert (t["sni-none"]["sni"], t["sni-neutral"]["sni"]) == ("", "measure.lab.test")
    assert {r["experiment"] for r in t.values()} == {"target", "sni", "split", "upload"}
    assert {n for n, r in t.items() if r["direction"] == "up"} == \
        {"upload-pbs.twimg.com", "upload-neutral"}
    image = verdict_of(folder, "lab-twitter-image")
    assert (image["verdict"], image["trigger"]) == ("throttled", "sni"), image["explanation"]
    # Unthrottled lab flows run at hundreds of Mbit/s, where CPU contention alone can
    # move a ratio below 0.7 (inconclusive); a split ClientHello is never throttled.
    for shape in ("sni", "header", "padded"):
        assert verdict_of(folder, f"split-{shape}-pbs.twimg.com")["verdict"] != "throttled"
    upload = verdict_of(folder, "upload-pbs.twimg.com", "up")
    assert (upload["verdict"], upload["trigger"]) == ("throttled", "sni")
    # The upload's samples count acknowledged bytes: they grow at the policed rate
    # instead of jumping to what the socket buffer swallowed.
    (m,) = [json.loads(x) for x in (folder / "measurements.jsonl").read_text().splitlines()
            if json.loads(x)["test_keys"]["target"]["name"] == "upload-pbs.twimg.com"]
    up = m["test_keys"]["transfers"][0]
    t_ms, acked = up["samples"][-1]
    assert acked * 8 / t_ms < SLOW  # kbit/s over the whole upload
    assert up["bytes"] == m["test_keys"]["server_upload"]["bytes"] <= acked


def test_ip_throttle(lab: Lab, tmp_path: Path) -> None:
    lab.scenario("ip-throttle", rate_kbps=RATE, hop=3)
    # Three repetitions: unthrottled lab flows run at hundreds of Mbit/s, CPU-bound and
    # noisy, and the verdict compares Twitter-SNI with neutral-SNI rates on the server.
    folder = run_probe(lab, tmp_path, IMAGE + NEUTRAL_ON_TWITTER_IP, "sni", repeat=3)
    for rep in range(3):
        t = transfers(folder, rep)
        assert rate(t["lab-twitter-image"]) < SLOW
        assert rate(t["lab-neutral-sni-on-twitter-ip"]) < SLOW  # a Twitter address, any name
        for name in ("sni-pbs.twimg.com", "sni-twitter.com", "sni-neutral", "sni-none",
                     "lab-control-image"):
            assert rate(t[name]) > FAST, name
    image = verdict_of(folder, "lab-twitter-image")
    assert (image["verdict"], image["trigger"]) == ("throttled", "ip"), image["explanation"]


def test_upload_throttle(lab: Lab, tmp_path: Path) -> None:
    lab.scenario("upload-throttle", rate_kbps=RATE, hop=2)
    folder = run_probe(lab, tmp_path, IMAGE, "sni,upload")
    t = transfers(folder)
    for name in ("lab-twitter-image", "lab-control-image", "sni-pbs.twimg.com", "sni-neutral"):
        assert rate(t[name]) > FAST, name
    assert rate(t["upload-pbs.twimg.com"]) < SLOW
    assert rate(t["upload-neutral"]) < SLOW
    assert verdict_of(folder, "lab-twitter-image")["verdict"] == "ok"
    upload = verdict_of(folder, "upload-pbs.twimg.com", "up")
    assert upload["verdict"] != "throttled"
    assert "whatever the name" in upload["explanation"]


@pytest.mark.parametrize("hop", [1, 2, 3, 4])
def test_locate_names_the_throttling_hop(lab: Lab, hop: int) -> None:
    lab.scenario("sni-throttle", rate_kbps=RATE, hop=hop)
    proc = lab.exec([PROBE, "locate", "--server", lab.state["measure"]["url"], "--ca-bundle",
                     lab.state["ca"]["cert"], "--json"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    router = next(r for r in lab.state["routers"] if r["hop"] == hop)
    assert (out["hop"], out["address"]) == (hop, router["west"])
    assert out["confidence"] in ("high", "medium")
    by_ttl = {}
    for ev in out["evidence"]:
        by_ttl.setdefault(ev["ttl"], []).append(ev["throttled"])
    assert all(by_ttl[hop]) and not any(by_ttl.get(hop - 1, [False]))
    assert [h["address"] for h in out["traceroute"][:4]] == \
        [r["west"] for r in lab.state["routers"]]


def test_locate_finds_nothing_without_a_throttler(lab: Lab) -> None:
    lab.scenario("clean")
    proc = lab.exec([PROBE, "locate", "--server", lab.state["measure"]["url"], "--ca-bundle",
                     lab.state["ca"]["cert"], "--json", "--seconds", "1"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["hop"], out["address"], out["confidence"]) == (None, None, "none")
    assert "did not slow the flow" in out["reasons"][0]


def test_locate_looks_past_a_router_that_stays_silent(lab: Lab) -> None:
    """Many routers send no time-exceeded: that hop is 'none', not the server, and locate
    still finds a throttler beyond it (hop 3 here, behind a silent hop 2)."""
    from probe.lab import system

    lab.scenario("sni-throttle", rate_kbps=RATE, hop=3)
    silent = lab.names.router(2)
    system.ns_run(silent, [system.IPTABLES, "-A", "OUTPUT", "-p", "icmp", "--icmp-type",
                           "time-exceeded", "-j", "DROP"])
    try:
        proc = lab.exec([PROBE, "locate", "--server", lab.state["measure"]["url"],
                         "--ca-bundle", lab.state["ca"]["cert"], "--json"], timeout=120)
    finally:
        lab.scenario("clean")  # also flushes the DROP rule
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    replies = [(h["ttl"], h["reply"]) for h in out["traceroute"]]
    assert replies[:5] == [(1, "time-exceeded"), (2, "none"), (3, "time-exceeded"),
                           (4, "time-exceeded"), (5, "destination")], replies
    router = next(r for r in lab.state["routers"] if r["hop"] == 3)
    assert (out["hop"], out["address"]) == (3, router["west"])
