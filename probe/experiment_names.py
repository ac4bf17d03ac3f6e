"""The differential experiments' names: the one list, and its one check.

Apart from `probe.experiments` because `probe run --help` shows them and validates
`--experiments` before measuring, without loading the experiments' HTTP stack.
"""

from __future__ import annotations

NAMES = ("sni", "split", "upload", "sni-h3", "transport")
# Over QUIC: planned by default only when the run fetches over HTTP/3 (--http3), so a
# run without it sends no UDP to the server.
OVER_QUIC = ("sni-h3", "transport")
DEFAULT = tuple(n for n in NAMES if n not in OVER_QUIC)


def check(names: list[str]) -> list[str]:
    """`names` if every one is an experiment's, else ValueError naming the others."""
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        raise ValueError(f"unknown experiment(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(NAMES)}")
    return names


def chosen(given: list[str] | None, http3: bool) -> list[str]:
    """The experiments to run: those `given` (--experiments), else the defaults, with the
    QUIC ones when the run also fetches over HTTP/3."""
    if given is not None:
        return given
    return list(DEFAULT) + (list(OVER_QUIC) if http3 else [])
