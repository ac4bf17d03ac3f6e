"""Which server names belong to a throttled service: one list for the packs, the experiments
and the verdicts.

The 2021 Russian throttler matched `*.twimg.com`, `twitter.com` and `t.co` in the
TLS ClientHello's SNI (Xue et al., "Throttling Twitter: An Emerging Censorship
Technique in Russia", IMC 2021); `x.com` is the service's later name. The same kind
of device slowed Facebook in February 2022 and YouTube from July 2024 (its video
playback hosts under googlevideo.com first of all). Early substring rules also hit
unrelated names (`*t.co*` matched reddit.com), so a name matches only by whole
labels: exactly, or as a subdomain.

A service is known by its family: the `family` of its targets in the packs
(`targets/*.toml`) and in the records, which the analysis compares with controls.
"""

from __future__ import annotations

TWITTER_DOMAINS = ("twitter.com", "twimg.com", "t.co", "x.com")
# The page, the short links, thumbnails and the playback hosts of every video.
YOUTUBE_DOMAINS = ("youtube.com", "youtu.be", "ytimg.com", "googlevideo.com")
# The site, its short name and its CDN (static.xx.fbcdn.net, scontent-*.fbcdn.net).
FACEBOOK_DOMAINS = ("facebook.com", "fb.com", "fbcdn.net", "facebook.net")

SERVICES: dict[str, tuple[str, ...]] = {
    "twitter": TWITTER_DOMAINS,
    "youtube": YOUTUBE_DOMAINS,
    "facebook": FACEBOOK_DOMAINS,
}
LABELS = {"twitter": "Twitter", "youtube": "YouTube", "facebook": "Facebook"}


def _under(name: str | None, domains: tuple[str, ...]) -> bool:
    name = (name or "").lower().rstrip(".")
    return any(name == d or name.endswith("." + d) for d in domains)


def is_twitter_name(name: str | None) -> bool:
    """Exact Twitter domains and their subdomains (labels, not substrings); case and a
    trailing dot do not matter."""
    return _under(name, TWITTER_DOMAINS)


def service_of(name: str | None) -> str | None:
    """The family of the service `name` belongs to (by whole labels), or None: neutral."""
    return next((family for family, domains in SERVICES.items() if _under(name, domains)),
                None)


def is_service_name(name: str | None) -> bool:
    """A name of any known service: what a throttler keyed on names would look for."""
    return service_of(name) is not None


def is_service_family(family: str | None) -> bool:
    """A family whose targets are a service's (judged against controls), not a control's."""
    return family in SERVICES


def label(family: str | None) -> str:
    """The service's name as people write it ("YouTube"), for explanations and reports."""
    return LABELS.get(family or "", family or "?")
