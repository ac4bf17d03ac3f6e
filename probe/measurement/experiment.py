"""An experiment: what one measurement of a run does, and what its records are called."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from probe.measure import media
from probe.measure.transfer import Session
from probe.targets import Target

from .context import MeasureContext, Measurement, first_failure


class Experiment(Protocol):
    """One measurement of a run: a listed target, or a variant of a differential experiment."""

    name: str  # the `experiment` field: target, sni, split, upload
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
