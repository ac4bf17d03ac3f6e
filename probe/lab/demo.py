"""`make demo`: the probe and the analysis against the lab, one scenario after another.

Brings a lab up (its own prefix, so a lab someone else is using is not
touched), runs `probe run` from the client namespace under each scenario,
keeps each result folder under `<out>/demo-<scenario>/` and prints the
verdicts of each run. The lab is torn down at the end, also on errors or
Ctrl-C. The end-to-end tests (tests/test_lab_probe.py) run the probe the
same way, with `probe_argv` and `run_probe`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from probe.lab.lab import Lab, running_lab
from probe.lab.scenarios import DEFAULT_HOP, DEFAULT_RATE_KBPS, SCENARIOS
from probe.lab.system import LabError, MissingPrerequisite
from probe.lab.targets import targets_toml

# A Twitter image and video, t.co, a collateral name and their controls: every scenario
# shows up in them, and a throttled run still takes well under a minute.
DEMO_TARGETS = (
    "lab-twitter-image", "lab-control-image", "lab-twitter-hls", "lab-control-hls",
    "lab-twitter-tco-page", "lab-collateral-reddit-page", "lab-control-page",
)
DEMO_SCENARIOS = (
    "clean", "sni-throttle", "collateral", "ip-throttle", "rst-block", "blackhole",
    "dns-poison", "tls-mitm",
)
DEMO_DIR = Path("/run/probe-lab-demo")
DEMO_PREFIX = "tpd-"
SECONDS_PER_MEASUREMENT = 30  # DNS, a 10 s connect/TLS timeout and the transfer cap, with room


def probe_executable() -> Path:
    """The `probe` console script of the running interpreter's environment."""
    beside = Path(sys.executable).with_name("probe")
    found = beside if beside.exists() else shutil.which("probe")
    if not found:
        raise LabError("the `probe` command is not installed (pip install -e .)")
    return Path(found)


def probe_argv(
    lab: Lab, targets: Path, out: Path, *, repeat: int = 1, max_seconds: float | None = 6.0,
    extra: Sequence[str] = (),
) -> list[str]:
    """`probe run` as a client of the lab: its CA trusted, its prefixes not bogons;
    `max_seconds` None keeps the probe's own default time cap."""
    state = lab.state
    argv = [str(probe_executable()), "run", "--yes", "--targets", str(targets),
            "--ca-bundle", state["ca"]["cert"], "--out", str(out), "--quiet",
            "--repeat", str(repeat)]
    if max_seconds is not None:
        argv += ["--max-seconds", str(max_seconds)]
    for net in state["allow_nets"]:
        argv += ["--allow-net", net]
    return argv + list(extra)


def run_probe(
    lab: Lab, targets: Path, out: Path, *, repeat: int = 1, max_seconds: float = 6.0,
    extra: Sequence[str] = (),
) -> Path:
    """Run the probe in the client namespace; the result folder it wrote."""
    count = repeat * targets.read_text().count("[[target]]")
    timeout = 60 + count * max(SECONDS_PER_MEASUREMENT, 2 * max_seconds + 15)
    proc = lab.exec(probe_argv(lab, targets, out, repeat=repeat, max_seconds=max_seconds,
                               extra=extra), timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise LabError(f"probe run exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return Path(lines[-1])


def write_targets(path: Path, names: Sequence[str]) -> Path:
    """A targets file holding only `names` of targets/lab.toml."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(targets_toml(names))
    return path


def print_verdicts(scenario: str, folder: Path) -> None:
    """The run's verdicts as a table (rate, control rate, ratio, why)."""
    from rich.console import Console
    from rich.table import Table

    from analysis.verdicts import verdicts

    table = Table(title=f"{scenario}: {folder}", title_justify="left")
    for col in ("target", "family", "verdict", "kbit/s", "control kbit/s", "ratio",
                "explanation"):
        table.add_column(col, overflow="fold")
    for row in verdicts([folder]).to_dict("records"):
        table.add_row(row["target"], row["family"], row["verdict"], _figure(row["rate_kbps"]),
                      _figure(row["control_rate_kbps"]), _figure(row["ratio"], 3),
                      row["explanation"])
    Console(width=160).print(table)


def _figure(v: object, digits: int = 0) -> str:
    return "" if v is None or v != v else f"{v:,.{digits}f}"


def demo(
    out: Path, scenarios: Sequence[str], dir: Path, prefix: str, rate_kbps: float, hop: int,
    repeat: int, max_seconds: float, link_kbps: float | None = None,
) -> dict[str, Path]:
    """Each scenario's result folder, after printing its verdicts."""
    folders = {}
    with running_lab(dir, prefix) as lab:
        targets = write_targets(lab.dir / "demo-targets.toml", DEMO_TARGETS)
        for name in scenarios:
            lab.scenario(name, rate_kbps=rate_kbps, hop=hop, link_kbps=link_kbps)
            started = time.monotonic()
            # The SNI and split experiments against the lab's measurement server
            # let the verdicts name the trigger (sni or ip), not just the slowdown.
            folder = run_probe(lab, targets, out / f"demo-{name}", repeat=repeat,
                               max_seconds=max_seconds,
                               extra=["--server", lab.state["measure"]["url"],
                                      "--experiments", "sni,split"])
            print(f"\n{name} (router {hop}): probe ran {time.monotonic() - started:.0f} s")
            print_verdicts(name, folder)
            folders[name] = folder
    return folders


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="probe-lab-demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results"),
                        help="result folders go to OUT/demo-<scenario>/ (default: results)")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS,
                        help=f"repeatable; default: {' '.join(DEMO_SCENARIOS)}")
    parser.add_argument("--dir", type=Path, default=DEMO_DIR, help="lab folder")
    parser.add_argument("--prefix", default=DEMO_PREFIX, help="lab namespace prefix")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE_KBPS, help="kbit/s")
    parser.add_argument("--hop", type=int, default=DEFAULT_HOP, help="router 1-4")
    parser.add_argument("--link-rate", type=float, metavar="KBPS",
                        help="shape the access link to KBPS under every scenario "
                             "(e.g. --rate 1000 --link-rate 3000: a 3x slowdown)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=6.0)
    args = parser.parse_args(argv)
    try:
        demo(args.out.resolve(), args.scenario or DEMO_SCENARIOS, args.dir, args.prefix,
             args.rate, args.hop, args.repeat, args.max_seconds, args.link_rate)
    except MissingPrerequisite as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    except LabError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
