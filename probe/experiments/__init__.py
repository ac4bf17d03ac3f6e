"""Differential experiments against a measurement server, and `probe locate`.

`plan(server_url, names)` gives the runner one `Experiment` per variant; the
runner weaves them among the targets at every repetition. Each variant is one
measurement whose only difference from its siblings is what the experiment
tests (docs/experiments.md):

- `sni`: GET /bytes with a Twitter SNI, the server's own (neutral) name, and none.
- `split`: the Twitter-SNI download with its ClientHello split inside the name,
  split after the record header, or padded past one TCP segment.
- `upload`: POST /upload with a Twitter and the neutral SNI.
"""

from __future__ import annotations

from .base import MAX_BYTES, Server, target
from .download import Download
from .upload import Upload

# Two names, one per kind of rule seen in 2021: `*.twimg.com` (the media hosts,
# pbs/video/abs alike) and an exact domain (`twitter.com`; `t.co` matches the
# same way). More names would each cost one more download per repetition.
TWITTER_SNIS = ("pbs.twimg.com", "twitter.com")
SPLIT_SNI = "pbs.twimg.com"
UPLOAD_SNI = "pbs.twimg.com"
SPLIT_SHAPES = ("sni", "header", "padded")
NAMES = ("sni", "split", "upload")


def plan(server_url: str, names: list[str]) -> list[Download | Upload]:
    """The variants of the named experiments, in a fixed order (Twitter first, then baselines)."""
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        raise ValueError(f"unknown experiment(s): {', '.join(unknown)}")
    server = Server.parse(server_url)
    down = server.url_for(f"/bytes?n={MAX_BYTES}")
    out: list[Download | Upload] = []
    if "sni" in names:
        for name in TWITTER_SNIS:
            out.append(Download("sni", target("sni", name, down, name), server))
        out.append(Download("sni", target("sni", "neutral", down, server.neutral_name), server))
        out.append(Download("sni", target("sni", "none", down, ""), server))
    if "split" in names:
        for shape in SPLIT_SHAPES:
            out.append(Download("split", target("split", f"{shape}-{SPLIT_SNI}", down, SPLIT_SNI),
                                server, shape=shape))
    if "upload" in names:
        up = server.url_for("/upload")
        out.append(Upload(target("upload", UPLOAD_SNI, up, UPLOAD_SNI), server))
        out.append(Upload(target("upload", "neutral", up, server.neutral_name), server))
    return out
