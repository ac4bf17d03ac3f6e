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
from probe.operate import schedule, systemd_timer


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
        "--log-file", str(tmp_path / "probe.log"), "--scheduler", "cron", "--dry-run", "--",
        "--repeat", "2"])
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
    for scheduler in ("cron", "systemd"):
        res = CliRunner().invoke(main, ["schedule", "install", "--every", "15m", "--jitter",
                                        "20m", "--scheduler", scheduler, "--dry-run"])
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
        cron = ["schedule", "install", "--scheduler", "cron"]
        res = runner.invoke(main, [*cron, "--every", "1h"])
        assert res.exit_code == 2 and "no consent on record" in res.output
        res = runner.invoke(main, [*cron, "--every", "1h", "--yes"])
        assert res.exit_code == 0, res.output
        res = runner.invoke(main, [*cron, "--every", "6h", "--yes"])  # replaces
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
    scheduler = ("cron" if shutil.which("crontab") else "systemd user timer"
                 if systemd_timer.available() else "neither cron")
    assert f"] scheduler: {scheduler}" in res.output
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


# --- the systemd user timer -----------------------------------------------------------------


def _dry_run_units(tmp_path: Path, *args: str) -> dict[str, str]:
    """`schedule install --scheduler systemd --dry-run` output, split into its unit files."""
    res = CliRunner().invoke(main, ["schedule", "install", "--scheduler", "systemd",
                                    "--dry-run", *args])
    assert res.exit_code == 0, res.output
    files: dict[str, list[str]] = {}
    for line in res.output.splitlines():
        if line.startswith("# /"):
            files[Path(line[2:]).name] = current = []
        else:
            current.append(line)
    return {name: "\n".join(lines).strip() + "\n" for name, lines in files.items()}


def _exec_argv(service: str) -> list[str]:
    """ExecStart= split as systemd does for our quoting (double quotes, %% and $$)."""
    (line,) = [x for x in service.splitlines() if x.startswith("ExecStart=")]
    return [a.replace("%%", "%").replace("$$", "$") for a in shlex.split(line[10:])]


def test_systemd_units_run_the_same_command_at_any_period(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    out = tmp_path / "res 100% $HOME"  # a space, a % specifier and a $ variable to escape
    units = _dry_run_units(tmp_path, "--every", "7m", "--jitter", "1m", "--budget-mb", "5",
                           "--out", str(out), "--log-file", str(tmp_path / "p.log"),
                           "--", "--repeat", "2")
    assert set(units) == {"throttle-probe.service", "throttle-probe.timer"}
    assert all(text.startswith(schedule.MARKER) for text in units.values())
    timer = units["throttle-probe.timer"]
    assert "OnUnitActiveSec=420s" in timer and "Unit=throttle-probe.service" in timer
    argv = _exec_argv(units["throttle-probe.service"])
    assert argv[:5] == [sys.executable, "-m", "probe", "run", "--quiet"]
    assert argv[argv.index("--out") + 1] == str(out.resolve())
    assert argv[argv.index("--jitter") + 1] == "60" and argv[-2:] == ["--repeat", "2"]
    # the same command as the crontab line
    cron = CliRunner().invoke(main, ["schedule", "install", "--scheduler", "cron", "--dry-run",
                                     "--every", "1h", "--jitter", "1m", "--budget-mb", "5",
                                     "--out", str(out), "--log-file", str(tmp_path / "p.log"),
                                     "--", "--repeat", "2"]).output
    command = cron.split(" ", 5)[5].split(" >/dev/null")[0]
    assert "%" not in command.replace("\\%", "")  # cron would cut the line at a bare %
    assert shlex.split(command.replace("\\%", "%")) == argv  # as cron hands it to sh


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    units = _dry_run_units(tmp_path, "--every", "90m", "--out", str(tmp_path / "a b"))
    folder = tmp_path / "units"
    folder.mkdir()

    def complaints(files: dict[str, str]) -> str:
        for name, text in files.items():
            (folder / name).write_text(text)
        res = subprocess.run(["systemd-analyze", "verify", *(str(folder / n) for n in files)],
                             capture_output=True, text=True, timeout=60)
        return "\n".join(x for x in (res.stdout + res.stderr).splitlines()
                         if "throttle-probe" in x)

    assert complaints(units) == ""
    # the check would see a broken unit
    broken = {**units, "throttle-probe.timer":
              units["throttle-probe.timer"].replace("OnUnitActiveSec=5400s", "OnUnitActiveSec=x")}
    assert "Failed to parse" in complaints(broken)


def test_systemd_remove_deletes_only_our_units(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    folder = systemd_timer.unit_dir()
    folder.mkdir(parents=True)
    for name, text in systemd_timer.units(["/bin/true"], 3600).items():
        (folder / name).write_text(text)
    (folder / "other.timer").write_text("[Timer]\nOnActiveSec=1h\n")
    assert {p.name for p in systemd_timer.installed()} == {"throttle-probe.service",
                                                          "throttle-probe.timer"}
    assert systemd_timer.remove() == 2
    assert [p.name for p in folder.iterdir()] == ["other.timer"]
    assert systemd_timer.remove() == 0


def test_systemd_install_never_replaces_a_unit_that_is_not_ours(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("PROBE_STATE_DIR", str(tmp_path / "state"))
    folder = systemd_timer.unit_dir()
    folder.mkdir(parents=True)
    (folder / "throttle-probe.timer").write_text("[Timer]\nOnActiveSec=1h\n")  # someone's own
    res = CliRunner().invoke(main, ["schedule", "install", "--scheduler", "systemd",
                                    "--every", "1h", "--yes"])
    assert res.exit_code == 2 and "is not ours" in res.output
    assert [p.name for p in folder.iterdir()] == ["throttle-probe.timer"]
    assert (folder / "throttle-probe.timer").read_text() == "[Timer]\nOnActiveSec=1h\n"


@pytest.mark.skipif(shutil.which("systemctl") is None or systemd_timer.available(),
                    reason="needs systemctl without a user manager (else it would install)")
def test_systemd_install_without_a_user_manager_fails_cleanly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("PROBE_STATE_DIR", str(tmp_path / "state"))
    res = CliRunner().invoke(main, ["schedule", "install", "--scheduler", "systemd",
                                    "--every", "1h", "--yes"])
    assert res.exit_code == 2 and "no systemd user manager" in res.output
    assert not systemd_timer.unit_dir().exists()
    # auto falls back to cron here
    res = CliRunner().invoke(main, ["schedule", "install", "--every", "1h", "--minute", "5",
                                    "--dry-run"])
    assert res.exit_code == 0 and res.output.startswith("5 * * * * ")
