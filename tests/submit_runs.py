"""Run folders for the `probe submit` tests, written with the probe's own writers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from probe.measure.keys import TestKeys
from probe.measurement.envelope import envelope
from probe.results import folder as run_folder
from probe.results.jsonl import JsonlWriter
from probe.targets import Target

START = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def make_run(out: Path, n: int = 3, *, status: str = "complete", scrubbed: bool | None = True,
             network: dict | None = None, text: str = "") -> Path:
    """A run of `n` measurements; `text` goes into each measurement's test keys (e.g. an
    address that should have been scrubbed)."""
    run_id = run_folder.new_run_id(START)
    folder = run_folder.create(out, run_id)
    info = run_folder.base_run_info(run_id, START)
    with JsonlWriter(folder / "measurements.jsonl") as writer:
        for i in range(n):
            target = Target(name=f"t{i}", url=f"https://pbs.twimg.com/media/{i}.jpg",
                            family="twitter", kind="image")
            writer.append(envelope(
                run_id=run_id, measurement_id=f"{run_id}-{i:04x}", started=START,
                runtime=1.5, target=target, repetition=0, experiment="target",
                version="0.1.0", keys=TestKeys(), extra={"note": text}, network=network))
    info.update(status=status, network=network, measurements=n,
                end=None if status == "running" else run_folder.iso(START))
    if scrubbed is not None:
        info["scrubbed"] = scrubbed
    run_folder.write_run_json(folder, info)
    return folder
