"""Time and data to a verdict under a real 130 kbit/s policer (the namespace lab; root).

Issue 5's budget: a confident verdict per target within 10 s and 256 KB of that
target's traffic. This brings a lab up, polices Twitter SNIs to 130 kbit/s, runs
the probe (early stop on) over a Twitter image and its control three times, and
reports, per Twitter target: the verdict, the seconds and bytes spent on it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = """
[[target]]
name = "tw-image"
url = "https://pbs.twimg.com/media/img/photo.jpg"
family = "twitter"
kind = "image"
pair = "ctl-image"

[[target]]
name = "ctl-image"
url = "https://images.lab.test/media/img/photo.jpg"
family = "control"
kind = "image"

[[target]]
name = "tw-video"
url = "https://video.twimg.com/media/video/hls/master.m3u8"
family = "twitter"
kind = "video"
pair = "ctl-video"

[[target]]
name = "ctl-video"
url = "https://video.lab.test/media/video/hls/master.m3u8"
family = "control"
kind = "video"
"""


def main() -> int:
    if os.geteuid() != 0:
        print("skipped: needs root for the namespace lab")
        return 0
    import pandas as pd

    import analysis
    from analysis.verdicts import verdicts
    from probe.lab import running_lab

    with tempfile.TemporaryDirectory() as tmp, running_lab(Path(tmp) / "lab", "tpb-") as lab:
        lab.scenario("sni-throttle", rate_kbps=130)
        targets = Path(tmp) / "targets.toml"
        targets.write_text(TARGETS)
        res = lab.exec([str(ROOT / ".venv" / "bin" / "python"), "-m", "probe", "run",
                        "--targets", str(targets), "--ca-bundle", lab.state["ca"]["cert"],
                        "--allow-net", "203.0.113.0/24", "--allow-net", "198.51.100.0/24",
                        "--allow-net", "192.0.2.0/24", "--repeat", "3", "--out",
                        str(Path(tmp) / "out"), "--quiet", "--yes"], timeout=600)
        if res.returncode != 0:
            print(res.stderr)
            return 1
        folder = Path(res.stdout.strip().splitlines()[-1])
        r = analysis.load([folder])
        t = r.transfers
        per = t.groupby(["target", "measurement_id"]).agg(
            seconds=("duration_s", "sum"), bytes=("wire_bytes", "sum")).reset_index()
        cost = per.groupby("target").agg(seconds=("seconds", "mean"),
                                         max_seconds=("seconds", "max"),
                                         kb=("bytes", lambda b: b.mean() / 1000),
                                         max_kb=("bytes", lambda b: b.max() / 1000))
        v = verdicts(r).set_index("target")
        print("policer: 130 kbit/s on Twitter SNIs; 3 repetitions; early stop on")
        print("verdict cost per target = its transfers in one repetition (mean, max)")
        with pd.option_context("display.width", 120):
            table = cost.join(v[["verdict", "rate_kbps", "control_rate_kbps", "p_value"]])
            print(table.round(2).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
