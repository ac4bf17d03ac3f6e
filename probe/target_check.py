"""Is a target's URL alive from here? One small fetch with the probe's own code.

A campaign must start from live URLs: media gets deleted, hashed assets rotate,
and a dead URL measures a 404, not a throttle. The check fetches the target as
`probe run` does (DNS, TCP, TLS with verification, the kind's transfers) under
small caps, writes nothing, and says what answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from probe.measure import dns
from probe.measure.limits import Limits
from probe.measure.tls import make_context
from probe.measurement import ListedTarget, MeasureContext, Measurement
from probe.targets import Target

# A media object or script smaller than this is a placeholder or an error body, not the
# object (YouTube answers a missing thumbnail with a 1 KB grey image). Pages may be tiny
# redirects: that answer is what they measure.
MIN_OBJECT_BYTES = 1024


@dataclass(frozen=True)
class Checked:
    """What one target's URL answered, and whether it is worth measuring."""

    target: Target
    failure: str | None  # df-007 failure string of the first failed step
    status: int | None  # HTTP status of the first response
    bytes: int  # body bytes received across its transfers (up to the cap)
    usable: bool
    why: str


def context(limits: Limits, ca_bundle: Path | None = None,
            connect_to: dict[str, str] | None = None, resolvers: list[dns.Resolver] | None = None,
            system_resolver: bool = True, allow_nets: list[str] | None = None,
            dns_timeout: float = 5.0) -> MeasureContext:
    """The measuring context of a check: `probe run`'s network options, small caps, no
    early stop (the cap is reached first anyway)."""
    found = dns.system_resolvers(Path("/etc/resolv.conf")) if system_resolver else []
    return MeasureContext(
        resolvers=found + list(resolvers or []), ssl_context=make_context(ca_bundle),
        limits=limits, stop_when=None, allow_nets=list(allow_nets or []),
        dns_timeout=dns_timeout, ca_bundle=ca_bundle, connect_to=dict(connect_to or {}),
    )


def check(target: Target, ctx: MeasureContext) -> Checked:
    """Fetch the target once under the context's caps; nothing is written."""
    m = Measurement(id=f"check-{target.name}")
    extra = ListedTarget(target).run(ctx, m)
    transfers = m.keys.transfers
    status = next((t["status_code"] for t in transfers if t.get("status_code")), None)
    size = sum(t.get("bytes") or 0 for t in transfers)
    failure = extra.get("failure")
    if failure:
        return Checked(target, failure, status, size, False, f"no answer: {failure}")
    if status is None or status >= 400:
        return Checked(target, None, status, size, False,
                       f"answered HTTP {status}: the object is gone or refused"
                       if status else "no HTTP response")
    if target.kind != "page" and size < MIN_OBJECT_BYTES:
        return Checked(target, None, status, size, False,
                       f"only {size} bytes: a placeholder, not the {target.kind}")
    what = "a redirect, which is what it measures" if 300 <= status < 400 else "the object"
    offered = any(t.get("alt_svc_h3") for t in transfers)
    if target.http3 and not offered:
        what += ("; no HTTP/3 offer (Alt-Svc) over TCP: its QUIC fetch (http3 = true) will "
                 "read inconclusive")
    elif offered:
        what += "; offers HTTP/3"
    return Checked(target, None, status, size, True, f"usable: {what}")
