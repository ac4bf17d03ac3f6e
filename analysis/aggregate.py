"""Verdicts across runs and volunteers: per network and day, how often and how hard.

The network is the run's ASN when run.json carries one (`asn`), else its
`--label`, else "unlabelled": volunteers on the same ISP pool their runs.
Only Twitter targets (family `twitter`) of the main experiment count
(differential experiments answer "why", not "how often"; collateral
`control-tco` targets answer "what else is hit"). `share_throttled` is throttled / (ok +
throttled): inconclusive and failed verdicts are counted but not in the share,
so a day of broken networks does not read as a day without throttling.
"""

from __future__ import annotations

import pandas as pd

from .load import Results

COLUMNS = ["network", "day", "runs", "targets", "throttled", "ok", "inconclusive", "failed",
           "share_throttled", "median_throttled_kbps"]


def aggregate(verdict_rows: pd.DataFrame, results: Results) -> pd.DataFrame:
    """One row per (network, UTC day) from `verdicts()` rows and the runs they came from."""
    runs = results.runs
    if not len(verdict_rows) or not len(runs):
        return pd.DataFrame(columns=COLUMNS)
    net = runs["asn"].where(runs["asn"].notna(), runs["label"]).fillna("unlabelled")
    day = runs["start"].dt.strftime("%Y-%m-%d").fillna("unknown")
    meta = pd.DataFrame({"run_id": runs["run_id"], "network": net.astype(str), "day": day})
    meta = meta.drop_duplicates("run_id")  # a run counts once, however often it was given
    # Twitter targets only: control-tco rows (collateral) answer another question.
    mine = (verdict_rows["experiment"] == "target") & (verdict_rows["family"] == "twitter")
    v = verdict_rows[mine].merge(meta, on="run_id")
    rows = []
    for (network, d), g in v.groupby(["network", "day"], sort=True):
        throttled = int((g["verdict"] == "throttled").sum())
        ok = int((g["verdict"] == "ok").sum())
        rates = g.loc[g["verdict"] == "throttled", "rate_kbps"].dropna()
        rows.append({
            "network": network, "day": d, "runs": int(g["run_id"].nunique()),
            "targets": len(g), "throttled": throttled, "ok": ok,
            "inconclusive": int((g["verdict"] == "inconclusive").sum()),
            "failed": int(g["verdict"].isin(["blocked", "dns-tampered", "tls-tampered"]).sum()),
            "share_throttled": throttled / (throttled + ok) if throttled + ok else None,
            "median_throttled_kbps": float(rates.median()) if len(rates) else None,
        })
    return pd.DataFrame(rows, columns=COLUMNS)
