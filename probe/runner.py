"""One probe run: which measurement when, and when to stop.

Every listed target `repeat` times, Twitter and controls interleaved, with the
differential experiments woven in among them; the data budget and stop requests
end a run early. `probe.measurement` measures each item; its envelope is appended
to the JSONL the moment it ends, and the CSVs are derived at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from probe.measure import dns
from probe.measure.limits import DNS_TIMEOUT, Limits
from probe.measure.tls import make_context
from probe.measurement import (
    Experiment,
    ListedTarget,
    ListedTargetOverQuic,
    MeasureContext,
    RunStamp,
    measure,
)
from probe.operate.budget import Budget, measurement_bytes
from probe.operate.privacy import Scrubber, local_addresses
from probe.results import csvs, identity
from probe.results import folder as run_folder
from probe.results.folder import OutputError
from probe.results.jsonl import JsonlWriter
from probe.targets import Target, interleave

log = logging.getLogger("probe")


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
    dns_timeout: float = DNS_TIMEOUT
    label: str | None = None
    budget: Budget = field(default_factory=Budget)
    early_stop: bool = True
    server: str | None = None
    experiments: list[str] = field(default_factory=list)
    consent: str = "not-asked"
    network: dict | None = None  # {asn, cc, as_name, source} from --asn-db; never an address
    packs: list[str] = field(default_factory=list)  # --pack: the service packs measured
    sni_names: list[str] = field(default_factory=list)  # the packs' names for the sni experiment
    http3: bool = False  # every https target also over HTTP/3 (--http3)

    def as_options(self) -> dict:
        return {
            "targets": [str(p) for p in self.target_files],
            "packs": self.packs,
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
            "budget": self.budget.describe(),
            "early_stop": self.early_stop,
            "server": self.server,
            "experiments": self.experiments,
            "http3": self.http3,
        }


@dataclass
class RunResult:
    folder: Path
    run_id: str
    measurements: list[dict]


@dataclass
class _Tally:
    """Where a run is: what it planned, what it measured, and the write that failed."""

    planned: int
    done: list[dict] = field(default_factory=list)
    write_error: OutputError | None = None


Observer = Callable[[str, object], None]


def _silent(event: str, payload: object) -> None:
    return None


class Runner:
    """Runs the measurements of one run into a new result folder."""

    def __init__(self, config: RunConfig, targets: list[Target], observer: Observer = _silent):
        self.config = config
        self.targets = interleave(targets)
        self.items: list[Experiment] = self._items()
        self.observer = observer
        self.ssl_context = make_context(config.ca_bundle)
        self.resolvers = self._resolvers()
        self.stop_reason: str | None = None
        self.folder: Path | None = None
        self.stamp: RunStamp | None = None  # set as the run begins
        self.scrubber = Scrubber(local_addresses(), home=str(Path.home()))
        self.stop_when = None
        if config.early_stop:
            # The estimator the analysis trusts decides when a rate is known (and
            # pulls in numpy, so it is imported only when used).
            from probe.measure.rate import stop_when

            self.stop_when = stop_when

    def _items(self) -> list[Experiment]:
        """The listed targets (each over HTTP/3 right after its TCP fetch, if asked), with
        the differential experiments woven in among them."""
        listed: list[Experiment] = []
        for t in self.targets:
            listed.append(ListedTarget(t))
            if (t.http3 or self.config.http3) and t.url.startswith("https://"):
                listed.append(ListedTargetOverQuic(t))
        if not (self.config.server and self.config.experiments):
            return listed
        from probe.experiments import plan as plan_experiments

        experiments = plan_experiments(self.config.server, self.config.experiments, self.targets,
                                       self.config.sni_names)
        return _weave(listed, list(experiments))

    def request_stop(self, reason: str) -> None:
        """Finish the measurement in flight, then stop (e.g. on SIGTERM)."""
        self.stop_reason = self.stop_reason or reason

    def _resolvers(self) -> list[dns.Resolver]:
        found = dns.system_resolvers(self.config.resolv_conf) if self.config.system_resolver else []
        return found + list(self.config.resolvers)

    def run(self) -> RunResult:
        """Measure the plan into a new result folder. However the run ends, run.json says
        how (its status), and the first error is the one raised."""
        run_id, folder, info = self._begin()
        plan = self._plan()
        log.info("run %s: %d measurements planned, results in %s", run_id, len(plan), folder)
        self.observer("start", len(plan))
        tally = _Tally(planned=len(plan))
        try:
            self._measure_plan(plan, run_id, folder, tally)
        except KeyboardInterrupt:
            self.request_stop("interrupted")
            raise
        except BaseException as exc:  # our bug outside a measurement: say so in run.json
            if tally.write_error is None:
                self.stop_reason = f"error: {type(exc).__name__}: {exc}"
            raise
        finally:
            status = self._finish(folder, info, tally)
        log.info("run %s %s: %d measurements", run_id, status, len(tally.done))
        return RunResult(folder=folder, run_id=run_id, measurements=tally.done)

    def _begin(self) -> tuple[str, Path, dict]:
        """The run's id, its new folder and the run.json written there before anything is
        measured (so a killed run still says what it was)."""
        start = run_folder.utc_now()
        run_id = run_folder.new_run_id(start)
        folder = run_folder.create(self.config.out, run_id)
        self.folder = folder
        self.stamp = RunStamp(run_id=run_id, started=start, network=self.config.network,
                              server=self.config.server if self.config.experiments else None)
        info = run_folder.base_run_info(run_id, start)
        info.update(
            report_id=self.stamp.report_id,
            results_format=identity.FORMAT,
            options=self.config.as_options(),
            target_files={str(p): run_folder.file_sha256(p) for p in self.config.target_files},
            resolvers=[{"engine": r.engine, "address": r.address, "port": r.port}
                       for r in self.resolvers],
            targets=len(self.targets),
            label=self.config.label,
            consent=self.config.consent,
            asn=(self.config.network or {}).get("asn"),
            network=self.config.network,
            scrubbed=True,  # every record below passes self.scrubber; `probe submit` checks
        )
        try:
            self._write_info(folder, info)
        except OSError as exc:
            raise OutputError(f"cannot write {folder / 'run.json'}: "
                              f"{exc.strerror or exc}") from exc
        return run_id, folder, info

    def _plan(self) -> list[tuple[int, Experiment]]:
        """(repetition, item) in the order they are measured: all items, then again."""
        return [(rep, item) for rep in range(self.config.repeat) for item in self.items]

    def _measure_plan(self, plan: list[tuple[int, Experiment]], run_id: str, folder: Path,
                      tally: _Tally) -> None:
        """Measure the plan in order into the JSONL until it ends, the data budget is spent
        or a stop is requested; a write that fails is recorded in `tally` and raised."""
        try:
            writer_cm = JsonlWriter(folder / "measurements.jsonl")
        except OSError as exc:
            tally.write_error = OutputError(f"cannot create {folder / 'measurements.jsonl'}: "
                                            f"{exc.strerror or exc}")
            raise tally.write_error from exc
        with writer_cm as writer:
            for rep, item in plan:
                if self.config.budget.exhausted():
                    self.request_stop("budget")
                if self.stop_reason:
                    log.warning("stopping before %d planned measurements: %s",
                                tally.planned - len(tally.done), self.stop_reason)
                    break
                self._measure_one(item, rep, writer, tally)

    def _measure_one(self, item: Experiment, rep: int, writer: JsonlWriter,
                     tally: _Tally) -> None:
        """One measurement, scrubbed, appended to the JSONL and charged to the data budget."""
        self.observer("measuring", item)
        measured = self.measure(item, rep)
        self.scrubber.add(local_addresses())  # one that came up meanwhile too
        m = self.scrubber.record(measured)
        try:
            writer.append(m)
        except OSError as exc:
            tally.write_error = OutputError(f"cannot write {writer.path}: {exc.strerror or exc}")
            raise tally.write_error from exc
        tally.done.append(m)
        self.config.budget.charge(measurement_bytes(m))
        log.info("%s: %s", identity.target_field(m, "name"),
                 m["test_keys"].get("failure") or "ok")
        self.observer("measured", m)

    def _finish(self, folder: Path, info: dict, tally: _Tally) -> str:
        """Write run.json with how the run ended, then the CSVs; returns the status.

        run.json first and on its own: whatever happens to the CSVs (they can be rebuilt
        from the JSONL), the status must say how the run ended. A failure here is raised
        only if no write failed before (the first error is the one)."""
        status = self._status(tally)
        info.update(end=run_folder.iso(run_folder.utc_now()), status=status,
                    stop_reason=self.stop_reason, measurements=len(tally.done),
                    planned_measurements=tally.planned, bytes_used=self.config.budget.used,
                    budget=self.config.budget.describe())
        failed: OSError | None = None
        for write in (lambda: self._write_info(folder, info),
                      lambda: csvs.write_all(folder, tally.done)):
            try:
                write()
            except OSError as exc:
                failed = failed or exc
        if failed is not None and tally.write_error is None:
            raise OutputError(f"cannot write results in {folder}: "
                              f"{failed.strerror or failed}") from failed
        return status

    def _status(self, tally: _Tally) -> str:
        """complete, budget-exhausted, interrupted, write-error or error (a bug of ours)."""
        if tally.write_error:
            return "write-error"
        if (self.stop_reason or "").startswith("error: "):
            return "error"
        return {None: "complete", "budget": "budget-exhausted"}.get(self.stop_reason,
                                                                   "interrupted")

    def _write_info(self, folder: Path, info: dict) -> None:
        run_folder.write_run_json(folder, self.scrubber.record(info))

    def measure(self, item: Experiment, repetition: int) -> dict:
        """Measure one item once (see `probe.measurement.measure`), in the run begun."""
        if self.stamp is None:
            raise RuntimeError("Runner.measure() is called by Runner.run(), once it began")
        return measure(item, self.context(), run=self.stamp, repetition=repetition)

    def context(self) -> MeasureContext:
        """What one measurement needs, with the object limits shrunk to the data budget."""
        remaining = self.config.budget.remaining()
        limits = self.config.limits.at_most(max_bytes=None if remaining is None
                                            else max(1, remaining))
        return MeasureContext(
            resolvers=self.resolvers, ssl_context=self.ssl_context, limits=limits,
            stop_when=self.stop_when, allow_nets=self.config.allow_nets,
            dns_timeout=self.config.dns_timeout, ca_bundle=self.config.ca_bundle,
            connect_to=self.config.connect_to,
        )


def _weave(a: list, b: list) -> list:
    """Spread the items of `b` evenly among those of `a` (both orders kept)."""
    if not a or not b:
        return a + b
    out, step = [], (len(a) + len(b)) / len(b)
    j = 0
    for i in range(len(a) + len(b)):
        if j < len(b) and i >= round(j * step + step / 2 - 0.5):
            out.append(b[j])
            j += 1
        else:
            out.append(a[i - j])
    return out
