"""Verdicts per target and run: ok, throttled, blocked, dns-tampered, tls-tampered, inconclusive.

A target is never judged alone: it is compared with controls measured in the
same run, interleaved with it (its `pair`, else controls of the same kind,
else all controls). Decision rules, in order (thresholds in thresholds.py):

1. Failures. Each measurement is classified by the first step that failed:
   DNS (bogon answers, or no address) -> dns-tampered; TCP connect, a TLS
   handshake reset or timeout, or an HTTP transfer that moved nothing ->
   blocked; a certificate the probe does not trust -> tls-tampered. The
   verdict needs the failure in at least half of the target's repetitions
   AND at least half of its controls' repetitions succeeding; if the
   controls fail too the network is down: inconclusive.
2. Rates. Each measurement's rate is the steady-state rate (past slow start)
   of its longest transfer of at least MIN_BYTES (none: an HTTP 451 is
   blocked, another error status or a small object inconclusive). ratio =
   median target rate / median control rate, with a 95 % interval and a
   p-value from a two-level bootstrap: repetitions are resampled, and inside
   each transfer the 250 ms throughput bins are resampled in 1 s blocks
   (moving-block bootstrap), which keeps the autocorrelation of a TCP flow
   that a plain test would ignore.
   - a steady rate of 0 after the first bytes: blocked (stalled).
   - ratio >= OK_RATIO: ok (whatever the controls did).
   - controls slower than CONTROL_MIN_KBPS, or noisy (coefficient of
     variation across repetitions above CONTROL_MAX_CV): inconclusive - a
     slow or unstable network cannot show throttling.
   - no steady window (every transfer about a second or less): ok if ratio
     >= SUB_SECOND_OK_RATIO or the rate >= SUB_SECOND_FAST_KBPS, else
     inconclusive; never throttled.
   - ratio <= THROTTLED_RATIO, interval upper end < CI_HIGH_MAX, p <= ALPHA
     (null hypothesis: ratio >= OK_RATIO), and either a ceiling (the fastest
     second of every measured repetition at most CEILING_RATIO of the
     controls: loss recovery under a short-queue shaper wanders but never
     comes near them) or, over at least MIN_REPS_FOR_SHAPE measured
     repetitions, a rate that does not wander (at least half its transfers
     pass the plateau test): throttled. A 3x slowdown (ratio 0.33) clears
     them over three repetitions; congestion hitting one side by chance
     rarely does.
   - otherwise: inconclusive, with the reason.
3. Trigger of a throttled target, from the run's differential experiments:
   `sni` (same server, Twitter names vs a neutral name and no SNI): Twitter
   names slow and the others fast -> sni; Twitter names as fast as the
   others -> ip (the name alone does not slow a flow, so the destination
   does); `split` (Twitter SNI, split ClientHello) fast while the target is
   slow -> sni (the device reads the ClientHello). Otherwise unknown.
   Differential measurements get rows of their own, compared with the
   neutral-name measurements of the same run and direction: so an ISP that
   slows every upload gives slow "controls" and never a throttled upload.
4. Transports. A target fetched over HTTP/3 (`target-h3`) is judged by the same
   rules against the controls' HTTP/3 fetches (a user-space QUIC stack is slower
   than the kernel's TCP whatever the network), its trigger read off `sni-h3`;
   its own TCP fetch is evidence beside it (analysis/transports.py: the QUIC/TCP
   ratio, one line where the two verdicts differ). `transport` (the neutral name
   over TCP and over QUIC) tells a network that slows QUIC itself: trigger `quic`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from probe.names import TWITTER_DOMAINS as TWITTER_NAMES
from probe.names import is_service_family, is_service_name, is_twitter_name, label, service_of

from .bootstrap import _compare, _significant
from .features import CERT_FAILURES, _Rep, _reps, _sender_tcpinfo, _stage, rate_series
from .load import Results, load
from .rates import estimate
from .signature import signature
from .thresholds import (
    ALPHA,
    BIN_S,
    BLOCK_BINS,
    BOOT,
    CEILING_RATIO,
    CI_HIGH_MAX,
    CONTROL_MAX_CV,
    CONTROL_MIN_KBPS,
    FAST_NAME_FACTOR,
    MAX_BOOT_BINS,
    MIN_BYTES,
    MIN_REPS_FOR_SHAPE,
    OK_RATIO,
    PEAK_WINDOW_S,
    SUB_SECOND_FAST_KBPS,
    SUB_SECOND_OK_RATIO,
    THROTTLED_RATIO,
)
from .transports import compare_transports

# The names this module has always offered, wherever they are defined now.
__all__ = [
    "ALPHA", "BIN_S", "BLOCK_BINS", "BOOT", "CEILING_RATIO", "CERT_FAILURES", "CI_HIGH_MAX",
    "CONTROL_MAX_CV", "CONTROL_MIN_KBPS", "FIELDS", "MAX_BOOT_BINS", "MIN_BYTES", "OK_RATIO",
    "PEAK_WINDOW_S", "SUB_SECOND_FAST_KBPS", "SUB_SECOND_OK_RATIO", "THROTTLED_RATIO",
    "TWITTER_NAMES", "VERDICTS", "Verdict", "_Rep", "_stage", "_trigger", "is_twitter_name",
    "judge", "rate_series", "run_verdicts", "transfer_table", "verdicts",
]

VERDICTS = ("ok", "throttled", "blocked", "dns-tampered", "tls-tampered", "inconclusive")
FIELDS = ["run_id", "target", "host", "family", "kind", "experiment", "transport", "direction",
          "verdict", "trigger", "rate_kbps", "control_rate_kbps", "ratio", "ci_low", "ci_high",
          "p_value", "signature", "repetitions", "controls", "transport_ratio",
          "across_transports", "explanation"]
LISTED = ("target", "target-h3")  # a listed target, over TCP and over HTTP/3


@dataclass
class Verdict:
    run_id: str
    target: str
    host: str | None
    family: str | None
    kind: str | None
    experiment: str
    direction: str
    verdict: str
    trigger: str | None = None  # sni | ip | quic | unknown, for throttled only
    rate_kbps: float | None = None  # median steady-state rate of the target
    control_rate_kbps: float | None = None
    ratio: float | None = None  # rate / control rate
    ci_low: float | None = None  # 95 % bootstrap interval of the ratio
    ci_high: float | None = None
    p_value: float | None = None  # bootstrap, null hypothesis: ratio >= OK_RATIO (no throttle)
    signature: str | None = None  # policing | shaping | congestion | unknown (most transfers)
    repetitions: int = 0
    controls: list[str] = field(default_factory=list)
    explanation: str = ""
    transport: str = "tcp"  # tcp | quic (HTTP/3)
    transport_ratio: float | None = None  # QUIC rows: QUIC rate / the same target's TCP rate
    across_transports: str | None = None  # QUIC rows: one line when the two verdicts differ

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("rate_kbps", "control_rate_kbps"):
            d[k] = None if d[k] is None else round(d[k], 1)
        for k in ("ratio", "ci_low", "ci_high", "transport_ratio"):
            d[k] = None if d[k] is None else round(d[k], 3)
        if d["p_value"] is not None:
            d["p_value"] = float(f"{d['p_value']:.3g}")
        return d



# --- verdicts ----------------------------------------------------------------

_FAIL_VERDICT = {"dns": "dns-tampered", "tcp": "blocked", "tls-reset": "blocked",
                 "http": "blocked", "tls-cert": "tls-tampered"}
_FAIL_WORDS = {"dns": "DNS gave no usable address (a bogon, none, or no answer)",
               "tcp": "TCP connections failed", "tls-reset": "the TLS handshake was cut",
               "http": "the transfer failed before moving enough data to measure",
               "tls-cert": "the server presented a certificate the probe does not trust"}


# Ties between failure kinds go to the more specific evidence.
_FAIL_ORDER = ("dns-tampered", "tls-tampered", "blocked")
_STAGE_ORDER = ("dns", "tls-cert", "tcp", "tls-reset", "http")


def _majority(values: list[str], order: Iterable[str] = ()) -> tuple[str, int]:
    """The most common value and its count; ties go to the value earliest in `order`,
    then to the smallest, so the answer never depends on the order of repetitions."""
    rank = {k: i for i, k in enumerate(order)}
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    best = min(counts, key=lambda k: (-counts[k], rank.get(k, len(rank)), k))
    return best, counts[best]


def _failure(stages: list[str]) -> tuple[str, str, int] | None:
    """(verdict, its most common stage, repetitions with that verdict) when at least half
    of the repetitions failed; failures that mean the same verdict count together
    (a TCP failure and a reset handshake are both `blocked`)."""
    failed = [s for s in stages if s != "ok"]
    if not failed or 2 * len(failed) < len(stages):
        return None
    verdict, count = _majority([_FAIL_VERDICT[s] for s in failed], _FAIL_ORDER)
    stage, _ = _majority([s for s in failed if _FAIL_VERDICT[s] == verdict], _STAGE_ORDER)
    return verdict, stage, count


def judge(subject: list[_Rep], controls: list[_Rep], seed: int = 0) -> Verdict:
    """The verdict of one target's repetitions against its controls (fields but run/target)."""
    first = subject[0]
    v = Verdict(run_id="", target=first.target, host=first.host, family=first.family,
                kind=first.kind, experiment=first.experiment, direction=first.direction,
                verdict="inconclusive", repetitions=len(subject),
                controls=sorted({c.target for c in controls}), transport=first.transport)
    failure = _failure([r.stage for r in subject])
    if failure is not None:
        verdict, stage, count = failure
        words = f"{_FAIL_WORDS[stage]} in {count} of {len(subject)} repetitions"
        worked = [c for c in controls if c.stage == "ok"]  # small controls have no rate
        if not controls:
            v.explanation = f"{words}, and no control was measured to rule out the network."
        elif 2 * len(worked) >= len(controls):
            v.verdict = verdict
            v.explanation = f"{words}, while its controls worked."
        else:
            v.explanation = f"{words}, but its controls failed too: the network, not the target."
        return v
    control_ok = [c for c in controls if c.stage == "ok" and c.rate]
    measured = [r for r in subject if r.stage == "ok" and r.rate is not None]
    if not measured:
        # 416 is the answer to the probe's own capped Range on an empty object: too small,
        # not an error page.
        errors = sorted({r.status for r in subject
                         if r.status and r.status >= 400 and r.status != 416})
        if errors:
            codes = ", ".join(f"HTTP {c}" for c in errors)
            if 451 in errors:  # "Unavailable For Legal Reasons": a censor says so itself
                v.verdict = "blocked"
                v.explanation = f"answered {codes}: unavailable for legal reasons."
            else:
                v.explanation = (f"answered {codes} with too little to measure: a block page "
                                 "or a missing object (check the target's URL).")
            return v
        v.explanation = (f"its transfers were too small (under {MIN_BYTES // 1024} KB) to "
                         "measure a rate.")
        return v
    shapes = [r.shape for r in measured if r.shape]
    v.signature = _majority(shapes)[0] if shapes else None
    v.rate_kbps = float(np.median([r.rate for r in measured]))
    if not control_ok:
        v.explanation = (f"ran at {v.rate_kbps:.0f} kbit/s but no control transfer succeeded, "
                         "so there is nothing to compare with.")
        return v
    c = _compare(measured, control_ok, seed)
    v.control_rate_kbps, v.ratio, v.ci_low, v.ci_high, v.p_value = (
        c.control, c.ratio, c.ci_low, c.ci_high, c.p_value)
    speeds = f"{c.rate:.0f} kbit/s vs {c.control:.0f} kbit/s for its controls"
    if c.rate <= 0:
        # It moved some data and then nothing: cut off after the first kilobytes.
        v.verdict = "blocked"
        v.explanation = (f"stalled: no data over its steady window after the first bytes "
                         f"(its controls ran at {c.control:.0f} kbit/s).")
        return v
    if c.ratio >= OK_RATIO:
        v.verdict = "ok"
        v.explanation = f"as fast as its controls ({speeds}, ratio {c.ratio:.2f})."
        if c.control < CONTROL_MIN_KBPS:
            v.explanation = (f"as fast as its controls ({speeds}), but every flow is slow "
                             f"(controls under {CONTROL_MIN_KBPS:.0f} kbit/s): a slow or "
                             "congested network, nothing aimed at this target.")
        return v
    if c.control < CONTROL_MIN_KBPS:
        v.explanation = (f"slow ({speeds}), but the controls are slow too: a slow network "
                         "cannot show throttling.")
        return v
    if c.control_cv > CONTROL_MAX_CV:
        v.explanation = (f"slower ({speeds}), but the controls vary too much across repetitions "
                         f"(CV {c.control_cv:.2f}) to tell throttling from a busy network.")
        return v
    if not any(r.steady for r in measured):
        # Done in well under a second: the rate is one point, and two unthrottled
        # sub-second transfers differ by 2x or more between themselves (timer and
        # scheduler noise). Only a gap far beyond that is worth a second look.
        # A small object that still came at 10 Mbit/s passed no throttle of the kind
        # measured here (hundreds of kbit/s): its gap to the controls is round trips.
        fast = c.ratio >= SUB_SECOND_OK_RATIO or c.rate >= SUB_SECOND_FAST_KBPS
        v.verdict = "ok" if fast else "inconclusive"
        v.explanation = (f"finished too fast to measure a steady rate ({speeds}); "
                         + ("no sign of a cap." if v.verdict == "ok" else
                            "too short to tell a cap from noise."))
        return v
    flat = [r.flat for r in measured if r.flat is not None]
    wandering = len(flat) > 0 and sum(flat) * 2 < len(flat)
    # A throttle is a ceiling: even the target's fastest steady second stays far below its
    # controls. Loss recovery under a shaper with a short queue (or a flow cut down from
    # full speed) makes the rate wander between stalls and bursts, but never near the
    # controls' rate; congestion that slows one flow and not the next is seldom 4x deep
    # in every second of it.
    # With fewer than three repetitions the bootstrap sees only the noise inside each
    # transfer, not how much two flows on a congested path differ (2-3x within seconds):
    # a flat rate alone is no proof then, the ceiling must hold.
    peaks = [r.peak for r in measured if r.peak is not None]
    capped = bool(peaks) and max(peaks) <= CEILING_RATIO * c.control
    few = len(measured) < MIN_REPS_FOR_SHAPE
    significant = _significant(c)
    if significant and (capped or not (wandering or few)):
        v.verdict = "throttled"
        shape = {"policing": "policed: flat rate, bursts with silences (drops)",
                 "shaping": "shaped: flat rate, smooth (queued)"}.get(v.signature or "",
                                                                     "flat rate")
        if wandering:
            shape = (f"its rate wanders (stalls and bursts of loss recovery) but never rose "
                     f"above {max(peaks):.0f} kbit/s in any second")
        times = f"{1 / c.ratio:.{0 if c.ratio < 0.1 else 1}f}"
        v.explanation = (f"{times}x slower than its controls ({speeds}, 95 % CI of ratio "
                         f"{c.ci_low:.2f}-{c.ci_high:.2f}); {shape}.")
        return v
    peak = f"{max(peaks):.0f} kbit/s" if peaks else "unknown"
    if significant and wandering:
        why = (f"its rate wanders like congestion, reaching {peak} in its fastest second "
               f"(over 1/{1 / CEILING_RATIO:.0f} of its controls)")
    elif significant:
        why = (f"from {len(measured)} repetition(s) a gap under {1 / CEILING_RATIO:.0f}x in "
               f"its fastest second ({peak}) can be congestion; --repeat "
               f"{MIN_REPS_FOR_SHAPE} tells")
    else:
        why = (f"the evidence is weak (ratio {c.ratio:.2f}, CI {c.ci_low:.2f}-"
               f"{c.ci_high:.2f}, p {c.p_value:.3f})")
    v.explanation = f"slower than its controls ({speeds}) but {why}."
    return v


