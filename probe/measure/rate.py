"""Rate estimates of one transfer from its samples `[[t_ms, cumulative_bytes], ...]`.

Shared by the probe (``stop_when``: stop a transfer once its rate is known)
and the analysis (goodput, steady-state rate, throughput bins).

Why an envelope and not a t-interval: samples of a TCP flow are strongly
autocorrelated (a policer's saw-tooth, slow start's exponential ramp), so the
spread of 100 ms bins says little about the error of the mean. A rate limit
instead keeps the cumulative-bytes curve within a bounded distance of a
straight line, so the rate over a window of W seconds is known to within
about twice that distance divided by W: the interval shrinks as 1/W for a
fixed rate, and stays wide while the curve bends (slow start, a stall, a
rate that wanders). The steady-state window skips the first third of the
data phase, which holds slow start and a policer's initial token burst.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WARMUP_FRACTION = 1 / 3  # of the time since the first byte, skipped as slow start / burst
MIN_SECONDS = 3.0  # of data phase before an estimate may be called stable
MIN_EVENTS = 8  # byte-progress events inside the steady window
MAX_REL_HALF_WIDTH = 0.2  # stable when the interval is within +-20 % of the rate
STALL_S = 1.0  # no progress for this long at the end = stalled, never stable
MAX_BINS = 1_000_000  # bin_rates gives up beyond this: 11 days of 1 s bins
# A rate that is surely under SLOW_KBPS needs no more precision: every verdict is decided
# (half the slowest control rate that can show a throttle, analysis.verdicts'
# CONTROL_MIN_KBPS), so after SLOW_SECONDS of data such a flow may stop, however it wanders.
SLOW_KBPS = 200.0
SLOW_SECONDS = 6.0  # long enough for a window to hold a whole start-up loss episode
STARTUP_STALL_S = 0.5  # a silence this long is a loss episode (a retransmission timeout)
CATCHUP_S = 1.5  # after it, data held out of order comes in bursts above the link's rate


@dataclass(frozen=True)
class RateEstimate:
    """A transfer's rate so far; kbit/s throughout (1 kbit = 1000 bits)."""

    rate_kbps: float | None  # steady-state rate (past slow start); None without data
    ci_low: float | None  # envelope interval of the steady-state rate
    ci_high: float | None
    stable: bool  # confident enough to stop measuring
    goodput_kbps: float | None  # all bytes over all time (request sent to last sample)
    bytes: int
    elapsed_s: float  # request sent to the last sample
    window_s: float  # length of the steady-state window
    reason: str  # why it is (not) stable, in words


