"""Every throttled Twitter target gets a trigger (`sni` or `ip`) when `--server` is given,
over TCP and over QUIC.

The `sni` experiment tries the name of each Twitter target of the run (here the
image's pbs.twimg.com, the video's video.twimg.com and t.co) and `t.co` for the
collateral reddit page, so no throttled target is left `unknown` for want of its
own name. `probe run` runs in the lab's client namespace; one lab for the module,
own prefix, always torn down. Over QUIC, `sni-h3` sends the names over HTTP/3: a
throttle on the name in the QUIC Initial is `sni`, one on the addresses `ip`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from analysis.verdicts import verdicts
from probe.lab import Lab, running_lab
from probe.lab.demo import run_probe, write_targets
from probe.lab.targets import targets_toml
from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.root, pytest.mark.lab, pytest.mark.timeout(240)]

PREFIX = "tph-"
RATE = 130.0  # kbit/s
MAX_SECONDS = 5.0
IMAGE, VIDEO = "lab-twitter-image", "lab-twitter-mp4"
TCO, REDDIT = "lab-twitter-tco-page", "lab-collateral-reddit-page"
TARGETS = (IMAGE, "lab-control-image", VIDEO, "lab-control-mp4", TCO, REDDIT,
           "lab-control-page")
# Scenario -> (the targets it throttles, the trigger each must get).
EXPECTED = {
    "ip-throttle": ({IMAGE, VIDEO, TCO}, "ip"),
    "sni-throttle": ({IMAGE, VIDEO, TCO}, "sni"),
    "collateral": ({TCO, REDDIT}, "sni"),
}
QUIC_EXPECTED = {"quic-throttle-name": "sni", "quic-throttle-ip": "ip"}
# The Twitter names each scenario slows on the measurement server.
SLOW_NAMES = {
    "ip-throttle": set(),
    "sni-throttle": {"pbs.twimg.com", "twitter.com", "video.twimg.com", "t.co"},
    "collateral": {"t.co"},
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("lab"), PREFIX) as lab:
        yield lab


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_each_throttled_target_gets_its_trigger(lab: Lab, tmp_path: Path, scenario: str) -> None:
    lab.scenario(scenario, rate_kbps=RATE)
    targets = write_targets(tmp_path / "targets.toml", TARGETS)
    server = f"https://{lab.state['measure']['name']}:{lab.state['measure']['port']}"
    folder = run_probe(lab, targets, tmp_path / "out", max_seconds=MAX_SECONDS,
                       extra=["--server", server, "--experiments", "sni"])

    transfers = pd.read_csv(folder / "transfers.csv", keep_default_na=False)
    sni = transfers[transfers["experiment"] == "sni"]
    print(sni[["target", "bytes", "duration_s", "goodput_kbps", "stopped_by"]].to_string())
    rates = dict(zip(sni["sni"], sni["goodput_kbps"], strict=True))
    assert len(rates) == len(sni)  # one measurement per name
    assert set(rates) == {"pbs.twimg.com", "twitter.com", "video.twimg.com", "t.co",
                          "measure.lab.test", ""}
    for name, rate in rates.items():
        assert (rate < 3 * RATE) == (name in SLOW_NAMES[scenario]), (name, rate)

    v = verdicts([folder])
    v = v[v["experiment"] == "target"].set_index("target")
    print(v[["verdict", "trigger", "rate_kbps", "control_rate_kbps", "explanation"]].to_string())
    throttled, trigger = EXPECTED[scenario]
    assert set(v.index[v["verdict"] == "throttled"]) == throttled
    for target in throttled:
        assert v.loc[target, "trigger"] == trigger, v.loc[target, "explanation"]
    if scenario == "collateral":  # reddit's own name is not Twitter's: t.co tells
        assert "t.co to a neutral server was slow" in v.loc[REDDIT, "explanation"]


@pytest.mark.parametrize("scenario", sorted(QUIC_EXPECTED))
def test_a_quic_throttle_gets_its_trigger_over_quic(lab: Lab, tmp_path: Path,
                                                    scenario: str) -> None:
    lab.scenario(scenario, rate_kbps=RATE)
    pair = (IMAGE, "lab-control-image")
    targets = tmp_path / "targets.toml"
    targets.write_text(targets_toml(pair, http3=pair))
    server = f"https://{lab.state['measure']['name']}:{lab.state['measure']['port']}"
    folder = run_probe(lab, targets, tmp_path / "out", max_seconds=MAX_SECONDS,
                       extra=["--server", server, "--experiments", "sni-h3"])

    v = verdicts([folder])
    print(v[["target", "experiment", "verdict", "trigger", "rate_kbps", "control_rate_kbps",
             "explanation"]].to_string())
    image = v[v["target"] == IMAGE].set_index("experiment")
    assert image.loc["target", "verdict"] == "ok"  # the same image over TCP is untouched
    assert image.loc["target-h3", "verdict"] == "throttled"
    assert image.loc["target-h3", "trigger"] == QUIC_EXPECTED[scenario], \
        image.loc["target-h3", "explanation"]
