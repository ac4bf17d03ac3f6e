"""`probe doctor`: check the set-up before measuring, and say what to fix.

Each check returns (status, what was found, what to do); nothing here changes
the system. Exit status 0 when nothing failed (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from probe import __version__
from probe.operate import consent

OK, WARN, FAIL = "ok", "warn", "FAIL"
RELEASED = dt.date(2026, 11, 1)  # a clock before this is certainly wrong
MIN_FREE_BYTES = 200_000_000


@dataclass
class Check:
    name: str
    status: str
    found: str
    fix: str = ""


def check_python() -> Check:
    v = sys.version_info
    if v < (3, 11):
        return Check("python", FAIL, sys.version.split()[0], "install Python 3.11 or newer")
    return Check("python", OK, sys.version.split()[0])


def check_packages() -> Check:
    missing = []
    for name in ("httpx", "dns", "scapy", "pandas", "click", "rich", "cryptography"):
        try:
            importlib.import_module(name)
        except Exception:
            missing.append(name)
    if missing:
        return Check("packages", FAIL, f"missing: {', '.join(missing)}", "run `make install`")
    return Check("packages", OK, "all present")


def check_output(out: Path) -> list[Check]:
    target = out if out.exists() else next((p for p in out.parents if p.exists()), Path("/"))
    writable = os.access(target, os.W_OK) and target.is_dir()
    checks = [Check("results folder", OK if writable else FAIL, str(out),
                    "" if writable else f"make {target} writable or pass --out")]
    free = shutil.disk_usage(target).free
    checks.append(Check("free disk", OK if free >= MIN_FREE_BYTES else WARN,
                        f"{free / 1e9:.1f} GB free at {target}",
                        "" if free >= MIN_FREE_BYTES else "free some space (a run needs ~10 MB)"))
    return checks


def check_clock() -> Check:
    now = dt.datetime.now(dt.UTC)
    if now.date() < RELEASED:
        return Check("clock", FAIL, now.isoformat(timespec="seconds"),
                     "set the system clock (TLS verification depends on it)")
    return Check("clock", OK, now.isoformat(timespec="seconds") + " (UTC)")


def check_resolvers(resolv_conf: Path, name: str, timeout: float) -> list[Check]:
    from probe.measure import dns
    from probe.measure.clock import Clock
    from probe.records import rcode_text

    resolvers = dns.system_resolvers(resolv_conf)
    if not resolvers:
        return [Check("resolvers", FAIL, f"no nameserver in {resolv_conf}",
                      "configure DNS, or pass --resolver to probe run")]
    checks = []
    for r in resolvers:
        query = dns.measure(name, [r], Clock(), timeout=timeout, qtypes=("A",))[0]
        if query.get("rcode") is None:  # no DNS response at all
            checks.append(Check(f"resolver {r.address}", FAIL, f"{name}: {query['failure']}",
                                "this resolver is unreachable: fix DNS or pass --resolver"))
        elif query.get("failure"):
            checks.append(Check(f"resolver {r.address}", WARN,
                                f"reachable, but {name}: {rcode_text(query['rcode'])}",
                                "it answers but may filter, or has no Internet"))
        else:
            checks.append(Check(f"resolver {r.address}", OK, f"{name}: answered"))
    return checks


def check_lab() -> list[Check]:
    if os.geteuid() != 0:
        return [Check("lab", WARN, "not root", "`probe lab` and `probe locate` need root")]
    missing = [t for t in ("ip", "iptables", "tc") if shutil.which(t) is None]
    if missing:
        return [Check("lab", FAIL, f"missing: {', '.join(missing)}",
                      "apt-get install iproute2 iptables")]
    res = subprocess.run(["iptables", "-m", "string", "-h"], capture_output=True, text=True,
                         timeout=10)
    if res.returncode != 0:
        return [Check("lab", WARN, "iptables string match unavailable",
                      "the sni-throttle lab scenarios need xt_string")]
    return [Check("lab", OK, "ip, iptables (string match), tc present")]


def check_scheduler() -> Check:
    from probe.operate import schedule, systemd_timer

    if schedule.has_cron():
        return Check("scheduler", OK, "cron (`probe schedule install`)")
    if systemd_timer.available():
        return Check("scheduler", OK, "systemd user timer (`probe schedule install`)")
    return Check("scheduler", WARN, "neither cron nor a systemd user manager",
                 "install cron (Debian: apt-get install cron) to measure on a schedule")


def check_consent() -> Check:
    if consent.on_record():
        return Check("consent", OK, "on record")
    return Check("consent", WARN, "not on record",
                 "run `probe run` once at a terminal (needed before `probe schedule install`)")


def run_checks(out: Path, resolv_conf: Path, name: str, timeout: float) -> list[Check]:
    steps: list[Callable[[], Check | list[Check]]] = [
        check_python, check_packages, lambda: check_output(out), check_clock,
        lambda: check_resolvers(resolv_conf, name, timeout), check_lab, check_scheduler,
        check_consent,
    ]
    checks: list[Check] = []
    for step in steps:
        result = step()
        checks.extend(result if isinstance(result, list) else [result])
    return checks


@click.command()
@click.option("--out", default=Path("results"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Results folder to check.")
@click.option("--resolv-conf", default=Path("/etc/resolv.conf"), show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Resolver configuration.")
@click.option("--name", default="example.com", show_default=True,
              help="Neutral name to ask each resolver (never a censored one).")
@click.option("--timeout", default=3.0, show_default=True, type=float,
              help="Seconds to wait for each resolver.")
def doctor(out: Path, resolv_conf: Path, name: str, timeout: float) -> None:
    """Check the set-up (Python, packages, results folder, disk, clock, resolvers, lab
    prerequisites, scheduler, consent) and say what to fix. Exit 1 if any check failed."""
    checks = run_checks(out, resolv_conf, name, timeout)
    click.echo(f"probe {__version__}")
    for c in checks:
        line = f"[{c.status:>4}] {c.name}: {c.found}"
        click.echo(line + (f"\n       fix: {c.fix}" if c.fix else ""))
    failed = [c for c in checks if c.status == FAIL]
    click.echo(f"{len(failed)} problem(s) to fix" if failed else "ready to measure")
    sys.exit(1 if failed else 0)
