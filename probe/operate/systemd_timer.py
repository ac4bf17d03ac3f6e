"""`probe schedule` on systemd: a user timer and service, where a user manager runs.

Many desktops ship no cron. A systemd user timer runs the same command as the
crontab line, logs failures to the journal (`journalctl --user -u
throttle-probe`), and can use any period (cron can only divide an hour or a
day). `auto` still prefers cron where it is installed: cron runs whether or
not the user is logged in, while a user manager stops at logout unless
lingering is on. Our unit files carry the schedule marker, so `remove`
deletes only them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from probe.operate.schedule import MARKER, ScheduleError
from probe.results.atomic import write_all

UNIT = "throttle-probe"
SERVICE, TIMER = f"{UNIT}.service", f"{UNIT}.timer"
_PLAIN = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def unit_dir() -> Path:
    """Where systemd looks for a user's own units."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def _systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("systemctl")
    if not path:
        raise ScheduleError("systemctl not found: this system has no systemd")
    return subprocess.run([path, "--user", *args], capture_output=True, text=True, timeout=30)


def available() -> bool:
    """True when a systemd user manager answers (not in most containers or cron-only hosts)."""
    try:
        return _systemctl("show-environment").returncode == 0
    except (ScheduleError, OSError, subprocess.TimeoutExpired):
        return False


def quote(arg: str) -> str:
    """One ExecStart= word: systemd expands % specifiers and $ variables, so escape them."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN.match(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def units(argv: list[str], every_s: int) -> dict[str, str]:
    """The service (runs `argv` once) and the timer (first run a minute after it starts
    or after boot, then every `every_s` seconds after the previous run began)."""
    service = (
        f"{MARKER}\n"
        "[Unit]\n"
        "Description=throttle-probe: a scheduled throttling measurement\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={' '.join(quote(a) for a in argv)}\n"
    )
    timer = (
        f"{MARKER}\n"
        "[Unit]\n"
        "Description=throttle-probe: run the measurement periodically\n\n"
        "[Timer]\n"
        "OnActiveSec=1min\n"
        f"OnUnitActiveSec={every_s}s\n"
        f"Unit={SERVICE}\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return {SERVICE: service, TIMER: timer}


def installed() -> list[Path]:
    """Our unit files (those carrying the marker)."""
    found = []
    for name in (SERVICE, TIMER):
        path = unit_dir() / name
        try:
            if path.read_text().startswith(MARKER):
                found.append(path)
        except OSError:
            continue
    return found


def install(files: dict[str, str]) -> None:
    """Write the units and start the timer; on any failure leave no unit file behind."""
    folder = unit_dir()
    for path in (folder / n for n in files):
        if path.exists() and path not in installed():
            raise ScheduleError(f"{path} exists and is not ours: not replacing it")
    if not available():
        raise ScheduleError("no systemd user manager answers (`systemctl --user` fails); "
                            "use --scheduler cron")
    folder.mkdir(parents=True, exist_ok=True)
    write_all({folder / name: text.encode() for name, text in files.items()})
    for step in (("daemon-reload",), ("enable", "--now", TIMER)):
        res = _systemctl(*step)
        if res.returncode != 0:
            remove()
            raise ScheduleError(f"systemctl --user {' '.join(step)} failed: "
                                f"{res.stderr.strip()}")


def remove() -> int:
    """Stop and delete our units; returns how many files there were."""
    ours = installed()
    if not ours:
        return 0
    manager = available()
    if manager:
        _systemctl("disable", "--now", TIMER)
    for path in ours:
        path.unlink(missing_ok=True)
    if manager:
        _systemctl("daemon-reload")
    return len(ours)


def lingering() -> bool | None:
    """Whether this user's manager outlives their sessions (None: cannot tell)."""
    path = shutil.which("loginctl")
    if not path:
        return None
    try:
        res = subprocess.run([path, "show-user", str(os.getuid()), "-p", "Linger"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = res.stdout.strip().partition("=")[2]
    return {"yes": True, "no": False}.get(value) if res.returncode == 0 else None


def timer_state() -> str | None:
    """The timer's next and last run as systemd reports them, when a manager answers."""
    if not available():
        return None
    res = _systemctl("list-timers", "--all", "--no-pager", TIMER)
    return res.stdout.strip() if res.returncode == 0 else None
