"""Change-point detection for a daily share (k successes out of n trials per day).

Why this method: the question is "on which day did throttling start or stop on
this network", asked of crowdsourced data where each day has a different (often
small) number of page visits. A binomial likelihood weighs each day by its
count, so a day with one visit cannot fake a change. Crowdsourced visits are not
independent (one volunteer reloads the page 50 times), so the likelihood-ratio
statistic is divided by a quasi-binomial dispersion estimated from the days
themselves; a change must also be large (``min_effect``) and both sides long
(``min_segment_days`` days with data, ``min_segment_n`` visits).

Algorithm: binary segmentation. In a segment, try every split that leaves both
sides long enough, keep the one with the largest binomial deviance reduction
D, and split there if D / phi > penalty (BIC-like, ``penalty_per_log_n`` *
ln N); then recurse on both halves. Changes are reported when, between their
final neighbours, |p_after - p_before| >= min_effect. Segments
are a few dozen days, so the exhaustive O(T^2) search is instant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChangePoint:
    """A change in the daily share: ``index`` is the first day of the new regime."""

    index: int
    before_share: float
    after_share: float
    before_n: int  # trials before the change (rounded if trials are fractional)
    after_n: int
    statistic: float  # deviance reduction divided by the dispersion estimate
    dispersion: float


@dataclass(frozen=True)
class Settings:
    """Thresholds of the detector (defaults tuned for daily crowdsourced counts)."""

    min_segment_days: int = 3  # days *with data* on each side of a change
    min_segment_n: int = 10  # visits on each side of a change
    min_effect: float = 0.2  # |after - before| share, absolute
    penalty_per_log_n: float = 2.0  # penalty = this * ln(total visits in segment)


def _loglik(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Maximised binomial log-likelihood of segments with k successes of n (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n > 0, k / np.where(n > 0, n, 1), 0.0)
        a = np.where(k > 0, k * np.log(np.where(p > 0, p, 1.0)), 0.0)
        b = np.where(n - k > 0, (n - k) * np.log(np.where(p < 1, 1 - p, 1.0)), 0.0)
    return a + b


def _dispersion(k: np.ndarray, n: np.ndarray, split: int) -> float:
    """Pearson chi2 / df of the days around a two-segment fit, floored at 1 (quasi-binomial)."""
    days = n > 0
    chi2 = 0.0
    used = 0
    for lo, hi in ((0, split), (split, len(n))):
        kk, nn = k[lo:hi][days[lo:hi]], n[lo:hi][days[lo:hi]]
        p = kk.sum() / nn.sum()
        var = nn * p * (1 - p)
        ok = var > 0
        chi2 += float((((kk - nn * p) ** 2)[ok] / var[ok]).sum())
        used += int(ok.sum())
    df = used - 2
    return max(1.0, chi2 / df) if df > 0 else 1.0


def _best_split(k: np.ndarray, n: np.ndarray, s: Settings) -> tuple[int, float] | None:
    """Split index (first day of right side) maximising the deviance reduction, or None."""
    ck = np.concatenate(([0], np.cumsum(k)))
    cn = np.concatenate(([0], np.cumsum(n)))
    cdays = np.concatenate(([0], np.cumsum(n > 0)))
    t = len(n)
    splits = np.arange(1, t)
    left_ok = (cdays[splits] >= s.min_segment_days) & (cn[splits] >= s.min_segment_n)
    right_ok = ((cdays[t] - cdays[splits]) >= s.min_segment_days) & (
        (cn[t] - cn[splits]) >= s.min_segment_n
    )
    # only split right before a day with data, so the date names a real observation
    valid = splits[left_ok & right_ok & (n[splits] > 0)]
    if valid.size == 0:
        return None
    whole = _loglik(np.array([ck[t]]), np.array([cn[t]]))[0]
    left = _loglik(ck[valid], cn[valid])
    right = _loglik(ck[t] - ck[valid], cn[t] - cn[valid])
    dev = 2.0 * (left + right - whole)
    best = int(np.argmax(dev))
    return int(valid[best]), float(dev[best])


def detect(
    k: Sequence[float] | np.ndarray,
    n: Sequence[float] | np.ndarray,
    settings: Settings | None = None,
) -> list[ChangePoint]:
    """Change points of the share k/n over consecutive days (days with n=0 are gaps).

    k may be fractional (e.g. a sum of per-visitor shares): the binomial deviance is then a
    quasi-likelihood, which is what the dispersion correction assumes anyway.

    Returns the changes in time order; an empty list means one regime throughout.
    """
    s = settings or Settings()
    k_arr = np.asarray(k, dtype=float)
    n_arr = np.asarray(n, dtype=float)
    if k_arr.shape != n_arr.shape or k_arr.ndim != 1:
        raise ValueError("k and n must be 1-D sequences of equal length")
    if np.any(n_arr < 0) or np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise ValueError("need 0 <= k <= n")
    found: list[ChangePoint] = []
    stack = [(0, len(n_arr))]
    while stack:
        lo, hi = stack.pop()
        kk, nn = k_arr[lo:hi], n_arr[lo:hi]
        split = _best_split(kk, nn, s)
        if split is None:
            continue
        at, dev = split
        phi = _dispersion(kk, nn, at)
        before = kk[:at].sum() / nn[:at].sum()
        after = kk[at:].sum() / nn[at:].sum()
        stat = dev / phi
        if stat <= s.penalty_per_log_n * math.log(nn.sum()):
            continue
        # A significant change smaller than min_effect still splits the segment: left in,
        # it would inflate the dispersion and hide a large change nearby. The final pass
        # below drops it from what is reported.
        found.append(
            ChangePoint(
                index=lo + at,
                before_share=float(before),
                after_share=float(after),
                before_n=int(round(nn[:at].sum())),
                after_n=int(round(nn[at:].sum())),
                statistic=float(stat),
                dispersion=float(phi),
            )
        )
        stack.extend([(lo, lo + at), (lo + at, hi)])
    found.sort(key=lambda c: c.index)
    # Shares between *final* neighbours can differ from those at split time; drop changes
    # that no longer meet the effect size, until stable (each pass removes one or stops).
    while True:
        local = _local_shares(found, k_arr, n_arr)
        weak = [
            i for i, c in enumerate(local) if abs(c.after_share - c.before_share) < s.min_effect
        ]
        if not weak:
            return local
        del found[weak[0]]


def _local_shares(changes: list[ChangePoint], k: np.ndarray, n: np.ndarray) -> list[ChangePoint]:
    """Recompute before/after shares over the adjacent final segments, not the split-time ones."""
    bounds = [0] + [c.index for c in changes] + [len(n)]
    out = []
    for i, c in enumerate(changes):
        lo, mid, hi = bounds[i], bounds[i + 1], bounds[i + 2]
        nb, na = n[lo:mid].sum(), n[mid:hi].sum()
        out.append(
            ChangePoint(
                index=c.index,
                before_share=float(k[lo:mid].sum() / nb),
                after_share=float(k[mid:hi].sum() / na),
                before_n=int(round(nb)),
                after_n=int(round(na)),
                statistic=c.statistic,
                dispersion=c.dispersion,
            )
        )
    return out