def _controls_for(subject: list[_Rep], pair: str | None, run: list[_Rep]) -> list[_Rep]:
    """The target's `pair`, else controls of the same kind, else every control of the run;
    fetched the same way (a target-h3 row's controls are fetched over HTTP/3 too), same
    direction where there are such (failed ones kept: they say the network broke)."""
    direction = subject[0].direction
    controls = [r for r in run if r.family == "control" and r.experiment == subject[0].experiment]
    if pair:
        paired = [r for r in controls if r.target == pair]
        if paired:
            return paired
    same_kind = [r for r in controls if r.kind == subject[0].kind]
    chosen = same_kind or controls
    same_dir = [r for r in chosen if r.direction == direction or r.stage != "ok"]
    return same_dir or chosen


def _trigger(target_name: str | None, target_rate: float, run: list[_Rep],
             seed: int, family: str | None = "twitter", over: str = "sni") -> tuple[str, str]:
    """(trigger, reason) of a throttled target from the run's `sni` experiment (`over`:
    `sni-h3` for a target fetched over HTTP/3: its names sent over QUIC).

    Each service name the experiment sent to the neutral server is judged on its own
    against the neutral and no-SNI variants: the names of the target's own service
    when its family is a service's (a slow Twitter name says nothing of YouTube), else
    every service's (a collateral or lab target). A name slow there (steady,
    significant) means the device reads the name: `sni`. `ip` needs the target's own
    name to have been fast there: a sibling name proves nothing about an exact-name
    rule. A `split` ClientHello alone (no `sni` rows) cannot tell the name from the
    address.
    """
    def ok(r: _Rep) -> bool:
        return r.stage == "ok" and r.rate is not None and r.direction == "down"

    def counts(name: str | None) -> bool:
        return is_service_name(name) and (not is_service_family(family)
                                          or service_of(name) == family)

    sni = [r for r in run if r.experiment == over and ok(r)]
    via = "" if over == "sni" else " over QUIC"
    neutral = [r for r in sni if not is_service_name(r.sni)]
    names: dict[str, list[_Rep]] = {}
    for r in sni:
        if counts(r.sni):
            names.setdefault(str(r.sni).lower(), []).append(r)
    split = [r for r in run if r.experiment == "split" and ok(r) and over == "sni"]
    if not names or not neutral:
        if split:
            return "unknown", ("a split ClientHello alone (no sni experiment) cannot tell the "
                               "name from the destination")
        return "unknown", f"no SNI experiment{via} in this run"
    slow, fast = [], []
    for name, reps in sorted(names.items()):
        c = _compare(reps, neutral, seed)
        if _significant(c) and any(r.steady for r in reps):
            slow.append((name, c))
        # Unthrottled flows differ a lot among themselves on fast paths (CPU-bound in
        # a lab), so "as fast as neutral" is judged against the throttled rate too.
        elif (c.ratio >= OK_RATIO or c.rate >= FAST_NAME_FACTOR * target_rate
              or (c.ratio > THROTTLED_RATIO and c.rate >= target_rate / THROTTLED_RATIO)):
            fast.append((name, c))
    own = (target_name or "").lower()
    mine_slow = [x for x in slow if x[0] == own]
    mine_fast = [x for x in fast if x[0] == own]
    if mine_slow or (slow and not mine_fast):
        name, c = (mine_slow or slow)[0]
        extra = ""
        if split and np.median([r.rate for r in split]) >= OK_RATIO * c.control:
            extra = "; a split ClientHello evades it"
        return "sni", (f"the {label(service_of(name))} SNI {name} to a neutral server{via} "
                       f"was slow ({c.rate:.0f} vs {c.control:.0f} kbit/s for a neutral or no "
                       f"SNI){extra}")
    if mine_fast:
        name, c = mine_fast[0]
        return "ip", (f"its own name {name} sent to a neutral server{via} was fast ({c.rate:.0f} "
                      f"kbit/s, {c.control:.0f} for a neutral SNI) while the target ran at "
                      f"{target_rate:.0f}: the destination, not the name, is slowed")
    if fast:
        tested = ", ".join(n for n, _ in fast)
        return "unknown", (f"{label(service_of(fast[0][0]))} names sent to a neutral server"
                           f"{via} were fast ({tested}), but this target's name ({own or '?'}) was "
                           "not among them")
    return "unknown", "the SNI experiment was not clear-cut"


