"""`probe run` against every lab scenario: what the raw result files say.

The probe runs as a volunteer would, from the lab's client namespace, through
the real kernel throttles, resets, drops, DNS poisoning and TLS interception of
probe.lab; the assertions read measurements.jsonl and the CSVs it wrote. A
policed rate is checked on the kernel's byte counts in tcpinfo.csv (TLS hands
the body over in 16 KB records, a second apart at 130 kbit/s): the slope of
`bytes_received`, and analysis.rates.estimate on the `wire_bytes` series.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from analysis.rates import estimate
from tests.lab_e2e import (
    MAX_SECONDS,
    RATE_KBPS,
    REPEAT,
    TARGETS,
    TWITTER_ADDRESSES,
    LabRuns,
    Run,
    lab_runs,
)

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.timeout(300)]

TWITTER = ("lab-twitter-image", "lab-twitter-tco-page")
CONTROLS = ("lab-control-image", "lab-control-page")
FAST = 10 * RATE_KBPS  # an unthrottled download in the lab is far faster than this
SLOW = 1.5 * RATE_KBPS  # a throttled one cannot beat the policer by much
SIZES = {"lab-twitter-image": 300_000, "lab-control-image": 300_000,
         "lab-twitter-tco-page": 30_000, "lab-collateral-reddit-page": 30_000,
         "lab-control-page": 30_000}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRuns]:
    yield from lab_runs(tmp_path_factory, "tpe-")


def goodput(row: dict[str, str]) -> float:
    return float(row["goodput_kbps"])


def body_kbps(row: dict[str, str]) -> float:
    """The body's rate from its first byte: a slow request upload does not count."""
    seconds = float(row["duration_s"]) - float(row["ttfb_ms"]) / 1000
    return int(row["bytes"]) * 8 / 1000 / max(seconds, 1e-6)


def wire_series(run: Run, transfer_id: str) -> list[list[float]]:
    """The kernel's byte count since the request (tcpinfo.csv `wire_bytes`, every 100 ms)."""
    return [[float(r["t_ms"]), float(r["wire_bytes"])] for r in run.tcpinfo(transfer_id)
            if r["wire_bytes"] != ""]


def kernel_kbps(tcpinfo: list[dict[str, str]]) -> float:
    """Slope of the kernel's received-byte count, from when data began to flow to the end."""
    points = [(float(r["t_ms"]), int(r["bytes_received"])) for r in tcpinfo]
    start = next(i for i, (_, b) in enumerate(points) if b > points[0][1] + 4000)
    (t0, b0), (t1, b1) = points[start], points[-1]
    return (b1 - b0) * 8 / (t1 - t0)


def assert_fast_and_complete(run: Run, targets: tuple[str, ...]) -> None:
    for target in targets:
        rows = run.of("transfers", target)
        assert rows, f"{target}: no transfer"
        for row in rows:
            # 206: the probe asks for its byte cap as a Range, and the object fits in it
            assert row["failure"] == "" and row["status_code"] in ("200", "206"), row
            assert row["stopped_by"] == "complete" and int(row["bytes"]) == SIZES[target], row
            assert goodput(row) > FAST, (target, goodput(row))


def assert_policed(run: Run, target: str) -> None:
    """A flow policed at RATE_KBPS, ended early by the probe once its rate was known."""
    (row,) = run.of("transfers", target)
    assert row["failure"] == "", row
    assert row["stopped_by"] == "stable" and float(row["duration_s"]) < MAX_SECONDS, row
    kernel = kernel_kbps(run.tcpinfo(row["transfer_id"]))
    steady = estimate(wire_series(run, row["transfer_id"])).rate_kbps
    assert kernel == pytest.approx(RATE_KBPS, rel=0.2), (kernel, steady, row)
    assert steady == pytest.approx(RATE_KBPS, rel=0.2), (kernel, steady, row)
    # The body goodput waits for the first 16 KB record and misses the one in flight
    # at the stop: below the rate, never above it.
    assert 0.5 * RATE_KBPS < goodput(row) < 1.2 * RATE_KBPS, row


