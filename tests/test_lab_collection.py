"""From a volunteer in the lab to the researcher: a probe run in the client namespace,
`probe submit` over the lab's routers to `probe collect` on the measurement server's
address (HTTPS, a lab-CA certificate for measure.lab.test, found through the lab DNS),
then the analysis of what the collector stored.

Submission must survive what a real network does to it: a collector restarted
mid-submission, a path cut mid-submission. What is collected is judged from the
collector's data folder: its Parquet dataset once the background ingest has appended
the sealed report, else its raw archive. The access link is slowed for those two,
so a submission lasts long enough to be interrupted between measurements.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from analysis.collected import preferred
from analysis.commands import verdicts
from probe.lab import Lab, running_lab, system, topology
from probe.lab.demo import run_probe, write_targets
from probe.results import identity
from tests.conftest import needs_root

pytestmark = [pytest.mark.root, pytest.mark.lab]

PROBE = [sys.executable, "-m", "probe"]
TARGETS = ("lab-twitter-image", "lab-control-image", "lab-twitter-script", "lab-control-script")
REPEAT = 2  # eight measurements: room to interrupt a submission between two of them
SLOW_LINK_KBPS = 96.0  # about a second per measurement (7 KB and a TLS handshake)
SUBMIT_TIMEOUT_S = 45.0  # a submit that finds no collector gives up after 7 s of retries


def stored(data: Path) -> list[dict]:
    """Every measurement the collector holds, in its open reports and its raw archive."""
    working = [line for path in sorted(data.glob("reports/*/measurements.jsonl"))
               for line in path.read_text().splitlines()]
    sealed = [line for path in sorted(data.glob("raw/**/*.jsonl.gz"))
              for line in gzip.decompress(path.read_bytes()).decode().splitlines()]
    return [json.loads(line) for line in working + sealed]


def judged(folder: Path) -> list[tuple[str, str]]:
    """(target, verdict) of `probe analyze verdicts` on `folder`."""
    res = CliRunner().invoke(verdicts, [str(folder), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output[res.output.index("["):res.output.rindex("]") + 1])
    return sorted((r["target"], r["verdict"]) for r in rows)


class LabCollector:
    """`probe collect` in the lab's server namespace, on the measurement server's address."""

    def __init__(self, lab: Lab, data: Path, port: int, ingest_every: float = 60) -> None:
        self.lab, self.data, self.port = lab, data, port
        self.ingest_every = ingest_every
        self.listen = f"{topology.MEASURE_ADDRESS}:{port}"
        self.url = f"https://{topology.MEASURE_NAME}:{port}"
        self.log = data.parent / f"collect-{port}.jsonl"  # one JSON line per request
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        certs = Path(self.lab.state["certs"]["dir"])
        log = self.data.parent / f"collect-{self.port}.out"
        argv = [*PROBE, "collect", "--data", str(self.data), "--listen", self.listen,
                "--cert", str(certs / f"{topology.MEASURE_NAME}.pem"),
                "--key", str(certs / f"{topology.MEASURE_NAME}.key"),
                "--log-file", str(self.log), "--ingest-every", str(self.ingest_every)]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(system.in_ns(self.lab.names.server, argv), stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        system.wait_listening(self.lab.names.server, "tcp", {self.listen}, self.proc.pid, log)

    def ingested(self, timeout: float = 60) -> None:
        """Wait until the background ingest has appended every sealed report."""
        deadline = time.monotonic() + timeout
        while preferred(self.data) != self.data / "dataset":
            assert time.monotonic() < deadline, "the sealed reports were not ingested"
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM, as an operator restarting it would; SIGKILL if it lingers."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            assert self.proc.wait(timeout=10) == 0
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None


def submit_argv(lab: Lab, collector: LabCollector, results: Path) -> list[str]:
    return system.in_ns(lab.names.client, [
        *PROBE, "submit", str(results), "--collector", collector.url,
        "--ca-bundle", lab.state["ca"]["cert"], "--yes"])


def submit_env(lab: Lab) -> dict[str, str]:
    return {**os.environ, "PROBE_STATE_DIR": str(lab.client_state)}


def submit(lab: Lab, collector: LabCollector, results: Path) -> subprocess.CompletedProcess:
    return subprocess.run(submit_argv(lab, collector, results), capture_output=True, text=True,
                          timeout=SUBMIT_TIMEOUT_S, env=submit_env(lab))


def acknowledged(run: Path) -> int:
    """Measurements of `run` the collector acknowledged, as its submission.json records."""
    try:
        state = json.loads((run / "submission.json").read_text())
    except (OSError, ValueError):  # not written yet
        return 0
    return sum(m["status"] == "sent" for report in state["collectors"].values()
               for m in report["measurements"].values())


def interrupted(lab: Lab, collector: LabCollector, results: Path, total: int,
                progress: Callable[[], int], interrupt: Callable[[], object],
                ) -> subprocess.CompletedProcess:
    """Run `probe submit` and call `interrupt()` once `progress()` counts some measurements
    while the collector holds fewer than all; the submit's outcome."""
    proc = subprocess.Popen(submit_argv(lab, collector, results), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=submit_env(lab))
    try:
        deadline = time.monotonic() + SUBMIT_TIMEOUT_S
        while not progress():
            assert proc.poll() is None, "submit ended before it was interrupted"
            assert time.monotonic() < deadline, "no measurement reached the collector"
            time.sleep(0.02)
        assert len(stored(collector.data)) < total, "the submission was too fast to interrupt"
        interrupt()
        out, err = proc.communicate(timeout=SUBMIT_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def status(results: Path) -> str:
    res = subprocess.run([*PROBE, "submit", "--status", str(results)], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout


def assert_once_and_complete(data: Path, volunteer: Path) -> None:
    """One sealed report holding each of the run's measurements exactly once, judged alike
    from the collector's data folder."""
    sent = [json.loads(line) for line in (volunteer / "measurements.jsonl").read_text()
            .splitlines()]
    (report,) = (data / "reports").iterdir()
    kept = stored(data)
    ids = sorted(identity.field(m, "measurement_id") for m in kept)
    assert ids == sorted(identity.field(m, "measurement_id") for m in sent)
    assert len(set(ids)) == len(ids)
    assert {m["report_id"] for m in kept} == {report.name}
    assert json.loads((report / "meta.json").read_text())["state"] == "sealed"
    assert judged(data) == judged(volunteer)


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    """A lab and one clean run of the probe in it, never submitted (each test sends a copy)."""
    base = tmp_path_factory.mktemp("lab-collection")
    with running_lab(base / "lab", prefix="tpx-") as lab:
        targets = write_targets(base / "targets.toml", TARGETS)
        folder = run_probe(lab, targets, base / "volunteer", repeat=REPEAT, max_seconds=3)
        yield lab, folder


def copy_run(folder: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A fresh results folder holding a copy of the run: (results, run folder)."""
    results = tmp_path / "results"
    shutil.copytree(folder, results / folder.name)
    return results, results / folder.name


@needs_root
@pytest.mark.timeout(60)
def test_lab_run_collected_once_however_often_submitted(
        lab_run: tuple[Lab, Path], tmp_path: Path) -> None:
    lab, folder = lab_run
    results, run = copy_run(folder, tmp_path)
    collector = LabCollector(lab, tmp_path / "collected", 9443, ingest_every=1)
    collector.start()
    try:
        outcomes = [submit(lab, collector, results) for _ in range(3)]
        collector.ingested()  # judged from the dataset below
    finally:
        collector.stop()
    for res in outcomes:
        assert res.returncode == 0, res.stderr
    total = len((run / "measurements.jsonl").read_text().splitlines())
    assert f"{total} of {total} sent" in outcomes[0].stdout
    assert_once_and_complete(collector.data, run)
    records = [json.loads(line) for line in collector.log.read_text().splitlines()]
    requests = [x["path"] for x in records if "path" in x]
    assert [x["event"] for x in records if "event" in x] == ["sealed", "ingested"]
    assert requests.count("/report") == 1  # the repeats sent nothing
    assert requests.count("/report/{id}") == total
    # The clean lab: both judged, never throttled (jitter on a fast object may leave it
    # inconclusive, docs/lab.md).
    here = dict(judged(run))
    assert set(here) == {"lab-twitter-image", "lab-twitter-script"}
    assert set(here.values()) <= {"ok", "inconclusive"}


@needs_root
@pytest.mark.timeout(90)
def test_collector_restarted_mid_submission(lab_run: tuple[Lab, Path], tmp_path: Path) -> None:
    lab, folder = lab_run
    results, run = copy_run(folder, tmp_path)
    total = len((run / "measurements.jsonl").read_text().splitlines())
    collector = LabCollector(lab, tmp_path / "collected", 9444)
    lab.scenario("clean", link_kbps=SLOW_LINK_KBPS)
    collector.start()
    try:
        cut = interrupted(lab, collector, results, total, lambda: len(stored(collector.data)),
                          collector.stop)
        assert cut.returncode == 1, cut.stderr
        assert "unreachable" in cut.stdout
        assert "partial (" in status(results)
        assert 0 < len(stored(collector.data)) < total
        collector.start()  # same folder, same address and port
        again = submit(lab, collector, results)
    finally:
        collector.stop()
        lab.scenario("clean")
    assert again.returncode == 0, again.stderr
    assert f"{total} of {total} sent" in again.stdout
    assert_once_and_complete(collector.data, run)


@needs_root
@pytest.mark.timeout(90)
def test_submission_cut_by_a_network_fault(lab_run: tuple[Lab, Path], tmp_path: Path) -> None:
    lab, folder = lab_run
    results, run = copy_run(folder, tmp_path)
    total = len((run / "measurements.jsonl").read_text().splitlines())
    collector = LabCollector(lab, tmp_path / "collected", 9445)
    router = lab.names.router(3)  # the path's middle; the slow link is router 1
    rule = ["FORWARD", "-d", topology.MEASURE_ADDRESS, "-p", "tcp", "--dport",
            str(collector.port), "-j", "REJECT", "--reject-with", "tcp-reset"]
    lab.scenario("clean", link_kbps=SLOW_LINK_KBPS)
    collector.start()
    try:
        cut = interrupted(lab, collector, results, total, lambda: acknowledged(run),
                          lambda: system.ns_run(router, [system.IPTABLES, "-I", *rule]))
        assert cut.returncode == 1, cut.stderr
        assert "partial (" in status(results)
        system.ns_run(router, [system.IPTABLES, "-D", *rule])
        again = submit(lab, collector, results)
    finally:
        system.ns_run(router, [system.IPTABLES, "-D", *rule], check=False)
        collector.stop()
        lab.scenario("clean")
    assert again.returncode == 0, again.stderr
    assert f"{total} of {total} sent" in again.stdout
    assert_once_and_complete(collector.data, run)
