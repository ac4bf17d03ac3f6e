"""The differential experiments' names: the one list, and its one check.

Apart from `probe.experiments` because `probe run --help` shows them and validates
`--experiments` before measuring, without loading the experiments' HTTP stack.
"""

from __future__ import annotations

NAMES = ("sni", "split", "upload")


def check(names: list[str]) -> list[str]:
    """`names` if every one is an experiment's, else ValueError naming the others."""
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        raise ValueError(f"unknown experiment(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(NAMES)}")
    return names
