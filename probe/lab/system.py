"""Thin wrappers around iproute2, iptables and processes inside namespaces.

Every call is bounded in time and raises `LabError` with the command's stderr,
so a broken step names itself instead of leaving a half-built lab silently.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

IPTABLES = "iptables"  # the nft backend (`iptables -V`); all lab rules live inside lab namespaces
IPTABLES_RESTORE = "iptables-restore"
IPTABLES_SAVE = "iptables-save"
NETNS_ETC = Path("/etc/netns")
# `ip netns add` makes /run/netns a shared mount point (bind-mounting it onto itself)
# the first time; labs coming up at once take turns for it, and for `del`, machine-wide.
NETNS_LOCK = Path("/run/lock/throttle-probe-netns.lock")
TIMEOUT = 20.0
_CHILDREN: dict[int, subprocess.Popen] = {}  # servers this process started, kept to reap them


@contextmanager
def netns_turn() -> Iterator[None]:
    """Hold the machine-wide turn for adding or deleting network namespaces."""
    NETNS_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(NETNS_LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class LabError(RuntimeError):
    """A lab step failed; the message names the command and its error."""


class MissingPrerequisite(LabError):
    """Not root, or iproute2/iptables missing: the lab cannot run here at all."""


def check_prerequisites() -> None:
    """Raise MissingPrerequisite unless we are root and iproute2, tc and iptables exist."""
    if os.geteuid() != 0:
        raise MissingPrerequisite("the lab needs root (network namespaces, iptables, tc)")
    missing = [t for t in ("ip", "tc", IPTABLES, IPTABLES_RESTORE, "ss") if not shutil.which(t)]
    if missing:
        raise MissingPrerequisite(
            f"the lab needs iproute2 and iptables; missing: {', '.join(missing)}"
        )


def run(cmd: list[str], input: str | None = None, check: bool = True) -> str:
    """Run a command; return stdout; raise LabError on a non-zero exit when `check`."""
    try:
        proc = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {TIMEOUT:.0f} s: {' '.join(cmd)}") from exc
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def in_ns(ns: str, cmd: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def ns_run(ns: str, cmd: list[str], input: str | None = None, check: bool = True) -> str:
    return run(in_ns(ns, cmd), input=input, check=check)


def namespaces(prefix: str) -> list[str]:
    """Namespaces whose name starts with `prefix` (the lab's, also after a crash)."""
    out = run(["ip", "-o", "netns", "list"], check=False)
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix)]


def ns_pids(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def spawn(ns: str, argv: list[str], log: Path) -> int:
    """Start a long-running process in a namespace, detached from our session; return its pid.

    `ip netns exec` execs the program, so the pid is the program's own.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            in_ns(ns, argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid


def alive(pid: int) -> bool:
    if pid in _CHILDREN:  # our own child: poll() also reaps it
        return _CHILDREN[pid].poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


def kill(pids: list[int], grace: float = 2.0) -> None:
    """SIGTERM the processes, then SIGKILL whatever is still alive after `grace` seconds."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def listening(ns: str, proto: str) -> set[str]:
    """`addr:port` strings of sockets listening in a namespace (proto "tcp" or "udp")."""
    flag = "-Hltn" if proto == "tcp" else "-Hlun"
    out = ns_run(ns, ["ss", flag], check=False)
    found = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            found.add(parts[3])
    return found


def wait_listening(
    ns: str, proto: str, wanted: set[str], pid: int, log: Path, timeout: float = 20.0
) -> None:
    """Wait until every `addr:port` listens; fail early (with the log's tail) if `pid` died."""
    deadline = time.monotonic() + timeout
    while True:
        missing = wanted - listening(ns, proto)
        if not missing:
            return
        if not alive(pid):
            raise LabError(f"process {pid} in {ns} exited; log {log}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise LabError(f"{ns}: not listening on {sorted(missing)} after {timeout:.0f} s")
        time.sleep(0.05)


def queues_bound(ns: str) -> set[int]:
    """NFQUEUE numbers a process has bound in a namespace (the kernel's own list)."""
    out = ns_run(ns, ["cat", "/proc/net/netfilter/nfnetlink_queue"], check=False)
    return {int(line.split()[0]) for line in out.splitlines() if line.split()}


def wait_queue_bound(ns: str, queue: int, pid: int, log: Path, timeout: float = 20.0) -> None:
    """Wait until NFQUEUE `queue` is bound (packets queued before that bypass it)."""
    deadline = time.monotonic() + timeout
    while queue not in queues_bound(ns):
        if not alive(pid):
            raise LabError(f"process {pid} in {ns} exited; log {log}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise LabError(f"{ns}: NFQUEUE {queue} not bound after {timeout:.0f} s")
        time.sleep(0.05)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
