"""From volunteer to researcher on loopback: a real probe run, `probe submit` over HTTPS
to a real `probe collect`, then the analysis of what the collector stored: its raw
archive and the Parquet dataset it appended the run to."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from analysis.collected import preferred
from analysis.commands import verdicts
from probe.collection.server import Collector, CollectorConfig
from probe.lab.ca import CertificateAuthority
from tests.probe_world import PROBE, run_probe, targets

pytestmark = pytest.mark.timeout(180)

RUN_TARGETS = """
[[target]]
name = "tw-image"
url = "https://pbs.twimg.com:PORT/bytes/40000"
family = "twitter"
kind = "image"

[[target]]
name = "control-image"
url = "https://images.control.test:PORT/bytes/40000"
family = "control"
kind = "image"
"""


def test_a_run_reaches_the_collector_once_and_is_analysed_there(
        world: dict, tmp_path: Path, test_ca: CertificateAuthority) -> None:
    out = tmp_path / "results"
    res = run_probe(world, targets(world, RUN_TARGETS), out, "--quiet", "--repeat", "2")
    assert res.returncode == 0, res.stderr
    folder = Path(res.stdout.strip().splitlines()[-1])
    lines = (folder / "measurements.jsonl").read_text().splitlines()
    issued = test_ca.issue(["127.0.0.1"], tmp_path / "collector-cert")
    data = tmp_path / "collected"
    config = CollectorConfig(data=data, listen=[("127.0.0.1", 0)], cert=issued.cert,
                             key=issued.key, log=tmp_path / "collect.log", ingest_every=1)
    collector = Collector(config)
    host, port = collector.start()[0]
    env = {**os.environ, "PROBE_STATE_DIR": str(tmp_path / "state")}
    submit = [*PROBE, "submit", str(out), "--collector", f"https://{host}:{port}",
              "--ca-bundle", str(test_ca.cert_path), "--yes"]
    try:
        first = subprocess.run(submit, capture_output=True, text=True, timeout=60, env=env)
        again = subprocess.run(submit, capture_output=True, text=True, timeout=60, env=env)
        deadline = time.monotonic() + 90
        while collector.store.archive.pending(1) and time.monotonic() < deadline:
            time.sleep(0.2)  # the background ingest appends the sealed report
    finally:
        collector.stop()
    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    (report,) = (data / "reports").iterdir()
    sealed = json.loads((report / "meta.json").read_text())
    assert sealed["state"] == "sealed" and sealed["measurements"] == len(lines)
    stored = [json.loads(line) for line in
              gzip.decompress((data / sealed["archive"]).read_bytes()).splitlines()]
    assert len(stored) == len(lines)  # the second submit sent nothing again
    assert {m["report_id"] for m in stored} == {report.name}
    assert json.loads(lines[0])["report_id"] != report.name  # the file kept its own
    assert "127.0.0.1" not in (tmp_path / "collect.log").read_text()
    assert preferred(data) == data / "dataset"  # it holds the sealed report

    def judged(folder: Path) -> list[tuple]:
        res = CliRunner().invoke(verdicts, [str(folder), "--format", "json"])
        assert res.exit_code == 0, res.output
        rows = json.loads(res.output[res.output.index("["):res.output.rindex("]") + 1])
        return sorted((r["run_id"], r["target"], r["verdict"], r["rate_kbps"]) for r in rows)

    here = judged(out)
    assert [(target, verdict) for _, target, verdict, _ in here] == [("tw-image", "ok")]
    assert judged(data) == here  # from the dataset
    assert judged(data / "raw") == here  # from the archive
