"""The verdict matrix: the probe once per throttler of the lab's zoo and rate, judged.

For each scenario and rate (64, 128, 256, 512, 1024 kbit/s) the lab (namespaces,
real kernel throttling; needs root) is set to the scenario at hop 2, `probe run`
runs once from the client with default options (one repetition, early stop on),
and every target's verdict is checked against what the scenario did to it:

- Twitter targets under a throttler: `throttled` (under `late`, only objects that
  outgrow the free first KB; a smaller one was never slowed: `ok`);
- controls and the collateral image (the zoo's rules are exact names plus
  `*.twimg.com`, so www.microsoft.com is untouched): `ok`;
- `collateral` (the early rule, the substring `t.co`): t.co and www.microsoft.com
  `throttled`, the other Twitter targets `ok`;
- clean, congestion and lossy: never `throttled` (`inconclusive` is right when
  the controls themselves are too slow to show anything);
- the Twitter image is also fetched over HTTP/3 (QUIC), as is its control: under
  the QUIC scenarios its QUIC fetch is `throttled` (quic-throttle-name, by the
  name in the Initial; quic-throttle-ip, by address) or `blocked` (quic-block-name,
  quic-block-ip: the probe reports the handshake timeout as generic_timeout_error),
  and every TCP fetch `ok`; under the TCP-only throttlers the QUIC fetch is `ok`.

One row per scenario, rate and target: verdict, trigger, rate_kbps, KB and
seconds the probe spent on the target, and whether the cell is right. Exit status
1 if any cell is wrong. `--json FILE` keeps the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

THROTTLERS = ("police", "shape", "shape-deep", "shared", "late", "collateral")
QUIC = ("quic-throttle-name", "quic-throttle-ip", "quic-block-name", "quic-block-ip")
NEUTRAL = ("clean", "congestion", "lossy")
RATES = (64.0, 128.0, 256.0, 512.0, 1024.0)
CURL_SCENARIOS = ("police", "shape")  # rate_kbps is held to curl's goodput under these
TARGETS = ("lab-twitter-image", "lab-control-image", "lab-twitter-hls", "lab-control-hls",
           "lab-collateral-microsoft-image")
H3_TARGETS = ("lab-twitter-image", "lab-control-image")  # also fetched over HTTP/3 (QUIC)
# t.co's own name on an object large enough to show a rate (its lab page is 30 KB: a
# policer's burst passes most of it, too little for a steady window).
TCO_IMAGE = """
[[target]]
name = "matrix-twitter-tco-image"
url = "https://t.co/media/img/photo.jpg"
family = "twitter"
kind = "image"
expected_bytes = 300000
pair = "lab-control-image"
"""
# KB a target's object holds in the lab (the video: its four HLS segments).
SIZES_KB = {"lab-twitter-image": 300.0, "lab-twitter-hls": 1000.0,
            "matrix-twitter-tco-image": 300.0, "lab-collateral-microsoft-image": 300.0}
PREFIX = "tpm-"


@dataclass
class Cell:
    """One target's verdict in one scenario at one rate, and whether it is right."""

    scenario: str
    rate_kbps: float | None
    target: str
    family: str
    verdict: str
    trigger: str | None
    measured_kbps: float | None
    kb: float
    seconds: float
    expected: str
    right: bool
    explanation: str
    curl_kbps: float | None = None  # bulk download by curl through the same throttler
    experiment: str = "target"  # target-h3: the fetch over HTTP/3 (QUIC)


def expected(scenario: str, family: str, host: str, object_kb: float,
             after_kb: float, experiment: str = "target") -> set[str]:
    """The verdicts that are right for a target of `family` and `host` under `scenario`,
    fetched over TCP (experiment `target`) or QUIC (`target-h3`)."""
    if scenario in NEUTRAL:
        return {"ok", "inconclusive"}
    if scenario in QUIC:  # QUIC of Twitter alone: TCP and the controls run free
        if experiment != "target-h3" or family != "twitter":
            return {"ok"}
        return {"blocked"} if "block" in scenario else {"throttled"}
    if experiment == "target-h3":  # the other throttlers act on TCP only
        return {"ok"}
    if scenario == "collateral":  # the early rule: the substring t.co anywhere in the name
        return {"throttled"} if "t.co" in host else {"ok"}
    if family != "twitter":
        return {"ok"}
    if scenario == "late" and object_kb <= after_kb:
        return {"ok"}
    return {"throttled"}


