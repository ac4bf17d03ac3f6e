"""A failed QUIC fetch is staged by its handshake: it never makes a TCP connect."""

from __future__ import annotations

import pandas as pd

from analysis.features import _stage


def test_a_quic_handshake_timeout_is_no_dns_failure() -> None:
    dns = pd.DataFrame({"bogons": [""]})  # DNS answered with a usable address
    handshake = pd.DataFrame({"failure": ["generic_timeout_error"]})
    m = {"failure": "generic_timeout_error", "experiment": "target-h3"}
    assert _stage(m, dns, None, handshake, quic=True) == "tls-reset"  # judged blocked
    assert _stage(m, dns, None, None, quic=True) == "dns"  # nothing was tried at all
    assert _stage(m, dns, None, handshake) == "dns"  # read as TCP: no connect, so DNS
