"""Public datasets the analysis can read as first-class inputs.

Each dataset is a module with ``load(directory) -> DataFrame`` and
``summarize(df) -> dict``; ``DATASETS`` maps the CLI name to that module so the
command line and notebooks reach the same code.
"""

from __future__ import annotations

import importlib
from types import ModuleType

DATASETS: dict[str, str] = {
    "russia-twitter-throttle": "analysis.datasets.russia_twitter",
}


class DatasetError(Exception):
    """Bad input: a missing folder, an unknown dataset or a malformed file (names file:line)."""


def get(name: str) -> ModuleType:
    """The module implementing dataset ``name``; DatasetError lists the known names."""
    try:
        return importlib.import_module(DATASETS[name])
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {known}") from None