def as_arrays(samples: Sequence[Sequence[float]] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Times in seconds and cumulative bytes, sorted by time, cumulative bytes made monotone;
    reads with a non-finite time or count are dropped."""
    arr = np.asarray(samples, dtype=float).reshape(-1, 2)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():  # an empty CSV cell reads back as NaN: nothing is known of that read
        arr = arr[finite]
    if len(arr) == 0:
        return np.zeros(0), np.zeros(0)
    if np.any(arr[1:, 0] < arr[:-1, 0]):  # recorded series are sorted: skip the sort
        arr = arr[np.argsort(arr[:, 0], kind="stable")]
    b = arr[:, 1]
    if np.any(b[1:] < b[:-1]):
        b = np.maximum.accumulate(b)
    return arr[:, 0] / 1000.0, b


def goodput_kbps(samples: Sequence[Sequence[float]] | np.ndarray) -> float | None:
    """All bytes over all time: what a user would see, slow start and stalls included."""
    t, b = as_arrays(samples)
    if len(t) == 0 or t[-1] <= 0:
        return None
    with np.errstate(over="ignore"):  # absurd inputs give inf, not a warning
        return float(b[-1] * 8 / 1000 / t[-1])


def first_byte(t: np.ndarray, b: np.ndarray) -> float | None:
    """Time (s) of the read before the first byte arrived, or None if none did."""
    moved = np.nonzero(b > b[0])[0] if len(b) else []
    if len(moved) == 0:
        return None
    return float(t[max(moved[0] - 1, 0)])


def steady_window(t: np.ndarray, b: np.ndarray) -> tuple[float, float] | None:
    """(start, end) in seconds of the part past slow start, or None before the first byte.

    The first third of the data phase is skipped (slow start, a policer's token burst).
    The window never begins inside a loss episode: slow start overshooting a short queue
    ends in a silence of a retransmission timeout, then a burst of the data held out of
    order while the link kept delivering at its rate. A window that began after the
    silence but within the burst would count the data without the time it took, so a
    start within a silence of STARTUP_STALL_S or more, or within CATCHUP_S after it, moves
    back to where the silence began: the window holds the whole episode, which averages out.
    """
    first = first_byte(t, b)
    if first is None:
        return None
    end = float(t[-1])
    start = first + (end - first) * WARMUP_FRACTION
    moves = t[np.nonzero(np.diff(b) > 0)[0] + 1]
    if len(moves) >= 2:
        gaps = np.diff(moves)
        # Latest first: a start moved back may land in the catch-up of an earlier episode.
        for i in reversed(np.nonzero(gaps >= STARTUP_STALL_S)[0]):
            if moves[i] < start <= moves[i + 1] + CATCHUP_S:
                start = float(moves[i])
    return start, end


def bin_rates(t: np.ndarray, b: np.ndarray, start: float, end: float,
              width: float) -> np.ndarray:
    """kbit/s in consecutive bins of `width` s over [start, end] (linear between samples);
    none when fewer than one bin fits, or more than MAX_BINS (a clock jump, not a transfer:
    its bins would not fit in memory)."""
    n = int((end - start) // width)
    if n < 1 or n > MAX_BINS:
        return np.zeros(0)
    edges = start + width * np.arange(n + 1)
    return np.diff(np.interp(edges, t, b)) * 8 / 1000 / width


def estimate(samples: Sequence[Sequence[float]] | np.ndarray) -> RateEstimate:
    """The steady-state rate so far, its envelope interval, and whether it is stable."""
    t, b = as_arrays(samples)
    nbytes = int(b[-1]) if len(b) else 0
    elapsed = float(t[-1]) if len(t) else 0.0
    good = goodput_kbps(samples) if nbytes else None
    window = steady_window(t, b) if len(t) >= 2 else None
    if window is None:
        return RateEstimate(None, None, None, False, good, nbytes, elapsed, 0.0, "no data yet")
    start, end = window
    span = end - start
    if span <= 1e-6:  # under a microsecond (or denormal): no rate can be read off it
        return RateEstimate(good, None, None, False, good, nbytes, elapsed, 0.0, "too short")
    b_start = float(np.interp(start, t, b))
    inside = t >= start
    rate = (b[-1] - b_start) * 8 / 1000 / span
    line = b_start + (b[-1] - b_start) * (t[inside] - start) / span
    deviation = float(np.max(np.abs(b[inside] - line), initial=0.0))
    half = 2 * deviation * 8 / 1000 / span
    lo, hi = max(rate - half, 0.0), rate + half
    data_s = end - (first_byte(t, b) or 0.0)
    events = int(np.count_nonzero(np.diff(b[inside]) > 0))
    last_move = float(t[np.nonzero(b < b[-1])[0][-1] + 1]) if np.any(b < b[-1]) else float(t[0])
    if end - last_move >= STALL_S:
        reason = f"stalled: no data for {end - last_move:.1f} s"
    elif data_s < MIN_SECONDS:
        reason = f"only {data_s:.1f} s of data (need {MIN_SECONDS:g})"
    elif events < MIN_EVENTS:
        reason = f"only {events} reads in the steady window (need {MIN_EVENTS})"
    elif rate <= 0:
        reason = "no progress"
    elif half <= MAX_REL_HALF_WIDTH * rate:
        return RateEstimate(rate, lo, hi, True, good, nbytes, elapsed, span,
                            f"settled within +-{half / rate * 100:.0f} %")
    elif hi <= SLOW_KBPS and data_s >= SLOW_SECONDS:
        return RateEstimate(rate, lo, hi, True, good, nbytes, elapsed, span,
                            f"slow for sure: at most {hi:.0f} kbit/s (+-"
                            f"{half / rate * 100:.0f} %)")
    else:
        reason = f"rate not settled: +-{half / rate * 100:.0f} %"
    return RateEstimate(rate, lo, hi, False, good, nbytes, elapsed, span, reason)


def stop_when(samples: Sequence[Sequence[float]] | np.ndarray) -> bool:
    """True once the rate estimate is stable: the probe may stop this transfer early."""
    return estimate(samples).stable
