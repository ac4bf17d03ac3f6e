"""Interference scenarios as kernel configuration of one router.

A scenario is an iptables ruleset (loaded with iptables-restore) plus tc
commands for the router's two interfaces: `west` (toward the client, so its
egress is the download direction) and `east` (toward the server: uploads).

How the 2021 throttler is reproduced:
- Trigger: a per-packet match on the first packets of a TCP/443 flow
  (connbytes): the packet must begin with a whole ClientHello record (u32:
  record type 0x16, handshake type 1, record length that fits one packet) and
  contain the name (string match). Nothing is reassembled, so what evaded the
  real device evades this one: a name split across TCP segments, a ClientHello
  padded past one packet, a ClientHello fragmented into several TLS records.
  Exact names carry the SNI length prefix (`00 00 0d "pbs.twimg.com"`);
  `*.twimg.com` is the substring ".twimg.com"; `collateral` is the bare
  substring "t.co" of the early rule.
- A first data packet of over ~100 bytes that is not a TLS record ends the
  inspection of its flow (CONNMARK 0x20), as reported for the real device.
- The match runs in mangle PREROUTING, before the TTL check of forwarding, so
  a trigger packet whose TTL expires at this router still marks its flow
  (CONNMARK): the locate experiment relies on this.
- Policing, not shaping: marked flows are CLASSIFYed into an HTB class at the
  rate whose queue holds only a few packets, so excess packets are dropped.
  Each direction has its own limiter (one per interface).
- `congestion` is the opposite: one shaper per direction for all traffic with
  a deep queue (about a second), so delay grows instead of packets vanishing.
- A link rate (`--link-rate`) is the same shaper on another router, the access
  link: any scenario then runs on a network of that speed, so a throttle can be
  set relative to it (a 3x slowdown: `--rate 1000 --link-rate 3000`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import topology

SCENARIOS = (
    "clean", "sni-throttle", "collateral", "ip-throttle", "upload-throttle", "congestion",
    "rst-block", "blackhole", "dns-poison", "tls-mitm",
)
RATE_SCENARIOS = ("sni-throttle", "collateral", "ip-throttle", "upload-throttle", "congestion")
DEFAULT_RATE_KBPS = 130.0
DEFAULT_HOP = 2
INSPECT_PACKETS = 16  # the device looks at the first packets of a flow only
POLICE_QUEUE_PACKETS = 3
MARK = "0x10"  # the flow carried a trigger
EXEMPT = "0x20"  # the flow began with something else than TLS: no longer inspected
# u32: move to the TCP payload (IP header length, then TCP data offset).
_PAYLOAD = "0>>22&0x3C@12>>26&0x3C@"
TLS_RECORD = f"{_PAYLOAD}0>>24=0x16"  # a TLS handshake record starts the payload
MAX_RECORD = 1448 - 5  # a record that fits one full-sized segment (MSS 1448)
MIN_RECORD = 64  # shorter first records are fragments, not a parseable ClientHello
CLIENT_HELLO = (
    f"{TLS_RECORD}&&{_PAYLOAD}4>>16&0xFF=0x01&&{_PAYLOAD}1&0xFFFF={MIN_RECORD}:{MAX_RECORD}"
)
NON_TLS_PACKET_BYTES = 141  # IP packet length: ~100 payload bytes after 40 bytes of headers
THROTTLED_CLASS = "1:10"


@dataclass
class Plan:
    """What one scenario does to router `hop`."""

    iptables: str  # iptables-restore input
    tc: list[str] = field(default_factory=list)  # `tc -batch` lines
    poison_dns: bool = False  # run a poisoning DNS server on the router's west address
    mitm: bool = False  # run a foreign-CA TLS server on the router's west address


def hex_sni(name: str) -> str:
    """A string-match pattern for an exact SNI: name type 0, 2-byte length, name."""
    return f"|00 {len(name) >> 8:02x} {len(name) & 0xff:02x}|{name}"


def twitter_patterns() -> list[tuple[str, str]]:
    """(match kind, pattern) pairs for the Twitter SNI rule: exact names plus *.twimg.com."""
    exact = [n for n in topology.TWITTER_NAMES if not n.endswith(".twimg.com")]
    return [("--hex-string", hex_sni(n)) for n in exact] + [("--string", ".twimg.com")]


def collateral_patterns() -> list[tuple[str, str]]:
    """The early, over-broad rule: the substring "t.co" anywhere in the first packets."""
    return [("--string", "t.co")]


def sni_mark_rules(patterns: list[tuple[str, str]]) -> list[str]:
    """Mark flows whose first packets carry a ClientHello matching one of `patterns`."""
    fresh = "-A PREROUTING -p tcp --dport 443 -m connmark --mark 0x0 -m connbytes"
    exempt = (
        f"{fresh} --connbytes 2:3 --connbytes-dir original --connbytes-mode packets "
        f'-m length --length {NON_TLS_PACKET_BYTES}:65535 -m u32 ! --u32 "{TLS_RECORD}" '
        f"-j CONNMARK --set-mark {EXEMPT}"
    )
    trigger = (
        f"{fresh} --connbytes 0:{INSPECT_PACKETS} --connbytes-dir original "
        f'--connbytes-mode packets -m u32 --u32 "{CLIENT_HELLO}" -m string --algo bm'
    )
    return [exempt] + [
        f'{trigger} {kind} "{pat}" -j CONNMARK --set-mark {MARK}' for kind, pat in patterns
    ]


def ruleset(mangle: list[str] = (), filter_: list[str] = (), nat: list[str] = ()) -> str:
    """iptables-restore input that replaces the mangle, filter and nat tables."""
    out = []
    for table, rules in (("mangle", mangle), ("filter", filter_), ("nat", nat)):
        out += [f"*{table}", *rules, "COMMIT"]
    return "\n".join(out) + "\n"


def htb(dev: str, rate_kbps: float, default: str, queue: str) -> list[str]:
    """An HTB root on `dev`: class 1:1 unlimited, class 1:10 at the rate with `queue`."""
    burst = max(1600, int(rate_kbps * 1000 / 8 * 0.02))  # ~20 ms of tokens
    return [
        f"qdisc replace dev {dev} root handle 1: htb default {default} r2q 1",
        f"class add dev {dev} parent 1: classid 1:1 htb rate 10gbit",
        f"class add dev {dev} parent 1: classid {THROTTLED_CLASS} htb rate {rate_kbps}kbit "
        f"ceil {rate_kbps}kbit burst {burst} cburst {burst}",
        f"qdisc add dev {dev} parent {THROTTLED_CLASS} handle 10: {queue}",
    ]


def police(dev: str, rate_kbps: float, default: str = "1") -> list[str]:
    return htb(dev, rate_kbps, default, f"pfifo limit {POLICE_QUEUE_PACKETS}")


def shape(dev: str, rate_kbps: float) -> list[str]:
    depth = max(30_000, int(rate_kbps * 1000 / 8))  # one second of queue
    return htb(dev, rate_kbps, "10", f"bfifo limit {depth}")


def link_hop(hop: int) -> int:
    """The access router that carries a link rate: next to the client, unless the
    scenario's own router is there (then the last router, next to the servers)."""
    return 1 if hop != 1 else topology.ROUTERS


