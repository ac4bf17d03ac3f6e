"""`probe run --pack lab-youtube` in the lab, whose router throttles the YouTube names.

The 2024 case with the 2021 device: the lab's copies of i.ytimg.com, a
googlevideo.com playback host and www.youtube.com are policed by SNI at 130
kbit/s (`sni-throttle --service youtube`). The YouTube targets must be judged
`throttled` with the `sni` trigger, from the pack's own names sent to the
measurement server (also `redirector.googlevideo.com`, which no target has);
their controls and a Twitter image measured in the same run (--targets) stay
fast: the throttle keys on YouTube's names, not on the network.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from analysis.verdicts import verdicts
from probe.lab import Lab, running_lab
from probe.lab.demo import probe_argv, write_targets
from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.root, pytest.mark.lab, pytest.mark.timeout(300)]

PREFIX = "tpy-"
RATE = 130.0  # kbit/s
MAX_SECONDS = 5.0
YOUTUBE = ("lab-youtube-image", "lab-youtube-mp4", "lab-youtube-page")
CONTROLS = ("lab-yt-control-image", "lab-yt-control-mp4", "lab-yt-control-page")
TWITTER = ("lab-twitter-image", "lab-control-image")  # from targets/lab.toml
FAST = 10 * RATE


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One run of the pack (and a Twitter image) under the YouTube SNI throttle."""
    work = tmp_path_factory.mktemp("youtube")
    with running_lab(work / "lab", PREFIX) as lab:
        state = lab.scenario("sni-throttle", rate_kbps=RATE, services=("youtube",))
        assert state["scenario"]["services"] == ["youtube"]
        yield _run(lab, work)


def _run(lab: Lab, work: Path) -> Path:
    twitter = write_targets(work / "twitter.toml", TWITTER)
    server = f"https://{lab.state['measure']['name']}:{lab.state['measure']['port']}"
    argv = probe_argv(lab, twitter, work / "out", max_seconds=MAX_SECONDS,
                      extra=["--pack", "lab-youtube", "--server", server,
                             "--experiments", "sni"])
    proc = lab.exec(argv, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Path(proc.stdout.strip().splitlines()[-1])


def test_youtube_targets_are_throttled_by_sni(folder: Path) -> None:
    v = verdicts([folder]).set_index("target")
    print(v[["verdict", "trigger", "rate_kbps", "control_rate_kbps", "explanation"]].to_string())
    for target in YOUTUBE:
        row = v.loc[(v.index == target) & (v["experiment"] == "target")].iloc[0]
        assert row["family"] == "youtube", row.to_dict()
        assert row["verdict"] == "throttled" and row["trigger"] == "sni", (target, row.to_dict())
        assert "the YouTube SNI" in row["explanation"], row["explanation"]
    twitter = v.loc["lab-twitter-image"]
    assert twitter["verdict"] == "ok", twitter.to_dict()


def test_controls_fast_and_the_packs_names_sent(folder: Path) -> None:
    transfers = pd.read_csv(folder / "transfers.csv", keep_default_na=False)
    for target in (*CONTROLS, *TWITTER):
        rows = transfers[transfers["target"] == target]
        assert len(rows) and (rows["failure"] == "").all(), rows.to_dict("records")
        assert (rows["goodput_kbps"] > FAST).all(), rows.to_dict("records")
    sni = transfers[transfers["experiment"] == "sni"].set_index("sni")
    # the pack's name of a host without a target, and its targets' names, to the server
    for name in ("redirector.googlevideo.com", "i.ytimg.com", "www.youtube.com"):
        assert sni.loc[name, "goodput_kbps"] < 2 * RATE, (name, sni.loc[name].to_dict())
        assert sni.loc[name, "family"] == "youtube"
    assert sni.loc["pbs.twimg.com", "goodput_kbps"] > FAST  # Twitter's name passes
    options = json.loads((folder / "run.json").read_text())["options"]
    assert options["packs"] == ["lab-youtube"]
