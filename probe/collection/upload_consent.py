"""Consent to upload, separate from consent to measure: sending results to a collector
tells its operators what was measured (and, without a proxy, from which address).

Asked once per collector at a terminal, showing what will be sent and where; kept in
the state folder (`upload-consent.json`) beside the consent to measure. Without a
terminal, nothing is sent unless consent is on record or `--yes` is given (which
records it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from probe.operate.consent import ConsentRefused
from probe.operate.state import state_dir
from probe.results.atomic import write_text

log = logging.getLogger("probe")

TEXT = """\
probe submit sends finished runs to a collector, where researchers study them.

Where: {collector}
{route}

What: {what}. Per target measured: the DNS
answers, connection and TLS handshake timings, the server's certificates, download
rates and errors, and the probe's version. The network's AS and country only for
runs made with --asn-db ({identity}). No IP address of this computer and no user
name: the files were scrubbed as they were written, and are checked again now.

The risk: anyone watching your network can see that this computer talks to the
collector; its operators learn what you measured and when.
"""
DIRECT = ("Directly: the collector sees this computer's public IP address, as any web\n"
          "site does. Use --proxy socks5h://127.0.0.1:9050 to send through Tor instead.")
TEXT_SHA256 = hashlib.sha256((TEXT + DIRECT).encode()).hexdigest()

NOT_ASKED = ("no consent to upload on record for {collector}, and without a terminal "
             "nobody can be asked. Run `probe submit` once at a terminal, or pass --yes "
             "after reading what is sent:\n\n{text}")


def path() -> Path:
    return state_dir() / "upload-consent.json"


def explain(collector: str, proxy: str | None, what: str, identity: str) -> str:
    """The question, for these runs (`what`: "3 measurement(s) of 1 run(s)")"""
    route = f"Through the proxy {proxy}." if proxy else DIRECT
    host = urlsplit(collector).hostname or ""
    if collector.startswith("http://") and not host.endswith(".onion"):
        route += "\nNot encrypted (http://): anyone on the way can read what is sent."
    return TEXT.format(collector=collector, route=route, what=what, identity=identity)


def _records() -> dict:
    try:
        data = json.loads(path().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("text_sha256") != TEXT_SHA256:
        return {}
    return data.get("collectors", {}) if isinstance(data.get("collectors"), dict) else {}


def on_record(collector: str) -> dict | None:
    """The consent given for this collector and the current text, or None."""
    found = _records().get(collector)
    return found if isinstance(found, dict) else None


def record(collector: str, how: str) -> None:
    collectors = _records()
    collectors[collector] = {"given_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                             "how": how}
    path().parent.mkdir(parents=True, exist_ok=True)
    write_text(path(), json.dumps({"text_sha256": TEXT_SHA256, "collectors": collectors},
                                  indent=2) + "\n")


def ensure(collector: str, text: str, interactive: bool, yes: bool,
           ask: Callable[[str], bool]) -> str:
    """`on-record`, `yes-flag` or `given-now`; raises ConsentRefused on a no, and without a
    terminal, a record or `yes` (like the consent to measure)."""
    if on_record(collector):
        return "on-record"
    if yes:
        _keep(collector, "--yes")
        return "yes-flag"
    if not interactive:
        raise ConsentRefused(NOT_ASKED.format(collector=collector, text=text))
    if not ask(text):
        raise ConsentRefused("consent to upload not given; nothing was sent")
    _keep(collector, "prompt")
    return "given-now"


def _keep(collector: str, how: str) -> None:
    """An unwritable state folder costs the record (asked again next time), not the
    upload the person just agreed to."""
    try:
        record(collector, how)
    except OSError as exc:
        log.warning("cannot record consent to upload in %s: %s", path(), exc.strerror or exc)
