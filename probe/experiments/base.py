"""What the experiments share: the server they talk to, their targets and their data caps."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from probe.measure.limits import Limits
from probe.names import service_of
from probe.targets import Target

# An experiment's own caps, which `capped` lays over the run's limits: each variant
# moves at most this much, and stops earlier once its rate is stable:
# a 130 kbit/s flow gives a stable estimate in 3-5 s (about 60-80 KB); an
# unthrottled one reaches the byte cap first. MAX_BYTES is also the size each
# download variant asks the server for.
MAX_BYTES = 1_000_000
MAX_SECONDS = 8.0
NEUTRAL_FALLBACK = "example.com"  # neutral SNI when the server URL names an IP address


@dataclass(frozen=True)
class Server:
    """The measurement server (`probe serve`) the experiments are run against."""

    url: str
    host: str
    port: int
    prefix: str = ""  # the URL's path: a server run with --path-prefix serves under it

    @classmethod
    def parse(cls, url: str) -> Server:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"--server must be an https:// URL with a host, not {url!r}")
        return cls(url=url, host=parts.hostname.lower(), port=parts.port or 443,
                   prefix=parts.path.rstrip("/"))

    def url_for(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}{self.prefix}{path}"

    @property
    def neutral_name(self) -> str:
        """The server's own name: the SNI any client of it would send."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return self.host
        return NEUTRAL_FALLBACK


def target(experiment: str, label: str, url: str, sni: str) -> Target:
    """A synthesised target: `sni` "" sends none; family follows the name (its service's,
    else control)."""
    return Target(
        name=f"{experiment}-{label}", url=url,
        family=service_of(sni) or "control", kind="bytes", sni=sni,
        source="probe.experiments",
    )


def capped(limits: Limits) -> Limits:
    """The run's limits, no looser than an experiment's own byte and time caps."""
    return limits.at_most(MAX_BYTES, MAX_SECONDS)
