"""Probe runs against the lab, shared by tests/test_lab_probe.py and tests/test_lab_verdicts.py.

Each scenario is run once per test session: the first module that needs it
brings up its own lab (lazily, with its own prefix) and runs the probe; the
other module reads the same result folder, also from another xdist worker (a
file lock per scenario). A module run alone makes its own.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from probe.lab import Lab, topology
from probe.lab.demo import run_probe, write_targets

RATE_KBPS = 130.0
HOP = 2
MAX_SECONDS = 6.0
# One Twitter image and its control, t.co, the collateral reddit page and the page control.
TARGETS = ("lab-twitter-image", "lab-control-image", "lab-twitter-tco-page",
           "lab-collateral-reddit-page", "lab-control-page")
TWITTER_ADDRESSES = {h.address for h in topology.HOSTS if h.family == "twitter"}
# Congestion and clean are judged over repetitions: a false "throttled" needs noise to
# survive three of them.
REPEAT = {"clean": 3, "congestion": 3}

_FOLDERS: dict[str, Path] = {}  # scenario -> result folder, for the whole session


def results_root(factory: pytest.TempPathFactory) -> Path:
    """Where the runs are kept: under xdist, each worker's base folder is one below the
    session's, which all workers share."""
    base = factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "lab-e2e-results"


@dataclass
class LabRuns:
    """Result folders per scenario; the lab comes up only if a scenario was not run yet."""

    prefix: str
    dir: Path
    results: Path
    lab: Lab | None = None

    def folder(self, scenario: str) -> Path:
        if scenario not in _FOLDERS:
            self.results.mkdir(parents=True, exist_ok=True)
            with open(self.results / f"{scenario}.lock", "a+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be running it
                lock.seek(0)
                done = lock.read().strip()
                if not done:
                    done = str(self._run(scenario))
                    lock.write(done)
                    lock.flush()
            _FOLDERS[scenario] = Path(done)
        return _FOLDERS[scenario]

    def _run(self, scenario: str) -> Path:
        lab = self._lab()
        lab.scenario(scenario, rate_kbps=RATE_KBPS, hop=HOP)
        targets = write_targets(self.results / f"targets-{self.prefix}toml", TARGETS)
        return run_probe(lab, targets, self.results / scenario,
                         repeat=REPEAT.get(scenario, 1), max_seconds=MAX_SECONDS)

    def run(self, scenario: str) -> Run:
        return Run(self.folder(scenario))

    def _lab(self) -> Lab:
        if self.lab is None:
            lab = Lab(self.dir, self.prefix)
            self.lab = lab  # set first: a failed up() is still torn down by close()
            lab.up()
        return self.lab

    def close(self) -> None:
        if self.lab is not None:
            self.lab.down()


def lab_runs(factory: pytest.TempPathFactory, prefix: str) -> Iterator[LabRuns]:
    """The body of a module-scoped fixture: a lazy lab with `prefix`, always torn down."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the lab uses network namespaces, iptables and tc")
    runs = LabRuns(prefix, factory.mktemp(prefix.rstrip("-") + "-lab"), results_root(factory))
    try:
        yield runs
    finally:
        runs.close()


@dataclass
class Run:
    """One result folder's raw tables (as the probe wrote them: strings)."""

    folder: Path

    def rows(self, name: str) -> list[dict[str, str]]:
        with open(self.folder / f"{name}.csv", newline="") as f:
            return list(csv.DictReader(f))

    def of(self, name: str, target: str) -> list[dict[str, str]]:
        return [r for r in self.rows(name) if r["target"] == target]

    def measurements(self) -> list[dict]:
        lines = (self.folder / "measurements.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def tcpinfo(self, transfer_id: str) -> list[dict[str, str]]:
        return [r for r in self.rows("tcpinfo") if r["transfer_id"] == transfer_id]
