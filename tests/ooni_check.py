"""Check a measurement against OONI's published data models (the `oonidata` package).

Every network record list our test keys share with OONI's (`queries`, `tcp_connect`,
`tls_handshakes`, `requests`, `network_events`) is parsed with OONI's own class, so
an error names the list, the item and the field.
"""

from __future__ import annotations

from typing import Any

from oonidata.models.dataformats import (
    DNSQuery,
    HTTPTransaction,
    NetworkEvent,
    TCPConnect,
    TLSHandshake,
)
from oonidata.models.nettests.base_measurement import BaseMeasurement
from oonidata.models.nettests.urlgetter import UrlGetter

LISTS = {"queries": DNSQuery, "tcp_connect": TCPConnect, "tls_handshakes": TLSHandshake,
         "requests": HTTPTransaction, "network_events": NetworkEvent}


def ooni_errors(m: dict[str, Any]) -> list[str]:
    """What OONI's models refuse in measurement `m` (empty: it parses)."""
    errors: list[str] = []
    base = {**m, "test_keys": {}}
    try:
        BaseMeasurement.from_dict(base)
    except Exception as exc:  # mashumaro's errors name the field
        errors.append(f"envelope: {exc}")
    keys = m.get("test_keys") if isinstance(m.get("test_keys"), dict) else {}
    for name, model in LISTS.items():
        for i, item in enumerate(keys.get(name) or []):
            try:
                model.from_dict(item)
            except Exception as exc:
                errors.append(f"test_keys.{name}[{i}]: {exc}")
    if not errors:
        try:
            UrlGetter.from_dict(m)  # the whole measurement, as OONI's generic fetcher's
        except Exception as exc:
            errors.append(f"measurement: {exc}")
    return errors
