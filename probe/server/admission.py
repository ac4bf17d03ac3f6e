"""Who may hold a connection slot, and whose slot goes when a newcomer finds none free.

One attacker can own many addresses but few networks: a /24 of IPv4 or a /64 of
IPv6 (the block one host or one subscriber is given) is counted as well as the
address. When the server (or the newcomer's address or network) is full, a
holder gives up its slot: from the network holding most slots, a connection that
never sent a byte, else the one stalled longest, so idle and slow holders go
first and a fresh client is served. A connection that still makes progress is
never cut for a newcomer (a measurement cut mid-transfer would look like
interference), and a newcomer takes a slot from another network only if that
network holds more slots than its own would: an attacker's networks take slots
from each other and from themselves, never from a client whose network holds fewer.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

IPV4_NETWORK = 24
IPV6_NETWORK = 64


@dataclass(frozen=True)
class Client:
    """The address a connection came from and the network it is counted in."""

    address: str
    network: str

    @classmethod
    def of(cls, host: str) -> Client:
        """`Client` of a peer host as `accept()` gives it (IPv4-mapped IPv6 counts as IPv4)."""
        ip = ipaddress.ip_address(host.partition("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        prefix = IPV4_NETWORK if ip.version == 4 else IPV6_NETWORK
        return cls(str(ip), str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False)))


@dataclass(frozen=True)
class Standing:
    """How a holder is using its slot."""

    silent: bool  # not one byte received since accept
    stalled: float  # seconds without progress (a response sent or acknowledged, a body byte)


class Holder(Protocol):
    """A connection as admission sees it."""

    client: Client

    def standing(self, now: float) -> Standing: ...


@dataclass(frozen=True)
class SlotLimits:
    total: int
    per_address: int
    per_network: int
    evict_after: float  # a holder that is not silent must have stalled this long to be evicted


H = TypeVar("H", bound=Holder)


class Refused(Exception):
    """No slot is free and no holder has stalled long enough to give up its own."""


class Slots(Generic[H]):
    """The slots held, by holder; the caller serialises access (the server's lock)."""

    def __init__(self, limits: SlotLimits) -> None:
        self.limits = limits
        self.holders: dict[H, Client] = {}

    def __len__(self) -> int:
        return len(self.holders)

    def admit(self, client: Client, now: float) -> H | None:
        """Make room for `client`: None if a slot is free, else the holder to evict.

        The narrowest full group is the pool (its own address, then its network,
        then the whole server), so evicting from it frees a slot in every group
        the newcomer counts in. Raises `Refused` if no holder in the pool may go.
        """
        pool = self._full_pool(client)
        if pool is None:
            return None
        per_network = Counter(c.network for c in self.holders.values())
        # Another network gives a slot only if it would still hold as many as the
        # newcomer's; within its own network anyone may.
        floor = per_network[client.network] + 1
        best: tuple[tuple[int, bool, float], H] | None = None
        for holder in pool:
            held = per_network[holder.client.network]
            if held < floor and holder.client.network != client.network:
                continue
            standing = holder.standing(now)
            if not (standing.silent or standing.stalled >= self.limits.evict_after):
                continue
            rank = (held, standing.silent, standing.stalled)
            if best is None or rank > best[0]:
                best = (rank, holder)
        if best is None:
            raise Refused()
        return best[1]

    def add(self, holder: H) -> None:
        self.holders[holder] = holder.client

    def remove(self, holder: H) -> bool:
        """Give the slot back; False if `holder` held none (already evicted)."""
        return self.holders.pop(holder, None) is not None

    def _full_pool(self, client: Client) -> list[H] | None:
        """The holders of the narrowest full group `client` counts in, None if none is full."""
        limits = self.limits
        same_address = [h for h, c in self.holders.items() if c.address == client.address]
        if len(same_address) >= limits.per_address:
            return same_address
        same_network = [h for h, c in self.holders.items() if c.network == client.network]
        if len(same_network) >= limits.per_network:
            return same_network
        if len(self.holders) >= limits.total:
            return list(self.holders)
        return None
