"""`probe schedule` (the crontab line, install/remove) and `probe doctor`."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from probe.cli import main
from probe.lab.dns_server import DnsServer
from probe.operate import schedule


@pytest.mark.parametrize("every, minute, times", [
    ("1h", 7, "7 * * * *"), ("6h", 7, "7 */6 * * *"), ("1d", 7, "7 3 * * *"),
    ("15m", 7, "7-59/15 * * * *"), ("1m", 7, "* * * * *"), ("30m", 45, "15-59/30 * * * *"),
])
def test_cron_times(every: str, minute: int, times: str) -> None:
    assert schedule.cron_times(schedule.parse_duration(every), minute) == times


@pytest.mark.parametrize("every", ["7m", "5h", "90s", "0h", "2d", "soon"])
def test_cron_cannot_express(every: str) -> None:
    with pytest.raises(schedule.ScheduleError):
        schedule.cron_times(schedule.parse_duration(every), 0)


def test_dry_run_prints_a_correct_cron_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, [
        "schedule", "install", "--every", "1h", "--jitter", "10m", "--budget-mb", "5",
        "--daily-budget-mb", "50", "--minute", "17", "--out", str(tmp_path / "res"),
        "--log-file", str(tmp_path / "probe.log"), "--dry-run", "--", "--repeat", "2"])
    assert res.exit_code == 0, res.output
    line = res.output.strip()
    fields = line.split(" ", 5)
    assert fields[:5] == ["17", "*", "*", "*", "*"]
    assert line.endswith(f">/dev/null 2>&1 {schedule.MARKER}")
    argv = shlex.split(fields[5].split(" >/dev/null")[0])
    assert argv[:4] == [sys.executable, "-m", "probe", "run"]
    opts = argv[4:]
    assert "--quiet" in opts and opts[opts.index("--jitter") + 1] == "600"
    assert opts[opts.index("--budget-mb") + 1] == "5"
    assert opts[opts.index("--daily-budget-mb") + 1] == "50"
    assert opts[opts.index("--out") + 1] == str((tmp_path / "res").resolve())
    assert opts[opts.index("--log-file") + 1] == str((tmp_path / "probe.log").resolve())
    assert opts[-2:] == ["--repeat", "2"]
    # what cron would run parses as a valid probe run invocation
    check = subprocess.run(argv[:4] + ["--help"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0


def test_jitter_must_be_shorter_than_the_period() -> None:
    res = CliRunner().invoke(main, ["schedule", "install", "--every", "15m", "--jitter", "20m",
                                    "--dry-run"])
    assert res.exit_code == 2 and "--jitter must be shorter" in res.output


@pytest.mark.skipif(shutil.which("crontab") is None or os.geteuid() != 0,
                    reason="needs cron's crontab command and root")
def test_install_requires_consent_then_installs_and_removes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_STATE_DIR", str(tmp_path))
    saved = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    try:
        subprocess.run(["crontab", "-"], input="5 5 * * * /bin/true # someone else's\n",
                       text=True, check=True)
        runner = CliRunner()
        res = runner.invoke(main, ["schedule", "install", "--every", "1h"])
        assert res.exit_code == 2 and "no consent on record" in res.output
        res = runner.invoke(main, ["schedule", "install", "--every", "1h", "--yes"])
        assert res.exit_code == 0, res.output
        res = runner.invoke(main, ["schedule", "install", "--every", "6h", "--yes"])  # replaces
        lines = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
        assert lines.count(schedule.MARKER) == 1 and " */6 * * * " in lines
        assert "someone else's" in lines
        status = runner.invoke(main, ["schedule", "status"])
        assert "*/6" in status.output and "consent: on record" in status.output
        assert runner.invoke(main, ["schedule", "remove"]).output.strip() == "removed"
        lines = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
        assert schedule.MARKER not in lines and "someone else's" in lines
    finally:
        if saved.returncode == 0:
            subprocess.run(["crontab", "-"], input=saved.stdout, text=True, check=True)
        else:
            subprocess.run(["crontab", "-r"], capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="binds DNS port 53 on a loopback address")
def test_doctor_tells_working_from_dead_resolvers(tmp_path: Path) -> None:
    zone = {"records": {"example.com": {"A": ["192.0.2.1"]}}}
    with DnsServer(zone, host="127.0.0.77", port=53):
        conf = tmp_path / "resolv.conf"
        conf.write_text("nameserver 127.0.0.77\nnameserver 127.0.0.78\n")
        res = CliRunner().invoke(main, ["doctor", "--resolv-conf", str(conf),
                                        "--out", str(tmp_path), "--timeout", "1"])
    assert "[  ok] resolver 127.0.0.77: example.com: answered" in res.output
    assert "[FAIL] resolver 127.0.0.78" in res.output
    assert "[  ok] python" in res.output and "[  ok] results folder" in res.output
    assert res.exit_code == 1


def test_doctor_fails_on_missing_resolvers(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# nothing\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = CliRunner().invoke(main, ["doctor", "--resolv-conf", str(conf),
                                    "--out", str(blocker / "results")])
    assert res.exit_code == 1
    assert "[FAIL] resolvers: no nameserver" in res.output
    assert "[FAIL] results folder" in res.output and "fix:" in res.output
