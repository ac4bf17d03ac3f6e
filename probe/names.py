"""Which server names are Twitter's: one list for the probe's experiments and the verdicts.

The 2021 Russian throttler matched `*.twimg.com`, `twitter.com` and `t.co` in the
TLS ClientHello's SNI (Xue et al., "Throttling Twitter: An Emerging Censorship
Technique in Russia", IMC 2021); `x.com` is the service's later name. Its early
substring rules also hit unrelated names (`*t.co*` matched reddit.com), so a name
matches only by whole labels: exactly, or as a subdomain.
"""

from __future__ import annotations

TWITTER_DOMAINS = ("twitter.com", "twimg.com", "t.co", "x.com")


def is_twitter_name(name: str | None) -> bool:
    """Exact Twitter domains and their subdomains (labels, not substrings); case and a
    trailing dot do not matter."""
    name = (name or "").lower().rstrip(".")
    return any(name == d or name.endswith("." + d) for d in TWITTER_DOMAINS)
