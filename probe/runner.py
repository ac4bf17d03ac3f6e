"""One probe run: every target, `repeat` times, Twitter and controls interleaved.

Each target at each repetition is one measurement: DNS, then TCP/TLS and the
media transfers on the address DNS gave (or `--connect-to`). The measurement
is appended to the JSONL the moment it ends; the CSVs are derived at the end.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from probe import __version__
from probe.measure import dns, media
from probe.measure.clock import Clock
from probe.measure.keys import TestKeys
from probe.measure.tls import make_context
from probe.measure.transfer import Limits, Session
from probe.results import csvs
from probe.results import folder as run_folder
from probe.results.jsonl import JsonlWriter
from probe.targets import Target, interleave

TEST_NAME = "throttle_probe"
TEST_VERSION = "0.1.0"


@dataclass
class RunConfig:
    """Everything a run needs besides the targets; recorded in run.json as `options`."""

    target_files: list[Path]
    out: Path = Path("results")
    repeat: int = 1
    resolvers: list[dns.Resolver] = field(default_factory=list)
    system_resolver: bool = True
    resolv_conf: Path = Path("/etc/resolv.conf")
    ca_bundle: Path | None = None
    connect_to: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    allow_nets: list[str] = field(default_factory=list)
    dns_timeout: float = 5.0
    label: str | None = None

    def as_options(self) -> dict:
        return {
            "targets": [str(p) for p in self.target_files],
            "out": str(self.out),
            "repeat": self.repeat,
            "resolvers": [f"{r.engine}:{r.address}:{r.port}" for r in self.resolvers],
            "system_resolver": self.system_resolver,
            "ca_bundle": str(self.ca_bundle) if self.ca_bundle else None,
            "connect_to": self.connect_to,
            "max_bytes": self.limits.max_bytes,
            "max_seconds": self.limits.max_seconds,
            "allow_nets": self.allow_nets,
            "label": self.label,
        }


@dataclass
class RunResult:
    folder: Path
    run_id: str
    measurements: list[dict]


Observer = Callable[[str, object], None]


def _silent(event: str, payload: object) -> None:
    return None


class Runner:
    """Runs the measurements of one run into a new result folder."""

    def __init__(self, config: RunConfig, targets: list[Target], observer: Observer = _silent):
        self.config = config
        self.targets = interleave(targets)
        self.observer = observer
        self.ssl_context = make_context(config.ca_bundle)
        self.resolvers = self._resolvers()

    def _resolvers(self) -> list[dns.Resolver]:
        found = dns.system_resolvers(self.config.resolv_conf) if self.config.system_resolver else []
        return found + list(self.config.resolvers)

    def run(self) -> RunResult:
        start = run_folder.utc_now()
        run_id = run_folder.new_run_id(start)
        folder = run_folder.create(self.config.out, run_id)
        info = run_folder.base_run_info(run_id, start)
        info.update(
            options=self.config.as_options(),
            target_files={str(p): run_folder.file_sha256(p) for p in self.config.target_files},
            resolvers=[{"engine": r.engine, "address": r.address, "port": r.port}
                       for r in self.resolvers],
            targets=len(self.targets),
            label=self.config.label,
        )
        run_folder.write_run_json(folder, info)
        plan = [(rep, t) for rep in range(self.config.repeat) for t in self.targets]
        self.observer("start", len(plan))
        done: list[dict] = []
        status = "complete"
        try:
            with JsonlWriter(folder / "measurements.jsonl") as writer:
                for rep, target in plan:
                    self.observer("measuring", target)
                    m = self.measure(target, rep, run_id)
                    writer.append(m)
                    done.append(m)
                    self.observer("measured", m)
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            csvs.write_all(folder, done)
            info.update(end=run_folder.iso(run_folder.utc_now()), status=status,
                        measurements=len(done))
            run_folder.write_run_json(folder, info)
        return RunResult(folder=folder, run_id=run_id, measurements=done)

    def measure(self, target: Target, repetition: int, run_id: str) -> dict:
        """Measure one target once; never raises for network faults (nor for our bugs)."""
        started = run_folder.utc_now()
        clock = Clock()
        keys = TestKeys()
        measurement_id = f"{run_id}-{secrets.token_hex(4)}"
        extra: dict = {}
        try:
            extra = self._measure_into(keys, clock, target, measurement_id)
        except Exception as exc:  # a bug must not cost the rest of the run
            extra = {"failure": f"unknown_failure: internal error: {type(exc).__name__}: {exc}",
                     "internal_error": traceback.format_exc(limit=8)}
        return envelope(
            run_id=run_id, measurement_id=measurement_id, started=started,
            runtime=clock.now(), target=target, repetition=repetition,
            experiment="target", keys=keys, extra=extra,
        )

    def _measure_into(self, keys: TestKeys, clock: Clock, target: Target, mid: str) -> dict:
        host = target.host
        pinned = target.connect_to or self.config.connect_to.get(host)
        if not _is_ip(host):
            keys.queries.extend(
                dns.measure(host, self.resolvers, clock, timeout=self.config.dns_timeout,
                            ca_bundle=self.config.ca_bundle, allow_nets=self.config.allow_nets)
            )
        consistency = dns.consistency(keys.queries, self.config.allow_nets)
        address = pinned or (host if _is_ip(host) else
                             dns.pick_address(keys.queries, self.config.allow_nets))
        extra = {"dns_consistency": consistency, "address": address}
        if address is None:
            extra["failure"] = _dns_failure(keys.queries)
            return extra
        with Session(keys, clock, address=address, sni=target.sni,
                     ssl_context=self.ssl_context, limits=self.config.limits,
                     transfer_prefix=mid) as session:
            media.measure_target(session, target.url, target.kind, self.config.limits)
        extra["failure"] = first_failure(keys)
        return extra


def envelope(*, run_id: str, measurement_id: str, started: dt.datetime, runtime: float,
             target: Target, repetition: int, experiment: str, keys: TestKeys,
             extra: dict) -> dict:
    """An OONI df-000 measurement envelope around our test keys.

    The probe's own address, ASN and country are not known to the probe and
    are written as OONI's scrubbed placeholders.
    """
    test_keys = keys.as_dict()
    test_keys.update(extra)
    test_keys.setdefault("failure", None)
    return {
        "data_format_version": "0.2.0",
        "software_name": "throttle-probe",
        "software_version": __version__,
        "test_name": TEST_NAME,
        "test_version": TEST_VERSION,
        "report_id": run_id,
        "run_id": run_id,
        "measurement_id": measurement_id,
        "measurement_start_time": started.strftime("%Y-%m-%d %H:%M:%S"),
        "test_start_time": started.strftime("%Y-%m-%d %H:%M:%S"),
        "test_runtime": runtime,
        "input": target.url,
        "probe_asn": "AS0",
        "probe_cc": "ZZ",
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


def first_failure(keys: TestKeys) -> str | None:
    """The failure that ended the measurement, in the order the steps happen."""
    for c in keys.tcp_connect:
        if c["status"]["failure"]:
            return c["status"]["failure"]
    for h in keys.tls_handshakes:
        if h.get("failure") and not h.get("no_tls_verify"):
            return h["failure"]
    for t in keys.transfers:
        if t.get("failure"):
            return t["failure"]
    return None


def _dns_failure(queries: list[dict]) -> str:
    failures = [q.get("failure") for q in queries if q.get("query_type") == "A"]
    real = [f for f in failures if f]
    if any(q.get("bogons") for q in queries):
        return "dns_bogon_error"
    return real[0] if real else "dns_no_answer"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
