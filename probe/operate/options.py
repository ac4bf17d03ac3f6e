"""Groups of command-line options, each declared once.

A scheduled run is `probe run` with the schedule's options passed on, so the two
commands must accept the same budget options with the same meaning and limits.
The network options (how the probe resolves, reaches and trusts the targets) are
`probe run`'s; `probe schedule install` hands them to it after `--`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable)

# (option, keyword, help): the data budgets, in megabytes of 10^6 bytes.
BUDGETS = (
    ("--budget-mb", "budget_mb",
     "Stop starting transfers once this run has moved MB megabytes (10^6 B)."),
    ("--daily-budget-mb", "daily_budget_mb",
     "Rolling cap across runs for the current UTC day (kept in the state dir)."),
    ("--monthly-budget-mb", "monthly_budget_mb",
     "Rolling cap across runs for the current UTC month."),
)


def budget_options(func: F) -> F:
    """Add --budget-mb, --daily-budget-mb and --monthly-budget-mb to a click command."""
    for flag, _, text in reversed(BUDGETS):
        func = click.option(flag, type=click.FloatRange(min=0, min_open=True), metavar="MB",
                            help=text)(func)
    return func


def budget_argv(values: dict[str, float | None]) -> list[str]:
    """The budget options of `values` (keyword -> MB) as `probe run` arguments."""
    out: list[str] = []
    for flag, key, _ in BUDGETS:
        if values.get(key):
            out += [flag, f"{values[key]:g}"]
    return out


def network_options(func: F) -> F:
    """Add --resolver, --doh, --no-system-resolver, --ca-bundle, --connect-to and --allow-net."""
    options = (
        click.option("--resolver", multiple=True, callback=_resolvers, metavar="IP[:PORT]",
                     help="Also ask this DNS resolver (UDP, TCP on truncation); repeatable."),
        click.option("--doh", multiple=True, callback=_resolvers, metavar="URL",
                     help="Also ask this DNS-over-HTTPS resolver, e.g. "
                          "https://1.1.1.1/dns-query."),
        click.option("--no-system-resolver", is_flag=True,
                     help="Do not query the resolvers of /etc/resolv.conf."),
        click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False,
                                                    path_type=Path),
                     help="Trust these CA certificates (PEM) instead of the system's (labs, "
                          "private deployments). Verification stays on."),
        click.option("--connect-to", multiple=True, callback=_connect_to, metavar="HOST:IP",
                     help="Connect to IP for HOST instead of the resolved address; "
                          "repeatable."),
        click.option("--allow-net", "allow_nets", multiple=True, callback=_nets,
                     metavar="CIDR",
                     help="Treat answers in this network as genuine, not bogons (for labs "
                          "using documentation prefixes); repeatable."),
    )
    for option in reversed(options):
        func = option(func)
    return func


def _resolvers(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list:
    from probe.measure import dns

    out = []
    for v in values:
        try:
            r = dns.parse_resolver(v)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        if param.name == "doh" and r.engine != "doh":
            raise click.BadParameter(f"{v!r}: --doh needs an https:// URL")
        if param.name == "resolver" and r.engine == "doh":
            raise click.BadParameter(f"{v!r}: use --doh for DNS-over-HTTPS")
        out.append(r)
    return out


def _connect_to(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    pins = {}
    for v in values:
        host, sep, ip = v.rpartition(":")
        if "]" in ip or (ip and host.startswith("[")):  # HOST:[v6]
            host, _, ip = v.partition(":")
        ip = ip.strip("[]")
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise click.BadParameter(
                f"{v!r}: expected HOST:IP, e.g. pbs.twimg.com:192.0.2.7"
            ) from None
        if not sep or not host:
            raise click.BadParameter(f"{v!r}: expected HOST:IP")
        pins[host.lower()] = ip
    return pins


def _nets(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    for v in values:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            raise click.BadParameter(
                f"{v!r} is not an IP network (e.g. 192.0.2.0/24)"
            ) from None
    return list(values)
