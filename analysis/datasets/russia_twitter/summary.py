"""The dataset's figures per rule: shares of throttled visits overall, per AS, per day and
per access type, with Wilson intervals, change-points of each large AS's daily share, and
whether landline throttling dropped when it was lifted on 17 May 2021.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pandas as pd

from analysis.aggregate import wilson
from analysis.changepoint import Settings, detect
from analysis.missing import or_none

from .loader import NAME
from .rules import PAGE_THRESHOLD_KBPS, RULE_DESCRIPTIONS, OursRule, apply_rules

# 16:40 Moscow time (Xue et al., "Throttling Twitter: An Emerging Censorship Technique in
# Russia", IMC 2021)
LANDLINE_LIFT = pd.Timestamp("2021-05-17 13:40", tz="UTC")

ATTRIBUTION: dict[str, Any] = {
    "dataset": "Russia Twitter Throttle Dataset",
    "creators": ["Andrey Viktorov (https://lynx.pink)", "Leonid Evdokimov (https://darkk.net.ru)"],
    "source": "https://github.com/4ndv/russia-twitter-throttle",
    "collected_by": "https://lynx.pink/is-my-twitter-slow-or-what",
    "license": "CC BY 4.0",
    "license_url": "https://creativecommons.org/licenses/by/4.0/",
    "caida": [
        "The CAIDA UCSD Routeviews Prefix to AS mappings Dataset (pfx2as) for IPv4 and IPv6"
        " - 2021-03/2021-05, https://www.caida.org/catalog/datasets/routeviews-prefix2as/",
        "The CAIDA UCSD Inferred AS to Organization Mapping Dataset - 2021-03/2021-05,"
        " https://www.caida.org/catalog/datasets/as-organizations/",
    ],
    "paper": "D. Xue, R. Ramesh, ValdikSS, L. Evdokimov, A. Viktorov, A. Jain, E. Wustrow,"
    " S. Basso, R. Ensafi. Throttling Twitter: An Emerging Censorship Technique in Russia."
    " ACM IMC 2021. https://doi.org/10.1145/3487552.3487858",
    "changes": "Aggregated by throttle-probe (shares, medians, change-points); the rows"
    " themselves are unmodified. No warranties are given (CC BY 4.0, Section 5).",
}
ATTRIBUTION["text"] = (
    f'"{ATTRIBUTION["dataset"]}" ({ATTRIBUTION["source"]}) by Andrey Viktorov and Leonid'
    f" Evdokimov is licensed under CC BY 4.0 ({ATTRIBUTION['license_url']})."
    f" {ATTRIBUTION['changes']} AS data: {ATTRIBUTION['caida'][0]}; {ATTRIBUTION['caida'][1]}."
)


def _num(x: float) -> float | None:
    """JSON-safe float: NaN becomes null, values rounded for readability."""
    return or_none(x, lambda v: round(float(v), 4))


def _hit(verdict: pd.Series) -> pd.Series:
    """Plain bool mask of 'throttled' (a nullable verdict's NA, inconclusive, counts as no)."""
    return verdict.astype("boolean").fillna(False).astype(bool)


def _stats(rows: pd.DataFrame, verdict: str) -> dict[str, Any]:
    v = rows[verdict]
    decided = int(v.notna().sum())
    throttled_mask = _hit(v)
    throttled = int(throttled_mask.sum())
    return {
        "measurements": int(len(rows)),
        "decided": decided,
        "throttled": throttled,
        "throttled_share": _num(throttled / decided) if decided else None,
        "median_throttled_kbps": _num(rows.loc[throttled_mask, "test_kbps"].median())
        if throttled
        else None,
    }


def _daily_counts(rows: pd.DataFrame, verdict: str, days: pd.DatetimeIndex) -> pd.DataFrame:
    """Per calendar day (zero rows for days without data): visits decided ``n`` and throttled
    ``k``; visitors decided ``vn`` and ``vk``, the sum over visitors of their throttled share.

    Why visitors: volunteers reload the page many times in a row, so visits are not
    independent trials; one visitor-day (``anonymized_ip``, a /24 or /48) is the unit the
    change-point detector counts, which keeps its binomial model close to honest.
    """
    decided = rows[rows[verdict].notna()]
    hit = decided[verdict].astype(float)
    visits = pd.DataFrame(
        {"k": hit.groupby(decided["day"]).sum(), "n": hit.groupby(decided["day"]).size()}
    )
    per_visitor = hit.groupby([decided["day"], decided["anonymized_ip"]]).mean()
    visitors = pd.DataFrame(
        {"vk": per_visitor.groupby(level=0).sum(), "vn": per_visitor.groupby(level=0).size()}
    )
    return visits.join(visitors).reindex(days, fill_value=0)


def _changes(
    rows: pd.DataFrame, verdict: str, days: pd.DatetimeIndex, settings: Settings
) -> list[dict[str, Any]]:
    """Change-points of one network's daily share, detected on visitor-days.

    ``before_share``/``after_share`` are shares of visits in the adjacent segments (the
    unit of every other table); ``*_share_visitors`` are the detector's own.
    """
    counts = _daily_counts(rows, verdict, days)
    k, n = counts["k"].to_numpy(), counts["n"].to_numpy()
    found = detect(counts["vk"].to_numpy(), counts["vn"].to_numpy(), settings)
    bounds = [0] + [c.index for c in found] + [len(days)]
    out = []
    for i, c in enumerate(found):
        before = slice(bounds[i], bounds[i + 1])
        after = slice(bounds[i + 1], bounds[i + 2])
        out.append(
            {
                "date": str(days[c.index].date()),
                "before_share": _num(k[before].sum() / n[before].sum()),
                "after_share": _num(k[after].sum() / n[after].sum()),
                "before_n": int(n[before].sum()),
                "after_n": int(n[after].sum()),
                "before_share_visitors": _num(c.before_share),
                "after_share_visitors": _num(c.after_share),
                "before_visitor_days": c.before_n,
                "after_visitor_days": c.after_n,
                "direction": "up" if c.after_share > c.before_share else "down",
                "statistic": _num(c.statistic),
                "dispersion": _num(c.dispersion),
            }
        )
    return out


def _lift_check(
    rows: pd.DataFrame, verdict: str, changes: list[dict[str, Any]], window_days: int = 14
) -> dict[str, Any]:
    """Share before/after the landline lift (17 May 2021 13:40 UTC) and whether a change-point
    fell within a day of it; the windows are ``window_days`` before and all data after."""
    start = LANDLINE_LIFT - pd.Timedelta(days=window_days)
    before = rows[(rows["time"] >= start) & (rows["time"] < LANDLINE_LIFT)]
    after = rows[rows["time"] >= LANDLINE_LIFT]
    result: dict[str, Any] = {}
    for label, part in (("before", before), ("after", after)):
        s = _stats(part, verdict)
        ci = wilson(s["throttled"], s["decided"])
        result[label] = {
            "decided": s["decided"],
            "throttled": s["throttled"],
            "share": s["throttled_share"],
            "ci95": [_num(ci[0]), _num(ci[1])] if ci else None,
        }
    lift_day = LANDLINE_LIFT.tz_localize(None).normalize()
    near = [
        c
        for c in changes
        if c["direction"] == "down" and abs((pd.Timestamp(c["date"]) - lift_day).days) <= 1
    ]
    result["changepoint_found"] = bool(near)
    result["changepoint_date"] = near[0]["date"] if near else None
    b, a = result["before"]["ci95"], result["after"]["ci95"]
    result["drop_significant"] = bool(b and a and a[1] < b[0])
    return result


def _grouped(rows: pd.DataFrame, verdict: str, keys: list[str]) -> pd.DataFrame:
    """``_stats`` for every group of ``keys`` at once (a per-group loop is 10x slower)."""
    v = rows[verdict]
    hit = _hit(v)
    frame = pd.DataFrame(
        {"decided": v.notna(), "throttled": hit, "kbps": rows["test_kbps"].where(hit)}
    )
    groups = frame.groupby([rows[k] for k in keys], sort=True)
    out = pd.DataFrame(
        {
            "measurements": groups.size(),
            "decided": groups["decided"].sum(),
            "throttled": groups["throttled"].sum(),
            "median_throttled_kbps": groups["kbps"].median(),
        }
    )
    out["throttled_share"] = out["throttled"] / out["decided"].where(out["decided"] > 0)
    return out


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a ``_grouped`` table as JSON-ready dicts, in ``_stats`` key order."""
    out = []
    for key, r in table.iterrows():
        out.append(
            {
                "_key": key,
                "measurements": int(r["measurements"]),
                "decided": int(r["decided"]),
                "throttled": int(r["throttled"]),
                "throttled_share": _num(r["throttled_share"]),
                "median_throttled_kbps": _num(r["median_throttled_kbps"]),
            }
        )
    return out


def _per_as(ru: pd.DataFrame, verdict: str) -> list[dict[str, Any]]:
    rows = ru.dropna(subset=["asn"])
    meta = rows.groupby("asn").agg(
        org=("as_organization", lambda s: s.mode().iat[0] if s.notna().any() else None),
        access=("access", "first"),
    )
    out = []
    for r in _records(_grouped(rows, verdict, ["asn"])):
        asn = r.pop("_key")
        out.append(
            {
                "asn": int(asn),
                "as_organization": or_none(meta.at[asn, "org"]),
                "access": or_none(meta.at[asn, "access"]),
                **r,
            }
        )
    out.sort(key=lambda r: (-r["measurements"], r["asn"]))
    return out


def _per_day(ru: pd.DataFrame, verdict: str) -> list[dict[str, Any]]:
    split = _grouped(ru, verdict, ["day", "access"])
    out = []
    for r in _records(_grouped(ru, verdict, ["day"])):
        day = r.pop("_key")
        entry = {"date": str(day.date()), **r}
        for access in ("mobile", "landline"):
            if (day, access) in split.index:
                x = split.loc[(day, access)]
                entry[access] = {
                    "measurements": int(x["measurements"]),
                    "decided": int(x["decided"]),
                    "throttled_share": _num(x["throttled_share"]),
                }
            else:
                entry[access] = {"measurements": 0, "decided": 0, "throttled_share": None}
        out.append(entry)
    return out


def _rule_summary(
    ru: pd.DataFrame, verdict: str, days: pd.DatetimeIndex, large: list[int], settings: Settings
) -> dict[str, Any]:
    per_as = _per_as(ru, verdict)
    org = {r["asn"]: (r["as_organization"], r["access"]) for r in per_as}
    changes = []
    lift = []
    for asn in large:
        rows = ru[ru["asn"] == asn]
        found = _changes(rows, verdict, days, settings)
        changes += [
            {"asn": asn, "as_organization": org[asn][0], "access": org[asn][1], **c} for c in found
        ]
        if org[asn][1] == "landline":
            lift.append(
                {"asn": asn, "as_organization": org[asn][0], **_lift_check(rows, verdict, found)}
            )
    groups = {}
    for access in ("mobile", "landline"):
        rows = ru[ru["access"] == access]
        found = _changes(rows, verdict, days, settings)
        groups[access] = {"changes": found, "lift_check": _lift_check(rows, verdict, found)}
    by_access = {a: _stats(ru[ru["access"] == a], verdict) for a in ("mobile", "landline")}
    large_rows = ru[ru["asn"].isin(large)]
    per_as_day = []
    for r in _records(_grouped(large_rows, verdict, ["asn", "day"])):
        asn, day = r.pop("_key")
        per_as_day.append({"asn": int(asn), "date": str(day.date()), **r})
    return {
        "overall": _stats(ru, verdict),
        "by_access": by_access,
        "per_as": per_as,
        "per_day": _per_day(ru, verdict),
        "per_as_day": per_as_day,
        "changes": changes,
        "groups": groups,
        "landline_lift_check": lift,
    }


def summarize(
    df: pd.DataFrame,
    *,
    primary: str = "page",
    ours: OursRule | None = None,
    min_as_measurements: int = 300,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """The JSON-ready summary: overall, per-AS, per-day figures and change-points per rule.

    ``overall``, ``changes``, ``per_as`` and ``per_day`` at the top level are those of the
    ``primary`` rule ("page" or "ours"); ``rules`` holds both. Only Russian ASes count;
    ``outside_russia`` gives the same overall figures for the rest (a false-positive gauge).
    Change-points are sought for every Russian AS with >= ``min_as_measurements`` rows.
    """
    if primary not in RULE_DESCRIPTIONS:
        raise ValueError(f"primary rule must be one of {sorted(RULE_DESCRIPTIONS)}")
    rule = ours or OursRule()
    cp = settings or Settings()
    judged = apply_rules(df, rule) if "page_throttled" not in df.columns else df
    ru = judged[judged["russia"]]
    days = pd.date_range(judged["day"].min(), judged["day"].max(), freq="D")
    sizes = ru["asn"].value_counts()
    large = [int(a) for a, n in sizes.items() if n >= min_as_measurements]
    rules = {}
    for name, verdict in (("page", "page_throttled"), ("ours", "ours_throttled")):
        rules[name] = {
            "description": RULE_DESCRIPTIONS[name].format(**asdict(rule)),
            **_rule_summary(ru, verdict, days, large, cp),
        }
    abroad = judged[~judged["russia"]]
    first, last = judged["day"].min().date(), judged["day"].max().date()
    attribution = {**ATTRIBUTION, "dates_used": f"{first} to {last}"}
    main = rules[primary]
    return {
        "dataset": NAME,
        "attribution": attribution,
        "data": {
            "rows": int(len(judged)),
            "rows_russia": int(len(ru)),
            "first_day": str(first),
            "last_day": str(last),
            "files": int(judged["day"].nunique()),
            "russia_selector": "as_country == 'RU' (CAIDA AS-to-organisation country)",
        },
        "primary_rule": primary,
        "overall": main["overall"],
        "changes": main["changes"],
        "per_as": main["per_as"],
        "per_day": main["per_day"],
        "rules": rules,
        "outside_russia": {
            "page": _stats(abroad, "page_throttled"),
            "ours": _stats(abroad, "ours_throttled"),
        },
        "collateral_taco": {
            "note": "t.co-named control judged by our rule; throttled = substring collateral",
            "overall": _stats(ru.assign(test_kbps=ru["control_taco_kbps"]), "taco_throttled"),
            "both_throttled": int((_hit(ru["taco_throttled"]) & _hit(ru["ours_throttled"])).sum()),
        },
        "parameters": {
            "page_threshold_kbps": PAGE_THRESHOLD_KBPS,
            "ours": asdict(rule),
            "changepoint": asdict(cp),
            "min_as_measurements": min_as_measurements,
            "large_ases": large,
            "landline_lift_utc": LANDLINE_LIFT.isoformat(),
        },
    }
