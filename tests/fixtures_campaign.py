"""A small campaign of synthetic run folders: several networks, days and verdicts.

Runs differ in what a dataset must keep apart: ASN (and country) or only a label,
day, complete or killed (JSONL only), a differential experiment, failures, and a
malformed CSV line, so a dataset built from them can be checked against the folders.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from tests.fixtures_results import (
    FAST,
    POLICED,
    SHAPED,
    RunSpec,
    Spec,
    congested,
    pairs,
    write_run,
)

SERVER = "probe-server.test"


def _sni_experiment() -> list[Spec]:
    return [Spec("sni-twimg", "twitter", "image", SERVER, POLICED, experiment="sni",
                 sni="pbs.twimg.com"),
            Spec("sni-neutral", "control", "image", SERVER, FAST, experiment="sni",
                 sni="example.org")]


def write_campaign(root: Path, runs: int = 5, damaged: bool = True) -> Path:
    """`runs` run folders under `root` (up to 5 kinds, repeated with new seeds); without
    `damaged`, every run completed and no line is malformed."""
    day = dt.datetime(2021, 3, 12, 9, tzinfo=dt.UTC)
    kinds = [
        RunSpec(pairs(("image", "video"), POLICED, FAST) + _sni_experiment(), repeat=2,
                asn="AS12389", start=day),
        RunSpec(pairs(("image",), SHAPED, FAST), asn="AS12389", start=day),
        RunSpec(pairs(("image",), congested(), congested()), label="home-dsl",
                start=day + dt.timedelta(days=1)),
        RunSpec(pairs(("image",), POLICED, FAST), status="running" if damaged else "complete",
                asn="AS8359",
                start=day + dt.timedelta(days=1)),
        RunSpec([Spec("tw-dns", "twitter", "image", "pbs.twimg.com", FAST, pair="ctl",
                      fail="dns"),
                 Spec("ctl", "control", "image", "upload.wikimedia.org", FAST)], repeat=2,
                start=day + dt.timedelta(days=2)),
    ]
    for i in range(runs):
        spec = kinds[i % len(kinds)]
        spec.seed = i
        spec.start = spec.start + dt.timedelta(hours=i // len(kinds))
        folder = write_run(root, spec)
        if spec.asn:  # what --asn-db adds: the country beside the AS
            info = json.loads((folder / "run.json").read_text())
            info["network"] = {"asn": spec.asn, "cc": "RU", "as_name": "", "source": "test"}
            (folder / "run.json").write_text(json.dumps(info))
        if i == 1 and damaged:
            with open(folder / "samples.csv", "a") as f:
                f.write("not,a,sample,row,at all\n")
    return root
