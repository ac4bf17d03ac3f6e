"""Write whole files atomically so a crash never leaves half a file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` via a fsynced temp file in the same folder and a rename."""
    write_all({Path(path): text.encode("utf-8")})


def write_bytes(path: Path, data: bytes) -> None:
    write_all({Path(path): data})


def write_all(files: dict[Path, bytes]) -> None:
    """Write every file to a temporary sibling, then rename all into place.

    Either every file is replaced or (on an error before the renames) none is;
    files get the usual permissions (mkstemp's 0600 would hide results from
    the people they are for).
    """
    umask = os.umask(0o022)
    os.umask(umask)
    temps: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps.append((tmp, path))
            os.chmod(tmp, 0o666 & ~umask)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in temps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
