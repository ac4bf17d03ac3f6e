"""The crowdsourced "Russia Twitter Throttle Dataset" (Viktorov & Evdokimov, CC BY 4.0).

One row per visit of the page https://lynx.pink/is-my-twitter-slow-or-what in
March-May 2021: download speed of a Twitter image, of a control host and of a
host whose name contains ``t.co``, with the visitor's AS (CAIDA data). It is the
crowdsourced data behind Xue et al., "Throttling Twitter: An Emerging Censorship
Technique in Russia", IMC 2021.

``load(dir)`` returns a typed, tidy DataFrame (columns in ``COLUMNS_DOC``);
``summarize(df)`` returns the JSON-ready summary used by ``probe analyze dataset``.
Two rules decide "throttled": the page's own (``page``) and a stricter one
(``ours``, see ``OursRule``). Only rows whose AS is registered in Russia count
in the headline figures (``as_country == "RU"``, CAIDA AS-to-organisation data).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.changepoint import Settings, detect
from analysis.datasets import DatasetError

NAME = "russia-twitter-throttle"

REQUIRED_COLUMNS = (
    "datetime_rounded",
    "anonymized_ip",
    "subnet",
    "asn",
    "as_country",
    "as_organization",
    "as_organization_iden",
    "version",
    "test_result",
    "control_result",
    "control_taco_result",
)

COLUMNS_DOC: dict[str, str] = {
    "time": "visit time, UTC, rounded down to 5 minutes (datetime64[ns, UTC])",
    "day": "UTC calendar day of the visit (datetime64[ns], midnight)",
    "anonymized_ip": "visitor address, last IPv4 octet / last 80 IPv6 bits zeroed (string)",
    "subnet": "routed prefix of the visitor (CAIDA pfx2as), NA if unknown (string)",
    "asn": "origin AS of the visitor (Int64, NA if unknown)",
    "as_country": "country of the AS's organisation, ISO 3166 alpha-2 (string, NA if unknown)",
    "as_organization": "AS organisation name (CAIDA as2org) (string)",
    "as_organization_iden": "AS organisation id, e.g. ORG-ZM1-RIPE (string)",
    "version": "page version; versions differ in the control servers used (Int64)",
    "test_kbps": "download speed of the Twitter image (abs.twimg.com), kbit/s (float64)",
    "control_kbps": "download speed from an unthrottled control host, kbit/s (float64)",
    "control_taco_kbps": "download speed from a control host whose name contains 't.co', kbit/s",
    "russia": "True when as_country == 'RU' (bool)",
    "access": "'mobile' or 'landline' for Russian ASes (see MOBILE_ORG_IDS), NA elsewhere",
    "source": "file:line the row came from (string)",
}

# The page's own rule, as published with the dataset.
PAGE_THRESHOLD_KBPS = 600.0

# Mobile operators by RIPE organisation id (stable, unlike names), with the name patterns
# below as a fallback for organisations absent from this list. Everything else in Russia
# is 'landline' (fixed access: Rostelecom, MGTS, ER-Telecom, TransTeleCom, ...).
MOBILE_ORG_IDS: dict[str, str] = {
    "ORG-ZM1-RIPE": "MTS PJSC (MTS)",
    "ORG-OM1-RIPE": "PJSC MegaFon",
    "ORG-JA8-RIPE": "PJSC Vimpel-Communications (Beeline mobile, AS16345)",
    "ORG-MCC1-RIPE": "T2 Mobile LLC (Tele2 Russia)",
    "ORG-TML25-RIPE": "Tinkoff Mobile LLC (MVNO)",
    "ORG-SL622-RIPE": "Sberbank-Telecom LLC (SberMobile, MVNO)",
}
# VimpelCom's fixed-line organisations: Corbina (Beeline home internet, AS8402) and
# Sovintel/Golden Telecom (AS3216 and others). Listed so the name pattern does not catch them.
LANDLINE_ORG_IDS: dict[str, str] = {
    "ORG-CTAM1-RIPE": 'PJSC "Vimpelcom" (Corbina, Beeline home internet)',
    "ORG-ES15-RIPE": 'PJSC "Vimpelcom" (Sovintel / Golden Telecom, fixed)',
}
MOBILE_NAME_PATTERN = re.compile(
    r"\bMTS\b|MegaFon|Vimpel-Communications|T2 Mobile|\bTele2\b|Scartel|\bYota\b|"
    r"Tinkoff Mobile|Sberbank-Telecom|Motiv|K-Telecom|Win Mobile",
    re.IGNORECASE,
)

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

_FILE_RE = re.compile(r"^(\d{4})-(\d{2})$")
_DAY_RE = re.compile(r"^(\d{2})\.csv$")
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
_TIME_RE = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC"


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


def _fail(path: Path, line: int, message: str) -> DatasetError:
    return DatasetError(f"{path}:{line}: {message}")


def _data_files(directory: Path) -> list[tuple[Path, pd.Timestamp]]:
    """The daily CSVs under directory/data, with the day each one's name says it holds."""
    if not directory.is_dir():
        raise DatasetError(f"{directory}: no such dataset folder")
    data = directory / "data"
    if not data.is_dir():
        raise DatasetError(f"{directory}: not a {NAME} folder (no data/ sub-folder)")
    files = []
    for month in sorted(data.iterdir()):
        if not month.is_dir():
            continue
        m = _FILE_RE.match(month.name)
        if m is None:
            raise DatasetError(f"{month}: expected a data/YYYY-MM folder")
        for path in sorted(month.glob("*.csv")):
            d = _DAY_RE.match(path.name)
            if d is None:
                raise DatasetError(f"{path}:1: expected a file named DD.csv")
            try:
                day = pd.Timestamp(int(m[1]), int(m[2]), int(d[1]))
            except ValueError:
                raise DatasetError(f"{path}:1: {month.name}/{path.name} is not a date") from None
            files.append((path, day))
    if not files:
        raise DatasetError(f"{data}: no data/YYYY-MM/DD.csv files")
    return files


