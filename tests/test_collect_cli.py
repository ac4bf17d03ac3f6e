"""`probe collect` as researchers start it: a process that serves until a signal, and
clear refusals of what it cannot use."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from probe.collection import protocol
from tests.test_collect import archived, measurement, open_report, update

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[1]


def collect(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "probe", "collect", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_it_collects_and_stops_cleanly_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    log = tmp_path / "collect.log"
    proc = collect("--data", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
                   "--log-file", str(log))
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening https://127.0.0.1:"), proc.stderr.read()
        with httpx.Client(base_url=line.split()[1], verify=False, timeout=10) as client:
            report_id = open_report(client, measurement())
            assert update(client, report_id, measurement()).status_code == 200
            assert client.post(protocol.close_path(report_id)).status_code == 200
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 0
        assert "certificate (self-signed) SHA-256" in proc.stderr.read()
        records = [json.loads(x) for x in log.read_text().splitlines()]
        assert [x["status"] for x in records if "status" in x] == [200, 200, 200]
        assert {"event": "sealed", "report_id": report_id} in [
            {k: x.get(k) for k in ("event", "report_id")} for x in records]
        assert len(archived(tmp_path / "data", report_id)) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_unwritable_data_folder_exits_with_2(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    proc = collect("--data", str(tmp_path / "file" / "data"), "--listen", "127.0.0.1:0")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "--data" in err and "not a writable folder" in err


@pytest.mark.parametrize("args, message", [
    (["--key", "pyproject.toml"], "--key needs --cert"),
    (["--plain-http", "--cert", "pyproject.toml"], "--plain-http serves no certificate"),
    (["--listen", "nowhere"], "expected HOST:PORT"),
    (["--cert", "pyproject.toml"], "--cert/--key: not a certificate chain and its key"),
    (["--plain-http", "--log-file", "no/such/folder/log"], "no/such/folder/log: No such file"),
    (["--rate-limit", "-1"], "Invalid value for '--rate-limit'"),
    (["--rate-burst", "0"], "Invalid value for '--rate-burst'"),
    (["--max-open-reports", "0"], "Invalid value for '--max-open-reports'"),
])
def test_bad_options_exit_with_2(tmp_path: Path, args: list[str], message: str) -> None:
    proc = collect("--data", str(tmp_path / "data"), *args)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and message in err


def test_a_taken_address_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = collect("--data", str(tmp_path / "data"), "--plain-http",
                       "--listen", f"127.0.0.1:{port}")
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "cannot listen" in err
