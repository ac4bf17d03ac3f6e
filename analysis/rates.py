"""Rate estimates of one transfer: the probe's early-stop estimator, read by the analysis.

The code lives in `probe.measure.rate` (the probe never imports the analysis); the
analysis reads goodput, the steady-state rate and throughput bins through this name.
"""

from probe.measure.rate import (
    CATCHUP_S,
    MAX_BINS,
    MAX_REL_HALF_WIDTH,
    MIN_EVENTS,
    MIN_SECONDS,
    SLOW_KBPS,
    SLOW_SECONDS,
    STALL_S,
    STARTUP_STALL_S,
    WARMUP_FRACTION,
    RateEstimate,
    as_arrays,
    bin_rates,
    estimate,
    first_byte,
    goodput_kbps,
    steady_window,
    stop_when,
)

__all__ = [
    "CATCHUP_S", "MAX_BINS", "MAX_REL_HALF_WIDTH", "MIN_EVENTS", "MIN_SECONDS", "SLOW_KBPS",
    "SLOW_SECONDS", "STALL_S", "STARTUP_STALL_S", "WARMUP_FRACTION", "RateEstimate",
    "as_arrays", "bin_rates", "estimate", "first_byte", "goodput_kbps", "steady_window",
    "stop_when",
]
