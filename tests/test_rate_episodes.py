"""Rate estimates of flows that stall and burst: a shaper with a short queue, a late throttle.

The series are built the way the kernel counts in-order bytes under such a
throttler: the link delivers at its rate all along, but after a loss the
receiver holds what arrives out of order until the retransmission fills the
hole, so the count stands still for a retransmission timeout and then jumps.
"""

from __future__ import annotations

import numpy as np

from analysis.rates import estimate, steady_window, stop_when

RATE = 128.0  # kbit/s
TICK = 0.1


def shaped(seconds: float, stalls: list[tuple[float, float]], rate: float = RATE) -> np.ndarray:
    """[[t_ms, bytes]] every 100 ms of a link at `rate` whose in-order count stands still
    during each (start, end) stall and catches up at its end."""
    t = np.arange(0.0, seconds + 1e-9, TICK)
    delivered = t * rate * 1000 / 8
    counted = delivered.copy()
    for start, end in stalls:
        held = (t >= start) & (t < end)
        counted[held] = np.interp(start, t, delivered)
    return np.column_stack([t * 1000, counted])


def test_a_window_starting_after_a_start_up_stall_holds_the_whole_episode() -> None:
    s = shaped(6.0, [(1.0, 2.75)])
    start, end = steady_window(s[:, 0] / 1000, s[:, 1])
    assert start <= 1.0 + TICK  # moved back to where the silence began, not into the burst
    est = estimate(s)
    assert abs(est.rate_kbps - RATE) < 0.05 * RATE, est


def test_the_catch_up_burst_alone_would_overstate_the_rate() -> None:
    """What the window rule prevents: a window that begins inside the catch-up."""
    s = shaped(6.0, [(1.0, 2.75)])
    after = s[s[:, 0] >= 2700]
    t, b = after[:, 0] / 1000, after[:, 1]
    assert (b[-1] - b[0]) * 8 / 1000 / (t[-1] - t[0]) > 1.1 * RATE


def test_a_slow_flow_that_keeps_stalling_stops_as_slow_for_sure() -> None:
    stalls = [(1.0, 2.75), (5.5, 6.25), (7.0, 7.75), (8.5, 9.25)]
    s = shaped(10.0, stalls)
    stops = [k for k in range(3, len(s) + 1) if stop_when(s[:k])]
    assert stops, "never stopped"
    est = estimate(s[:stops[0]])
    assert est.reason.startswith("slow for sure") and est.ci_high <= 200, est
    assert 6.0 <= s[stops[0] - 1, 0] / 1000 <= 8.0


def test_a_fast_flow_that_stalls_is_not_slow_for_sure() -> None:
    stalls = [(1.0, 2.75), (5.5, 6.25), (7.0, 7.75), (8.5, 9.25)]
    s = shaped(10.0, stalls, rate=100 * RATE)
    reasons = [estimate(s[:k]).reason for k in range(3, len(s) + 1)]
    assert not any(r.startswith("slow for sure") for r in reasons)


def test_a_stall_at_the_end_is_never_stable_however_slow() -> None:
    s = shaped(8.0, [(6.5, 9.0)])
    est = estimate(s)
    assert not est.stable and est.reason.startswith("stalled"), est


def test_a_start_moved_back_never_lands_in_an_earlier_episode() -> None:
    s = shaped(15.0, [(1.0, 2.75), (3.5, 4.2)])
    start, _ = steady_window(s[:, 0] / 1000, s[:, 1])
    assert start <= 1.0 + TICK, start
    assert abs(estimate(s).rate_kbps - RATE) < 0.05 * RATE
