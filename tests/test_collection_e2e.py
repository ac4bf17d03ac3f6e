"""From volunteer to researcher on loopback: a real probe run, `probe submit` over HTTPS
to a real `probe collect`, then the analysis of what the collector stored."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

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
    config = CollectorConfig(data=tmp_path / "collected", listen=[("127.0.0.1", 0)],
                             cert=issued.cert, key=issued.key, log=tmp_path / "collect.log")
    collector = Collector(config)
    host, port = collector.start()[0]
    env = {**os.environ, "PROBE_STATE_DIR": str(tmp_path / "state")}
    submit = [*PROBE, "submit", str(out), "--collector", f"https://{host}:{port}",
              "--ca-bundle", str(test_ca.cert_path), "--yes"]
    try:
        first = subprocess.run(submit, capture_output=True, text=True, timeout=60, env=env)
        again = subprocess.run(submit, capture_output=True, text=True, timeout=60, env=env)
    finally:
        collector.stop()
    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    (report,) = (tmp_path / "collected" / "reports").iterdir()
    stored = [json.loads(line) for line in (report / "measurements.jsonl").read_text()
              .splitlines()]
    assert len(stored) == len(lines)  # the second submit sent nothing again
    assert {m["report_id"] for m in stored} == {report.name}
    assert json.loads(lines[0])["report_id"] != report.name  # the file kept its own
    assert json.loads((report / "meta.json").read_text())["state"] == "closed"
    assert "127.0.0.1" not in (tmp_path / "collect.log").read_text()
    here = CliRunner().invoke(verdicts, [str(out), "--format", "json"])
    there = CliRunner().invoke(verdicts, [str(tmp_path / "collected" / "reports"),
                                          "--format", "json"])
    assert here.exit_code == 0 and there.exit_code == 0, there.output

    def judged(output: str) -> list[tuple]:
        rows = json.loads(output[output.index("["):output.rindex("]") + 1])
        return sorted((r["target"], r["verdict"]) for r in rows)

    assert judged(here.output) == judged(there.output)
    assert judged(here.output) == [("tw-image", "ok")]  # controls are not judged
