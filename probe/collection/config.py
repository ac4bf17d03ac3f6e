"""Defaults for `probe submit` (and `probe run --submit`) from the state folder's config.

`$PROBE_STATE_DIR/config.toml` (else `~/.local/state/throttle-probe/config.toml`):

    [submit]
    collector = "https://collector.example.org"
    proxy = "socks5h://127.0.0.1:9050"   # optional
    ca_bundle = "/path/to/ca.pem"        # optional

A command-line option wins over the file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from probe.operate.state import state_dir

KEYS = ("collector", "proxy", "ca_bundle")


class ConfigError(Exception):
    """The config file exists but cannot be used; the message names it."""


def path() -> Path:
    return state_dir() / "config.toml"


def submit_defaults() -> dict[str, str]:
    """The `[submit]` table's known keys (an absent file: none)."""
    try:
        data = tomllib.loads(path().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path()}: {exc}") from exc
    table = data.get("submit", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path()}: [submit] must be a table")
    out = {}
    for key in KEYS:
        if key in table:
            if not isinstance(table[key], str):
                raise ConfigError(f"{path()}: [submit] {key} must be a string")
            out[key] = table[key]
    return out
