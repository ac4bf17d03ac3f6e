"""Every line the probe writes is a measurement OONI's own data models parse (the
`oonidata` package), with the envelope OONI's collector and pipeline expect."""

from __future__ import annotations

import json
import re
from pathlib import Path

from probe.measure.keys import TestKeys
from probe.measurement import RunStamp, envelope
from probe.measurement.envelope import report_id
from probe.results import identity
from tests.ooni_check import ooni_errors
from tests.probe_world import run_probe, targets
from tests.test_run import BASIC

REPORT_ID = re.compile(r"^\d{8}T\d{6}Z_throttleprobe_[A-Z]{2}_\d+_n1_[a-z2-7]{52}$")
ANNOTATIONS = {"architecture", "engine_name", "engine_version", "platform", "run_id",
               "measurement_id", "experiment", "repetition"}


def test_a_run_s_every_line_is_an_ooni_measurement(world: dict, tmp_path: Path) -> None:
    res = run_probe(world, targets(world, BASIC), tmp_path, "--quiet")
    assert res.returncode == 0, res.stderr
    folder = Path(res.stdout.strip().splitlines()[-1])
    info = json.loads((folder / "run.json").read_text())
    lines = [json.loads(x) for x in (folder / "measurements.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and info["results_format"] == identity.FORMAT == 3
    for m in lines:
        assert ooni_errors(m) == [], m["annotations"]
        assert m["report_id"] == info["report_id"] and REPORT_ID.match(m["report_id"])
        assert ANNOTATIONS <= set(m["annotations"])
        assert all(isinstance(v, str) for v in m["annotations"].values())
        assert m["annotations"]["run_id"] == folder.name == identity.field(m, "run_id")
        assert m["extensions"]["dnst"] == 0 and m["test_helpers"] is None
        assert "run_id" not in m and "target" not in m and "repetition" not in m
        for q in m["test_keys"]["queries"]:
            assert isinstance(q["rcode"], int | None) and q["engine"] in ("udp", "doh")
            assert q["resolver_address"].endswith(f":{q['resolver_port']}")
        for c in m["test_keys"]["tcp_connect"]:
            assert "blocked" not in c["status"]  # a verdict's to say, not the connect's
        for e in m["test_keys"]["network_events"]:
            assert e["proto"] == "tcp" and e["t0"] <= e["t"]
        for h in m["test_keys"]["tls_handshakes"]:
            assert h["cipher_suite"] is None or h["cipher_suite"].startswith("TLS_")
    # test_start_time is the run's start, the same on every line; each measurement its own
    assert len({m["test_start_time"] for m in lines}) == 1
    assert lines[0]["test_start_time"] <= min(m["measurement_start_time"] for m in lines)
    failures = {identity.target_field(m, "name"): m["test_keys"]["failure"] for m in lines}
    assert failures["refused"] == "connection_refused"
    assert failures["nxdomain"] == "dns_nxdomain_error"


def test_report_ids_are_ooni_s_six_parts_with_256_random_bits() -> None:
    import datetime as dt

    when = dt.datetime(2026, 11, 30, 15, 0, 1, tzinfo=dt.UTC)
    a = RunStamp(run_id="r", started=when, network={"asn": "AS12389", "cc": "RU"})
    b = RunStamp(run_id="r", started=when, network={"asn": "AS12389", "cc": "RU"})
    assert a.report_id.split("_")[:5] == ["20261130T150001Z", "throttleprobe", "RU", "12389",
                                          "n1"]
    assert REPORT_ID.match(a.report_id) and a.report_id != b.report_id
    assert report_id(when, "ZZ", "AS0", secret="run-1") == report_id(when, "ZZ", "AS0",
                                                                       secret="run-1")


def test_lines_of_format_1_still_read_alike() -> None:
    """Folders written before 0.3 keep our fields at the top level."""
    import datetime as dt

    from probe.targets import Target

    new = envelope(run_id="r1", measurement_id="r1-a", repetition=2, experiment="sni",
                   started=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), runtime=1.0,
                   target=Target(name="t", url="https://x.test/", family="twitter",
                                 kind="image"), version="0.1.0", keys=TestKeys(), extra={})
    old = {k: v for k, v in new.items() if k != "annotations"}
    old.update(run_id="r1", measurement_id="r1-a", repetition=2, experiment="sni",
               test_keys={k: v for k, v in new["test_keys"].items() if k != "target"},
               target=new["test_keys"]["target"])
    for m in (new, old):
        assert [identity.field(m, k) for k in identity.IDENTITY] == ["r1", "r1-a", "sni", 2]
        assert identity.target_field(m, "name") == "t"


def test_every_suite_openssl_offers_has_its_iana_name() -> None:
    import ssl

    from probe.measure.cipher_names import iana

    for suite in ssl.create_default_context().get_ciphers():
        assert iana(suite["name"]).startswith("TLS_"), suite["name"]
    assert iana("ECDHE-RSA-AES128-GCM-SHA256") == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert iana("SOMETHING-NEW") == "SOMETHING-NEW"  # kept as OpenSSL names it