def _subject(r: _Rep) -> bool:
    """Whether a measurement is judged (else it is only a baseline): a listed target but a
    control; an experiment's service-name variant; the QUIC side of `transport`."""
    if r.experiment in LISTED:
        return r.family != "control"
    if r.experiment == "transport":
        return r.transport == "quic"
    return is_service_name(r.sni) or is_service_family(r.family)


def _baselines(experiment: str, subject: list[_Rep], run: list[_Rep]) -> list[_Rep]:
    """An experiment's neutral variants over the subject's transport and direction (failed
    ones kept): its own, else the `sni` experiment's over that transport. `transport`'s
    baseline is its TCP side."""
    first = subject[0]
    if experiment == "transport":
        return [r for r in run if r.experiment == experiment and r.transport == "tcp"
                and (r.direction == first.direction or r.stage != "ok")]
    sni = "sni" if first.transport == "tcp" else "sni-h3"
    controls = [r for r in run if r.experiment in (experiment, sni)
                and r.transport == first.transport
                and not is_service_name(r.sni) and not is_service_family(r.family)
                and (r.direction == first.direction or r.stage != "ok")]
    return [r for r in controls if r.experiment == experiment] or controls


def _why_throttled(experiment: str, v: Verdict, subject: list[_Rep], run: list[_Rep],
                   seed: int) -> tuple[str, str]:
    """(trigger, reason) of a throttled row."""
    first = subject[0]
    if experiment in LISTED:
        return _trigger(first.sni, v.rate_kbps or 0.0, run, seed, first.family,
                        "sni" if experiment == "target" else "sni-h3")
    if experiment == "transport":
        return "quic", ("the neutral name over QUIC was slow and over TCP to the same server "
                        "it was not: the network slows QUIC (or UDP) whatever the name")
    service = label(service_of(first.sni) or first.family)
    return "sni", f"only the {service} name differs from its baseline"


