"""The two rules that call a row of the dataset throttled: the page's own and ours."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

# The page's own rule, as published with the dataset.
PAGE_THRESHOLD_KBPS = 600.0


@dataclass(frozen=True)
class OursRule:
    """Our stricter rule: the 2021 throttle's signature, relative to a fast control.

    Why: the throttler policed Twitter flows to 130-150 kbit/s and whole-object page
    speeds had a median of ~109 kbit/s (Xue et al., IMC 2021). A Twitter download at or below
    ``band_max_kbps`` while the control on the same connection ran at least
    ``control_min_kbps`` (5x the band ceiling, so a slow line cannot pass) and the test
    was at most ``max_ratio`` of the control (>= 90% slower) is the throttle. A slow
    test (> band) with a fast control is slow for another reason: not throttled. A test
    in the band but with a ratio above ``max_ratio``, or any row whose control is slow
    or invalid (<= 0), is inconclusive and leaves the denominator.
    """

    band_max_kbps: float = 200.0
    control_min_kbps: float = 1000.0
    max_ratio: float = 0.1


RULE_DESCRIPTIONS = {
    "page": f"the page's own rule: throttled if test < {PAGE_THRESHOLD_KBPS:g} kbps and control >"
    f" {PAGE_THRESHOLD_KBPS:g} kbps; every row decides",
    "ours": "throttled if control >= {control_min_kbps:g} kbps, test <= {band_max_kbps:g}"
    " kbps and test/control <= {max_ratio:g}; inconclusive (excluded) if the control is"
    " slower or invalid, or the test is in the band but the ratio is above the threshold",
}


def apply_rules(df: pd.DataFrame, ours: OursRule | None = None) -> pd.DataFrame:
    """A copy of df with the verdict columns of both rules.

    ``page_throttled`` (bool), ``ours_throttled`` (boolean, NA = inconclusive) and
    ``taco_throttled`` (boolean, NA = inconclusive): the t.co control judged by our rule,
    which flags collateral damage of the substring rule (``*t.co*``).
    """
    rule = ours or OursRule()
    out = df.copy()
    test, control, taco = out["test_kbps"], out["control_kbps"], out["control_taco_kbps"]
    out["page_throttled"] = (test < PAGE_THRESHOLD_KBPS) & (control > PAGE_THRESHOLD_KBPS)
    out["ours_throttled"] = _ours(test, control, rule)
    out["taco_throttled"] = _ours(taco, control, rule)
    return out


def _ours(test: pd.Series, control: pd.Series, rule: OursRule) -> pd.Series:
    fast_control = control >= rule.control_min_kbps
    in_band = (test > 0) & (test <= rule.band_max_kbps)
    ratio_ok = test <= rule.max_ratio * control
    verdict = pd.Series(pd.NA, index=test.index, dtype="boolean")
    verdict[fast_control & in_band & ratio_ok] = True
    verdict[fast_control & (test > rule.band_max_kbps)] = False  # a speed <= 0 is invalid
    return verdict
