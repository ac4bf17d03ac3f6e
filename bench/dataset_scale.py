"""The analysis dataset at campaign scale: ingest, a killed ingest resumed, and queries.

Usage: python bench/dataset_scale.py [--runs N] [--source DIR] [--batch-runs B] [--keep DIR]

Makes N run folders by copying real run folders (DIR, default: the synthetic campaign
of tests/fixtures_campaign.py) under new run ids: the folder name, run.json and every
JSONL and CSV row get the new id. Then, each step a process of its own (peak memory
is its maximum resident set, from wait4):

- ingests them (runs/s, peak memory);
- ingests them again into a second dataset, kills that ingest (SIGKILL) once some
  batches are committed, checks that the dataset answers, and resumes it; the
  resumed dataset's verdicts must equal the first one's;
- times `verdicts`, `aggregate` and `report` on the dataset, and `verdicts` on the
  run folders for comparison.

Targets (at 100,000 runs): ingest under 4 GB; verdicts and aggregate at most 10 s and
2 GB each; report at most 30 s and 5 MB. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures_campaign import write_campaign  # noqa: E402

RUNS = 200  # enough to see the rates, small enough for `make bench`
NETWORKS, DAYS = 50, 14  # a campaign: volunteers on 50 networks, two weeks, hourly
COUNTRIES = ("RU", "BY", "KZ")
# Above this, verdicts straight from the folders (the path a dataset replaces) would
# need more memory than this machine has: about 1.8 GB per 10,000 runs.
FOLDER_VERDICTS_UP_TO = 10_000
TARGETS = {"ingest": (None, 4000), "verdicts": (10, 2000), "aggregate": (10, 2000),
           "report": (30, None)}


@dataclass
class Step:
    seconds: float
    peak_mb: float
    output: str


def analyze(*args: str, kill_when=None) -> Step:  # noqa: ANN001 - a predicate or None
    """`probe analyze ARGS` in a process of its own; its time and peak memory.

    With `kill_when`, the process is killed (SIGKILL) as soon as kill_when() is true.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tempfile.TemporaryFile()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "from analysis.cli import analyze; "
                             "analyze()", *args], cwd=REPO, env=env, stdout=out,
                            stderr=subprocess.DEVNULL)
    while kill_when is not None and proc.poll() is None:
        if kill_when():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if kill_when is None and proc.returncode != 0:
        raise SystemExit(f"probe analyze {' '.join(args)} failed ({proc.returncode})")
    out.seek(0)
    return Step(seconds, usage.ru_maxrss / 1024, out.read().decode())


