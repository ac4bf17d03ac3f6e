"""One probe run at a time per network: two runs would disturb each other's measurements.

The lock is per user and per network namespace, so labs in other namespaces
(each its own network) do not block each other, while two runs on the same
network always do.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

EXIT_LOCKED = 3


class LockedError(Exception):
    """Another run holds the lock."""


def default_path() -> Path:
    """`$PROBE_LOCK_FILE`, else a per-network-namespace file in `$PROBE_STATE_DIR` when
    set, else in the user's home.

    The home folder (not XDG_STATE_HOME), because cron and a terminal session must find
    the same file (cron sets no XDG_RUNTIME_DIR), and because nobody else can create it there
    first (a guessable name in /tmp can be taken and held by another user).
    """
    if os.environ.get("PROBE_LOCK_FILE"):
        return Path(os.environ["PROBE_LOCK_FILE"])
    try:
        netns = f"-{os.stat('/proc/self/ns/net').st_ino}"
    except OSError:
        netns = ""
    folder = (Path(os.environ["PROBE_STATE_DIR"]) if os.environ.get("PROBE_STATE_DIR")
              else Path.home() / ".local" / "state" / "throttle-probe")
    return folder / f"run{netns}.lock"


class LockFileError(Exception):
    """The lock file cannot be created (a user-fixable set-up problem)."""


class RunLock:
    """An exclusive flock; the kernel releases it when the process dies, so no stale locks."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path or default_path())
        self._fd: int | None = None

    def acquire(self, wait: bool = False, timeout: float | None = None) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LockFileError(f"cannot create lock file {self.path}: "
                                f"{exc.strerror or exc}") from exc
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait or (deadline is not None and time.monotonic() > deadline):
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                    os.close(fd)
                    raise LockedError(
                        f"another probe run is in progress (pid {holder or '?'}, lock "
                        f"{self.path}); use --wait to wait for it"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
