"""Where a measurement line keeps our own fields, for every reader of the JSONL.

Since results format 2 the line is a plain OONI measurement: our run id,
measurement id, experiment and repetition are `annotations` (strings, as OONI's
annotations are) and the target we measured is `test_keys.target`. Format 1
(before 0.3) had them at the top level. Readers ask here, so both read alike.
"""

from __future__ import annotations

from typing import Any

FORMAT = 3  # run.json `results_format`; absent means 1
IDENTITY = ("run_id", "measurement_id", "experiment", "repetition")


def _part(m: dict, name: str) -> dict:
    part = m.get(name)
    return part if isinstance(part, dict) else {}


def field(m: dict, name: str) -> Any:
    """`run_id`, `measurement_id`, `experiment` or `repetition` of line `m` (repetition an
    int when it reads as one), wherever its format keeps it; None when absent."""
    annotations = _part(m, "annotations")
    value = annotations[name] if name in annotations else m.get(name)
    if name == "repetition" and isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def target(m: dict) -> Any:
    """The target object of line `m` (not checked: it may be malformed), or None."""
    keys = _part(m, "test_keys")
    return keys["target"] if "target" in keys else m.get("target")


def target_field(m: dict, name: str) -> Any:
    """One field of the target (name, family, kind, url, ...), None when absent."""
    found = target(m)
    return found.get(name) if isinstance(found, dict) else None
