"""Rate estimates, stop_when, the plateau test and the policing/shaping signature."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import rates
from analysis.signature import plateau, signature
from tests.fixtures_results import FAST, POLICED, SHAPED, Path_, congested, simulate

pytestmark = pytest.mark.timeout(60)


def _first_stop(samples: list[list[float]]) -> list[float] | None:
    for i in range(2, len(samples) + 1):
        if rates.stop_when(samples[:i]):
            return samples[i - 1]
    return None


@pytest.mark.parametrize("path", [
    POLICED,
    Path_("policed", rate_kbps=130, rtt_ms=80, burst_bytes=64_000),
    Path_("policed", rate_kbps=130, rtt_ms=150, burst_bytes=8_000),
    Path_("shaped", rate_kbps=130, rtt_ms=40, buffer_pkts=60),
], ids=["policed", "policed-big-burst", "policed-long-rtt", "shaped"])
def test_stop_when_stops_under_130kbps_within_10s_and_256kb(path: Path_) -> None:
    for seed in range(3):
        tr = simulate(path, seed=seed, seconds=12)
        stop = _first_stop(tr.samples)
        assert stop is not None, "never stable"
        t_ms, nbytes = stop
        assert t_ms <= 10_000 and nbytes <= 256 * 1024
        est = rates.estimate([s for s in tr.samples if s[0] <= t_ms])
        assert est.stable and 0.75 * path.rate_kbps <= est.rate_kbps <= 1.25 * path.rate_kbps
        assert est.ci_low <= est.rate_kbps <= est.ci_high


def test_stop_when_not_in_slow_start() -> None:
    # A fast path with a long RTT: still ramping up after 1.5 s.
    tr = simulate(Path_("clean", rate_kbps=50_000, rtt_ms=300, buffer_pkts=2000), seed=1,
                  max_bytes=8 * 1024 * 1024)
    ramp = [s for s in tr.samples if s[0] <= 2_500]
    assert ramp[-1][0] > 2_000
    assert not any(rates.stop_when(ramp[:i]) for i in range(2, len(ramp) + 1))


def test_stop_when_not_on_a_stall() -> None:
    tr = simulate(SHAPED, seed=0)
    steady = [s for s in tr.samples if s[0] <= 6_000]
    assert rates.stop_when(steady)  # a settled rate ...
    last = steady[-1]
    stalled = steady + [[last[0] + 100 * k, last[1]] for k in range(1, 16)]  # 1.5 s, no bytes
    est = rates.estimate(stalled)
    assert not est.stable and "stalled" in est.reason


def test_no_data_and_too_little_data() -> None:
    assert rates.estimate([]).rate_kbps is None
    assert not rates.stop_when([[0, 0], [100, 0], [200, 0]])
    assert not rates.stop_when([[0, 0], [50, 10_000], [100, 20_000]])  # 0.1 s: too short


def test_goodput_and_steady_rate_skip_the_initial_burst() -> None:
    tr = simulate(Path_("policed", rate_kbps=130, rtt_ms=40, burst_bytes=96_000), seed=2)
    est = rates.estimate(tr.samples)
    assert est.goodput_kbps == pytest.approx(tr.bytes * 8 / 1000 / (tr.samples[-1][0] / 1000))
    assert est.goodput_kbps > 1.3 * 130  # the bucket's burst inflates the whole-object rate
    assert 110 <= est.rate_kbps <= 160  # the steady state does not


def test_plateau_flat_for_caps_and_not_for_congestion() -> None:
    for seed in range(4):
        assert plateau(simulate(POLICED, seed=seed).samples).flat is True
        assert plateau(simulate(SHAPED, seed=seed).samples).flat is True
    wandering = [plateau(simulate(congested(400), seed=s).samples).flat for s in range(6)]
    assert wandering.count(False) >= 5
    assert plateau(simulate(FAST, seed=0).samples).flat is None  # 0.3 s: too short to tell


@pytest.mark.parametrize("direction", ["down", "up"])
def test_signature_policing_vs_shaping(direction: str) -> None:
    for seed in range(3):
        pol = simulate(POLICED, seed=seed, direction=direction)
        shp = simulate(SHAPED, seed=seed, direction=direction)
        assert signature(pol.samples, pol.tcp_info, direction).kind == "policing"
        assert signature(shp.samples, shp.tcp_info, direction).kind == "shaping"


def test_signature_upload_uses_tcp_info() -> None:
    pol = simulate(POLICED, seed=0, direction="up")
    sig = signature(pol.samples, pol.tcp_info, "up")
    assert sig.retransmits and sig.retransmits > 0 and sig.rtt_growth < 1.5
    assert "retransmissions without RTT growth" in sig.evidence
    shp = simulate(SHAPED, seed=0, direction="up")
    assert signature(shp.samples, shp.tcp_info, "up").rtt_growth > 1.5


def test_signature_congestion_and_unknown() -> None:
    kinds = [signature(simulate(congested(300), seed=s).samples).kind for s in range(5)]
    assert kinds.count("congestion") >= 4
    assert signature(simulate(FAST, seed=0).samples).kind == "unknown"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 20_000), st.integers(0, 10**6)), max_size=60))
def test_estimate_never_crashes_and_brackets_its_rate(raw: list[tuple[float, int]]) -> None:
    est = rates.estimate([list(x) for x in raw])
    if est.rate_kbps is not None and est.ci_low is not None:
        assert est.ci_low <= est.rate_kbps <= est.ci_high
    assert not est.stable or est.elapsed_s >= rates.MIN_SECONDS
