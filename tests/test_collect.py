"""`probe collect` against a real HTTP client (httpx) on loopback: the bk-003 steps,
every refusal with its status and message, HTTPS and what the log leaves out."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from probe.collection import protocol
from probe.collection.server import Collector, CollectorConfig
from probe.lab.ca import CertificateAuthority
from probe.measure.keys import TestKeys
from probe.measurement.envelope import envelope
from probe.targets import Target

pytestmark = pytest.mark.timeout(60)


def measurement(measurement_id: str = "m1") -> dict:
    target = Target(name="t", url="https://pbs.twimg.com/media/x.jpg", family="twitter",
                    kind="image")
    return envelope(run_id="20261130T150000Z-abcd", measurement_id=measurement_id,
                    started=dt.datetime(2026, 11, 30, 15, 0, tzinfo=dt.UTC),
                    runtime=1.5, target=target, repetition=0, experiment="target",
                    version="0.1.0", keys=TestKeys(), extra={})


def running(tmp_path: Path, **options) -> Iterator[tuple[Collector, str]]:
    config = CollectorConfig(data=tmp_path / "data", listen=[("127.0.0.1", 0)],
                             log=tmp_path / "collect.log", **options)
    collector = Collector(config)
    host, port = collector.start()[0]
    try:
        yield collector, f"{'http' if config.plain_http else 'https'}://{host}:{port}"
    finally:
        collector.stop()


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[tuple[Collector, str]]:
    yield from running(tmp_path, plain_http=True)


@pytest.fixture
def client(plain: tuple[Collector, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=plain[1], timeout=10) as c:
        yield c


def open_report(client: httpx.Client, m: dict) -> str:
    res = client.post(protocol.OPEN_PATH, json=protocol.open_body(m))
    assert res.status_code == 200, res.text
    return res.json()["report_id"]


def update(client: httpx.Client, report_id: str, m: dict) -> httpx.Response:
    return client.post(protocol.update_path(report_id),
                       json={"format": "json", "content": {**m, "report_id": report_id}})


def stored(collector: Collector, report_id: str) -> list[dict]:
    path = collector.store.reports / report_id / "measurements.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def meta(collector: Collector, report_id: str) -> dict:
    return json.loads((collector.store.reports / report_id / "meta.json").read_text())


def archived(data: Path, report_id: str) -> list[dict]:
    """The measurements of a sealed report, from the archive file its meta.json names."""
    sealed = json.loads((data / "reports" / report_id / "meta.json").read_text())
    assert sealed["state"] == "sealed"
    return [json.loads(line) for line in
            gzip.decompress((data / sealed["archive"]).read_bytes()).splitlines()]


def test_open_update_close_stores_the_measurement_with_its_uid(plain, client) -> None:
    collector, _ = plain
    m = measurement()
    res = client.post(protocol.OPEN_PATH, json=protocol.open_body(m))
    assert res.status_code == 200
    assert res.headers["content-type"] == "application/json; charset=utf-8"
    opened = res.json()
    assert opened["supported_formats"] == ["json"]
    assert opened["backend_version"] == protocol.BACKEND_VERSION
    report_id = opened["report_id"]
    assert protocol.REPORT_ID.match(report_id) and "_ZZ_0_n1_" in report_id
    assert meta(collector, report_id)["state"] == "open"

    res = update(client, report_id, m)
    assert res.status_code == 200, res.text
    uid = res.json()["measurement_uid"]
    [line] = stored(collector, report_id)
    assert line["measurement_uid"] == uid and line["report_id"] == report_id
    assert line["test_keys"] == m["test_keys"] and line["annotations"]["measurement_id"] == "m1"

    res = client.post(protocol.close_path(report_id))
    assert res.status_code == 200 and res.json() == {"status": "success"}
    closed = meta(collector, report_id)
    assert closed["state"] == "sealed" and closed["close_reason"] == "client"
    assert closed["open"] == protocol.open_body(m)
    assert closed["archive"] == f"raw/date=2026-11-30/cc=ZZ/asn=AS0/{report_id}.jsonl.gz"
    assert archived(collector.config.data, report_id) == [line]
    assert not (collector.store.reports / report_id / "measurements.jsonl").exists()


def test_a_repeated_measurement_id_gets_the_same_uid_and_is_stored_once(plain, client) -> None:
    collector, _ = plain
    report_id = open_report(client, measurement())
    first = update(client, report_id, measurement("m1")).json()["measurement_uid"]
    again = update(client, report_id, measurement("m1")).json()["measurement_uid"]
    other = update(client, report_id, measurement("m2")).json()["measurement_uid"]
    no_id = measurement("x")
    del no_id["annotations"]["measurement_id"]
    assert update(client, report_id, no_id).status_code == 200
    assert first == again != other
    assert [line["measurement_uid"] for line in stored(collector, report_id)][:2] == [
        first, other]
    assert len(stored(collector, report_id)) == 3


def test_a_restarted_collector_still_knows_the_uids_and_the_open_reports(tmp_path) -> None:
    m = measurement()
    for round_ in range(2):
        for collector, url in running(tmp_path, plain_http=True):
            with httpx.Client(base_url=url) as client:
                if round_ == 0:
                    report_id = open_report(client, m)
                    first = update(client, report_id, m).json()["measurement_uid"]
                else:
                    assert update(client, report_id, m).json()["measurement_uid"] == first
                    assert len(stored(collector, report_id)) == 1


def test_a_measurement_for_another_report_is_refused(client) -> None:
    report_id = open_report(client, measurement())
    other = open_report(client, measurement())
    res = client.post(protocol.update_path(report_id),
                      json={"format": "json", "content": {**measurement(), "report_id": other}})
    assert res.status_code == 400
    assert res.json() == {"error": "report_id: does not match the report it is sent to"}


def test_unknown_and_closed_reports_are_refused(client) -> None:
    unknown = "20261130T150000Z_throttleprobe_ZZ_0_n1_nosuchreport"
    assert update(client, unknown, measurement()).status_code == 404
    assert client.post(protocol.close_path(unknown)).status_code == 404
    report_id = open_report(client, measurement())
    assert client.post(protocol.close_path(report_id)).status_code == 200
    res = update(client, report_id, measurement())
    assert res.status_code == 409 and "closed" in res.json()["error"]
    assert client.post(protocol.update_path(report_id), content=b"{").status_code == 409
    assert client.post(protocol.close_path(report_id)).status_code == 200  # closing again


def test_a_report_idle_too_long_is_closed(tmp_path) -> None:
    for collector, url in running(tmp_path, plain_http=True, idle_close=0.3):
        with httpx.Client(base_url=url) as client:
            report_id = open_report(client, measurement())
            assert update(client, report_id, measurement("a")).status_code == 200
            time.sleep(0.5)
            assert update(client, report_id, measurement("b")).status_code == 409
            assert meta(collector, report_id)["close_reason"] == "idle"


@pytest.mark.parametrize("body, error", [
    (b"{not json", "the body is not valid JSON"),
    (b"[1, 2]", "the body is not a JSON object"),
    (b'{"format": "json", "content": NaN}', "the body is not valid JSON"),
    (b'{"format": "json", "content": {"test_runtime": -Infinity}}', "the body is not valid JSON"),
    (b"\xff\xfe", "the body is not valid JSON"),
    (b'{"format": "yaml", "content": "x: 1"}', 'format: must be "json"'),
    (b'{"format": "json", "content": []}', "content is not a JSON object"),
])
def test_bad_update_bodies_are_400_with_the_reason(client, body: bytes, error: str) -> None:
    report_id = open_report(client, measurement())
    res = client.post(protocol.update_path(report_id), content=body)
    assert res.status_code == 400 and res.json() == {"error": error}


def test_a_measurement_missing_base_keys_names_them(client) -> None:
    report_id = open_report(client, measurement())
    m = measurement()
    del m["test_keys"]
    m["probe_cc"] = "russia"
    res = update(client, report_id, m)
    assert res.status_code == 400
    assert res.json()["error"] == "test_keys: missing or not dict"
    res = client.post(protocol.OPEN_PATH, json={**protocol.open_body(m), "probe_cc": "ru"})
    assert res.status_code == 400 and res.json()["error"] == "probe_cc: missing or invalid"


def test_an_oversize_body_is_413_and_not_stored(plain, client) -> None:
    collector, _ = plain
    report_id = open_report(client, measurement())
    m = measurement()
    m["test_keys"]["padding"] = "x" * protocol.MAX_MEASUREMENT_BYTES
    res = update(client, report_id, m)
    assert res.status_code == 413 and "larger than" in res.json()["error"]
    res = client.post(protocol.OPEN_PATH, content=b" " * (protocol.MAX_OPEN_BYTES + 1))
    assert res.status_code == 413
    assert not (collector.store.reports / report_id / "measurements.jsonl").exists()


def test_a_compressed_body_is_415(client) -> None:
    report_id = open_report(client, measurement())
    body = gzip.compress(json.dumps({"format": "json", "content": {
        **measurement(), "report_id": report_id}}).encode())
    res = client.post(protocol.update_path(report_id), content=body,
                      headers={"Content-Encoding": "gzip"})
    assert res.status_code == 415 and "Content-Encoding" in res.json()["error"]


def test_other_paths_and_methods_are_refused_in_json(client) -> None:
    assert client.post("/").status_code == 404
    assert client.post("/report/../../etc/passwd").status_code == 404
    assert client.post("/report/a.b").status_code == 404
    res = client.get(protocol.OPEN_PATH)
    assert res.status_code == 405 and res.headers["allow"] == "POST"
    assert res.json() == {"error": "only POST is served"}
    assert "server" not in res.headers


def test_the_probe_address_is_neither_stored_nor_logged(tmp_path, plain, client) -> None:
    collector, _ = plain
    m = measurement()
    m["probe_ip"] = "198.51.100.7"
    res = client.post(protocol.OPEN_PATH, json={**protocol.open_body(m),
                                                 "probe_ip": "198.51.100.7"})
    report_id = res.json()["report_id"]
    assert update(client, report_id, m).status_code == 200
    assert stored(collector, report_id)[0]["probe_ip"] == "127.0.0.1"
    assert "probe_ip" not in meta(collector, report_id)["open"]
    log = (tmp_path / "collect.log").read_text()
    assert "198.51.100.7" not in log and "127.0.0.1" not in log
    assert update(client, report_id, m).status_code == 200  # a line for the duplicate too


def test_the_log_has_one_line_per_request_without_the_client(tmp_path, plain, client) -> None:
    report_id = open_report(client, measurement())
    update(client, report_id, measurement())
    client.post(protocol.close_path(report_id))
    client.post("/nowhere")
    plain[0].stop()  # flushes and closes the log
    records = [json.loads(x) for x in (tmp_path / "collect.log").read_text().splitlines()]
    lines = [x for x in records if "event" not in x]
    assert [(x["event"], x["report_id"]) for x in records if "event" in x] == [
        ("sealed", report_id)]
    assert [(x["path"], x["status"]) for x in lines] == [
        ("/report", 200), ("/report/{id}", 200), ("/report/{id}/close", 200), ("other", 404)]
    assert all(x.get("report_id") == report_id for x in lines[:3])
    assert lines[1]["bytes_in"] > 0 and lines[1]["bytes_out"] > 0
    assert lines[0]["time"].endswith("Z") and all("client" not in x for x in lines)
    assert "127.0.0.1" not in (tmp_path / "collect.log").read_text()


def test_the_client_address_is_logged_only_when_asked(tmp_path) -> None:
    for _, url in running(tmp_path, plain_http=True, log_client_address=True):
        httpx.post(url + "/report", content=b"{}")
    line = json.loads((tmp_path / "collect.log").read_text().splitlines()[0])
    assert line["client"].startswith("127.0.0.1:") and line["status"] == 400


def test_https_with_a_certificate_from_a_ca(tmp_path, test_ca: CertificateAuthority) -> None:
    issued = test_ca.issue(["127.0.0.1"], out_dir=tmp_path / "cert")
    trust = ssl.create_default_context(cafile=str(test_ca.cert_path))
    for collector, url in running(tmp_path, cert=issued.cert, key=issued.key):
        with httpx.Client(base_url=url, verify=trust) as client:
            report_id = open_report(client, measurement())
            assert update(client, report_id, measurement()).status_code == 200
        assert len(stored(collector, report_id)) == 1


def test_https_with_the_generated_neutral_certificate(tmp_path) -> None:
    for collector, url in running(tmp_path):
        host, port = url.removeprefix("https://").split(":")
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection((host, int(port))) as raw, \
                ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
        assert collector.certificates is not None
        fingerprint = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
        assert fingerprint == collector.certificates.fingerprint
        assert b"probe" not in der.lower() and b"throttl" not in der.lower()
        with httpx.Client(base_url=url, verify=False) as client:
            open_report(client, measurement())


def test_a_slow_client_is_cut_off_and_a_full_house_refused(tmp_path) -> None:
    for _, url in running(tmp_path, plain_http=True, header_timeout=0.5, max_connections=1):
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as slow:
            slow.sendall(b"POST /report HTTP/1.1\r\n")  # and never the rest
            with pytest.raises(httpx.TransportError):  # its slot is the only one
                httpx.post(url + "/report", content=b"{}", timeout=5)
            slow.settimeout(5)
            assert slow.recv(100) == b""  # cut at the header deadline
        for _ in range(50):  # its thread gives the slot back a moment later
            try:
                assert httpx.post(url + "/report", content=b"{}", timeout=5).status_code == 400
                break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            pytest.fail("the slot was not given back")


def test_a_silent_tls_client_is_cut_at_the_header_deadline(tmp_path) -> None:
    for _, url in running(tmp_path, header_timeout=0.5):
        host, port = url.removeprefix("https://").split(":")
        started = time.monotonic()
        with socket.create_connection((host, int(port))) as silent:
            silent.settimeout(5)
            assert silent.recv(100) == b""  # no ClientHello, no slot after the deadline
        assert time.monotonic() - started < 3
        with httpx.Client(base_url=url, verify=False) as client:
            open_report(client, measurement())


def test_a_garbled_request_gets_a_status_line_and_the_log_quotes_nothing(tmp_path) -> None:
    for collector, url in running(tmp_path, plain_http=True):
        host, port = url.removeprefix("http://").split(":")
        answers = []
        for raw in (b"SECRET-GARBAGE\r\n\r\n", b"BREW /secret HTTP/1.1\r\n\r\n"):
            with socket.create_connection((host, int(port))) as s:
                s.sendall(raw)
                s.settimeout(5)
                answers.append(s.makefile("rb").read())
        collector.stop()
    assert answers[0].startswith(b"HTTP/1.1 400 ") and answers[1].startswith(b"HTTP/1.1 501 ")
    log = (tmp_path / "collect.log").read_text()
    assert "SECRET" not in log.upper() and "secret" not in log
    assert [json.loads(x)["status"] for x in log.splitlines()] == [400, 501]
