"""Result files: crash-safe JSONL, CSV derivation, run folders, the documented schema."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from probe.results import csvs, jsonl
from probe.results import folder as run_folder
from probe.results.schema import FILES

ROOT = Path(__file__).resolve().parents[1]


def _measurement(mid: str = "r-1") -> dict:
    return {
        "run_id": "r", "measurement_id": mid, "measurement_start_time": "2021-03-10 12:00:00",
        "repetition": 0, "experiment": "target",
        "target": {"name": "pbs-image-1", "family": "twitter", "kind": "image"},
        "test_keys": {
            "queries": [{"hostname": "pbs.twimg.com", "query_type": "A", "engine": "udp",
                         "resolver_address": "192.0.2.53", "rcode": "NOERROR", "failure": None,
                         "answers": [{"answer_type": "CNAME", "hostname": "cdn.test", "ttl": 60},
                                     {"answer_type": "A", "ipv4": "192.0.2.7", "ttl": 30}],
                         "cname_chain": ["cdn.test"], "latency_ms": 1.5, "bogons": []}],
            "tcp_connect": [{"ip": "192.0.2.7", "port": 443, "latency_ms": 2.0,
                             "status": {"success": True, "failure": None}}],
            "tls_handshakes": [{"address": "192.0.2.7:443", "server_name": "pbs.twimg.com",
                                "verified": True, "failure": None,
                                "certificates": [{"subject": "CN=pbs.twimg.com",
                                                  "sans": ["pbs.twimg.com", "*.twimg.com"]}]}],
            "transfers": [{"transfer_id": "r-1-1", "direction": "down", "bytes": 3000,
                           "duration_s": 1.5, "goodput_kbps": 16.0, "failure": None,
                           "samples": [[0, 0], [100.5, 1000], [1500, 3000]],
                           "tcp_info": [{"t_ms": 0, "rtt_us": 1000, "total_retrans": 2},
                                        {"t_ms": 100, "rtt_us": 3000, "total_retrans": 5}]}],
            "dns_consistency": {"inconsistent": True},
        },
    }


def test_jsonl_skips_torn_last_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "measurements.jsonl"
    with jsonl.JsonlWriter(path) as w:
        w.append(_measurement("a"))
        w.append(_measurement("b"))
    with open(path, "a") as f:
        f.write('{"measurement_id": "c", "test_ke')  # killed mid-write
    got = [m["measurement_id"] for m in jsonl.read(path)]
    assert got == ["a", "b"]
    assert f"{path}:3: skipped" in capsys.readouterr().err


def test_csv_rows_flatten_every_record(tmp_path: Path) -> None:
    csvs.write_all(tmp_path, [_measurement()])
    read = {name: list(csv.DictReader(open(tmp_path / name))) for name in FILES}
    dns_row = read["dns.csv"][0]
    assert dns_row["answers"] == "cdn.test;192.0.2.7"
    assert dns_row["ttl_min"] == "30"
    assert dns_row["inconsistent"] == "true"
    assert read["tcp.csv"][0]["success"] == "true"
    assert read["tls.csv"][0]["cert_sans"] == "pbs.twimg.com;*.twimg.com"
    t = read["transfers.csv"][0]
    assert (t["target"], t["family"], t["direction"], t["bytes"]) == (
        "pbs-image-1", "twitter", "down", "3000")
    assert t["failure"] == ""
    assert t["retransmits"] == "3" and t["rtt_ms"] == "2.0" and t["samples"] == "3"
    assert [(r["t_ms"], r["bytes"]) for r in read["samples.csv"]] == [
        ("0", "0"), ("100.5", "1000"), ("1500", "3000")]
    assert len(read["tcpinfo.csv"]) == 2
    for name, columns in FILES.items():
        header = next(csv.reader(open(tmp_path / name)))
        assert header == [c.name for c in columns]


def test_transfers_csv_has_contract_columns() -> None:
    required = ["run_id", "transfer_id", "target", "host", "family", "kind", "experiment",
                "sni", "address", "direction", "bytes", "duration_s", "goodput_kbps", "failure"]
    names = [c.name for c in FILES["transfers.csv"]]
    assert set(required) <= set(names)
    assert [c.name for c in FILES["samples.csv"]][1:] == ["transfer_id", "t_ms", "bytes"]


def test_rebuild_after_kill_matches_original(tmp_path: Path) -> None:
    with jsonl.JsonlWriter(tmp_path / "measurements.jsonl") as w:
        w.append(_measurement("a"))
    csvs.rebuild(tmp_path)
    assert len(list(csv.DictReader(open(tmp_path / "transfers.csv")))) == 1


def test_rebuild_without_jsonl_is_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no measurements.jsonl"):
        csvs.rebuild(tmp_path)


def test_every_column_documented_with_its_unit() -> None:
    doc = (ROOT / "docs" / "data-format.md").read_text()
    for name, columns in FILES.items():
        section = doc.split(f"### `{name}`", 1)
        assert len(section) == 2, f"docs/data-format.md has no section for {name}"
        body = section[1].split("\n### ", 1)[0]
        rows = {m[0]: m[1].strip() for m in re.findall(r"^\| `(\w+)` \| ([^|]*) \|", body, re.M)}
        assert list(rows) == [c.name for c in columns], f"{name}: documented columns differ"
        for c in columns:
            assert rows[c.name] == c.unit, f"{name}.{c.name}: unit {rows[c.name]!r} != {c.unit!r}"


def test_run_folder_name_and_unwritable_out(tmp_path: Path) -> None:
    start = run_folder.utc_now()
    run_id = run_folder.new_run_id(start)
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", run_id)
    folder = run_folder.create(tmp_path, run_id)
    assert folder.is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(run_folder.OutputError, match="cannot write results"):
        run_folder.create(blocker, run_id)


def test_run_json_has_no_hostname(tmp_path: Path) -> None:
    import socket

    info = run_folder.base_run_info("r", run_folder.utc_now())
    run_folder.write_run_json(tmp_path, info)
    text = (tmp_path / "run.json").read_text()
    assert socket.gethostname() not in text
    assert json.loads(text)["status"] == "running"


def test_rebuild_command_reports_an_unreadable_jsonl(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from probe.cli import main

    (tmp_path / "measurements.jsonl").mkdir()  # not a file: reading it fails
    res = CliRunner().invoke(main, ["rebuild", str(tmp_path)])
    assert res.exit_code == 2 and str(tmp_path) in res.output
    assert isinstance(res.exception, SystemExit)
