"""`probe lab`: a censored network on one machine (namespaces, routers, real kernel rules).

Python API: `Lab(dir, prefix)` with `up()`, `scenario(name, rate_kbps, hop)`,
`exec(cmd)`, `status()`, `down()`; `running_lab(dir, prefix)` always tears down.
The names are imported on first use, so `probe.lab.ca` and `probe.lab.dns_server`
stay quick to import (the lab itself pulls in numpy and pillow for its media).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_DIR": "lab", "Lab": "lab", "running_lab": "lab", "SCENARIOS": "scenarios",
    "LabError": "system", "MissingPrerequisite": "system",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