def _unless_h3_was_offered(v: Verdict, tcp: list[_Rep]) -> None:
    """A QUIC fetch that failed is no block where the server, asked over TCP, did not
    offer HTTP/3 (no Alt-Svc h3 in its answers): many servers never answer QUIC at all,
    and a device that blocks QUIC cannot strip the header from a TLS answer."""
    offered = [r.offers_h3 for r in tcp if r.offers_h3 is not None]
    if offered and not any(offered):
        v.verdict = "inconclusive"
        v.explanation = (v.explanation.rstrip(".") + ", but the server did not offer HTTP/3 "
                         "over TCP (no Alt-Svc h3 in its answer): it need not answer QUIC, so "
                         "this is no sign of blocking.")


def run_verdicts(reps: list[_Rep], pairs: dict[str, str | None], run_id: str,
                 seed: int = 0) -> list[Verdict]:
    """Verdicts of one run's measurements; `pairs` maps a target name to its control's."""
    out = []
    groups: dict[tuple, list[_Rep]] = {}
    for r in reps:
        if _subject(r):
            groups.setdefault((r.experiment, r.target, r.direction), []).append(r)
    for (experiment, target, _direction), subject in groups.items():
        if experiment in LISTED:
            controls = _controls_for(subject, pairs.get(target), reps)
        else:
            controls = _baselines(experiment, subject, reps)
        v = judge(subject, controls, seed)
        v.run_id = run_id
        if experiment == "transport" and v.verdict in ("throttled", "inconclusive") and \
                (v.rate_kbps or 0.0) >= SUB_SECOND_FAST_KBPS:
            # A user-space QUIC stack is often CPU-bound far below the kernel's TCP; a flow
            # this fast passed no throttle of the kind measured here (hundreds of kbit/s).
            v.verdict = "ok"
            v.explanation = (f"slower over QUIC than over TCP ({v.rate_kbps:,.0f} vs "
                             f"{v.control_rate_kbps or 0:,.0f} kbit/s), but too fast for a "
                             "throttle: the QUIC stack's own speed.")
        if experiment == "target-h3" and v.verdict == "blocked":
            _unless_h3_was_offered(v, groups.get(("target", target, _direction), []))
        if v.verdict == "throttled":
            v.trigger, why = _why_throttled(experiment, v, subject, reps, seed)
            v.explanation = v.explanation.rstrip(".") + f"; trigger {v.trigger}: {why}."
        if experiment == "upload" and v.verdict != "throttled" and v.control_rate_kbps and \
                v.control_rate_kbps < CONTROL_MIN_KBPS:
            v.explanation += " Every upload is slow, whatever the name: not SNI throttling."
        notes = sorted({r.note for r in subject + controls if r.note})
        if notes:
            v.explanation += f" Note: {'; '.join(notes)}."
        out.append(v)
    by_key = {(v.experiment, v.target, v.direction): v for v in out}
    for (experiment, target, direction), subject in groups.items():
        tcp = by_key.get(("target", target, direction))
        if experiment == "target-h3" and tcp is not None:
            compare_transports(tcp, by_key[(experiment, target, direction)],
                               groups[("target", target, direction)], subject, seed)
    return out


