"""The experiments' download over HTTP/3: `sni-h3` and the QUIC side of `transport`.

The same GET /bytes as the TCP variants, to the same server, address and caps, over
QUIC on the server's UDP port. In 2024 YouTube was slowed to ~128 kbit/s over TCP and
~512 kbit/s over QUIC: a device may read the SNI of QUIC Initial packets with rules of
their own, or slow UDP whatever the name. The chain is verified for the server's own
name, whatever SNI was sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from probe.measure import quic
from probe.measurement import MeasureContext, Measurement, first_failure
from probe.targets import Target

from .base import Server, capped


@dataclass
class H3Download:
    """One variant: GET /bytes over HTTP/3 with `target.sni` ("": none)."""

    name: str  # the `experiment` column: sni-h3 or transport
    target: Target
    server: Server
    version = "0.1.0"

    def run(self, ctx: MeasureContext, m: Measurement) -> dict:
        extra = ctx.resolve(m, self.server.host, None)
        extra["variant"] = {"sni": self.target.sni, "transport": "quic"}
        if extra["address"] is None:
            return extra
        quic.fetch(m.keys, m.clock, quic.H3Ask(
            url=self.target.url, address=extra["address"], sni=self.target.sni,
            ca_bundle=ctx.ca_bundle, limits=capped(ctx.limits), transfer_id=f"{m.id}-1",
            stop_when=ctx.stop_when, role="experiment", check_name=self.server.host))
        extra["failure"] = first_failure(m.keys)
        return extra