def test_clean_everything_fast_and_ok(runs: LabRuns) -> None:
    run = runs.run("clean")
    ms = run.measurements()
    assert len(ms) == REPEAT["clean"] * len(TARGETS)
    assert all(m["test_keys"]["failure"] is None for m in ms)
    assert_fast_and_complete(run, TARGETS)
    for row in run.rows("tls"):
        assert row["verified"] == "true" and row["cert_issuer"] == "CN=Probe Lab CA", row
    for row in run.rows("dns"):
        assert row["bogons"] == "", row


def test_sni_throttle_polices_twitter_media_only(runs: LabRuns) -> None:
    run = runs.run("sni-throttle")
    assert_policed(run, "lab-twitter-image")
    (tco,) = run.of("transfers", "lab-twitter-tco-page")
    assert tco["failure"] == "" and goodput(tco) < SLOW, tco
    assert_fast_and_complete(run, (*CONTROLS, "lab-collateral-reddit-page"))


def test_collateral_slows_tco_names_not_twimg(runs: LabRuns) -> None:
    run = runs.run("collateral")
    for target in ("lab-collateral-reddit-page", "lab-twitter-tco-page"):
        (row,) = run.of("transfers", target)
        assert row["failure"] == "" and int(row["bytes"]) == SIZES[target], row
        assert 0.3 * RATE_KBPS < goodput(row) < SLOW, row
    assert_fast_and_complete(run, ("lab-twitter-image", *CONTROLS))


def test_ip_throttle_slows_twitter_addresses(runs: LabRuns) -> None:
    run = runs.run("ip-throttle")
    rows = run.rows("transfers")
    assert {r["address"] for r in rows} >= {"203.0.113.10", "203.0.113.14"}
    for row in rows:
        if row["address"] in TWITTER_ADDRESSES:
            assert row["failure"] == "" and goodput(row) < SLOW, row
        else:
            assert goodput(row) > FAST, row
    assert_policed(run, "lab-twitter-image")


def test_upload_throttle_leaves_downloads_fast(runs: LabRuns) -> None:
    run = runs.run("upload-throttle")
    for row in run.rows("transfers"):
        assert row["failure"] == "" and int(row["bytes"]) == SIZES[row["target"]], row
        assert body_kbps(row) > FAST, row


def test_congestion_slows_everything_without_failures(runs: LabRuns) -> None:
    run = runs.run("congestion")
    rows = run.rows("transfers")
    assert len(rows) == REPEAT["congestion"] * len(TARGETS)
    for row in rows:
        assert row["failure"] == "" and int(row["bytes"]) >= 16384, row
        assert 0.3 * RATE_KBPS < goodput(row) < SLOW, row
    assert all(m["test_keys"]["failure"] is None for m in run.measurements())


def test_rst_block_resets_twitter_handshakes(runs: LabRuns) -> None:
    run = runs.run("rst-block")
    for target in TWITTER:
        (tcp,) = run.of("tcp", target)
        assert tcp["success"] == "true", tcp  # the reset answers the ClientHello, not the SYN
        (tls,) = run.of("tls", target)
        assert tls["failure"] == "connection_reset" and tls["verified"] != "true", tls
        (m,) = [m for m in run.measurements() if m["test_keys"]["target"]["name"] == target]
        assert m["test_keys"]["failure"] == "connection_reset"
    assert_fast_and_complete(run, (*CONTROLS, "lab-collateral-reddit-page"))


def test_blackhole_times_out_twitter_handshakes(runs: LabRuns) -> None:
    run = runs.run("blackhole")
    for target in TWITTER:
        (tls,) = run.of("tls", target)
        assert tls["failure"] == "generic_timeout_error", tls
        (transfer,) = run.of("transfers", target)
        assert transfer["bytes"] == "0" and transfer["failure"] == "generic_timeout_error"
    assert_fast_and_complete(run, (*CONTROLS, "lab-collateral-reddit-page"))


