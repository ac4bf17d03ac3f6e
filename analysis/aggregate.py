"""Verdicts across runs and volunteers: per network, day and service, how often and how hard.

The network is the run's ASN when run.json carries one (`asn`), else its
`--label`, else "unlabelled": volunteers on the same ISP pool their runs.
Only service targets (families `twitter`, `youtube`, `facebook`: probe.names)
of the main experiment count (differential experiments answer "why", not "how
often"; collateral `control-tco` targets answer "what else is hit"). Each
service (its family) is counted apart: a network that slows Twitter and not
YouTube is 100 % and 0 %, not 50 %.
`share_throttled` is throttled / (ok + throttled): inconclusive and failed
verdicts are counted but not in the share, so a day of broken networks does
not read as a day without throttling.
"""

from __future__ import annotations

import math

import pandas as pd

from probe.names import SERVICES

from .load import Results

COLUMNS = ["network", "day", "service", "runs", "targets", "throttled", "ok", "inconclusive",
           "failed", "share_throttled", "median_throttled_kbps"]
FAILED = ("blocked", "dns-tampered", "tls-tampered")


def wilson(k: float, n: float, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of a share (good at small n and near 0 or 1)."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def networks(runs: pd.DataFrame) -> pd.DataFrame:
    """run_id, network and UTC day of each run (a run given twice counts once)."""
    net = runs["asn"].where(runs["asn"].notna(), runs["label"]).fillna("unlabelled")
    day = runs["start"].dt.strftime("%Y-%m-%d").fillna("unknown")
    meta = pd.DataFrame({"run_id": runs["run_id"], "network": net.astype(str), "day": day})
    return meta.drop_duplicates("run_id")


def main_rows(verdict_rows: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The verdicts that count (service targets of the main experiment), each with its
    run's network and day, and its service (the target's family)."""
    mine = ((verdict_rows["experiment"] == "target")
            & verdict_rows["family"].isin(list(SERVICES)))
    # a dataset's rows may carry their network already: the runs' meta is the one key
    v = verdict_rows.loc[mine].drop(columns=["network", "day"], errors="ignore")
    return v.merge(networks(runs), on="run_id").assign(service=lambda d: d["family"])


def aggregate(verdict_rows: pd.DataFrame, results: Results | pd.DataFrame) -> pd.DataFrame:
    """One row per (network, UTC day, service) from `verdicts()` rows and the runs they
    came from (`results` or its `runs` table)."""
    runs = results if isinstance(results, pd.DataFrame) else results.runs
    if not len(verdict_rows) or not len(runs):
        return pd.DataFrame(columns=COLUMNS)
    v = main_rows(verdict_rows, runs)
    key = [v["network"], v["day"], v["service"]]
    verdict = v["verdict"]
    counts = pd.DataFrame({"throttled": verdict.eq("throttled"), "ok": verdict.eq("ok"),
                           "inconclusive": verdict.eq("inconclusive"),
                           "failed": verdict.isin(FAILED)}).groupby(key).sum().astype(int)
    counts["runs"] = v["run_id"].groupby(key).nunique()
    counts["targets"] = verdict.groupby(key).size()
    judged = counts["throttled"] + counts["ok"]
    counts["share_throttled"] = (counts["throttled"] / judged).where(judged > 0)
    hit = verdict.eq("throttled")
    counts["median_throttled_kbps"] = v.loc[hit, "rate_kbps"].groupby(
        [v.loc[hit, "network"], v.loc[hit, "day"], v.loc[hit, "service"]]).median()
    return counts.rename_axis(["network", "day", "service"]).reset_index()[COLUMNS]


def with_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """`table` (aggregate's columns) with the 95% Wilson interval of `share_throttled`
    (`share_low`, `share_high`; missing where no target was judged ok or throttled)."""
    out = table.copy()
    cis = [wilson(int(k), int(k) + int(o)) for k, o in zip(out["throttled"], out["ok"],
                                                            strict=True)]
    out["share_low"] = [c[0] if c else None for c in cis]
    out["share_high"] = [c[1] if c else None for c in cis]
    return out
