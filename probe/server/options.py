"""The listen and certificate options `probe serve` and `probe collect` share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from .config import parse_listen


def _listen(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list:
    try:
        return [parse_listen(v) for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def listen_and_certificate(listen_help: str, cert_help: str) -> Callable:
    """--listen HOST:PORT (repeatable, parsed to (host, port)), --cert and --key."""
    def decorate(f: Callable) -> Callable:
        for option in reversed((
            click.option("--listen", "listen", multiple=True, default=["0.0.0.0:8443"],
                         show_default=True, callback=_listen, metavar="HOST:PORT",
                         help=listen_help),
            click.option("--cert", type=click.Path(exists=True, dir_okay=False,
                                                   path_type=Path), help=cert_help),
            click.option("--key", type=click.Path(exists=True, dir_okay=False,
                                                  path_type=Path),
                         help="Private key of --cert (PEM); defaults to --cert."),
        )):
            f = option(f)
        return f

    return decorate
