"""The collector protocol's checks (bk-003): what opens a report, what may be appended."""

from __future__ import annotations

import datetime as dt

from probe.collection import protocol
from probe.measure.keys import TestKeys
from probe.measurement.envelope import envelope
from probe.targets import Target


def _measurement() -> dict:
    target = Target(name="t", url="https://pbs.twimg.com/media/x.jpg", family="twitter",
                    kind="image")
    return envelope(run_id="20261130T150000Z-abcd", measurement_id="m1",
                    started=dt.datetime(2026, 11, 30, 15, 0, tzinfo=dt.UTC),
                    runtime=1.5, target=target, repetition=0, experiment="target",
                    version="0.1.0", keys=TestKeys(), extra={})


def test_a_measurement_of_ours_opens_a_report_and_is_accepted_with_its_id() -> None:
    m = _measurement()
    body = protocol.open_body(m)
    assert protocol.open_errors(body) == []
    assert body["format"] == "json" and body["probe_asn"] == "AS0"
    m["report_id"] = "20261130T150000Z_AS0_ZZ_throttle_probe_x_y"
    assert protocol.measurement_errors(m, m["report_id"]) == []


def test_a_foreign_report_id_is_refused() -> None:
    m = _measurement()
    assert protocol.measurement_errors(m, "other") == [
        "report_id: does not match the report it is sent to"]


def test_bad_open_bodies_say_which_field() -> None:
    assert protocol.open_errors([]) == ["the body is not a JSON object"]
    body = protocol.open_body(_measurement())
    body["probe_cc"] = "zz"
    body["test_start_time"] = "yesterday"
    assert protocol.open_errors(body) == ["probe_cc: missing or invalid",
                                          "test_start_time: not %Y-%m-%d %H:%M:%S"]


def test_missing_or_mistyped_base_keys_are_named() -> None:
    m = _measurement()
    del m["test_keys"]
    m["test_runtime"] = True  # a bool is no number here
    m["input"] = 3
    errors = protocol.measurement_errors(m, m["report_id"])
    assert errors == ["input: missing or not str/NoneType", "test_keys: missing or not dict",
                      "test_runtime: missing or not int/float"]
    assert protocol.measurement_errors("x", "r") == ["content is not a JSON object"]


def test_report_ids_have_ooni_s_six_parts_and_256_random_bits() -> None:
    body = protocol.open_body(_measurement())
    when = dt.datetime(2026, 11, 30, 15, 0, 1, tzinfo=dt.UTC)
    a, b = protocol.new_report_id(body, when), protocol.new_report_id(body, when)
    parts = a.split("_")
    assert parts[:5] == ["20261130T150001Z", "throttleprobe", "ZZ", "0", "n1"]
    assert len(parts) == 6 and len(parts[5]) >= 43 and a != b
    assert protocol.REPORT_ID.match(a)
