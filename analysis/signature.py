"""What kind of rate limit shaped a transfer: the plateau test and the policing/shaping signature.

Plateau: a fixed cap (policer or shaper) holds a flow at one rate, so the
rate in consecutive one-second windows stays near a level; congestion makes
it wander. The test is the spread of the window rates, (p90 - p10) / median.

Signature (Flach et al., SIGCOMM 2016): a policer drops what exceeds its
token rate, so the sender sees loss bursts without RTT growth and the
receiver sees on-off delivery (silences of an RTO or more while lost
segments are recovered, then a burst); a shaper queues, so RTT grows, losses
are rare and delivery is smooth; congestion varies. On a download the probe
is the receiver: its TCP_INFO counts no retransmissions and its RTT stays at
the handshake value, so the time series (the silences) carries the evidence;
on an upload the probe is the sender and TCP_INFO speaks directly.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .rates import MAX_BINS, MIN_SECONDS, as_arrays, bin_rates, steady_window

WINDOW_S = 1.0  # plateau windows
MIN_WINDOWS = 3
FLAT_SPREAD = 0.5  # (p90 - p10) / median of window rates at or below this = flat
GAP_MIN_S = 0.2  # a silence shorter than Linux's minimum RTO is not a loss recovery
GAP_RTTS = 2.0  # ... nor one shorter than two round trips
GAP_SPACINGS = 2.5  # ... nor one a shaper at this rate could leave between two packets
ON_OFF_SHARE = 0.15  # share of the steady window spent in such silences = on-off delivery
SMOOTH_SHARE = 0.05
RTT_GROWTH = 1.5  # median RTT over min RTT at or above this = queueing
RTT_GROWTH_MIN_MS = 10.0  # ... and at least this much absolute growth
MSS = 1448
KINDS = ("policing", "shaping", "congestion", "unknown")


@dataclass(frozen=True)
class Plateau:
    flat: bool | None  # None = too short to tell
    level_kbps: float | None  # median window rate
    spread: float | None  # (p90 - p10) / median; None when it cannot be computed
    windows: int
    reason: str = ""  # why flat or spread is None, in words


@dataclass(frozen=True)
class Signature:
    kind: str  # policing | shaping | congestion | unknown
    plateau: Plateau
    gap_share: float | None  # share of the steady window in loss-recovery silences
    gaps: int
    retransmits: int | None  # TCP_INFO total_retrans delta (sender side only)
    rtt_growth: float | None  # median RTT / min RTT (sender side only)
    evidence: str  # one phrase in plain words


def plateau(samples: Sequence[Sequence[float]] | np.ndarray) -> Plateau:
    """Is the steady-state rate a flat line? Needs MIN_WINDOWS one-second windows."""
    t, b = as_arrays(samples)
    window = steady_window(t, b) if len(t) >= 2 else None
    if window is None:
        return Plateau(None, None, None, 0, "no byte arrived after the first sample")
    if (window[1] - window[0]) / WINDOW_S > MAX_BINS:
        return Plateau(None, None, None, 0, f"a steady window of {window[1] - window[0]:.3g} s "
                                            "is a clock jump, not a transfer")
    rates = bin_rates(t, b, window[0], window[1], WINDOW_S)
    if len(rates) < MIN_WINDOWS:
        return Plateau(None, None, None, len(rates),
                       f"{len(rates)} one-second windows (need {MIN_WINDOWS})")
    level = float(np.median(rates))
    if level <= 0:  # mostly silent: no level to measure a spread against
        return Plateau(False, 0.0, None, len(rates), "the rate is zero over most of the "
                                                     "steady window")
    spread = float((np.percentile(rates, 90) - np.percentile(rates, 10)) / level)
    return Plateau(spread <= FLAT_SPREAD, level, spread, len(rates))


def silences(samples: Sequence[Sequence[float]] | np.ndarray,
             rtt_ms: float | None) -> tuple[float | None, int]:
    """(share of the steady window in loss-recovery silences, their number)."""
    t, b = as_arrays(samples)
    window = steady_window(t, b) if len(t) >= 2 else None
    if window is None or window[1] - window[0] <= 0:
        return None, 0
    start, end = window
    moves = t[np.r_[False, np.diff(b) > 0]]
    moves = moves[moves >= start]
    if len(moves) < 2:
        return None, 0
    rate_bps = (b[-1] - np.interp(start, t, b)) * 8 / (end - start)
    spacing = MSS * 8 / rate_bps if rate_bps > 0 else 0.0
    threshold = max(GAP_MIN_S, GAP_RTTS * (rtt_ms or 0) / 1000, GAP_SPACINGS * spacing)
    gaps = np.diff(np.r_[start, moves])
    long = gaps[gaps >= threshold]
    return float(long.sum() / (end - start)), int(len(long))


def _values(tcp_info: Sequence[dict], key: str, positive: bool = True) -> list[float]:
    """The finite values of one TCP_INFO field (an empty CSV cell reads back as NaN, a
    kernel without the field gives none or 0: neither is evidence)."""
    out = []
    for snap in tcp_info:
        v = snap.get(key)
        if isinstance(v, numbers.Real) and math.isfinite(v) and (v > 0 or not positive):
            out.append(float(v))
    return out


def _tcp_evidence(tcp_info: Sequence[dict]) -> tuple[int | None, float | None]:
    """(retransmits, RTT growth) when TCP_INFO shows the probe sending, else (None, None)."""
    retrans = _values(tcp_info, "total_retrans", positive=False)
    rtts = _values(tcp_info, "rtt_us")
    mins = _values(tcp_info, "min_rtt_us")
    if not retrans or not rtts:
        return None, None
    n_retrans = int(retrans[-1] - retrans[0])
    base = min(mins) if mins else min(rtts)
    median = float(np.median(rtts))
    grew = median / base if median - base >= RTT_GROWTH_MIN_MS * 1000 else 1.0
    return n_retrans, grew


def signature(samples: Sequence[Sequence[float]] | np.ndarray,
              tcp_info: Sequence[dict] = (), direction: str = "down",
              rtt_ms: float | None = None) -> Signature:
    """Classify a transfer as policing, shaping, congestion or unknown, with the evidence."""
    flat = plateau(samples)
    t, _ = as_arrays(samples)
    if rtt_ms is None:
        mins = _values(tcp_info, "min_rtt_us")
        rtt_ms = min(mins) / 1000 if mins else None
    share, gaps = silences(samples, rtt_ms)
    retrans, growth = _tcp_evidence(tcp_info) if direction == "up" else (None, None)

    def result(kind: str, evidence: str) -> Signature:
        return Signature(kind, flat, share, gaps, retrans, growth, evidence)

    if flat.flat is None:
        return result("unknown", f"cannot see the shape of the rate: {flat.reason}")
    if share is None or (len(t) and t[-1] < MIN_SECONDS):
        return result("unknown", "too short to see the shape of the rate")
    if flat.spread is None:
        return result("unknown", flat.reason)
    if not flat.flat:
        return result("congestion", f"the rate wanders (spread {flat.spread:.2f} of its level)")
    if retrans is not None and growth is not None:
        if retrans > 0 and growth < RTT_GROWTH:
            return result("policing", f"{retrans} retransmissions without RTT growth at a "
                                      "flat rate")
        if growth >= RTT_GROWTH and retrans == 0:
            return result("shaping", f"RTT grew {growth:.1f}x without loss at a flat rate")
    if share >= ON_OFF_SHARE:
        return result("policing", f"flat rate delivered in bursts with {gaps} silences "
                                  f"({share * 100:.0f} % of the time)")
    if share <= SMOOTH_SHARE:
        return result("shaping", "flat rate delivered smoothly (queued, not dropped)")
    return result("unknown", "flat rate, neither clearly on-off nor smooth")
