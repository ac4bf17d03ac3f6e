"""Differential experiments against a measurement server, and `probe locate`.

`plan(server_url, names, targets)` gives the runner one `Experiment` per
variant; the runner weaves them among the targets at every repetition. Each
variant is one measurement whose only difference from its siblings is what the
experiment tests (docs/experiments.md):

- `sni`: GET /bytes with each service name of the run (its targets' and its
  packs' `sni_names`), the server's own (neutral) name, and none.
- `split`: the Twitter-SNI download with its ClientHello split inside the name,
  split after the record header, or padded past one TCP segment.
- `upload`: POST /upload with a Twitter and the neutral SNI.
- `sni-h3`: the `sni` variants over HTTP/3 (QUIC on the server's UDP port).
- `transport`: the neutral name over TCP and over HTTP/3: a network that slows QUIC
  (or UDP) whatever the name.
"""

from __future__ import annotations

from collections.abc import Iterable

from probe.experiment_names import check
from probe.names import is_service_family, is_service_name
from probe.targets import Target

from .base import MAX_BYTES, Server, target
from .download import Download
from .h3 import H3Download
from .upload import Upload

# Always tried, one per kind of rule seen in 2021: `*.twimg.com` (the media hosts,
# pbs/video/abs alike) and an exact domain. They keep the experiment meaningful in a
# run whose targets are all of one kind, and pbs.twimg.com is the plain-SNI reference
# of `split` and `upload`.
TWITTER_SNIS = ("pbs.twimg.com", "twitter.com")
# The substring the early 2021 rule matched, which slowed reddit.com and the like.
COLLATERAL_SNI = "t.co"
COLLATERAL_FAMILY = "control-tco"
SPLIT_SNI = "pbs.twimg.com"
UPLOAD_SNI = "pbs.twimg.com"
SPLIT_SHAPES = ("sni", "header", "padded")


def sni_names(targets: Iterable[Target], extra: Iterable[str] = ()) -> list[str]:
    """The service names the `sni` experiment sends, so every service target's trigger can
    be told.

    A target's trigger is `ip` only if its own name was fast on the neutral server (a
    sibling name proves nothing about an exact-name rule), so each distinct service
    name the run's service targets (Twitter, YouTube, ...) send is tried, then `extra`:
    the packs' names of hosts without a public object (signed video URLs). `t.co` joins
    whenever the run has a collateral target: it is the name a substring rule on those
    targets would match, and a fast variant costs one byte cap (plus one read). A name
    that is no service's (an address, a CDN name) is left out: the analysis reads such a
    name as neutral.
    """
    out = list(TWITTER_SNIS)
    for t in targets:
        if is_service_family(t.family):
            name = (t.host if t.sni is None else t.sni).lower().rstrip(".")
        elif t.family == COLLATERAL_FAMILY:
            name = COLLATERAL_SNI
        else:
            continue
        if is_service_name(name) and name not in out:
            out.append(name)
    for name in extra:
        if is_service_name(name) and name.lower() not in out:
            out.append(name.lower())
    return out


def plan(server_url: str, names: list[str], targets: Iterable[Target] = (),
         extra_names: Iterable[str] = ()) -> list[Download | H3Download | Upload]:
    """The variants of the named experiments, in a fixed order (service names first, then
    baselines); `extra_names` are the packs' names for the `sni` experiment."""
    check(names)
    server = Server.parse(server_url)
    down = server.url_for(f"/bytes?n={MAX_BYTES}")
    out: list[Download | H3Download | Upload] = []
    targets, extra_names = list(targets), list(extra_names)  # read once per experiment
    for experiment, fetch in (("sni", Download), ("sni-h3", H3Download)):
        if experiment not in names:
            continue
        for name in sni_names(targets, extra_names):
            out.append(fetch(experiment, target(experiment, name, down, name), server))
        out.append(fetch(experiment, target(experiment, "neutral", down, server.neutral_name),
                         server))
        out.append(fetch(experiment, target(experiment, "none", down, ""), server))
    if "split" in names:
        for shape in SPLIT_SHAPES:
            out.append(Download("split", target("split", f"{shape}-{SPLIT_SNI}", down, SPLIT_SNI),
                                server, shape=shape))
    if "upload" in names:
        up = server.url_for("/upload")
        out.append(Upload(target("upload", UPLOAD_SNI, up, UPLOAD_SNI), server))
        out.append(Upload(target("upload", "neutral", up, server.neutral_name), server))
    if "transport" in names:
        neutral = server.neutral_name
        out.append(Download("transport", target("transport", "tcp", down, neutral), server))
        out.append(H3Download("transport", target("transport", "quic", down, neutral), server))
    return out
