"""The bounds of one measured object, and the one place their defaults are set.

`probe run` shows these defaults as its own, so a run from the command line and one
built in code (tests, the lab) are bounded alike. Light on purpose: the command line
imports it to show `--help` without loading the HTTP stack.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DNS_TIMEOUT = 5.0  # seconds to wait for each DNS answer (`probe run --dns-timeout`)


@dataclass
class Limits:
    """Bounds of one transfer (or of one media object as a whole, see media.py)."""

    max_bytes: int = 512 * 1024
    max_seconds: float = 10.0
    connect_timeout: float = 10.0
    read_timeout: float = 10.0
    sample_interval_s: float = 0.1

    def at_most(self, max_bytes: int | None = None, max_seconds: float | None = None) -> Limits:
        """These limits, no looser than the given caps (None: that bound is kept): how the
        data budget left and an experiment's own caps tighten a run's limits."""
        return replace(
            self,
            max_bytes=self.max_bytes if max_bytes is None else min(self.max_bytes, max_bytes),
            max_seconds=(self.max_seconds if max_seconds is None
                         else min(self.max_seconds, max_seconds)),
        )


DEFAULT_LIMITS = Limits()
