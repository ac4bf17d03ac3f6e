"""The collector's request checks as properties: whatever arrives, the answer is either
a storable measurement or a 4xx with a message, never a crash."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.collection import protocol, validate
from probe.collection.store import encode_line
from tests.test_collect import measurement

REPORT = "20261130T150000Z_throttleprobe_ZZ_0_n1_abc"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)


def _refused_or_storable(body: bytes) -> None:
    try:
        content = validate.update_request(body, REPORT)
    except validate.RequestError as exc:
        assert exc.status == 400 and exc.message
        return
    assert protocol.measurement_errors(content, REPORT) == []
    assert json.loads(encode_line(content)) == content


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_refused_or_storable(body: bytes) -> None:
    _refused_or_storable(body)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(protocol.BASE_KEYS) + ["x"]), json_values),
       st.sampled_from(["json", "yaml", None]))
def test_any_json_content_is_refused_or_storable(content: dict, form: str | None) -> None:
    _refused_or_storable(json.dumps({"format": form, "content": content}).encode())


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(protocol.BASE_KEYS)), json_values)
def test_one_changed_base_key_is_accepted_only_if_still_valid(key: str, value: object) -> None:
    m = {**measurement(), "report_id": REPORT, key: value}
    body = json.dumps({"format": "json", "content": m}).encode()
    if protocol.measurement_errors(m, REPORT):
        with pytest.raises(validate.RequestError) as refused:
            validate.update_request(body, REPORT)
        assert key in refused.value.message
    else:
        assert validate.update_request(body, REPORT)[key] == value


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_any_path_routes_to_a_step_or_404(path: str) -> None:
    try:
        route = validate.route(path)
    except validate.RequestError as exc:
        assert exc.status == 404
        return
    assert route.kind in ("open", "update", "close")
    assert "/" not in route.report_id and "." not in route.report_id


def test_a_lone_surrogate_cannot_be_stored() -> None:
    m = {**measurement(), "report_id": REPORT}
    body = json.dumps({"format": "json", "content": m}).replace(
        '"test_keys": {', '"test_keys": {"bad": "\\ud800", ', 1).encode()
    with pytest.raises(validate.RequestError) as refused:
        validate.update_request(body, REPORT)
    assert refused.value.status == 400


@pytest.mark.parametrize("headers, status", [
    ({"Content-Encoding": "gzip", "Content-Length": "3"}, 415),
    ({"Content-Encoding": "br"}, 415),
    ({"Transfer-Encoding": "chunked"}, 411),
    ({"Content-Length": "-1"}, 400),
    ({"Content-Length": str(protocol.MAX_OPEN_BYTES + 1)}, 413),
])
def test_headers_refused_before_the_body_is_read(headers: dict, status: int) -> None:
    with pytest.raises(validate.RequestError) as refused:
        validate.body_length(headers, protocol.MAX_OPEN_BYTES)
    assert refused.value.status == status


def test_identity_encoding_and_a_missing_length_are_fine() -> None:
    assert validate.body_length({"Content-Encoding": "identity", "Content-Length": "5"}, 10) == 5
    assert validate.body_length({}, 10) == 0
