"""`probe schedule`: measure every so often, quietly, within a data budget (cron here;
a systemd user timer in systemd_timer.py, which runs the same command).

The installed crontab line runs `probe run --quiet` with a rotating log file,
a random start delay (--jitter) so that volunteers' probes do not all fire at
the same second, and the data caps. Overlapping runs cannot happen: `probe run`
holds a lock and a second one exits with 3. Lines we own carry a marker comment
so that `status` and `remove` never touch anything else in the crontab.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from probe.operate.options import budget_argv

MARKER = "# throttle-probe schedule"
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ScheduleError(Exception):
    """A request we cannot turn into a schedule, or a crontab we cannot use."""


# Control characters (a newline would start a second crontab entry or unit-file line),
# line and paragraph separators (Python's splitlines() cuts there) and lone surrogates
# (undecodable bytes that cannot be written as text).
_UNSAFE_CATEGORIES = {"Cc", "Cs", "Zl", "Zp"}


def refuse_control(name: str, value: str) -> None:
    """Raise if `value` holds a character a crontab line or a unit file cannot carry."""
    bad = next((c for c in value if unicodedata.category(c) in _UNSAFE_CATEGORIES), None)
    if bad is not None:
        raise ScheduleError(f"{name} contains the control character {bad!r}; "
                            "a scheduled command cannot hold it")


def cron_quote(arg: str) -> str:
    """One shell word as a crontab line must hold it: cron ends the command at a bare %
    (the rest becomes its stdin) and turns \\% into %, so each % is written as \\% outside
    the shell quotes, where no backslash of the argument can come right before it."""
    if not arg:
        return "''"
    return "\\%".join(shlex.quote(part) if part else "" for part in arg.split("%"))


def parse_duration(text: str) -> int:
    """'90s', '15m', '1h', '1d' -> seconds."""
    m = _DURATION.match(text)
    if not m or int(m.group(1)) == 0:
        raise ScheduleError(f"{text!r} is not a duration like 30m, 1h, 6h or 1d")
    return int(m.group(1)) * _SECONDS[m.group(2)]


def cron_times(every_s: int, minute: int) -> str:
    """The five cron time fields for 'every N' (cron can only divide an hour or a day)."""
    if every_s % 60:
        raise ScheduleError("cron runs at most once a minute: use whole minutes")
    minutes = every_s // 60
    if minutes < 60:
        if 60 % minutes:
            raise ScheduleError(f"every {minutes} min does not divide an hour; "
                                "use 1, 2, 3, 4, 5, 6, 10, 12, 15, 20 or 30 min")
        return f"{minute % minutes}-59/{minutes} * * * *" if minutes > 1 else "* * * * *"
    if minutes % 60:
        raise ScheduleError("above an hour, use whole hours (e.g. 2h, 6h) or 1d")
    hours = minutes // 60
    if hours == 24:
        return f"{minute} 3 * * *"
    if hours > 24 or 24 % hours:
        raise ScheduleError(f"every {hours} h does not divide a day; "
                            "use 1, 2, 3, 4, 6, 8, 12 h or 1d")
    return f"{minute} */{hours} * * *" if hours > 1 else f"{minute} * * * *"


@dataclass
class Plan:
    """What `install` schedules: the command, and how often."""

    every: str
    jitter: str | None
    budget_mb: float | None
    daily_budget_mb: float | None
    monthly_budget_mb: float | None
    out: Path
    log_file: Path
    minute: int
    extra_args: tuple[str, ...] = ()

    @property
    def every_s(self) -> int:
        return parse_duration(self.every)

    def argv(self) -> list[str]:
        """The `probe run` command the scheduler starts (cron and systemd alike)."""
        jitter_s = parse_duration(self.jitter) if self.jitter else 0
        if jitter_s >= self.every_s:
            raise ScheduleError("--jitter must be shorter than --every")
        args = [sys.executable, "-m", "probe", "run", "--quiet", "--out", str(self.out.resolve()),
                "--log-file", str(self.log_file.resolve())]
        if jitter_s:
            args += ["--jitter", str(jitter_s)]
        args += budget_argv({"budget_mb": self.budget_mb,
                             "daily_budget_mb": self.daily_budget_mb,
                             "monthly_budget_mb": self.monthly_budget_mb})
        args += self.extra_args
        for i, arg in enumerate(args):
            refuse_control(_option_of(args, i), arg)
        return args

    def line(self) -> str:
        """The crontab line."""
        command = " ".join(cron_quote(a) for a in self.argv())
        # Output goes to the log file; cron would otherwise mail it.
        return f"{cron_times(self.every_s, self.minute)} {command} >/dev/null 2>&1 {MARKER}"


def _option_of(args: list[str], i: int) -> str:
    """How to name args[i] in an error: its option (`--label`), or its position."""
    if i == 0:
        return "the Python interpreter's path"
    if args[i].startswith("--"):
        return args[i].partition("=")[0]
    if args[i - 1].startswith("--"):
        return args[i - 1]
    return "an argument for `probe run`"


def has_cron() -> bool:
    return shutil.which("crontab") is not None


def _crontab() -> str:
    path = shutil.which("crontab")
    if not path:
        raise ScheduleError("crontab not found: install cron (Debian: apt-get install cron)")
    return path


def read_crontab() -> list[str]:
    res = subprocess.run([_crontab(), "-l"], capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        if "no crontab" in res.stderr.lower():
            return []
        raise ScheduleError(f"crontab -l failed: {res.stderr.strip()}")
    # cron ends an entry at a newline only (splitlines() would also cut at U+2028 and others).
    return res.stdout.rstrip("\n").split("\n") if res.stdout else []


def write_crontab(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n" if lines else ""
    res = subprocess.run([_crontab(), "-"], input=text, capture_output=True, text=True,
                         timeout=30)
    if res.returncode != 0:
        raise ScheduleError(f"crontab - failed: {res.stderr.strip()}")


def installed(lines: list[str]) -> list[str]:
    return [line for line in lines if line.rstrip().endswith(MARKER)]


def install(line: str) -> None:
    """Replace our line (if any) with `line`, keeping every other entry."""
    keep = [x for x in read_crontab() if not x.rstrip().endswith(MARKER)]
    write_crontab(keep + [line])


def remove() -> int:
    """Remove our lines; returns how many there were."""
    lines = read_crontab()
    ours = installed(lines)
    if ours:
        write_crontab([x for x in lines if x not in ours])
    return len(ours)
