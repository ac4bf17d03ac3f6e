"""One measurement into its OONI df-000 envelope: the line `measurements.jsonl` holds."""

from __future__ import annotations

import datetime as dt
import secrets
import traceback

from probe import __version__
from probe.measure.keys import TestKeys
from probe.results.folder import utc_now
from probe.targets import Target

from .context import MeasureContext, Measurement
from .experiment import Experiment

TEST_NAME = "throttle_probe"


def measure(experiment: Experiment, ctx: MeasureContext, *, run_id: str, repetition: int,
            network: dict | None) -> dict:
    """Run one experiment once into its envelope; never raises for network faults, nor for
    our own bugs: those are recorded and the run goes on."""
    started = utc_now()
    m = Measurement(id=f"{run_id}-{secrets.token_hex(4)}")
    try:
        extra = experiment.run(ctx, m)
    except Exception as exc:  # a bug must not cost the rest of the run
        extra = {"failure": f"unknown_failure: internal error: {type(exc).__name__}: {exc}",
                 "internal_error": traceback.format_exc(limit=8)}
    return envelope(
        run_id=run_id, measurement_id=m.id, started=started, runtime=m.clock.now(),
        target=experiment.target, repetition=repetition, experiment=experiment.name,
        version=experiment.version, keys=m.keys, extra=extra, network=network,
    )


def envelope(*, run_id: str, measurement_id: str, started: dt.datetime, runtime: float,
             target: Target, repetition: int, experiment: str, version: str, keys: TestKeys,
             extra: dict, network: dict | None = None) -> dict:
    """An OONI df-000 measurement envelope around our test keys.

    The probe's address is never written (OONI's placeholder stands in); ASN
    and country only when the user's own database (--asn-db) gave them.
    """
    test_keys = keys.as_dict()
    test_keys.update(extra)
    test_keys.setdefault("failure", None)
    return {
        "data_format_version": "0.2.0",
        "software_name": "throttle-probe",
        "software_version": __version__,
        "test_name": TEST_NAME,
        "test_version": version,
        "report_id": run_id,
        "run_id": run_id,
        "measurement_id": measurement_id,
        "measurement_start_time": started.strftime("%Y-%m-%d %H:%M:%S"),
        "test_start_time": started.strftime("%Y-%m-%d %H:%M:%S"),
        "test_runtime": runtime,
        "input": target.url,
        "probe_asn": (network or {}).get("asn") or "AS0",
        "probe_cc": (network or {}).get("cc") or "ZZ",
        "probe_ip": "127.0.0.1",
        "annotations": {"experiment": experiment},
        "target": {
            "name": target.name, "url": target.url, "host": target.host,
            "family": target.family, "kind": target.kind, "sni": target.sni,
            "connect_to": target.connect_to, "pair": target.pair,
        },
        "repetition": repetition,
        "experiment": experiment,
        "test_keys": test_keys,
    }
