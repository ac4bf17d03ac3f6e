"""Verdicts across transports: a target fetched over TCP and over QUIC (HTTP/3), judged
each against controls fetched the same way, and one line where the two differ; the
QUIC experiments (sni-h3, transport) read by the verdicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.features import _Rep, _stage
from analysis.transports import across_lines
from analysis.verdicts import FIELDS, Verdict, run_verdicts, verdicts
from tests.fixtures_results import (
    RunSpec,
    policed_tcp_fast_quic,
    write_run,
)

pytestmark = pytest.mark.timeout(120)
PAIRS = {"tw": "ctl"}


def _rep(i: int, target: str, experiment: str, transport: str, rate: float | None,
         stage: str = "ok", sni: str = "pbs.twimg.com", family: str | None = None) -> _Rep:
    """A steady, flat repetition whose 250 ms bins vary +-20 % around `rate`."""
    family = family or ("control" if target.startswith(("ctl", "sni-h3-n", "transport"))
                        else "twitter")
    bins = None if rate is None else rate * (1 + 0.2 * np.sin(np.arange(40) + i))
    return _Rep(f"{experiment}-{target}-{transport}-{i}", target, family, "image", "x.test",
                sni, experiment, "down", stage, rate, bins, "policing", True, True,
                peak=None if rate is None else 1.1 * rate, transport=transport)


def _run(tcp: float | None, quic: float | None, quic_stage: str = "ok", tcp_stage: str = "ok",
         ctl_tcp: float = 8_000.0, ctl_quic: float = 3_000.0, h3: bool = True) -> list[_Rep]:
    """A Twitter target and its control, three repetitions each, over TCP (and QUIC)."""
    reps = []
    for i in range(3):
        reps += [_rep(i, "tw", "target", "tcp", tcp, stage=tcp_stage),
                 _rep(i, "ctl", "target", "tcp", ctl_tcp, sni="ctl.test")]
        if h3:
            reps += [_rep(i, "tw", "target-h3", "quic", quic, stage=quic_stage),
                     _rep(i, "ctl", "target-h3", "quic", ctl_quic, sni="ctl.test")]
    return reps


def _rows(reps: list[_Rep]) -> dict[tuple[str, str], Verdict]:
    return {(v.target, v.experiment): v for v in run_verdicts(reps, PAIRS, "r")}


def test_tcp_throttled_quic_not_says_so_in_one_line_with_both_rates() -> None:
    rows = _rows(_run(tcp=131.0, quic=2_840.0))
    tcp, quic = rows[("tw", "target")], rows[("tw", "target-h3")]
    assert (tcp.verdict, tcp.transport, tcp.across_transports) == ("throttled", "tcp", None)
    assert (quic.verdict, quic.transport) == ("ok", "quic")
    assert quic.controls == ["ctl"] and quic.control_rate_kbps == pytest.approx(3_000.0)
    assert quic.across_transports == "TCP throttled at 131 kbit/s, QUIC not (2,840 kbit/s)"
    assert quic.transport_ratio == pytest.approx(2_840 / 131, rel=0.01)
    assert "Over TCP the same target ran at 131 kbit/s" in quic.explanation


def test_both_throttled_at_different_rates_and_alike() -> None:
    """YouTube in 2024: ~128 kbit/s over TCP, ~512 over QUIC."""
    quic = _rows(_run(tcp=128.0, quic=512.0))[("tw", "target-h3")]
    assert quic.verdict == "throttled"
    assert quic.across_transports == ("TCP throttled at 128 kbit/s, QUIC at 512 kbit/s "
                                      "(4.0x faster)")
    alike = _rows(_run(tcp=128.0, quic=135.0))[("tw", "target-h3")]
    assert alike.across_transports == "TCP and QUIC throttled alike (128 and 135 kbit/s)"


def test_quic_blocked_while_tcp_works() -> None:
    quic = _rows(_run(tcp=7_900.0, quic=None, quic_stage="tls-reset"))[("tw", "target-h3")]
    assert quic.verdict == "blocked" and quic.transport_ratio is None
    assert quic.across_transports == "QUIC blocked, TCP not (7,900 kbit/s)"


@pytest.mark.parametrize(("offered", "verdict"), [(True, "blocked"), (False, "inconclusive"),
                                                  (None, "blocked")])
def test_a_failed_quic_fetch_is_a_block_only_where_the_server_offered_http3(
        offered: bool | None, verdict: str) -> None:
    """Many servers never answer QUIC: without an Alt-Svc h3 in the target's own TCP
    answers, its failed QUIC handshake says nothing (unknown, as in older files: as before)."""
    reps = _run(tcp=7_900.0, quic=None, quic_stage="tls-reset")
    for r in reps:
        if r.target == "tw" and r.experiment == "target":
            r.offers_h3 = offered
    quic = _rows(reps)[("tw", "target-h3")]
    assert quic.verdict == verdict, quic.explanation
    assert ("did not offer HTTP/3" in quic.explanation) == (offered is False)


@pytest.mark.parametrize(("headers", "offers"), [
    ([["alt-svc", 'h3=":443"; ma=86400']], True),
    ([["alt-svc", 'h2=":443", h3-29=":8443"; ma=3600']], True),
    ([["Alt-Svc", 'H3=":443"']], True),
    ([["alt-svc", 'h2=":443"; ma=60'], ["server", "h3=:443"]], False),
    ([["alt-svc", "clear"]], False),
    ([], False),
])
def test_an_http3_offer_is_read_off_alt_svc(headers: list[list[str]], offers: bool) -> None:
    from probe.measure.transfer import offers_h3

    assert offers_h3(headers) is offers


def test_no_line_when_both_transports_agree() -> None:
    rows = _rows(_run(tcp=7_900.0, quic=2_900.0))
    assert rows[("tw", "target-h3")].verdict == "ok"
    assert rows[("tw", "target-h3")].across_transports is None
    both_blocked = _rows(_run(tcp=None, quic=None, tcp_stage="tcp", quic_stage="tls-reset"))
    assert both_blocked[("tw", "target")].verdict == "blocked"
    assert both_blocked[("tw", "target-h3")].verdict == "blocked"
    assert both_blocked[("tw", "target-h3")].across_transports is None


def test_quic_without_quic_controls_still_counts_as_not_throttled_by_its_tcp_rate() -> None:
    """No control fetched over HTTP/3: the QUIC verdict is inconclusive, but 20x faster
    than the same target's throttled TCP rate it was not throttled to that rate."""
    reps = [r for r in _run(tcp=131.0, quic=2_840.0)
            if not (r.target == "ctl" and r.transport == "quic")]
    quic = _rows(reps)[("tw", "target-h3")]
    assert quic.verdict == "inconclusive" and quic.controls == []
    assert quic.across_transports == "TCP throttled at 131 kbit/s, QUIC not (2,840 kbit/s)"
    # about as slow as the throttled TCP fetch: nothing says QUIC escaped the throttle
    reps = [r for r in _run(tcp=131.0, quic=150.0)
            if not (r.target == "ctl" and r.transport == "quic")]
    quic = _rows(reps)[("tw", "target-h3")]
    assert quic.across_transports == ("TCP throttled at 131 kbit/s, QUIC inconclusive "
                                      "(150 kbit/s)")