def verdicts(source: Results | Iterable[str | Path], seed: int = 0) -> pd.DataFrame:
    """Verdicts of every target in every run: one row per (run, target, experiment, direction)."""
    r = source if isinstance(source, Results) else load(source)
    reps = _reps(r)
    ms = r.measurements
    pairs: dict[str, dict[str, str | None]] = {}
    for run_id, target, pair in (ms[["run_id", "target", "pair"]].itertuples(index=False)
                                 if len(ms) else []):
        pairs.setdefault(str(run_id), {})[target] = None if pd.isna(pair) else pair
    run_of = {} if not len(ms) else dict(zip(ms["measurement_id"], ms["run_id"], strict=False))
    if not run_of:
        run_of = dict(zip(r.transfers["measurement_id"], r.transfers["run_id"], strict=False))
    by_run: dict[str, list[_Rep]] = {}
    for rep in reps:
        by_run.setdefault(str(run_of.get(rep.measurement_id)), []).append(rep)
    rows = [v.as_dict() for run_id, rs in by_run.items()
            for v in run_verdicts(rs, pairs.get(run_id, {}), run_id, seed)]
    return pd.DataFrame(rows, columns=FIELDS)


def transfer_table(r: Results) -> pd.DataFrame:
    """One row per transfer with its steady-state rate and signature (for plots, notebooks)."""
    tr = r.transfers
    samples = rate_series(r)
    tcpinfo = _sender_tcpinfo(r)
    rows = []
    for t in tr.itertuples(index=False):
        s = samples.get(t.transfer_id)
        rate, shape = None, None
        if s is not None and len(s) >= 2 and not isinstance(t.failure, str):
            est = estimate(s)
            rate = est.rate_kbps if est.window_s >= 1.0 else est.goodput_kbps
            shape = signature(s, tcpinfo.get(t.transfer_id, []), str(t.direction)).kind
        rows.append({"run_id": t.run_id, "transfer_id": t.transfer_id, "target": t.target,
                     "family": t.family, "kind": t.kind, "experiment": t.experiment,
                     "direction": t.direction, "sni": t.sni, "bytes": t.bytes,
                     "goodput_kbps": t.goodput_kbps, "rate_kbps": rate, "signature": shape,
                     "measurement_start_time": t.measurement_start_time})
    return pd.DataFrame(rows)
