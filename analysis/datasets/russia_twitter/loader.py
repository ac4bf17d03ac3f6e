"""Loading the Russia Twitter Throttle dataset: its daily CSVs read, validated (errors name
file:line) and typed into one tidy DataFrame (columns in ``COLUMNS_DOC``), with each
Russian AS marked mobile or landline.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

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

_FILE_RE = re.compile(r"^(\d{4})-(\d{2})$")
_DAY_RE = re.compile(r"^(\d{2})\.csv$")
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
_TIME_RE = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC"


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
