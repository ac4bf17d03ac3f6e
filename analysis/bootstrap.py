"""How sure a slowdown is: the ratio of two groups' median rates with a 95 % interval and a
p-value from a two-level bootstrap (repetitions resampled, and inside each transfer its
250 ms bins resampled in 1 s blocks, which keeps the autocorrelation of a TCP flow that
a plain test would ignore).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .features import _Rep
from .thresholds import ALPHA, BLOCK_BINS, BOOT, CI_HIGH_MAX, OK_RATIO, THROTTLED_RATIO


def _boot_means(bins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """BOOT moving-block bootstrap means of one transfer's bins."""
    n = len(bins)
    if n < 2 * BLOCK_BINS:
        return np.full(BOOT, float(np.mean(bins)))
    k = math.ceil(n / BLOCK_BINS)
    starts = rng.integers(0, n - BLOCK_BINS + 1, size=(BOOT, k))
    idx = (starts[:, :, None] + np.arange(BLOCK_BINS)).reshape(BOOT, -1)[:, :n]
    return bins[idx].mean(axis=1)


def _boot_group(reps: list[_Rep], rng: np.random.Generator) -> np.ndarray:
    """Bootstrap medians of a group: repetitions resampled, bins block-resampled inside."""
    means = np.stack([_boot_means(r.bins, rng) for r in reps], axis=1)  # (BOOT, reps)
    if len(reps) > 1:
        pick = rng.integers(0, len(reps), size=(BOOT, len(reps)))
        means = np.take_along_axis(means, pick, axis=1)
    return np.median(means, axis=1)


@dataclass
class _Comparison:
    rate: float
    control: float
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    control_cv: float


def _compare(subject: list[_Rep], controls: list[_Rep], seed: int) -> _Comparison:
    """Median rates, their ratio with a bootstrap interval and p-value, and how much the
    controls vary. The p-value tests the null hypothesis "the subject runs at OK_RATIO of
    its controls' rate or faster (not throttled)": the share of resamples where it does."""
    rng = np.random.default_rng(seed)
    rate = float(np.median([r.rate for r in subject]))
    control = float(np.median([r.rate for r in controls]))
    boot = _boot_group(subject, rng) / np.maximum(_boot_group(controls, rng), 1e-9)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    p = (1 + np.count_nonzero(boot >= OK_RATIO)) / (BOOT + 1)
    c = np.array([r.rate for r in controls])
    cv = float(np.std(c, ddof=1) / np.mean(c)) if len(c) >= 3 and np.mean(c) > 0 else 0.0
    return _Comparison(rate, control, rate / control if control > 0 else math.inf,
                       float(lo), float(hi), float(p), cv)


def _significant(c: _Comparison) -> bool:
    """Much slower, surely: ratio at most THROTTLED_RATIO, its interval under CI_HIGH_MAX
    and the bootstrap p-value of "ratio >= OK_RATIO" at most ALPHA."""
    return c.ratio <= THROTTLED_RATIO and c.ci_high < CI_HIGH_MAX and c.p_value <= ALPHA
