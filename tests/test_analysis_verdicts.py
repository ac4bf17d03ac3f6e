"""Verdict rules, loading (also a killed run), and aggregation over synthetic run folders."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

import analysis
from analysis.aggregate import aggregate
from analysis.verdicts import FIELDS, _Rep, judge, verdicts
from tests.fixtures_results import (
    FAST,
    POLICED,
    SHAPED,
    Path_,
    RunSpec,
    Spec,
    congested,
    pairs,
    write_run,
)

pytestmark = pytest.mark.timeout(120)
SERVER = "probe-server.test"


def _one(folder: Path, target: str = "twitter-image", experiment: str = "target") -> dict:
    rows = verdicts([folder])
    row = rows[(rows["target"] == target) & (rows["experiment"] == experiment)]
    assert len(row) == 1, rows
    return row.iloc[0].to_dict()


def test_policed_twitter_is_throttled(tmp_path: Path) -> None:
    v = _one(write_run(tmp_path, RunSpec(pairs(("image",), POLICED, FAST))))
    assert v["verdict"] == "throttled" and v["trigger"] == "unknown"
    assert 110 <= v["rate_kbps"] <= 160 and v["control_rate_kbps"] > 5000
    assert v["ratio"] < 0.05 and v["ci_high"] < 0.7 and v["p_value"] <= 0.01
    assert v["signature"] == "policing" and "policed" in v["explanation"]
    assert v["controls"] == ["control-image"] and v["repetitions"] == 3


def test_shaped_twitter_is_throttled_with_shaping_signature(tmp_path: Path) -> None:
    v = _one(write_run(tmp_path, RunSpec(pairs(("image",), SHAPED, FAST))))
    assert v["verdict"] == "throttled" and v["signature"] == "shaping"


def test_each_failure_verdict(tmp_path: Path) -> None:
    targets = [Spec(f"tw-{fail}", "twitter", "image", "pbs.twimg.com", FAST, pair="ctl",
                    fail=fail) for fail in ("dns", "tcp", "tls-reset", "tls-cert", "http")]
    targets.append(Spec("ctl", "control", "image", "upload.wikimedia.org", FAST))
    rows = verdicts([write_run(tmp_path, RunSpec(targets, repeat=2))]).set_index("target")
    assert rows.loc["tw-dns", "verdict"] == "dns-tampered"
    assert rows.loc["tw-tcp", "verdict"] == "blocked"
    assert rows.loc["tw-tls-reset", "verdict"] == "blocked"
    assert rows.loc["tw-tls-cert", "verdict"] == "tls-tampered"
    assert rows.loc["tw-http", "verdict"] == "blocked"


def test_failure_with_failing_controls_is_inconclusive(tmp_path: Path) -> None:
    targets = [Spec("tw", "twitter", "image", "pbs.twimg.com", FAST, pair="ctl", fail="tcp"),
               Spec("ctl", "control", "image", "upload.wikimedia.org", FAST, fail="tcp")]
    v = _one(write_run(tmp_path, RunSpec(targets, repeat=2)), "tw")
    assert v["verdict"] == "inconclusive" and "controls failed too" in v["explanation"]


def test_slow_controls_are_inconclusive_never_throttled(tmp_path: Path) -> None:
    slow_control = Path_("clean", rate_kbps=300, rtt_ms=60, buffer_pkts=20)
    v = _one(write_run(tmp_path, RunSpec(pairs(("image",), Path_("policed", 100, 60),
                                               slow_control))))
    assert v["ratio"] < 0.7 and v["verdict"] == "inconclusive"
    assert "controls are slow" in v["explanation"]


def test_noisy_controls_are_inconclusive(tmp_path: Path) -> None:
    # Controls alternate between a fast and a slow network across repetitions.
    specs = [Spec("twitter-image", "twitter", "image", "pbs.twimg.com",
                  Path_("policed", 300, 40), pair="fast"),
             Spec("fast", "control", "image", "a.example", Path_("clean", 20_000, 40)),
             Spec("fast", "control", "image", "a.example", Path_("clean", 600, 40))]
    v = _one(write_run(tmp_path, RunSpec(specs, repeat=2)))
    assert v["verdict"] == "inconclusive" and "vary too much" in v["explanation"]


def test_ok_on_a_slow_network_says_every_flow_is_slow(tmp_path: Path) -> None:
    slow = congested(250, 120)
    v = _one(write_run(tmp_path, RunSpec(pairs(("image",), slow, slow), repeat=2)))
    assert v["verdict"] == "ok" and v["control_rate_kbps"] < 400
    assert "every flow is slow" in v["explanation"], v
    fast = _one(write_run(tmp_path / "fast", RunSpec(pairs(("image",), FAST, FAST))))
    assert fast["verdict"] == "ok" and "every flow is slow" not in fast["explanation"]


@pytest.mark.parametrize("network", ["clean", "congested", "slow-congested"])
def test_no_false_throttled_over_many_runs(tmp_path: Path, network: str) -> None:
    path = {"clean": Path_("clean", 4000, 50, buffer_pkts=40),
            "congested": congested(1500),
            "slow-congested": congested(500, 120)}[network]
    seen = []
    for seed in range(12):
        folder = write_run(tmp_path / str(seed),
                           RunSpec(pairs(("image", "video"), path, path), seed=seed,
                                   repeat=1 + seed % 3))
        seen += list(verdicts([folder])["verdict"])
    assert "throttled" not in seen
    assert seen.count("ok") >= len(seen) * (0.9 if network == "clean" else 0.6)


@pytest.mark.parametrize("control", ["clean", "congested"])
def test_3x_slowdown_detected(tmp_path: Path, control: str) -> None:
    ctl = Path_("clean", 1500, 60, buffer_pkts=30) if control == "clean" else congested(1500)
    twitter = Path_("policed", 1500 / 3 if control == "clean" else 350, 60)
    hits = 0
    for seed in range(8):
        folder = write_run(tmp_path / str(seed), RunSpec(pairs(("image",), twitter, ctl),
                                                         seed=seed))
        v = _one(folder)
        hits += v["verdict"] == "throttled"
        assert v["verdict"] in ("throttled", "inconclusive")
    assert hits >= (8 if control == "clean" else 6)


def _experiments(twitter_sni: Path_, upload: Path_, split: Path_ | None = None) -> list[Spec]:
    out = [Spec("sni-twimg", "twitter", "image", SERVER, twitter_sni, experiment="sni",
                sni="pbs.twimg.com"),
           Spec("sni-neutral", "control", "image", SERVER, FAST, experiment="sni",
                sni="example.org"),
           Spec("sni-none", "control", "image", SERVER, FAST, experiment="sni", sni=""),
           Spec("up-twimg", "twitter", "page", SERVER, upload, experiment="upload",
                sni="pbs.twimg.com", direction="up"),
           Spec("up-neutral", "control", "page", SERVER, upload, experiment="upload",
                sni="example.org", direction="up")]
    if split:
        out.append(Spec("split-twimg", "twitter", "image", SERVER, split, experiment="split",
                        sni="pbs.twimg.com"))
    return out


def test_trigger_sni_from_the_sni_experiment(tmp_path: Path) -> None:
    specs = pairs(("image",), POLICED, FAST) + _experiments(POLICED, FAST, split=FAST)
    folder = write_run(tmp_path, RunSpec(specs, repeat=2))
    v = _one(folder)
    assert v["verdict"] == "throttled" and v["trigger"] == "sni"
    assert "split ClientHello evades it" in v["explanation"]
    assert _one(folder, "sni-twimg", "sni")["verdict"] == "throttled"
    assert _one(folder, "split-twimg", "split")["verdict"] == "ok"


def test_trigger_ip_when_the_name_alone_is_fast(tmp_path: Path) -> None:
    specs = pairs(("image",), POLICED, FAST) + _experiments(FAST, FAST)
    v = _one(write_run(tmp_path, RunSpec(specs, repeat=2)))
    assert v["verdict"] == "throttled" and v["trigger"] == "ip"


def test_all_uploads_shaped_is_not_sni_throttling(tmp_path: Path) -> None:
    upload = Path_("shaped", 130, 40, buffer_pkts=30)
    specs = pairs(("image",), FAST, FAST) + _experiments(FAST, upload)
    folder = write_run(tmp_path, RunSpec(specs, repeat=2))
    up = _one(folder, "up-twimg", "upload")
    assert up["verdict"] != "throttled" and up["trigger"] is None
    assert up["direction"] == "up" and "Every upload is slow" in up["explanation"]
    assert _one(folder)["verdict"] == "ok"


def test_killed_run_is_read_from_jsonl(tmp_path: Path) -> None:
    complete = write_run(tmp_path / "a", RunSpec(pairs(("image",), POLICED, FAST), seed=4))
    killed = write_run(tmp_path / "b", RunSpec(pairs(("image",), POLICED, FAST), seed=4,
                                               status="running"))
    assert not (killed / "transfers.csv").exists()
    a, b = analysis.load([complete]), analysis.load([killed])
    assert b.runs["source"].tolist() == ["jsonl"] and a.runs["source"].tolist() == ["csv"]
    for name in ("transfers", "samples", "tcpinfo", "dns", "tls", "tcp"):
        ta, tb = a.table(name), b.table(name)
        assert list(ta.columns) == list(tb.columns) and len(ta) == len(tb) > 0
        assert (ta.dtypes == tb.dtypes).all(), name
    assert _one(killed)["verdict"] == "throttled"


def test_load_reads_parent_folders_and_measurements(tmp_path: Path) -> None:
    for seed in range(3):
        write_run(tmp_path, RunSpec(pairs(("image", "video"), POLICED, FAST), seed=seed,
                                    repeat=1))
    r = analysis.load(tmp_path)
    assert len(r.runs) == 3 and len(r.measurements) == 12
    assert set(r.measurements["pair"].dropna()) == {"control-image", "control-video"}
    assert r.transfers["connection_reused"].dtype == bool
    assert r.transfers["goodput_kbps"].dtype.kind == "f"
    with pytest.raises(FileNotFoundError):
        analysis.load(tmp_path / "missing")


def test_verdict_rows_have_the_contract_fields(tmp_path: Path) -> None:
    rows = verdicts([write_run(tmp_path, RunSpec(pairs(("image",), POLICED, FAST)))])
    assert list(rows.columns) == FIELDS
    assert set(rows["verdict"]) <= {"ok", "throttled", "blocked", "dns-tampered",
                                    "tls-tampered", "inconclusive"}


def test_aggregate_per_network_and_day(tmp_path: Path) -> None:
    day1 = dt.datetime(2021, 3, 10, 8, tzinfo=dt.UTC)
    day2 = dt.datetime(2021, 3, 11, 8, tzinfo=dt.UTC)
    for seed, (start, path, label, asn) in enumerate([
            (day1, POLICED, "mts", None), (day1 + dt.timedelta(hours=1), POLICED, "mts", None),
            (day2, FAST, "mts", None), (day1, POLICED, "x", "AS8359")]):
        write_run(tmp_path, RunSpec(pairs(("image",), path, FAST), seed=seed, repeat=1,
                                    start=start, label=label, asn=asn))
    r = analysis.load(tmp_path)
    agg = aggregate(verdicts(r), r).set_index(["network", "day"])
    assert agg.loc[("mts", "2021-03-10"), "runs"] == 2
    assert agg.loc[("mts", "2021-03-10"), "share_throttled"] == 1.0
    assert 110 <= agg.loc[("mts", "2021-03-10"), "median_throttled_kbps"] <= 160
    assert agg.loc[("mts", "2021-03-11"), "share_throttled"] == 0.0
    assert ("AS8359", "2021-03-10") in agg.index  # the ASN wins over the label


def test_a_run_counts_once_and_collateral_targets_are_not_twitter(tmp_path: Path) -> None:
    import shutil

    specs = pairs(("image",), POLICED, FAST) + [
        Spec("tco-reddit", "control-tco", "image", "www.reddit.com", FAST, pair="control-image")]
    folder = write_run(tmp_path / "a", RunSpec(specs, repeat=1))
    copy = tmp_path / "b" / folder.name  # a volunteer who sent the same run twice
    shutil.copytree(folder, copy)
    r = analysis.load([folder, tmp_path / "a" / ".." / "a" / folder.name, copy])
    assert len(r.runs) == 1
    v = verdicts(r)
    assert set(v["target"]) == {"twitter-image", "tco-reddit"}
    (row,) = aggregate(v, r).to_dict("records")
    assert (row["runs"], row["targets"], row["throttled"], row["share_throttled"]) == \
        (1, 1, 1, 1.0)


def test_objects_too_small_for_a_rate_are_inconclusive(tmp_path: Path) -> None:
    folder = write_run(tmp_path, RunSpec(pairs(("image",), POLICED, FAST), max_bytes=8 * 1024))
    v = _one(folder)
    assert v["verdict"] == "inconclusive" and "too small" in v["explanation"]


def test_measurements_read_the_address_on_the_fast_path(tmp_path: Path) -> None:
    from probe.measure.keys import TestKeys
    from probe.measurement import envelope
    from probe.results.jsonl import JsonlWriter
    from probe.targets import Target

    target = Target(name="t", url="https://pbs.twimg.com/x.jpg", family="twitter",
                    kind="image", source="t.toml:1")
    m = envelope(run_id="r", measurement_id="r-1", started=dt.datetime.now(dt.UTC),
                 runtime=1.0, target=target, repetition=0, experiment="target",
                 version="0.2.0", keys=TestKeys(),
                 extra={"address": "192.0.2.9", "dns_consistency": {}},
                 network=None)
    folder = tmp_path / "run"
    folder.mkdir()
    with JsonlWriter(folder / "measurements.jsonl") as writer:  # the probe's own writer
        writer.append(m)
    ms = analysis.load(folder).measurements
    assert ms["address"].tolist() == ["192.0.2.9"] and ms["target"].tolist() == ["t"]


def test_measurements_fall_back_to_a_full_parse(tmp_path: Path) -> None:

    folder = write_run(tmp_path, RunSpec(pairs(("image",), POLICED, FAST), repeat=1))
    path = folder / "measurements.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    reordered = [{"test_keys": m.pop("test_keys"), **m} for m in lines]  # another writer's order
    path.write_text("".join(json.dumps(m) + "\n" for m in reordered) + '{"torn": ')
    ms = analysis.load(folder).measurements
    assert ms["pair"].tolist() == ["control-image", None]
    assert ms["address"].tolist() == ["198.51.100.20", "192.0.2.10"]


def test_sub_second_transfers_are_not_judged_on_one_point() -> None:
    """Two unthrottled sub-second transfers differ up to 2x (seen in the lab): never throttled."""
    def one(rate: float, steady: bool = False) -> list[_Rep]:
        return [_rep(0, "ok", rate, steady=steady)]

    ctl = [_rep(1, "ok", 628_931, family="control", steady=False)]
    fast = judge(one(363_306), ctl)
    assert fast.verdict == "ok" and "too fast to measure" in fast.explanation
    odd = judge(one(5_000), ctl)  # 125x slower, but from one sub-second point
    assert odd.verdict == "inconclusive"
    # 6x slower, yet at 100 Mbit/s: round trips, not a throttle of hundreds of kbit/s
    assert judge(one(100_000), ctl).verdict == "ok"
    steady = judge(one(130, steady=True), [_rep(1, "ok", 300_000, family="control",
                                                 steady=False)])
    assert steady.verdict != "ok"  # a measured steady cap is still judged on its merits


def test_no_connection_after_a_failed_lookup_is_a_dns_stage() -> None:
    """An unreachable resolver leaves no address: DNS failed, not TCP (nothing was connected)."""
    import pandas as pd

    from analysis.verdicts import _stage

    dns = pd.DataFrame({"bogons": [None, None], "failure": ["network_unreachable"] * 2})
    m = {"failure": "network_unreachable"}
    assert _stage(m, dns, None, None) == "dns"
    tcp = pd.DataFrame({"success": [False], "failure": ["connection_refused"]})
    assert _stage({"failure": "connection_refused"}, dns.iloc[:0], tcp, None) == "tcp"


# --- judge() on hand-made repetitions: rules the synthetic paths cannot reach ---------------


def _rep(i: int, stage: str, rate: float | None = None, family: str = "twitter",
         steady: bool = True, flat: bool | None = True) -> _Rep:
    bins = None if rate is None else np.full(12, rate)
    return _Rep(f"m{i}", "tw" if family == "twitter" else "ctl", family, "image", "x.test",
                "x.test", "target", "down", stage, rate, bins, None, flat, steady)


def _controls(n: int = 3, rate: float | None = 8000.0) -> list[_Rep]:
    return [_rep(10 + i, "ok", rate, family="control") for i in range(n)]


@pytest.mark.parametrize("stages", [("tcp", "ok"), ("ok", "tcp")])
def test_failure_verdict_does_not_depend_on_the_order_of_repetitions(stages) -> None:
    subject = [_rep(i, s, None if s != "ok" else 120.0) for i, s in enumerate(stages)]
    assert judge(subject, _controls()).verdict == "blocked"


def test_failures_that_mean_the_same_verdict_count_together() -> None:
    subject = [_rep(0, "tcp"), _rep(1, "tls-reset"), _rep(2, "ok", 8000.0)]
    v = judge(subject, _controls())
    assert v.verdict == "blocked" and "in 2 of 3 repetitions" in v.explanation, v
    tie = judge([_rep(0, "tcp"), _rep(1, "tls-cert")], _controls())
    assert tie.verdict == "tls-tampered"  # the more specific evidence wins a tie


def test_small_controls_that_worked_rule_out_the_network() -> None:
    """Controls under 16 KB have no rate, but they loaded: the target alone is blocked."""
    subject = [_rep(i, "tcp") for i in range(3)]
    v = judge(subject, _controls(rate=None))
    assert v.verdict == "blocked" and "while its controls worked" in v.explanation


def test_a_transfer_that_stalls_after_the_first_bytes_is_blocked_not_a_crash() -> None:
    subject = [_rep(i, "ok", 0.0) for i in range(3)]
    v = judge(subject, _controls())
    assert v.verdict == "blocked" and "stalled" in v.explanation


@pytest.mark.parametrize("status, verdict, words", [
    (451, "blocked", "legal reasons"), (403, "inconclusive", "block page or a missing object"),
    (200, "inconclusive", "too small")])
def test_a_small_error_answer_says_what_it_was(status: int, verdict: str, words: str) -> None:
    subject = [_rep(i, "ok") for i in range(2)]  # moved under 16 KB: no rate
    for r in subject:
        r.status = status
    v = judge(subject, _controls())
    assert v.verdict == verdict and words in v.explanation, v


def _variant(i: int, sni: str, rate: float, experiment: str = "sni",
             steady: bool = True) -> _Rep:
    family = "twitter" if sni.endswith(("twimg.com", "twitter.com")) else "control"
    return _Rep(f"e{i}", f"{experiment}-{sni or 'none'}", family, "image", "measure.test", sni,
                experiment, "down", "ok", rate, np.full(12, rate), None, True, steady)


def _sni_run(**rates: float) -> list[_Rep]:
    """An sni experiment: each Twitter name at its rate, neutral and no SNI fast."""
    names = {"pbs": "pbs.twimg.com", "twitter": "twitter.com", "video": "video.twimg.com",
             "tco": "t.co"}
    reps = [_variant(i, names[k], r) for i, (k, r) in enumerate(rates.items())]
    return reps + [_variant(8, "measure.test", 10_000.0), _variant(9, "", 10_000.0)]


def test_trigger_judges_each_twitter_name_on_its_own() -> None:
    from analysis.verdicts import _trigger

    # a device for *.twimg.com only: pbs slow, twitter.com fast; the pooled median hid it
    trigger, why = _trigger("pbs.twimg.com", 130.0, _sni_run(pbs=130.0, twitter=10_000.0), 0)
    assert trigger == "sni" and "pbs.twimg.com" in why
    # the target's own name fast to a neutral server: its address is slowed
    assert _trigger("pbs.twimg.com", 130.0, _sni_run(pbs=10_000.0, twitter=9_000.0), 0)[0] \
        == "ip"
    # t.co slowed by a substring rule; the tested names are fast but t.co was not tested
    trigger, why = _trigger("t.co", 130.0, _sni_run(pbs=10_000.0, twitter=9_000.0), 0)
    assert trigger == "unknown" and "not among them" in why
    # its own name far faster than the throttled target, if 3x slower than the neutral
    # name on a CPU-bound path and too short for a steady rate: the address is slowed
    fast_short = [r for r in _sni_run(twitter=9_000.0) if r.sni != "pbs.twimg.com"] + [
        _variant(7, "pbs.twimg.com", 3_000.0, steady=False)]
    assert _trigger("pbs.twimg.com", 130.0, fast_short, 0)[0] == "ip"


def test_trigger_of_every_target_whose_name_was_tried() -> None:
    """What `probe run --server` plans: each Twitter target's own name, and t.co for the
    collateral ones, so none of them is left `unknown`."""
    from analysis.verdicts import _trigger

    fast = {"pbs": 10_000.0, "twitter": 9_000.0, "video": 11_000.0, "tco": 9_500.0}
    for name in ("pbs.twimg.com", "video.twimg.com", "t.co"):  # an address throttle
        assert _trigger(name, 130.0, _sni_run(**fast), 0)[0] == "ip", name
    # a substring rule: only t.co is slow on the neutral server; reddit's own name is not
    # a Twitter name, and the slow t.co shows the device reads the name
    trigger, why = _trigger("www.reddit.com", 130.0, _sni_run(**{**fast, "tco": 130.0}), 0)
    assert trigger == "sni" and "t.co" in why


def test_trigger_needs_the_sni_experiment_and_steady_evidence() -> None:
    from analysis.verdicts import _trigger

    split_only = [_variant(1, "pbs.twimg.com", 10_000.0, experiment="split")]
    assert _trigger("pbs.twimg.com", 130.0, split_only, 0)[0] == "unknown"
    # sub-second variants 2.5x apart are noise between fast flows, not a slow name
    noisy = [_variant(1, "pbs.twimg.com", 42_500.0, steady=False),
             _variant(8, "measure.test", 105_000.0, steady=False)]
    assert _trigger("pbs.twimg.com", 130.0, noisy, 0)[0] != "sni"


def _noisy(i: int, rate: float, family: str = "twitter", peak: float | None = None,
           flat: bool = True) -> _Rep:
    """A repetition whose 250 ms bins vary +-20 % around `rate` (a saw-tooth)."""
    r = _rep(i, "ok", rate, family=family, flat=flat)
    r.bins = rate * (1 + 0.2 * np.sin(np.arange(40)))
    r.peak = peak if peak is not None else 1.1 * rate
    return r


def test_a_ceiling_makes_a_wandering_rate_a_throttle() -> None:
    """A shaper with a short queue: stalls and bursts (not flat), never near the controls."""
    ctl = [_noisy(10, 100_000.0, "control")]
    v = judge([_noisy(0, 120.0, peak=200.0, flat=False)], ctl)
    assert v.verdict == "throttled" and "never rose above 200 kbit/s" in v.explanation, v
    # the same wander reaching the controls' speed in some second is congestion
    v = judge([_noisy(0, 120.0, peak=60_000.0, flat=False)], ctl)
    assert v.verdict == "inconclusive" and "wanders like congestion" in v.explanation, v


def test_one_repetition_needs_the_ceiling_three_need_a_flat_rate() -> None:
    """2.5x slower and flat, once: two flows on a congested path differ that much."""
    ctl = [_noisy(10 + i, 2_400.0, "control") for i in range(3)]
    once = judge([_noisy(0, 960.0)], ctl[:1])
    assert once.verdict == "inconclusive" and "--repeat 3" in once.explanation, once
    thrice = judge([_noisy(i, 960.0) for i in range(3)], ctl)
    assert thrice.verdict == "throttled", thrice
    # 20x slower once: its fastest second is far under the controls, so it is a throttle
    assert judge([_noisy(0, 120.0)], ctl[:1]).verdict == "throttled"


def test_p_value_tests_no_throttle_not_equality() -> None:
    """An ok row at ratio ~1 has a large p; a throttled one a tiny p."""
    ctl = [_noisy(10 + i, 8_000.0, "control") for i in range(3)]
    same = judge([_noisy(i, 7_970.0) for i in range(3)], ctl)
    assert same.verdict == "ok" and same.p_value > 0.5, same
    slow = judge([_noisy(i, 130.0) for i in range(3)], ctl)
    assert slow.verdict == "throttled" and slow.p_value <= 0.01, slow


def test_a_youtube_target_is_judged_like_twitter(tmp_path: Path) -> None:
    """Any service family is a subject compared with its controls, and counted per day."""
    specs = [Spec("yt-image", "youtube", "image", "i.ytimg.com", POLICED, pair="ctl"),
             Spec("ctl", "control", "image", "images.control.test", FAST)]
    folder = write_run(tmp_path, RunSpec(specs, label="mts"))
    v = _one(folder, "yt-image")
    assert v["verdict"] == "throttled" and v["family"] == "youtube" and v["controls"] == ["ctl"]
    r = analysis.load([folder])
    agg = aggregate(verdicts(r), r)
    assert agg["throttled"].tolist() == [1] and agg["targets"].tolist() == [1]


def test_trigger_of_a_youtube_target_reads_youtube_names_only() -> None:
    from analysis.verdicts import _trigger

    # a Twitter name slow, the YouTube names fast: nothing says YouTube's name is read
    reps = _sni_run(pbs=130.0) + [_variant(5, "rr1---sn-a.googlevideo.com", 10_000.0)]
    trigger, why = _trigger("i.ytimg.com", 130.0, reps, 0, "youtube")
    assert trigger == "unknown" and why.startswith("YouTube names sent"), why
    # the target's own YouTube name slow on the neutral server: the device reads it
    reps = _sni_run(pbs=10_000.0) + [_variant(5, "i.ytimg.com", 130.0)]
    trigger, why = _trigger("i.ytimg.com", 130.0, reps, 0, "youtube")
    assert trigger == "sni" and "the YouTube SNI i.ytimg.com" in why, why
