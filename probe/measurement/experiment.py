"""An experiment: what one measurement of a run does, and what its records are called."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from probe.measure import media, quic
from probe.measure.transfer import Session
from probe.targets import Target

from .context import MeasureContext, Measurement, first_failure


class Experiment(Protocol):
    """One measurement of a run: a listed target, or a variant of a differential experiment."""

    name: str  # the `experiment` field: target, target-h3, sni, split, upload
    version: str  # the `test_version` of its records: changes when their meaning does
    target: Target  # what the records are labelled with

    def run(self, ctx: MeasureContext, m: Measurement) -> dict:
        """Measure into `m.keys`; returns what joins them in `test_keys` (at least `failure`
        once a step ran). Network faults are results, never exceptions."""
        ...


@dataclass(frozen=True)
class ListedTarget:
    """A target of targets/*.toml: DNS, then TCP, TLS and the media transfers on the address
    found."""

    target: Target
    name = "target"
    version = "0.3.0"  # 0.3: OONI's record shapes (rcode a number, ...); 0.2: failure names

    def run(self, ctx: MeasureContext, m: Measurement) -> dict:
        target = self.target
        extra = ctx.resolve(m, target.host, target.connect_to)
        if extra["address"] is None:
            return extra
        with Session(m.keys, m.clock, address=extra["address"], sni=target.sni,
                     ssl_context=ctx.ssl_context, limits=ctx.limits,
                     transfer_prefix=m.id) as session:
            media.measure_target(session, target.url, target.kind, ctx.limits,
                                 stop_when=ctx.stop_when)
        extra["failure"] = first_failure(m.keys)
        return extra


@dataclass(frozen=True)
class ListedTargetOverQuic:
    """A listed target fetched over HTTP/3 (QUIC on UDP) as a measurement of its own: DNS,
    then one GET of its URL on the address found, under the same bounds as over TCP.

    Apart from the TCP measurement (experiment `target-h3`, not `target`), so the TCP
    records and the verdicts on them stay as they were, and a throttler that treats
    the transports apart shows as two rates of the same target.
    """

    target: Target
    name = "target-h3"
    version = "0.1.0"

    def run(self, ctx: MeasureContext, m: Measurement) -> dict:
        target = self.target
        extra = ctx.resolve(m, target.host, target.connect_to)
        if extra["address"] is None:
            return extra
        quic.fetch(m.keys, m.clock, quic.H3Ask(
            url=target.url, address=extra["address"], sni=target.sni,
            ca_bundle=ctx.ca_bundle, limits=ctx.limits, transfer_id=f"{m.id}-1",
            stop_when=ctx.stop_when))
        extra["failure"] = first_failure(m.keys)
        return extra
