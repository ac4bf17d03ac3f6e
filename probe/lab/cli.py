"""`probe lab`: build, configure, use and remove the censored lab network."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from . import scenarios, system, topology
from .lab import DEFAULT_DIR, Lab
from .system import LabError, MissingPrerequisite

EXIT_PREREQUISITE = 2


def _lab_options(func: Callable) -> Callable:
    """--dir and --prefix on every sub-command; errors become clean exits."""

    @click.option("--dir", "dir_", type=click.Path(file_okay=False, path_type=Path),
                  default=lambda: os.environ.get("PROBE_LAB_DIR", str(DEFAULT_DIR)),
                  show_default="$PROBE_LAB_DIR or /run/probe-lab",
                  help="Lab folder: state.json, CA, certificates, media, logs.")
    @click.option("--prefix", default=topology.DEFAULT_PREFIX, show_default=True,
                  help="Namespace name prefix (lets labs coexist; `down` removes by it).")
    @functools.wraps(func)
    def wrapper(dir_: Path, prefix: str, **kwargs: object) -> None:
        try:
            system.check_prerequisites()
            func(Lab(dir_, prefix), **kwargs)
        except MissingPrerequisite as exc:
            click.echo(f"probe lab: {exc}", err=True)
            sys.exit(EXIT_PREREQUISITE)
        except LabError as exc:
            click.echo(f"probe lab: {exc}", err=True)
            sys.exit(1)

    return wrapper


@click.group("lab")
def lab() -> None:
    """A censored network in namespaces: client - r1 - r2 - r3 - r4 - servers.

    Twitter-like hosts, controls, a measurement server and a DNS server sit
    behind four routers; `scenario` makes one router interfere the way a
    censor does (SNI throttling, resets, DNS poisoning, ...). Needs root.
    """


@lab.command("up")
@_lab_options
def up(lab: Lab) -> None:
    """Build the lab (replacing one with the same prefix) and start its servers."""
    state = lab.up()
    click.echo(f"lab up in {state['up_seconds']:.1f} s; state {lab.state_path}")
    click.echo(f"client namespace {state['client']['ns']}, CA {state['ca']['cert']}")
    nets = " ".join(f"--allow-net {n}" for n in state["allow_nets"])
    click.echo(f"measure: probe lab exec -- probe run --targets {state['targets']} "
               f"--ca-bundle {state['ca']['cert']} {nets}")


@lab.command("scenario")
@click.argument("name", type=click.Choice(scenarios.SCENARIOS))
@click.option("--rate", "rate", type=click.FloatRange(min=1), default=scenarios.DEFAULT_RATE_KBPS,
              show_default=True, help="Policing/shaping rate in kbit/s.")
@click.option("--hop", type=click.IntRange(1, topology.ROUTERS), default=scenarios.DEFAULT_HOP,
              show_default=True, help="Router (1 = next to the client) that interferes.")
@click.option("--link-rate", "link_rate", type=click.FloatRange(min=1), metavar="KBPS",
              help="Also shape all traffic to KBPS each way at the access router (hop 1, or "
                   "the last hop when --hop is 1): a network of that speed, so a throttle can "
                   "be set relative to it.")
@click.option("--burst", "burst_kb", type=click.FloatRange(min=0), metavar="KB",
              help=f"police: token bucket depth [default: {scenarios.DEFAULT_BURST_KB:g}].")
@click.option("--buffer-ms", "buffer_ms", type=click.FloatRange(min=0), metavar="MS",
              help="shape, shape-deep, shared, late: the shaper's queue in ms at the rate "
                   "[default: " + ", ".join(f"{k} {v:g}" for k, v in
                                            scenarios.DEFAULT_BUFFER_MS.items()) + "].")
@click.option("--after-kb", "after_kb", type=click.FloatRange(min=0), metavar="KB",
              help="late: bytes of a flow (both directions) that pass at full speed "
                   f"[default: {scenarios.DEFAULT_AFTER_KB:g}].")
@click.option("--loss", "loss_pct", type=click.FloatRange(0, 100), metavar="PCT",
              help=f"lossy: random loss per packet [default: {scenarios.DEFAULT_LOSS_PCT:g}].")
@click.option("--service", "services", multiple=True,
              type=click.Choice(scenarios.lab_services()),
              help="Whose names the SNI-keyed scenarios (sni-throttle, rst-block, blackhole, "
                   "the zoo) and the quic-* scenarios (names, or those names' hosts) act on; "
                   "repeatable [default: twitter]. youtube: the lab's i.ytimg.com, "
                   "www.youtube.com and googlevideo.com playback host.")
@_lab_options
def scenario(lab: Lab, name: str, rate: float, hop: int, link_rate: float | None,
             burst_kb: float | None, buffer_ms: float | None, after_kb: float | None,
             loss_pct: float | None, services: tuple[str, ...]) -> None:
    """Set the interference at router --hop, replacing the previous scenario.

    sni-throttle, rst-block, blackhole and the throttler zoo (police, shape, shape-deep,
    shared, late) act on TLS flows whose ClientHello names Twitter (or the --service
    given); lossy drops packets of every flow at random. The quic-* scenarios act on
    QUIC (UDP 443) only: quic-throttle-name and quic-block-name on flows whose Initial
    names the service (a classifier decrypts it, from an NFQUEUE), quic-throttle-ip and
    quic-block-ip on UDP 443 to the service's hosts; -throttle polices at --rate as
    sni-throttle does, -block drops."""
    tuning = scenarios.Tuning(burst_kb=burst_kb, buffer_ms=buffer_ms, after_kb=after_kb,
                    loss_pct=loss_pct)
    state = lab.scenario(name, rate_kbps=rate, hop=hop, link_kbps=link_rate, tuning=tuning,
                         services=services or ("twitter",))
    click.echo(f"scenario {_describe(state['scenario'], routers=True)}")


def _describe(s: dict, routers: bool = False) -> str:
    """'sni-throttle at hop 2 (tp-r2), 130 kbps; link 3000 kbps at hop 1'."""
    out = s["name"]
    if s["name"] != "clean":
        out += f" at hop {s['hop']}" + (f" ({s['router']})" if routers else "")
    out += f", {s['rate_kbps']:g} kbps" if s.get("rate_kbps") else ""
    units = {"burst_kb": "KB burst", "buffer_ms": "ms buffer", "after_kb": "KB free",
             "loss_pct": "% loss"}
    out += "".join(f", {s[k]:g} {u}" for k, u in units.items() if s.get(k) is not None)
    if s.get("services", ["twitter"]) != ["twitter"]:
        out += f", names of {', '.join(s['services'])}"
    if s.get("link_kbps"):
        out += f"; link {s['link_kbps']:g} kbps at hop {s['link_hop']}"
    return out


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
@_lab_options
def exec_(lab: Lab, cmd: tuple[str, ...]) -> None:
    """Run CMD in the client namespace; its exit status is passed through."""
    if not lab.state:
        raise LabError(f"the lab is not up (no {lab.state_path}); run `probe lab up`")
    sys.stdout.flush()
    os.environ.setdefault("PROBE_STATE_DIR", str(lab.client_state))  # as Lab.exec does
    os.execvp("ip", system.in_ns(lab.names.client, list(cmd)))


@lab.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@_lab_options
def status(lab: Lab, as_json: bool) -> None:
    """Show namespaces, processes and the active scenario."""
    st = lab.status()
    if as_json:
        click.echo(json.dumps(st, indent=1))
        return
    click.echo(f"lab {'up' if st['up'] else 'down'} ({st['dir']}, prefix {st['prefix']})")
    click.echo(f"namespaces: {' '.join(st['namespaces']) or '-'}")
    for p in st["processes"]:
        click.echo(f"  {p['name']:<15} pid {p['pid']:<7} {p['ns']:<12} "
                   f"{'alive' if p['alive'] else 'DEAD'}")
    if st["scenario"]:
        click.echo(f"scenario: {_describe(st['scenario'])}")


@lab.command("down")
@_lab_options
def down(lab: Lab) -> None:
    """Remove every namespace, process, rule and /etc/netns entry (idempotent)."""
    lab.down()
    click.echo("lab down")


if __name__ == "__main__":
    lab(prog_name="probe lab")