def _read_file(path: Path, day: pd.Timestamp) -> pd.DataFrame:
    """One daily CSV, validated; errors name the file and the line."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, strict=True)
            header = next(reader, None)
            if header is None:
                raise _fail(path, 1, "empty file (expected a header line)")
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise _fail(path, 1, f"header lacks column(s) {', '.join(missing)}")
            rows, lines = [], []
            for row in reader:
                if len(row) != len(header):
                    raise _fail(
                        path, reader.line_num, f"{len(row)} fields, header has {len(header)}"
                    )
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise _fail(path, reader.line_num, f"malformed CSV: {exc}") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    raw = pd.DataFrame(rows, columns=header, dtype="string")[list(REQUIRED_COLUMNS)]
    line_of = np.asarray(lines, dtype=np.int64)

    def bad(mask: pd.Series, column: str, what: str) -> None:
        if mask.any():
            i = int(np.flatnonzero(mask.to_numpy())[0])
            value = raw[column].iloc[i]
            raise _fail(path, int(line_of[i]), f"{column} {value!r} is not {what}")

    stamp = raw["datetime_rounded"]
    bad(
        ~stamp.str.fullmatch(_TIME_RE).fillna(False).astype(bool),
        "datetime_rounded",
        "a 'YYYY-MM-DD HH:MM:SS UTC' time",
    )
    times = pd.to_datetime(stamp, format=_TIME_FORMAT, errors="coerce", utc=True)
    bad(times.isna(), "datetime_rounded", "a valid time")
    bad(
        times.dt.tz_localize(None).dt.normalize() != day,
        "datetime_rounded",
        f"on the file's day {day.date()}",
    )
    out = pd.DataFrame({"time": times, "day": times.dt.tz_localize(None).dt.normalize()})
    for column, name in (
        ("test_result", "test_kbps"),
        ("control_result", "control_kbps"),
        ("control_taco_result", "control_taco_kbps"),
    ):
        values = pd.to_numeric(raw[column], errors="coerce").astype("float64")
        bad(~np.isfinite(values), column, "a number (kbit/s)")
        out[name] = values
    for column, optional in (("asn", True), ("version", False)):
        text = raw[column].str.strip()
        empty = text == ""
        ok = text.str.fullmatch(r"\d+(\.0)?").fillna(False).astype(bool)
        bad(~(ok | (empty & optional)), column, "a whole number")
        out[column] = pd.to_numeric(text.where(~empty), errors="coerce").astype("Int64")
    for column in (
        "anonymized_ip",
        "subnet",
        "as_country",
        "as_organization",
        "as_organization_iden",
    ):
        out[column] = raw[column].where(raw[column] != "")
    country = out["as_country"]
    bad(
        country.notna() & ~country.str.fullmatch(r"[A-Z]{2}").fillna(False).astype(bool),
        "as_country",
        "a two-letter country code",
    )
    out["source"] = pd.array([f"{path}:{n}" for n in line_of], dtype="string")
    return out


def classify_access(org_id: pd.Series, org_name: pd.Series) -> pd.Series:
    """'mobile' for known Russian mobile operators (by org id, else by name), else 'landline'."""
    by_id = org_id.map(
        lambda v: "mobile" if v in MOBILE_ORG_IDS else "landline" if v in LANDLINE_ORG_IDS else None
    )
    by_name = org_name.fillna("").str.contains(MOBILE_NAME_PATTERN)
    return by_id.fillna(by_name.map({True: "mobile", False: "landline"})).astype("string")


def load(directory: str | Path) -> pd.DataFrame:
    """All rows of the dataset at ``directory`` (the folder holding data/), typed and tidy.

    Columns are described in ``COLUMNS_DOC``. Raises DatasetError (naming file:line)
    on a missing folder or a malformed file.
    """
    frames = [_read_file(path, day) for path, day in _data_files(Path(directory))]
    df = pd.concat(frames, ignore_index=True)
    df["russia"] = (df["as_country"] == "RU").fillna(False).astype(bool)
    access = classify_access(df["as_organization_iden"], df["as_organization"])
    df["access"] = access.where(df["russia"])
    columns = [c for c in COLUMNS_DOC if c in df.columns]
    return df[columns]


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


# ---------------------------------------------------------------- summaries


def _num(x: float) -> float | None:
    """JSON-safe float: NaN becomes null, values rounded for readability."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


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


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of a share (good at small n and near 0 or 1)."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


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


def _opt(value: Any) -> Any:
    """None for a missing value (JSON null), the value otherwise."""
    return None if value is None or value is pd.NA or (
        isinstance(value, float) and math.isnan(value)) else value


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
                "as_organization": _opt(meta.at[asn, "org"]),
                "access": _opt(meta.at[asn, "access"]),
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
