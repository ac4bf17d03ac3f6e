"""The `sni` and `split` experiments: one download from the measurement server per variant.

Only the ClientHello differs between variants (its SNI, or how it is cut on
the wire): same server, address, path and caps. A throttler keyed on the SNI
slows exactly the variants whose ClientHello it can read a Twitter name in.
"""

from __future__ import annotations

from dataclasses import dataclass

from probe.measure.transfer import Session
from probe.measurement import MeasureContext, Measurement, first_failure
from probe.targets import Target

from .base import Server, capped
from .handshake import ServerCertHandshake


@dataclass
class Download:
    """One variant: GET /bytes with `target.sni`, the ClientHello written as `shape` says."""

    name: str  # the `experiment` column: sni or split
    target: Target
    server: Server
    shape: str | None = None  # None: whole; see handshake.SHAPES
    version = "0.3.0"  # 0.3: OONI's record shapes (rcode a number, ...); 0.2: failure names

    def run(self, ctx: MeasureContext, m: Measurement) -> dict:
        extra = ctx.resolve(m, self.server.host, None)
        extra["variant"] = {"sni": self.target.sni, "clienthello": self.shape or "whole"}
        if extra["address"] is None:
            return extra
        limits = capped(ctx.limits)
        strategy = ServerCertHandshake(ctx.ca_bundle, self.server.host, self.shape)
        with Session(m.keys, m.clock, address=extra["address"], sni=self.target.sni,
                     ssl_context=ctx.ssl_context, limits=limits, transfer_prefix=m.id,
                     handshake=strategy) as session:
            session.fetch(self.target.url, stop_when=ctx.stop_when, role="experiment")
        extra["failure"] = first_failure(m.keys)
        return extra
