"""The numbers a verdict rests on, in one place: the per-measurement features, the
bootstrap and the decision rules (analysis/verdicts.py says how each is used) read them.
"""

from __future__ import annotations

OK_RATIO = 0.7
THROTTLED_RATIO = 0.5
SUB_SECOND_OK_RATIO = 0.2  # transfers too short for a steady rate: noise reaches 2-3x
SUB_SECOND_FAST_KBPS = 10_000.0  # ... and a short transfer this fast was not throttled
CI_HIGH_MAX = 0.7
ALPHA = 0.01
CONTROL_MIN_KBPS = 400.0
CONTROL_MAX_CV = 0.6
MIN_BYTES = 16 * 1024  # a transfer smaller than this says more about RTT than about rate
PEAK_WINDOW_S = 1.0  # the ceiling test's windows
CEILING_RATIO = 0.25  # a wandering rate is a throttle only if its fastest second stays 4x below
# A Twitter name sent to a neutral server at this many times the throttled target's rate
# was not slowed by the device, however it compares with the neutral name (fast flows on
# a CPU-bound path differ 2-3x among themselves, and a sub-second one has no steady rate).
FAST_NAME_FACTOR = 10.0
MIN_REPS_FOR_SHAPE = 3  # fewer repetitions: the bootstrap sees no repetition-level noise
BIN_S = 0.25
BLOCK_BINS = 4
MAX_BOOT_BINS = 4 * 600  # bootstrap bins of the probe's longest transfer (--max-seconds 600)
BOOT = 1000
