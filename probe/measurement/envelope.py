"""One measurement into its OONI df-000 envelope: the line `measurements.jsonl` holds.

The line is a measurement OONI's own data models parse (checked in the tests with
the `oonidata` package): the envelope has only OONI's keys; our run id,
measurement id, experiment and repetition are `annotations`, the target is
`test_keys.target` (see `probe.results.identity`, which every reader uses).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import platform
import re
import secrets
import traceback
from dataclasses import dataclass, field

from probe import __version__
from probe.measure.keys import TestKeys
from probe.results.folder import utc_now
from probe.targets import Target

from .context import MeasureContext, Measurement
from .experiment import Experiment

TEST_NAME = "throttle_probe"
SOFTWARE_NAME = "throttle-probe"
DATA_FORMAT_VERSION = "0.2.0"  # OONI df-000's
# OONI's record extensions our test keys follow (df-002 dnst, df-001 httpt, df-008
# netevents, df-005 tcpconnect, df-006 tlshandshake), each at its version 0.
EXTENSIONS = {"dnst": 0, "httpt": 0, "netevents": 0, "tcpconnect": 0, "tlshandshake": 0}
# platform.machine() to the architecture names OONI's annotations use (Go's GOARCH).
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386"}


def report_id(started: dt.datetime, cc: str, asn: str, secret: str | None = None,
              test_name: str = TEST_NAME) -> str:
    """A report id in the six `_`-separated parts OONI's collector gives
    (`20261130T150000Z_throttleprobe_ZZ_0_n1_<random>`: the test name without `_`, `-`
    and spaces, the ASN without "AS"), 256 random bits unless `secret` (e.g. a run id)
    is given to derive the last part from. `probe collect` assigns its ids with it too."""
    tail = (secrets.token_bytes(32) if secret is None
            else hashlib.sha256(secret.encode()).digest())
    random = base64.b32encode(tail).decode().rstrip("=").lower()
    name = re.sub(r"[_\- ]", "", test_name).lower() or "unknown"
    return (f"{started.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}_{name}_{cc}_"
            f"{asn.removeprefix('AS')}_n1_{random}")


@dataclass(frozen=True)
class RunStamp:
    """What every measurement of one run says about the run."""

    run_id: str
    started: dt.datetime
    network: dict | None = None  # asn, cc from --asn-db
    server: str | None = None  # the measurement server the experiments used
    report_id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.report_id:
            object.__setattr__(self, "report_id", report_id(
                self.started, _cc(self.network), _asn(self.network)))


def _cc(network: dict | None) -> str:
    return (network or {}).get("cc") or "ZZ"


def _asn(network: dict | None) -> str:
    return (network or {}).get("asn") or "AS0"


def measure(experiment: Experiment, ctx: MeasureContext, *, run: RunStamp,
            repetition: int) -> dict:
    """Run one experiment once into its envelope; never raises for network faults, nor for
    our own bugs: those are recorded and the run goes on."""
    started = utc_now()
    m = Measurement(id=f"{run.run_id}-{secrets.token_hex(4)}")
    try:
        extra = experiment.run(ctx, m)
    except Exception as exc:  # a bug must not cost the rest of the run
        extra = {"failure": f"unknown_failure: internal error: {type(exc).__name__}: {exc}",
                 "internal_error": traceback.format_exc(limit=8)}
    return envelope(
        run_id=run.run_id, measurement_id=m.id, started=started, runtime=m.clock.now(),
        target=experiment.target, repetition=repetition, experiment=experiment.name,
        version=experiment.version, keys=m.keys, extra=extra, network=run.network,
        run_started=run.started, report=run.report_id, server=run.server,
    )


def envelope(*, run_id: str, measurement_id: str, started: dt.datetime, runtime: float,
             target: Target, repetition: int, experiment: str, version: str, keys: TestKeys,
             extra: dict, network: dict | None = None, run_started: dt.datetime | None = None,
             report: str | None = None, server: str | None = None) -> dict:
    """An OONI df-000 measurement around our test keys.

    The probe's address is never written (OONI's placeholder stands in); ASN and
    country only when the user's own database (--asn-db) gave them. Without
    `report` the report id is derived from the run id (the runner gives a random one).
    """
    test_keys = keys.as_dict()
    test_keys.update(extra)
    test_keys.setdefault("failure", None)
    # Last: a reader of the measurement table finds it in the line's tail (analysis.load).
    test_keys["target"] = {
        "name": target.name, "url": target.url, "host": target.host,
        "family": target.family, "kind": target.kind, "sni": target.sni,
        "connect_to": target.connect_to, "pair": target.pair,
    }
    run_started = run_started or started
    cc, asn = _cc(network), _asn(network)
    return {
        "data_format_version": DATA_FORMAT_VERSION,
        "software_name": SOFTWARE_NAME,
        "software_version": __version__,
        "test_name": TEST_NAME,
        "test_version": version,
        "report_id": report or report_id(run_started, cc, asn, secret=run_id),
        "measurement_start_time": started.strftime("%Y-%m-%d %H:%M:%S"),
        "test_start_time": run_started.strftime("%Y-%m-%d %H:%M:%S"),
        "test_runtime": runtime,
        "input": target.url,
        "probe_asn": asn,
        "probe_cc": cc,
        "probe_ip": "127.0.0.1",
        "probe_network_name": None,
        "resolver_asn": None,
        "resolver_ip": None,
        "resolver_network_name": None,
        "test_helpers": {"backend": {"address": server, "type": "https"}} if server else None,
        "extensions": EXTENSIONS,
        "annotations": {
            "architecture": _ARCH.get(platform.machine().lower(), platform.machine().lower()),
            "engine_name": SOFTWARE_NAME,
            "engine_version": __version__,
            "platform": platform.system().lower() or "unknown",
            "run_id": run_id,
            "measurement_id": measurement_id,
            "experiment": experiment,
            "repetition": str(repetition),
        },
        "test_keys": test_keys,
    }
