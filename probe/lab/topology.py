"""The lab's fixed address plan: a client, four routers in a chain, a server side.

    client --- r1 --- r2 --- r3 --- r4 --- srv
       link0   link1  link2  link3  link4

Only documentation addresses are used, so nothing the lab does can reach a
real host. Link k is 192.0.2.(4k)/30: its client-side end is .4k+1, its
server-side end .4k+2. Each router therefore has a distinct address per side,
and a TTL-limited probe from the client sees router k answer from its west
address 192.0.2.(4k-2). The throttled services' hosts (Twitter's, YouTube's)
live in 203.0.113.0/24, controls, the DNS server and the measurement server in
198.51.100.0/24; all are /32s on the server namespace's loopback.
"""

from __future__ import annotations

from dataclasses import dataclass

ROUTERS = 4
DEFAULT_PREFIX = "tpl-"
TWITTER_NET = "203.0.113.0/24"
CONTROL_NET = "198.51.100.0/24"
LINK_NET = "192.0.2.0/24"
DNS_ADDRESS = "198.51.100.53"
MEASURE_NAME = "measure.lab.test"
MEASURE_ADDRESS = "198.51.100.80"
POISON_ADDRESS = "10.10.34.34"  # the bogon Iran's DNS injection answers; routed nowhere in the lab
MITM_PORT = 8443
YOUTUBE_PLAYBACK = "rr1---sn-4g5e6nsz.googlevideo.com"  # the form of every playback host


@dataclass(frozen=True)
class Host:
    """A named origin on the server side."""

    name: str
    address: str
    family: str  # a service's family ("twitter", "youtube": probe.names) or "control"
    role: str  # what the host stands for


HOSTS: tuple[Host, ...] = (
    Host("pbs.twimg.com", "203.0.113.10", "twitter", "images"),
    Host("video.twimg.com", "203.0.113.11", "twitter", "videos (HLS, MP4)"),
    Host("abs.twimg.com", "203.0.113.12", "twitter", "scripts"),
    Host("twitter.com", "203.0.113.13", "twitter", "pages"),
    Host("t.co", "203.0.113.14", "twitter", "link shortener pages"),
    Host("i.ytimg.com", "203.0.113.20", "youtube", "thumbnails"),
    Host("www.youtube.com", "203.0.113.21", "youtube", "pages"),
    # On the Internet a playback host's URLs are signed and expire; the lab's serves media.
    Host(YOUTUBE_PLAYBACK, "203.0.113.22", "youtube", "video playback"),
    Host("www.reddit.com", "198.51.100.10", "control", "collateral: contains 't.co'"),
    Host("www.microsoft.com", "198.51.100.11", "control", "collateral: contains 't.co'"),
    Host("images.lab.test", "198.51.100.12", "control", "image control"),
    Host("video.lab.test", "198.51.100.13", "control", "video control"),
    Host("static.lab.test", "198.51.100.14", "control", "script control"),
    Host("www.lab.test", "198.51.100.15", "control", "page control"),
)
TWITTER_NAMES = tuple(h.name for h in HOSTS if h.family == "twitter")


def names_of(family: str) -> tuple[str, ...]:
    """The lab's host names of one service (or of the controls)."""
    return tuple(h.name for h in HOSTS if h.family == family)


def link_address(link: int, side: str) -> str:
    """Address of the client-side ("west") or server-side ("east") end of a link."""
    return f"192.0.2.{4 * link + (1 if side == 'west' else 2)}"


def link_subnet(link: int) -> str:
    return f"192.0.2.{4 * link}/30"


@dataclass(frozen=True)
class Names:
    """Namespace names of one lab; a shared prefix lets `down` find them after a crash."""

    prefix: str = DEFAULT_PREFIX

    @property
    def client(self) -> str:
        return f"{self.prefix}client"

    @property
    def server(self) -> str:
        return f"{self.prefix}srv"

    def router(self, hop: int) -> str:
        return f"{self.prefix}r{hop}"

    @property
    def routers(self) -> list[str]:
        return [self.router(h) for h in range(1, ROUTERS + 1)]

    @property
    def chain(self) -> list[str]:
        """Every namespace from client to server, in path order."""
        return [self.client, *self.routers, self.server]


def router_addresses(hop: int) -> dict[str, str]:
    """Router `hop` (1-based): its west address (toward the client) and east address."""
    return {"west": link_address(hop - 1, "east"), "east": link_address(hop, "west")}


CLIENT_ADDRESS = link_address(0, "west")
SERVER_LINK_ADDRESS = link_address(ROUTERS, "east")


def zone(poison: bool = False) -> dict:
    """The lab zone (probe.lab.dns_server format); `poison` adds bogus Twitter answers."""
    records = {h.name: {"A": [h.address]} for h in HOSTS}
    records[MEASURE_NAME] = {"A": [MEASURE_ADDRESS]}
    records["ns.lab.test"] = {"A": [DNS_ADDRESS]}
    data: dict = {"ttl": 300, "records": records}
    if poison:
        data["poison"] = {"match": ["twimg.com", "twitter.com", "t.co"], "A": POISON_ADDRESS}
    return data
