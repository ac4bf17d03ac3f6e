"""Informed consent: a volunteer learns what the probe does, and what it risks, once.

Measuring censorship from inside a censored network can draw attention. The
first run at a terminal explains this and asks; the answer is kept so later
runs (and `probe schedule install`) know it was given. A run without a
terminal cannot ask, so it measures only with consent on record or `--yes`
(which records it); otherwise it stops before measuring anything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

from probe.measure.limits import DEFAULT_LIMITS
from probe.operate.state import state_dir
from probe.results.atomic import write_text

log = logging.getLogger("probe")

# The caps quoted are `probe run`'s defaults: a volunteer consents to what a run moves.
_KIB, _SECONDS = DEFAULT_LIMITS.max_bytes // 1024, DEFAULT_LIMITS.max_seconds
TEXT = f"""\
throttle-probe measures how your network treats Twitter and comparable sites.

What it does: it looks up names like pbs.twimg.com and twitter.com, connects
to them and downloads a few images, a video and pages (capped: by default at
most {_KIB} KiB and {_SECONDS:g} s per object), and times every step. It can also talk to
a research measurement server. The results are saved on this computer, in the
results folder, and contain no IP address of yours; nothing is uploaded.

The risk: anyone who watches your network (your provider, your employer, a
state authority) can see that this computer contacted these sites, many times
and in a pattern a measurement tool makes. In some countries running
censorship measurements can have legal or personal consequences. Only run it
if you understand and accept that risk. Mobile data used counts against your
plan; use --budget-mb to cap it.
"""

TEXT_SHA256 = hashlib.sha256(TEXT.encode()).hexdigest()


class ConsentRefused(Exception):
    """The volunteer said no, or could not be asked and gave no --yes."""


NOT_ASKED = ("no consent on record, and without a terminal nobody can be asked. Read what "
             "the probe does and its risk, then run `probe run` once at a terminal or pass "
             "--yes:\n\n" + TEXT)


def path() -> Path:
    return state_dir() / "consent.json"


def on_record() -> dict | None:
    """The stored consent for the current text, or None."""
    try:
        data = json.loads(path().read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("text_sha256") == TEXT_SHA256:
        return data
    return None


def record(how: str) -> dict:
    data = {"given_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "how": how,
            "text_sha256": TEXT_SHA256}
    path().parent.mkdir(parents=True, exist_ok=True)
    write_text(path(), json.dumps(data, indent=2) + "\n")
    return data


def ensure(interactive: bool, yes: bool, ask: Callable[[str], bool]) -> str:
    """Consent state for run.json: `on-record`, `given-now` or `yes-flag`.

    `ask(text) -> bool` shows the explanation and returns the answer; it is only
    called at a terminal when nothing is on record. Raises ConsentRefused on no,
    and without a terminal, nothing on record and no `yes`.
    """
    if on_record():
        return "on-record"
    if yes:
        _keep("--yes")
        return "yes-flag"
    if not interactive:
        raise ConsentRefused(NOT_ASKED)
    if not ask(TEXT):
        raise ConsentRefused("consent not given; nothing was measured")
    _keep("prompt")
    return "given-now"


def _keep(how: str) -> None:
    """Record consent; an unwritable state folder costs the record (it will be asked
    again next time), not the run the person just agreed to."""
    try:
        record(how)
    except OSError as exc:
        log.warning("cannot record consent in %s: %s", path(), exc.strerror or exc)