def test_dns_poison_records_the_bogon_and_never_connects_to_it(runs: LabRuns) -> None:
    run = runs.run("dns-poison")
    poison = "10.10.34.34"
    for target in TWITTER:
        (a,) = [r for r in run.of("dns", target) if r["query_type"] == "A"]
        assert a["answers"] == poison and a["bogons"] == poison, a
        assert a["resolver"] == "198.51.100.53", a  # asked the lab DNS; the router answered
        (m,) = [m for m in run.measurements() if m["test_keys"]["target"]["name"] == target]
        assert m["test_keys"]["failure"] == "dns_bogon_error"
        assert not run.of("transfers", target)
    assert all(r["address"] != poison for r in run.rows("tcp"))
    assert len(run.rows("tcp")) == len(TARGETS) - len(TWITTER)
    assert_fast_and_complete(run, (*CONTROLS, "lab-collateral-reddit-page"))


def test_tls_mitm_shows_the_foreign_issuer(runs: LabRuns) -> None:
    run = runs.run("tls-mitm")
    for target in TWITTER:
        (tls,) = run.of("tls", target)
        assert tls["verified"] == "false" and tls["failure"] == "ssl_unknown_authority", tls
        assert tls["cert_issuer"] == "CN=Foreign Interceptor CA", tls
        assert tls["chain_from_unverified_retry"] == "true", tls
        (transfer,) = run.of("transfers", target)
        assert transfer["bytes"] == "0", transfer  # nothing is fetched over an untrusted chain
    for target in CONTROLS:
        (tls,) = run.of("tls", target)
        assert tls["verified"] == "true" and tls["cert_issuer"] == "CN=Probe Lab CA", tls
    assert_fast_and_complete(run, (*CONTROLS, "lab-collateral-reddit-page"))


def test_runs_record_the_lab_options(runs: LabRuns) -> None:
    """run.json says what was measured how (the verdict module relies on complete runs)."""
    info = json.loads((runs.folder("sni-throttle") / "run.json").read_text())
    assert info["status"] == "complete" and info["measurements"] == len(TARGETS)
    assert info["options"]["max_seconds"] == MAX_SECONDS
    assert "203.0.113.0/24" in info["options"]["allow_nets"]


def test_lean_targets_keep_their_pairs(tmp_path) -> None:
    """The subsets the tests and the demo run are valid target files; a lost pair is refused."""
    from probe import targets
    from probe.lab.demo import DEMO_TARGETS, write_targets
    from probe.lab.targets import lab_targets, targets_toml

    for names in (TARGETS, DEMO_TARGETS):
        loaded = targets.load([write_targets(tmp_path / "t.toml", names)])
        assert [t.name for t in loaded] == [t.name for t in lab_targets() if t.name in names]
    reddit = {t.name: t for t in targets.load([tmp_path / "t.toml"])}[
        "lab-collateral-reddit-page"]
    assert (reddit.family, reddit.pair) == ("control-tco", "lab-control-page")
    with pytest.raises(ValueError, match="lab-control-page"):
        targets_toml(["lab-twitter-tco-page"])
    with pytest.raises(ValueError, match="no-such"):
        targets_toml(["no-such"])


def test_every_lab_record_is_an_ooni_measurement(runs: LabRuns) -> None:
    """Whatever the scenario did (throttle, reset, blackhole, poisoned DNS), each line the
    probe wrote parses with OONI's own data models."""
    from tests.lab_e2e import _FOLDERS
    from tests.ooni_check import ooni_errors

    runs.folder("clean")
    checked = 0
    for scenario, folder in sorted(_FOLDERS.items()):
        for line in (folder / "measurements.jsonl").read_text().splitlines():
            m = json.loads(line)
            assert ooni_errors(m) == [], (scenario, m["annotations"]["measurement_id"])
            checked += 1
    assert checked >= 5