def test_tcp_verdicts_do_not_change_with_a_quic_fetch() -> None:
    """The TCP rows of a run with QUIC fetches are those of the same run without them."""
    for tcp_rate in (131.0, 7_900.0):
        alone = [v.as_dict() for v in run_verdicts(_run(tcp_rate, None, h3=False), PAIRS, "r")]
        with_h3 = [v.as_dict() for v in run_verdicts(_run(tcp_rate, 2_840.0), PAIRS, "r")
                   if v.transport == "tcp"]
        assert with_h3 == alone and all(v["transport"] == "tcp" for v in alone)
        assert all(v["across_transports"] is None and v["transport_ratio"] is None
                   for v in alone)


def _variant(i: int, experiment: str, sni: str, transport: str, rate: float) -> _Rep:
    family = "twitter" if sni.endswith("twimg.com") else "control"
    return _rep(i, f"{experiment}-{sni or 'none'}", experiment, transport, rate, sni=sni,
                family=family)


def test_a_throttle_keyed_on_the_quic_sni_is_trigger_sni_over_quic() -> None:
    reps = _run(tcp=7_900.0, quic=512.0)
    for i in range(3):
        reps += [_variant(i, "sni-h3", "pbs.twimg.com", "quic", 512.0),
                 _variant(i, "sni-h3", "measure.test", "quic", 3_000.0),
                 _variant(i, "sni-h3", "", "quic", 3_000.0)]
    rows = _rows(reps)
    target = rows[("tw", "target-h3")]
    assert (target.verdict, target.trigger) == ("throttled", "sni"), target
    assert "neutral server over QUIC was slow" in target.explanation
    variant = rows[("sni-h3-pbs.twimg.com", "sni-h3")]
    assert (variant.verdict, variant.trigger, variant.transport) == ("throttled", "sni", "quic")
    assert variant.controls == ["sni-h3-measure.test", "sni-h3-none"]
    # the TCP target reads the TCP sni experiment only: none ran
    tcp_only = _rows(_run(tcp=131.0, quic=2_840.0) + reps[-9:])[("tw", "target")]
    assert tcp_only.trigger == "unknown" and "no SNI experiment in this run" in \
        tcp_only.explanation


