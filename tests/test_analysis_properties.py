"""The analysis never crashes on what a probe may write: property tests over random series.

Whatever the samples look like (empty, one point, flat, steps, bursts, long
gaps, byte counts of 1e15, duplicated or unsorted timestamps, negative times,
NaN), every step either computes or says why it could not, and the verdict
path still gives every Twitter target a verdict with an explanation.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis import commands, load
from analysis.rates import RateEstimate, estimate, goodput_kbps, stop_when
from analysis.report import write_report
from analysis.signature import KINDS, plateau, signature
from analysis.verdicts import FIELDS, VERDICTS, _Rep, judge, transfer_table, verdicts
from probe.results import csvs
from probe.results import folder as run_folder
from probe.results.jsonl import JsonlWriter
from tests.fixtures_results import FAST, RunSpec, Spec, measurement

pytestmark = pytest.mark.timeout(300)
FAST_SETTINGS = settings(max_examples=400, deadline=None, derandomize=True,
                         suppress_health_check=[HealthCheck.too_slow])
FOLDER_SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                           suppress_health_check=[HealthCheck.too_slow,
                                                  HealthCheck.data_too_large])
REPORT_SETTINGS = settings(max_examples=10, deadline=None, derandomize=True,
                           suppress_health_check=[HealthCheck.too_slow,
                                                  HealthCheck.data_too_large])

# --- series ------------------------------------------------------------------

# Time steps in ms: duplicates (0), reads, stalls, and gaps of minutes to days.
STEPS_MS = st.one_of(st.just(0.0), st.floats(0.001, 300.0), st.sampled_from([1e3, 6e4, 1e9]))
# Bytes per step: none (a stall), a packet or a record, or absurd counts.
BYTES = st.one_of(st.just(0), st.integers(1, 70_000), st.sampled_from([10**12, 10**15]))


@st.composite
def series(draw: st.DrawFn, non_finite: bool = True) -> list[list[float]]:
    """Samples `[[t_ms, cumulative_bytes], ...]` made of phases (flat, steady, bursts, gaps),
    possibly shifted to negative times, shuffled, or holding NaN/inf."""
    phases = draw(st.lists(st.tuples(st.integers(1, 150), STEPS_MS, BYTES), max_size=5))
    t = draw(st.sampled_from([0.0, -5000.0, 1e12]))  # a clock that started elsewhere
    b = draw(st.sampled_from([0, 300]))
    out = [[t, b]] if draw(st.booleans()) else []
    for count, dt, db in phases:
        for _ in range(count):
            t, b = t + dt, b + db
            out.append([t, b])
    if draw(st.booleans()):
        out = draw(st.permutations(out))
    if non_finite and out and draw(st.booleans()):
        i = draw(st.integers(0, len(out) - 1))
        out[i] = [out[i][0], draw(st.sampled_from([math.nan, math.inf]))]
    return out


NUMBERS = st.one_of(st.none(), st.just(math.nan), st.just(0), st.integers(1, 10**6))
TCP_INFO = st.lists(st.fixed_dictionaries({}, optional={
    "total_retrans": NUMBERS, "rtt_us": NUMBERS, "min_rtt_us": NUMBERS}), max_size=6)


def finite_or_none(x: float | None) -> bool:
    return x is None or math.isfinite(x)


# --- single steps ------------------------------------------------------------


@FAST_SETTINGS
@given(series())
def test_estimate_never_raises_and_says_why(s: list[list[float]]) -> None:
    est = estimate(s)
    assert isinstance(est, RateEstimate) and est.reason
    assert stop_when(s) is est.stable
    for x in (est.rate_kbps, est.ci_low, est.ci_high, est.goodput_kbps, goodput_kbps(s)):
        assert finite_or_none(x)
    assert math.isfinite(est.elapsed_s) and math.isfinite(est.window_s)
    if est.stable:
        assert est.rate_kbps is not None and est.rate_kbps > 0


@FAST_SETTINGS
@given(series(), TCP_INFO, st.sampled_from(["down", "up"]), st.one_of(st.none(), st.floats(0, 1e4)))
def test_plateau_and_signature_never_raise(s: list[list[float]], info: list[dict],
                                           direction: str, rtt_ms: float | None) -> None:
    p = plateau(s)
    assert p.reason or p.flat is not None
    for x in (p.level_kbps, p.spread):
        assert finite_or_none(x)
    sig = signature(s, info, direction, rtt_ms)
    assert sig.kind in KINDS and sig.evidence
    assert finite_or_none(sig.gap_share) and finite_or_none(sig.rtt_growth)
    if p.flat is None:
        assert sig.kind == "unknown"


def test_a_rate_of_zero_over_the_steady_window_is_unknown_not_a_crash() -> None:
    """A deep buffer and a 60 s limit: a first burst, then silence with a few late bytes, so
    the median one-second rate is 0 and the spread of the plateau cannot be computed."""
    s = ([[0, 0], [100, 50_000], [200, 100_000]] + [[i * 100, 100_000] for i in range(3, 590)]
         + [[59_000, 100_500], [59_500, 101_000], [60_000, 101_500]])
    p = plateau(s)
    assert p.flat is False and p.level_kbps == 0.0 and p.spread is None and "zero" in p.reason
    sig = signature(s, [], "down")
    assert sig.kind == "unknown" and "zero" in sig.evidence


def test_missing_tcp_info_fields_leave_the_time_series_to_decide() -> None:
    """Empty CSV cells come back as NaN: they are no evidence, not a number."""
    s = [[i * 100.0, i * 1448.0] for i in range(100)]
    nan = {"total_retrans": math.nan, "rtt_us": math.nan, "min_rtt_us": math.nan}
    sig = signature(s, [nan, nan], "up")
    assert sig.retransmits is None and sig.rtt_growth is None
    assert sig.kind == "shaping"


# --- judge -------------------------------------------------------------------

RATES = st.one_of(st.just(0.0), st.floats(1e-9, 1e-3), st.floats(1.0, 1e5),
                  st.just(130.0), st.floats(1e9, 1e15))


@st.composite
def reps(draw: st.DrawFn, family: str, max_size: int) -> list[_Rep]:
    out = []
    for i in range(draw(st.integers(1 if family == "twitter" else 0, max_size))):
        stage = draw(st.sampled_from(["ok", "ok", "ok", "dns", "tcp", "tls-reset", "tls-cert",
                                      "http"]))
        rep = _Rep(f"m{i}", f"{family}-image", family, "image", "h", "h", "target", "down",
                   stage)
        if stage == "ok" and draw(st.booleans()):
            rep.rate = draw(RATES)
            n = draw(st.sampled_from([1, 4, 8, 40]))
            rep.bins = np.full(n, rep.rate) if draw(st.booleans()) else np.array(
                draw(st.lists(RATES, min_size=n, max_size=n)))
            rep.steady = draw(st.booleans())
            rep.flat = draw(st.sampled_from([None, True, False]))
            rep.shape = draw(st.sampled_from([None, "policing", "shaping", "congestion",
                                              "unknown"]))
        elif stage == "ok":
            rep.status = draw(st.sampled_from([None, 200, 404, 451]))
        out.append(rep)
    return out


@FAST_SETTINGS
@given(reps("twitter", 4), reps("control", 4), st.booleans())
def test_judge_always_gives_a_verdict(subject: list[_Rep], controls: list[_Rep],
                                      equal: bool) -> None:
    if equal:  # target and controls at exactly the same rate
        for r in subject + controls:
            if r.rate is not None:
                r.rate, r.bins = 1000.0, np.full(8, 1000.0)
    v = judge(subject, controls, seed=0)
    assert v.verdict in VERDICTS and v.explanation
    for x in (v.rate_kbps, v.control_rate_kbps, v.ratio, v.ci_low, v.ci_high, v.p_value):
        assert finite_or_none(x)


# --- the whole verdict path --------------------------------------------------

DIRECT = st.fixed_dictionaries({
    "samples": series(),
    "tcp_info": TCP_INFO,
    "wire": st.sampled_from([None, "samples", "double"]),  # tcpinfo wire_bytes, if any
    "bytes": st.sampled_from(["last", 0, 20_000, 10**15]),
    "failure": st.sampled_from([None, None, "connection_reset"]),
    "direction": st.sampled_from(["down", "up"]),
})


def _write_folder(out: Path, seed: int, transfers: list[dict], complete: bool) -> None:
    """A run folder with one Twitter target and its control, repetitions interleaved,
    each measurement's transfer replaced by the drawn series."""
    spec = RunSpec([Spec("twitter-image", "twitter", "image", "pbs.twimg.com", FAST,
                         pair="control-image"),
                    Spec("control-image", "control", "image", "upload.wikimedia.org", FAST)],
                   repeat=len(transfers) // 2, seed=seed, max_bytes=4 * 1448, seconds=0.5)
    run_id = f"20210312T090000Z-{seed:06x}"
    folder = run_folder.create(out, run_id)
    info = run_folder.base_run_info(run_id, spec.start)
    info.update(options={"repeat": spec.repeat}, label="fuzz", targets=2, resolvers=[],
                target_files={})
    done = []
    with JsonlWriter(folder / "measurements.jsonl") as writer:
        for i, drawn in enumerate(transfers):
            m = measurement(run_id, spec.targets[i % 2], i // 2, spec.start, seed * 100 + i, spec)
            t = m["test_keys"]["transfers"][0]
            s = drawn["samples"]
            last = s[-1][1] if s else 0
            nbytes = drawn["bytes"] if drawn["bytes"] != "last" else last
            t.update(samples=s, direction=drawn["direction"], failure=drawn["failure"],
                     bytes=nbytes if math.isfinite(nbytes) else 0,
                     goodput_kbps=None if not s else t["goodput_kbps"])
            snaps = [dict(d, t_ms=100.0 * k) for k, d in enumerate(drawn["tcp_info"])]
            if drawn["wire"] is not None:
                scale = 2 if drawn["wire"] == "double" else 1
                snaps = [{"t_ms": tm, "wire_bytes": b * scale} for tm, b in s] + snaps
            t["tcp_info"] = snaps
            m["test_keys"]["failure"] = drawn["failure"]
            writer.append(m)
            done.append(m)
    if complete:
        csvs.write_all(folder, done)
        info.update(status="complete", measurements=len(done))
    else:  # killed: read from the JSONL
        info.update(status="interrupted")
    run_folder.write_run_json(folder, info)


def _check_rows(rows: object) -> None:
    assert list(rows.columns) == FIELDS
    twitter = rows[rows["target"] == "twitter-image"]
    assert len(twitter) >= 1
    assert rows["verdict"].isin(VERDICTS).all()
    assert (rows["explanation"].str.len() > 0).all()
    for col in ("rate_kbps", "control_rate_kbps", "ratio", "ci_low", "ci_high", "p_value"):
        values = rows[col].dropna().to_numpy(float)
        assert np.isfinite(values).all(), (col, values)


@FOLDER_SETTINGS
@given(st.lists(DIRECT, min_size=2, max_size=6).filter(lambda x: len(x) % 2 == 0),
       st.booleans())
def test_verdicts_of_random_run_folders(transfers: list[dict], complete: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _write_folder(Path(tmp), 1, transfers, complete)
        r = load([tmp])
        _check_rows(verdicts(r))
        table = transfer_table(r)
        assert len(table) == len(transfers)
        rates = table["rate_kbps"].dropna().to_numpy(float)
        assert np.isfinite(rates).all()


def test_a_clock_jump_is_judged_and_the_explanation_says_what_was_skipped(
        tmp_path: Path) -> None:
    """A steady window of days cannot be cut into 250 ms bootstrap bins (gigabytes): it is
    bootstrapped as one value, and the verdict says so."""
    jump = ([[i * 100.0, i * 1448.0] for i in range(50)]
            + [[1e9 + i * 100.0, 1e5 + i * 1448.0] for i in range(50)])
    steady = [[i * 100.0, i * 14_480.0] for i in range(100)]
    drawn = [{"samples": s, "tcp_info": [], "wire": None, "bytes": "last", "failure": None,
              "direction": "down"} for s in (jump, steady)]
    _write_folder(tmp_path, 3, drawn, True)
    rows = verdicts(load([str(tmp_path)]))
    _check_rows(rows)
    assert "bootstrapped as one value" in rows["explanation"].iloc[0]


@REPORT_SETTINGS
@given(st.lists(DIRECT, min_size=2, max_size=4).filter(lambda x: len(x) % 2 == 0))
def test_report_and_commands_on_random_run_folders(transfers: list[dict]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = str(Path(tmp) / "results")
        _write_folder(Path(results), 2, transfers, True)
        written = write_report(load([results]), Path(tmp) / "report.html")
        assert all(p.stat().st_size > 0 for p in written)
        assert "Throttling report" in (Path(tmp) / "report.html").read_text()
        for command, fmt in ((commands.verdicts, "table"), (commands.aggregate, "json")):
            res = CliRunner().invoke(command, [results, "--format", fmt])
            assert res.exit_code == 0 and res.exception is None, res.output
