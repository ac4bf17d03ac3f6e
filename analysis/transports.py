"""A target fetched over TCP and over QUIC in one run: its two verdicts side by side.

In 2024 YouTube was slowed to ~128 kbit/s over TCP and ~512 kbit/s over QUIC: a
throttler may treat the transports apart, and neither verdict alone says so. Each
transport's verdict is decided against controls fetched over that same transport (a
user-space QUIC stack is often CPU-bound far below the kernel's TCP, so a QUIC fetch is
only slow next to other QUIC fetches). The QUIC rate is then compared with the same
target's TCP rate by the same bootstrap: its ratio is stored on the QUIC row, and where
the verdicts differ one line says so with both rates, e.g.
"TCP throttled at 131 kbit/s, QUIC not (2,840 kbit/s)".

The TCP fetch is evidence, never a verdict: a transport whose own verdict is
inconclusive (no control fetched over it, say) still counts as "not" throttled when it
ran significantly faster than the other transport's throttled rate, to the same target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from .bootstrap import _compare, _Comparison, _significant
from .features import _Rep

if TYPE_CHECKING:
    from .verdicts import Verdict

FINDINGS = ("throttled", "blocked", "dns-tampered", "tls-tampered")


def _kbps(rate: float | None) -> str:
    return "no rate" if rate is None else f"{rate:,.0f} kbit/s"


def _state(v: Verdict) -> str:
    """A verdict in a few words, with its rate where it has one."""
    if v.verdict == "throttled":
        return f"throttled at {_kbps(v.rate_kbps)}"
    if v.verdict in ("ok", "inconclusive"):
        return f"{v.verdict} ({_kbps(v.rate_kbps)})"
    return v.verdict


def across(tcp: Verdict, quic: Verdict, quic_vs_tcp: _Comparison | None,
           tcp_vs_quic: _Comparison | None) -> str | None:
    """The one line on a target's two transports, or None when they agree on nothing
    to report (both ok or inconclusive, or the same failure over both).

    `quic_vs_tcp`: the QUIC rate over the TCP rate (and the reverse), when both had one.
    """
    def name(v: Verdict) -> str:
        return "TCP" if v is tcp else "QUIC"

    def faster(v: Verdict) -> bool:
        """`v`'s transport ran significantly faster than the other, to the same target."""
        c = quic_vs_tcp if v is tcp else tcp_vs_quic
        return c is not None and _significant(c)

    found = [v for v in (tcp, quic) if v.verdict in FINDINGS]
    if not found:
        return None
    if len(found) == 2:
        if tcp.verdict == quic.verdict == "throttled":
            slow, fast = (tcp, quic) if (tcp.rate_kbps or 0) <= (quic.rate_kbps or 0) \
                else (quic, tcp)
            if not faster(fast):
                return (f"TCP and QUIC throttled alike ({tcp.rate_kbps or 0:,.0f} and "
                        f"{_kbps(quic.rate_kbps)})")
            times = (fast.rate_kbps or 0) / max(slow.rate_kbps or 0, 1e-9)
            return (f"{name(slow)} throttled at {_kbps(slow.rate_kbps)}, {name(fast)} at "
                    f"{_kbps(fast.rate_kbps)} ({times:.1f}x faster)")
        if tcp.verdict == quic.verdict:
            return None
        return f"TCP {_state(tcp)}, QUIC {_state(quic)}"
    (bad,) = found
    other = quic if bad is tcp else tcp
    if other.verdict == "ok" or (bad.verdict == "throttled" and faster(other)):
        return f"{name(bad)} {_state(bad)}, {name(other)} not ({_kbps(other.rate_kbps)})"
    return f"{name(bad)} {_state(bad)}, {name(other)} {_state(other)}"


def compare_transports(tcp: Verdict, quic: Verdict, tcp_reps: list[_Rep],
                       quic_reps: list[_Rep], seed: int) -> None:
    """Fill the QUIC row's `transport_ratio` and `across_transports`, and say in its
    explanation how fast the same target was over TCP."""
    def measured(reps: list[_Rep]) -> list[_Rep]:
        return [r for r in reps if r.stage == "ok" and r.rate is not None and r.rate > 0]

    over_tcp, over_quic = measured(tcp_reps), measured(quic_reps)
    quic_vs_tcp = tcp_vs_quic = None
    if over_tcp and over_quic:
        quic_vs_tcp = _compare(over_quic, over_tcp, seed)
        tcp_vs_quic = _compare(over_tcp, over_quic, seed)
        quic.transport_ratio = quic_vs_tcp.ratio
        quic.explanation += (f" Over TCP the same target ran at {quic_vs_tcp.control:,.0f} "
                             f"kbit/s (QUIC/TCP ratio {quic_vs_tcp.ratio:.2f}, 95 % CI "
                             f"{quic_vs_tcp.ci_low:.2f}-{quic_vs_tcp.ci_high:.2f}).")
    quic.across_transports = across(tcp, quic, quic_vs_tcp, tcp_vs_quic)


def across_lines(rows: pd.DataFrame) -> list[str]:
    """`target: line` for each verdict row with a line across transports (the run's id
    first when the rows span several runs), for summaries below a table."""
    if "across_transports" not in rows.columns or not len(rows):
        return []
    found = rows[rows["across_transports"].map(lambda v: isinstance(v, str) and v != "")]
    several = rows["run_id"].nunique() > 1
    return [(f"{r.run_id} " if several else "") + f"{r.target}: {r.across_transports}"
            for r in found.itertuples(index=False)]
