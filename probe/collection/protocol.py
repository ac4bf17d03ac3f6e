"""OONI's collector protocol (ooni/spec backends/bk-003-collector.md, version 2.0.0):
the paths, the fields and the checks both ends share.

A report is opened (`POST /report`), measurements are appended to it one by one
(`POST /report/{id}` with `{"format": "json", "content": measurement}`) and it is
closed (`POST /report/{id}/close`). The collector assigns the report id; every
measurement sent must carry it as its `report_id` (bk-003, 3.2), so the client
rewrites that one field of its copy before sending.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Mapping
from typing import Any

from probe.measurement.envelope import report_id

OPEN_PATH = "/report"
BACKEND_VERSION = "1.0.0"
DATA_FORMAT_VERSION = "0.2.0"
MAX_MEASUREMENT_BYTES = 4 * 1024 * 1024  # a request body larger than this is refused (413)
MAX_OPEN_BYTES = 16 * 1024

ASN = re.compile(r"^AS[0-9]{1,10}$")
CC = re.compile(r"^[A-Z]{2}$")
SOFTWARE = re.compile(r"^[0-9A-Za-z_.+-]+$")
TEST_NAME = re.compile(r"^[a-zA-Z0-9_\- ]+$")
REPORT_ID = re.compile(r"^[0-9A-Za-z_-]{1,200}$")  # what a collector of ours assigns
TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")  # "%Y-%m-%d %H:%M:%S", UTC

# The fields a report is opened with (bk-003, 3.1), each with its check.
OPEN_FIELDS: dict[str, re.Pattern[str]] = {
    "data_format_version": SOFTWARE, "format": re.compile(r"^json$"), "probe_asn": ASN,
    "probe_cc": CC, "software_name": SOFTWARE, "software_version": SOFTWARE,
    "test_name": TEST_NAME, "test_version": SOFTWARE,
}


def new_report_id(body: Mapping[str, str], now: dt.datetime | None = None) -> str:
    """A report id for an opened report, in the six parts OONI's own collector assigns,
    with 256 random bits (bk-003, 3.1): the probe's own format (`envelope.report_id`)."""
    return report_id(now or dt.datetime.now(dt.UTC), body["probe_cc"], body["probe_asn"],
                     test_name=body["test_name"])


def update_path(report_id: str) -> str:
    return f"/report/{report_id}"


def close_path(report_id: str) -> str:
    return f"/report/{report_id}/close"


def open_body(measurement: Mapping[str, Any]) -> dict[str, str]:
    """The body that opens a report for the measurements of one run (taken from one of
    them: the fields are the same on every measurement of a run)."""
    body = {k: str(measurement.get(k, "")) for k in OPEN_FIELDS if k != "format"}
    body["format"] = "json"
    if isinstance(measurement.get("test_start_time"), str):
        body["test_start_time"] = measurement["test_start_time"]
    return body


def open_errors(body: object) -> list[str]:
    """Why a report cannot be opened with this body (empty: it can)."""
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    errors = [f"{k}: missing or invalid" for k, pattern in OPEN_FIELDS.items()
              if not (isinstance(body.get(k), str) and pattern.match(body[k]))]
    start = body.get("test_start_time")
    if start is not None and not (isinstance(start, str) and TIME.match(start)):
        errors.append("test_start_time: not %Y-%m-%d %H:%M:%S")
    return errors


# The df-000 base keys a measurement must carry, with the JSON types each may take.
BASE_KEYS: dict[str, tuple[type, ...]] = {
    "annotations": (dict,), "data_format_version": (str,), "input": (str, type(None)),
    "measurement_start_time": (str,), "probe_asn": (str,), "probe_cc": (str,),
    "report_id": (str,), "software_name": (str,), "software_version": (str,),
    "test_keys": (dict,), "test_name": (str,), "test_runtime": (int, float),
    "test_start_time": (str,), "test_version": (str,),
}


def measurement_errors(content: object, report_id: str) -> list[str]:
    """Why a measurement cannot be appended to report `report_id` (empty: it can).

    Checks the df-000 base keys and their shapes (bk-003, 3.2 step 4); the test keys
    are the test's own business and are only required to be an object.
    """
    if not isinstance(content, dict):
        return ["content is not a JSON object"]
    errors = [f"{k}: missing or not {'/'.join(t.__name__ for t in types)}"
              for k, types in BASE_KEYS.items()
              if k not in content or not isinstance(content[k], types)
              or (isinstance(content[k], bool) and bool not in types)]
    if errors:
        return errors
    for key, pattern in (("probe_asn", ASN), ("probe_cc", CC), ("software_name", SOFTWARE),
                         ("software_version", SOFTWARE), ("test_name", TEST_NAME),
                         ("test_version", SOFTWARE), ("measurement_start_time", TIME),
                         ("test_start_time", TIME)):
        if not pattern.match(content[key]):
            errors.append(f"{key}: invalid value")
    if content["report_id"] != report_id:
        errors.append("report_id: does not match the report it is sent to")
    return errors


def new_measurement_uid(content: Mapping[str, Any], now: dt.datetime | None = None) -> str:
    """The collector's id for one stored measurement, shaped like OONI's
    (`20261130150000.123456_ZZ_throttleprobe_<random>`): sortable by arrival, unique
    by its 64 random bits. The client may quote it to find its measurement again."""
    when = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d%H%M%S.%f")
    name = re.sub(r"[_\- ]", "", str(content.get("test_name", ""))).lower() or "unknown"
    return f"{when}_{content.get('probe_cc', 'ZZ')}_{name}_{secrets.token_hex(8)}"


# A measurement refused (4xx) more than this long after its report was opened is sent
# again in a new report (bk-003, 3.2): the collector may have closed the old one.
REOPEN_AFTER = dt.timedelta(hours=1)


def measurement_uid(answer: object) -> str | None:
    """The id a collector gave an appended measurement, if its answer names one (ours say
    `measurement_uid`, OONI's example `measurement_id`; only the status is binding)."""
    if isinstance(answer, dict):
        for key in ("measurement_uid", "measurement_id"):
            if isinstance(answer.get(key), str):
                return answer[key]
    return None