def copy_runs(sources: list[Path], into: Path, n: int, networks: int = NETWORKS,
              days: int = DAYS) -> None:
    """N copies of the source run folders, each under a new run id, spread like a
    campaign's: over `networks` ASNs (private-use numbers, in three countries) and `days`
    UTC days, hourly. The id, start, ASN and country change in run.json and in every JSONL
    and CSV row that holds them; the measured values stay the source's."""
    into.mkdir(parents=True)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    texts = {src: {f.name: f.read_text() for f in src.iterdir() if f.is_file()}
             for src in sources}
    for i in range(n):
        src = sources[i % len(sources)]
        start = base + dt.timedelta(days=i * days // n, hours=i % 24, seconds=i % 3600)
        new_id = f"{start:%Y%m%dT%H%M%SZ}-{i:06x}"
        asn, cc = f"AS{64512 + i % networks}", COUNTRIES[i % networks % len(COUNTRIES)]
        dest = into / new_id
        dest.mkdir()
        for name, text in texts[src].items():
            text = text.replace(src.name, new_id)
            if name == "run.json":
                info = json.loads(text)
                info.update(start=start.isoformat().replace("+00:00", "Z"), asn=asn,
                            network={"asn": asn, "cc": cc})
                text = json.dumps(info, indent=2)
            elif name == "measurements.jsonl":
                text = text.replace('"probe_asn":"AS0","probe_cc":"ZZ"',
                                    f'"probe_asn":"{asn}","probe_cc":"{cc}"')
            (dest / name).write_text(text)


def batches(ds: Path) -> int:
    folder = ds / "batches"
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0


def line(what: str, step: Step, extra: str = "", target: str | None = None) -> None:
    limit_s, limit_mb = TARGETS.get(target or "", (None, None))
    target = " / ".join(t for t in (f"<= {limit_s} s" if limit_s else "",
                                    f"<= {limit_mb} MB" if limit_mb else "") if t)
    print(f"{what:<34} {step.seconds:8.1f} s {step.peak_mb:8.0f} MB  {extra}"
          + (f"  (target at 100,000 runs: {target})" if target else ""), flush=True)


def parser(doc: str, runs: int) -> argparse.ArgumentParser:
    """The options both dataset benchmarks take: how many runs, copied from where."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--runs", type=int, default=runs, help="run folders to make")
    ap.add_argument("--source", type=Path, help="folder of real run folders to copy")
    ap.add_argument("--keep", type=Path, help="work in this (new) folder and keep it")
    return ap


def in_workspace(args: argparse.Namespace, prefix: str,
                 run: Callable[[argparse.Namespace, Path], None]) -> None:
    """`run(args, work)` in --keep's folder, or in a temporary one removed afterwards."""
    work = args.keep or Path(tempfile.mkdtemp(prefix=prefix))
    try:
        run(args, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def make_runs(args: argparse.Namespace, work: Path) -> list[Path]:
    """--runs copies of --source's run folders (default: the synthetic campaign) in
    work/runs; returns the sources."""
    source = args.source or write_campaign(work / "source", damaged=False)
    sources = sorted(p for p in source.iterdir() if (p / "run.json").is_file())
    copy_runs(sources, work / "runs", args.runs)
    return sources


def main() -> None:
    ap = parser(__doc__, RUNS)
    ap.add_argument("--batch-runs", type=int, default=None,
                    help="ingest batch size (default: N/8 up to 200, so the kill is midway)")
    in_workspace(ap.parse_args(), "dataset-scale-", run)


def run(args: argparse.Namespace, work: Path) -> None:
    t = time.perf_counter()
    sources = make_runs(args, work)
    size = sum(p.stat().st_size for p in (work / "runs").rglob("*") if p.is_file()) / 1e6
    print(f"{args.runs} run folders ({len(sources)} sources copied), {size:.0f} MB, made in "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    batch = ["--batch-runs", str(args.batch_runs or min(200, max(1, args.runs // 8)))]
    runs, ds, ds2 = str(work / "runs"), work / "dataset", work / "dataset-killed"

    step = analyze("ingest", runs, "--into", str(ds), *batch)
    stored = sum(p.stat().st_size for p in ds.rglob("*") if p.is_file()) / 1e6
    files = len(list(ds.rglob("*.parquet")))
    line("ingest", step, f"{args.runs / step.seconds:.1f} runs/s; dataset {stored:.1f} MB "
                         f"in {files} files", "ingest")

    total = batches(ds)
    step = analyze("ingest", runs, "--into", str(ds2), *batch,
                   kill_when=lambda: batches(ds2) >= max(1, total // 2))
    kept = batches(ds2)
    if kept >= total:
        raise SystemExit("the ingest finished before it could be killed: use more runs")
    check = analyze("verdicts", str(ds2), "--format", "csv")
    answered = len(check.output.splitlines()) - 1
    print(f"ingest killed after {step.seconds:.1f} s: {kept} of {total} batches committed, "
          f"the dataset answers ({answered} verdict rows)", flush=True)
    step = analyze("ingest", runs, "--into", str(ds2), *batch)
    line("ingest resumed", step, step.output.strip().splitlines()[-1][:60], "ingest")

    verdicts = analyze("verdicts", str(ds), "--format", "csv")
    line("verdicts (dataset)", verdicts, f"{len(verdicts.output.splitlines()) - 1} rows",
         "verdicts")
    resumed = analyze("verdicts", str(ds2), "--format", "csv")
    same = sorted(resumed.output.splitlines()) == sorted(verdicts.output.splitlines())
    print(f"resumed dataset's verdicts equal the uninterrupted one's: {same}", flush=True)
    aggregate = analyze("aggregate", str(ds), "--format", "csv")
    line("aggregate (dataset)", aggregate, f"{len(aggregate.output.splitlines()) - 1} rows",
         "aggregate")
    out = work / "report" / "report.html"
    report = analyze("report", str(ds), "-o", str(out))
    written = sum(p.stat().st_size for p in out.parent.iterdir()) / 1e6
    line("report (dataset)", report, f"{written:.1f} MB written (target <= 5 MB)", "report")
    if args.runs <= FOLDER_VERDICTS_UP_TO:
        folders = analyze("verdicts", runs, "--format", "csv")
        line("verdicts (run folders, before)", folders, "the path a dataset replaces")
    print(json.dumps({"runs": args.runs, "resumed_equal": same}))
    if not same:
        raise SystemExit("the resumed dataset's verdicts differ")


if __name__ == "__main__":
    main()