def test_the_transport_experiment_tells_a_network_that_slows_quic() -> None:
    reps = [x for i in range(3) for x in (
        _variant(i, "transport", "measure.test", "tcp", 8_000.0),
        _variant(i, "transport", "measure.test", "quic", 300.0))]
    (row,) = run_verdicts(reps, {}, "r")
    assert (row.experiment, row.transport, row.verdict, row.trigger) == \
        ("transport", "quic", "throttled", "quic"), row
    # far slower than the kernel's TCP but far faster than a throttle: the QUIC stack
    fast = [x for i in range(3) for x in (
        _variant(i, "transport", "measure.test", "tcp", 400_000.0),
        _variant(i, "transport", "measure.test", "quic", 40_000.0))]
    (row,) = run_verdicts(fast, {}, "r")
    assert row.verdict == "ok" and "QUIC stack's own speed" in row.explanation


def test_a_failed_quic_handshake_is_no_dns_failure() -> None:
    dns = pd.DataFrame({"bogons": [""]})
    tls = pd.DataFrame({"failure": ["generic_timeout_error"]})
    m = {"failure": "generic_timeout_error"}
    assert _stage(m, dns, None, tls, quic=True) == "tls-reset"
    assert _stage(m, dns, None, None, quic=True) == "dns"  # no address: nothing was tried
    assert _stage(m, dns, None, tls) == "dns"  # over TCP no connect is a DNS failure


@pytest.fixture(scope="module")
def quic_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder: a Twitter target policed over TCP and fast over QUIC, its control
    fetched both ways."""
    return write_run(tmp_path_factory.mktemp("quic-run"), RunSpec(policed_tcp_fast_quic()))


def test_run_folders_give_the_transport_column_and_the_line(quic_run: Path) -> None:
    rows = verdicts([quic_run])
    assert list(rows.columns) == FIELDS
    by = rows.set_index(["target", "experiment"])
    assert by.loc[("tw", "target"), "transport"] == "tcp"
    assert by.loc[("tw", "target-h3"), "transport"] == "quic"
    assert by.loc[("tw", "target"), "verdict"] == "throttled"
    assert by.loc[("tw", "target-h3"), "verdict"] == "ok"
    (line,) = across_lines(rows)
    assert line.startswith("tw: TCP throttled at ") and ", QUIC not (" in line


def test_the_line_is_in_analyze_verdicts_the_run_summary_and_the_report(
        quic_run: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from analysis.cli import analyze
    from probe.cli import _verdicts
    from probe.escape import for_markdown

    (line,) = across_lines(verdicts([quic_run]))
    shown = CliRunner().invoke(analyze, ["verdicts", str(quic_run)])
    assert shown.exit_code == 0 and "Across transports (TCP vs QUIC):" in shown.stdout
    assert f"  {line}" in shown.stdout
    labels, notes = _verdicts(quic_run)
    assert labels["tw"].startswith("throttled") and labels["tw (HTTP/3)"] == "ok"
    assert line in notes
    out = tmp_path / "report.html"
    made = CliRunner().invoke(analyze, ["report", str(quic_run), "-o", str(out)])
    assert made.exit_code == 0, made.output
    assert "<h2>Across transports</h2>" in out.read_text() and line in out.read_text()
    assert f"- {for_markdown(line)}" in out.with_suffix(".md").read_text()
