"""Where the probe keeps what outlives a run: consent, the data-usage ledger, logs."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """`$PROBE_STATE_DIR`, else `$XDG_STATE_HOME/throttle-probe`, else ~/.local/state/..."""
    if os.environ.get("PROBE_STATE_DIR"):
        return Path(os.environ["PROBE_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "throttle-probe"