def link(rate_kbps: float) -> list[str]:
    """tc lines that make a router a link of `rate_kbps` each way, for all traffic."""
    return shape("west", rate_kbps) + shape("east", rate_kbps)


def plan(name: str, rate_kbps: float, router_west: str) -> Plan:
    """The kernel configuration of scenario `name` for a router whose west address is given."""
    classify = f"-A POSTROUTING -m connmark --mark {MARK} -j CLASSIFY --set-class {THROTTLED_CLASS}"
    both = police("west", rate_kbps) + police("east", rate_kbps)
    if name == "clean":
        return Plan(ruleset())
    if name == "sni-throttle":
        return Plan(ruleset(mangle=[*sni_mark_rules(twitter_patterns()), classify]), both)
    if name == "collateral":
        return Plan(ruleset(mangle=[*sni_mark_rules(collateral_patterns()), classify]), both)
    if name == "ip-throttle":
        net = topology.TWITTER_NET
        rules = [
            f"-A POSTROUTING -d {net} -j CLASSIFY --set-class {THROTTLED_CLASS}",
            f"-A POSTROUTING -s {net} -j CLASSIFY --set-class {THROTTLED_CLASS}",
        ]
        return Plan(ruleset(mangle=rules), both)
    if name == "upload-throttle":
        # Every client-to-server packet carrying data; pure ACKs (<= 128 bytes) pass, so
        # downloads keep their speed, as on the mobile ISP that shaped all uploads.
        rules = [
            "-A POSTROUTING -o east -m length --length 129:65535 "
            f"-j CLASSIFY --set-class {THROTTLED_CLASS}"
        ]
        return Plan(ruleset(mangle=rules), police("east", rate_kbps))
    if name == "congestion":
        return Plan(ruleset(), link(rate_kbps))
    if name in ("rst-block", "blackhole"):
        action = "REJECT --reject-with tcp-reset" if name == "rst-block" else "DROP"
        proto = "-p tcp " if name == "rst-block" else ""
        drop = f"-A FORWARD {proto}-m connmark --mark {MARK} -j {action}"
        return Plan(ruleset(mangle=sni_mark_rules(twitter_patterns()), filter_=[drop]))
    if name == "dns-poison":
        nat = [
            f"-A PREROUTING -i west -p {p} --dport 53 -j DNAT --to-destination {router_west}:53"
            for p in ("udp", "tcp")
        ]
        return Plan(ruleset(nat=nat), poison_dns=True)
    if name == "tls-mitm":
        nat = [
            f"-A PREROUTING -i west -p tcp -d {topology.TWITTER_NET} --dport 443 "
            f"-j DNAT --to-destination {router_west}:{topology.MITM_PORT}"
        ]
        return Plan(ruleset(nat=nat), mitm=True)
    raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