def spent(folder: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """Per target and experiment: (KB on the wire, seconds of transfer) the probe spent."""
    import analysis

    t = analysis.load([folder]).transfers
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for (target, experiment), g in t.groupby(["target", "experiment"]):
        wire = g["wire_bytes"].fillna(g["bytes"]).sum()
        out[(str(target), str(experiment))] = (float(wire) / 1000,
                                               float(g["duration_s"].fillna(0).sum()))
    return out


def judge_run(scenario: str, rate: float | None, folder: Path,
              sizes: dict[str, float], after_kb: float) -> list[Cell]:
    """The cells of one run: every judged target (Twitter and collateral rows), over TCP
    and over QUIC."""
    from analysis.verdicts import verdicts

    costs = spent(folder)
    cells = []
    for row in verdicts([folder]).to_dict("records"):
        if row["experiment"] not in ("target", "target-h3"):
            continue
        ok = expected(scenario, row["family"], row["host"] or "",
                      sizes.get(row["target"], 0.0), after_kb, row["experiment"])
        kb, seconds = costs.get((row["target"], row["experiment"]), (0.0, 0.0))
        cells.append(Cell(scenario, rate, row["target"], row["family"], row["verdict"],
                          row["trigger"], row["rate_kbps"], round(kb, 1), round(seconds, 1),
                          "/".join(sorted(ok)), row["verdict"] in ok, row["explanation"],
                          experiment=row["experiment"]))
    return cells


def curl_kbps(lab: object, rate_kbps: float, seconds: float = 10.0) -> float:
    """Goodput of a bulk download by curl through the active throttler: a Twitter-named
    range sized to last `seconds` at the rate, so curl reads it whole (no TLS record cut
    off at a time limit); size * 8 / total time, handshake and slow start included."""
    size = int(rate_kbps * 1000 / 8 * seconds)
    proc = lab.exec(["curl", "-sS", "-o", "/dev/null", "--cacert", lab.state["ca"]["cert"],
                     "-r", f"0-{size - 1}", "--max-time", str(4 * seconds),
                     "-w", "%{size_download} %{time_total}",
                     "https://pbs.twimg.com/media/video/clip.mp4"], timeout=6 * seconds)
    got, total = proc.stdout.split()
    return int(got) * 8 / 1000 / float(total)


def run_matrix(lab_dir: Path, out: Path, scenarios: Sequence[str], rates: Sequence[float],
               prefix: str = PREFIX) -> list[Cell]:
    """Bring a lab up, run the probe under every scenario and rate, return every cell;
    under police and shape, the Twitter image's cell (over TCP) also holds curl's goodput."""
    from probe.lab import running_lab
    from probe.lab import scenarios as zoo
    from probe.lab.demo import probe_argv
    from probe.lab.targets import targets_toml

    cells: list[Cell] = []
    with running_lab(lab_dir, prefix) as lab:
        targets = out / "targets.toml"
        targets.parent.mkdir(parents=True, exist_ok=True)
        targets.write_text(targets_toml(TARGETS, http3=H3_TARGETS) + TCO_IMAGE)
        for scenario in scenarios:
            for rate in (rates if scenario in zoo.RATE_SCENARIOS else (None,)):
                lab.scenario(scenario, rate_kbps=rate or zoo.DEFAULT_RATE_KBPS)
                folder = out / f"{scenario}-{int(rate or 0)}"
                argv = probe_argv(lab, targets, folder, max_seconds=None)  # default options
                started = time.monotonic()
                proc = lab.exec(argv, timeout=600)
                lines = proc.stdout.strip().splitlines()
                if proc.returncode != 0 or not lines:
                    raise RuntimeError(f"probe run failed under {scenario}: {proc.stderr[-2000:]}")
                run = judge_run(scenario, rate, Path(lines[-1]), SIZES_KB,
                                zoo.DEFAULT_AFTER_KB)
                if scenario in CURL_SCENARIOS and rate:
                    reference = round(curl_kbps(lab, rate), 1)
                    for c in run:
                        if c.target == "lab-twitter-image" and c.experiment == "target":
                            c.curl_kbps = reference
                cells += run
                print(f"# {scenario} {rate or '-'}: {time.monotonic() - started:.0f} s",
                      file=sys.stderr, flush=True)
    return cells


def table(cells: Sequence[Cell]) -> str:
    """A Markdown table of the cells (the README shows it)."""
    head = ("| scenario | kbit/s | target | verdict | trigger | rate_kbps | curl kbit/s | KB "
            "| s | right |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = [f"| {c.scenario} | {'' if c.rate_kbps is None else f'{c.rate_kbps:g}'} | "
            f"{c.target}{' over QUIC' if c.experiment == 'target-h3' else ''} | "
            f"{c.verdict} | {c.trigger or ''} | "
            f"{'' if c.measured_kbps is None else f'{c.measured_kbps:.0f}'} | "
            f"{'' if c.curl_kbps is None else f'{c.curl_kbps:.0f}'} | {c.kb:.0f} | "
            f"{c.seconds:.1f} | {'yes' if c.right else 'NO (' + c.expected + ')'} |"
            for c in cells]
    return "\n".join([head, *rows])


SHORT = {("lab-twitter-image", "target"): "pbs image",
         ("lab-twitter-hls", "target"): "video (HLS)",
         ("matrix-twitter-tco-image", "target"): "t.co image",
         ("lab-collateral-microsoft-image", "target"): "www.microsoft.com image",
         ("lab-twitter-image", "target-h3"): "pbs image over QUIC"}


def compact(cells: Sequence[Cell]) -> str:
    """One row per scenario and rate, one column per judged target: verdict, then for a
    throttled target its rate_kbps, KB and seconds spent (the README's table)."""
    names = [n for n in SHORT if any((c.target, c.experiment) == n for c in cells)]
    head = ("| scenario | kbit/s | " + " | ".join(SHORT[n] for n in names) + " |\n"
            "| --- | --- |" + " --- |" * len(names))
    rows = []
    for key in dict.fromkeys((c.scenario, c.rate_kbps) for c in cells):
        by = {(c.target, c.experiment): c for c in cells if (c.scenario, c.rate_kbps) == key}
        out = []
        for n in names:
            c = by.get(n)
            if c is None:
                out.append("")
                continue
            text = c.verdict if c.right else f"**{c.verdict}** (want {c.expected})"
            if c.verdict == "throttled":
                text += f" {c.measured_kbps:.0f} kbit/s, {c.kb:.0f} KB, {c.seconds:.1f} s"
                if c.curl_kbps is not None:
                    text += f" (curl {c.curl_kbps:.0f})"
            out.append(text)
        rate = "" if key[1] is None else f"{key[1]:g}"
        rows.append(f"| {key[0]} | {rate} | " + " | ".join(out) + " |")
    return "\n".join([head, *rows])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", action="append",
                        help="repeatable; default: the zoo's throttlers, the QUIC scenarios, "
                             "then clean, congestion and lossy")
    parser.add_argument("--rate", action="append", type=float,
                        help="kbit/s, repeatable; default: 64 128 256 512 1024")
    parser.add_argument("--out", type=Path, help="keep the result folders here")
    parser.add_argument("--json", type=Path, help="write the cells as JSON here")
    parser.add_argument("--prefix", default=PREFIX, help="lab namespace prefix")
    parser.add_argument("--from-json", type=Path, metavar="FILE",
                        help="print the tables of cells kept with --json, run nothing")
    args = parser.parse_args(argv)
    if args.from_json:
        kept = [Cell(**c) for c in json.loads(args.from_json.read_text())]
        print(table(kept) + "\n\n" + compact(kept))
        return 1 if any(not c.right for c in kept) else 0
    if os.geteuid() != 0:
        print("skipped: needs root for the namespace lab")
        return 0
    # A kill (SIGTERM) unwinds like Ctrl-C, so the lab is torn down on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out.resolve() if args.out else Path(tmp) / "results"
        cells = run_matrix(Path(tmp) / "lab", out, args.scenario or (*THROTTLERS, *QUIC, *NEUTRAL),
                           args.rate or RATES, args.prefix)
    print(table(cells) + "\n\n" + compact(cells))
    wrong = [c for c in cells if not c.right]
    print(f"\n{len(cells) - len(wrong)} of {len(cells)} cells right")
    if args.json:
        args.json.write_text(json.dumps([asdict(c) for c in cells], indent=1))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
