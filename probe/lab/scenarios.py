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
  substring "t.co" of the early rule. The names are Twitter's unless the
  scenario is given other services (`--service youtube`: ".ytimg.com",
  ".youtube.com", ".googlevideo.com", the 2024 case).
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
- QUIC (UDP 443) is throttled or dropped apart from TCP, as in 2024 when YouTube ran
  at ~128 kbit/s over TCP but ~512 kbit/s over QUIC: by the service's addresses
  (kernel rules alone), or by the name in the client's Initial, which must be
  decrypted first, so the router queues a flow's first packets (NFQUEUE) to a
  user-space classifier (quic_classifier.py) whose verdict mark CONNMARK keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from probe.names import SERVICES

from . import topology

ZOO = ("police", "shape", "shape-deep", "shared", "late", "lossy")
# QUIC only (UDP 443): by the name in the Initial (the classifier) or by the service's
# addresses, throttled (the sni-throttle policer) or dropped.
QUIC_SCENARIOS = ("quic-throttle-name", "quic-throttle-ip", "quic-block-name", "quic-block-ip")
SCENARIOS = (
    "clean", "sni-throttle", "collateral", "ip-throttle", "upload-throttle", "congestion",
    "rst-block", "blackhole", "dns-poison", "tls-mitm", *ZOO, *QUIC_SCENARIOS,
)
# The scenarios whose trigger is a name in the ClientHello (`services` chooses whose).
SNI_SCENARIOS = ("sni-throttle", "rst-block", "blackhole", "police", "shape", "shape-deep",
                 "shared", "late")
SERVICE_SCENARIOS = (*SNI_SCENARIOS, *QUIC_SCENARIOS)  # the ones `services` acts on
RATE_SCENARIOS = ("sni-throttle", "collateral", "ip-throttle", "upload-throttle", "congestion",
                  "police", "shape", "shape-deep", "shared", "late", "quic-throttle-name",
                  "quic-throttle-ip")
DEFAULT_RATE_KBPS = 130.0
DEFAULT_BURST_KB = 16.0  # police: token bucket depth (the 2021 device let ~16 KB through)
DEFAULT_BUFFER_MS = {"shape": 1000.0, "shape-deep": 10_000.0, "shared": 1000.0,
                     "late": 1000.0}  # queue of a shaper, in time at its rate
DEFAULT_AFTER_KB = 100.0  # late: bytes of a flow (both directions) that pass before the throttle
DEFAULT_LOSS_PCT = 2.0  # lossy: random loss on every packet, each direction
FLOW_SLOTS = 8  # per-flow shapers: marked flows take HTB classes round-robin
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
SLOT_MARK = 0x40  # + k: a marked flow holding per-flow shaper k
QUIC_QUEUE = 1  # the NFQUEUE of the QUIC classifier (queues are per namespace)
QUIC_INSPECT_PACKETS = 4  # client packets of a UDP/443 flow queued until a mark is saved


@dataclass
class Plan:
    """What one scenario does to router `hop`."""

    iptables: str  # iptables-restore input
    tc: list[str] = field(default_factory=list)  # `tc -batch` lines
    poison_dns: bool = False  # run a poisoning DNS server on the router's west address
    mitm: bool = False  # run a foreign-CA TLS server on the router's west address
    quic_domains: tuple[str, ...] = ()  # run the QUIC classifier watching these domains


@dataclass(frozen=True)
class Tuning:
    """The zoo's knobs; None takes the scenario's default."""

    burst_kb: float | None = None  # police: token bucket depth
    buffer_ms: float | None = None  # shape, shape-deep, shared, late: queue in time at the rate
    after_kb: float | None = None  # late: bytes of a flow that pass before the throttle
    loss_pct: float | None = None  # lossy: random loss per packet

    def resolved(self, name: str) -> dict[str, float]:
        """The knobs scenario `name` uses, defaults filled in (for the state file)."""
        out: dict[str, float] = {}
        if name == "police":
            out["burst_kb"] = self.burst_kb if self.burst_kb is not None else DEFAULT_BURST_KB
        if name in DEFAULT_BUFFER_MS:
            out["buffer_ms"] = (self.buffer_ms if self.buffer_ms is not None
                                else DEFAULT_BUFFER_MS[name])
        if name == "late":
            out["after_kb"] = self.after_kb if self.after_kb is not None else DEFAULT_AFTER_KB
        if name == "lossy":
            out["loss_pct"] = self.loss_pct if self.loss_pct is not None else DEFAULT_LOSS_PCT
        return out


def hex_sni(name: str) -> str:
    """A string-match pattern for an exact SNI: name type 0, 2-byte length, name."""
    return f"|00 {len(name) >> 8:02x} {len(name) & 0xff:02x}|{name}"


def service_patterns(service: str = "twitter") -> list[tuple[str, str]]:
    """(match kind, pattern) pairs for a service's SNI rule over its lab hosts: a name that
    is a service domain itself exactly (twitter.com, t.co), any other by its domain as a
    substring (".twimg.com" for *.twimg.com, ".googlevideo.com")."""
    domains = SERVICES[service]
    exact: list[str] = []
    wild: list[str] = []
    for name in topology.names_of(service):
        parent = next(d for d in domains if name == d or name.endswith("." + d))
        if name == parent:
            exact.append(name)
        elif f".{parent}" not in wild:
            wild.append(f".{parent}")
    return [("--hex-string", hex_sni(n)) for n in exact] + [("--string", w) for w in wild]


def lab_services() -> tuple[str, ...]:
    """The services whose names the lab serves, so a scenario can throttle them."""
    return tuple(s for s in SERVICES if topology.names_of(s))


def _service_marks(services: Sequence[str]) -> list[str]:
    return sni_mark_rules([p for s in services for p in service_patterns(s)])


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


def htb(dev: str, rate_kbps: float, default: str, queue: str,
        classes: tuple[str, ...] = (THROTTLED_CLASS,), burst: int | None = None) -> list[str]:
    """An HTB root on `dev`: class 1:1 unlimited, each of `classes` at the rate with `queue`
    and a token bucket of `burst` bytes (default ~20 ms of tokens)."""
    burst = burst or max(1600, int(rate_kbps * 1000 / 8 * 0.02))
    lines = [
        f"qdisc replace dev {dev} root handle 1: htb default {default} r2q 1",
        f"class add dev {dev} parent 1: classid 1:1 htb rate 10gbit",
    ]
    for n, cls in enumerate(classes):
        lines += [
            f"class add dev {dev} parent 1: classid {cls} htb rate {rate_kbps}kbit "
            f"ceil {rate_kbps}kbit burst {burst} cburst {burst}",
            f"qdisc add dev {dev} parent {cls} handle {0x10 + n:x}: {queue}",
        ]
    return lines


def police(dev: str, rate_kbps: float, default: str = "1") -> list[str]:
    return htb(dev, rate_kbps, default, f"pfifo limit {POLICE_QUEUE_PACKETS}")


def buffer_bytes(rate_kbps: float, buffer_ms: float) -> int:
    """A queue holding `buffer_ms` of traffic at the rate (at least two full packets)."""
    return max(3000, int(rate_kbps * 1000 / 8 * buffer_ms / 1000))


def shape(dev: str, rate_kbps: float, buffer_ms: float = 1000.0,
          classes: tuple[str, ...] | None = None) -> list[str]:
    """A shaper: excess is queued (bfifo of `buffer_ms`), dropped only when the queue is full.
    Without `classes` it shapes everything (the default class); with them, those classes."""
    limit = buffer_bytes(rate_kbps, buffer_ms)
    if classes is None:  # a whole link: deep enough for a fast flow's window
        return htb(dev, rate_kbps, "10", f"bfifo limit {max(30_000, limit)}")
    return htb(dev, rate_kbps, "1", f"bfifo limit {limit}", classes)


SLOT_CLASSES = tuple(f"1:{SLOT_MARK + k:x}" for k in range(FLOW_SLOTS))  # HTB minor ids: hex


def flow_slot_rules(only: str = "") -> tuple[list[str], list[str]]:
    """(PREROUTING, POSTROUTING) rules giving each marked flow a shaper of its own: a newly
    marked flow takes the next of FLOW_SLOTS connmarks round-robin (statistic nth), and
    its packets are CLASSIFYed into that slot's HTB class. `only` adds a match to the
    CLASSIFY rules (e.g. connbytes for a throttle that starts late)."""
    pre = [
        f"-A PREROUTING -m connmark --mark {MARK} -m statistic --mode nth "
        f"--every {FLOW_SLOTS - k} --packet 0 -j CONNMARK --set-mark {SLOT_MARK + k:#x}"
        for k in range(FLOW_SLOTS)
    ]
    post = [
        f"-A POSTROUTING -m connmark --mark {SLOT_MARK + k:#x} {only}"
        f"-j CLASSIFY --set-class {SLOT_CLASSES[k]}"
        for k in range(FLOW_SLOTS)
    ]
    return pre, post


def link_hop(hop: int) -> int:
    """The access router that carries a link rate: next to the client, unless the
    scenario's own router is there (then the last router, next to the servers)."""
    return 1 if hop != 1 else topology.ROUTERS


def link(rate_kbps: float) -> list[str]:
    """tc lines that make a router a link of `rate_kbps` each way, for all traffic."""
    return shape("west", rate_kbps) + shape("east", rate_kbps)


def zoo_plan(name: str, rate_kbps: float, tuning: Tuning,
             services: Sequence[str] = ("twitter",)) -> Plan:
    """A throttler of the zoo on flows whose ClientHello names one of `services` (Twitter
    by default), each direction apart.

    police: a per-flow token bucket of burst_kb at the rate (an HTB class whose queue holds
    POLICE_QUEUE_PACKETS packets), so the excess is dropped, not queued.
    shape / shape-deep: a per-flow HTB class with a bfifo of buffer_ms (tail drop when full).
    shared: one HTB class for every marked flow (per subscriber). late: the per-flow shaper
    only once the flow has moved after_kb (connbytes). lossy: random loss on everything.
    """
    knobs = tuning.resolved(name)
    marks = _service_marks(services)
    if name == "lossy":
        drop = (f"-A FORWARD -m statistic --mode random --probability "
                f"{knobs['loss_pct'] / 100:.4f} -j DROP")
        return Plan(ruleset(filter_=[drop]))
    if name == "police":
        pre, post = flow_slot_rules()
        burst = max(1600, int(knobs["burst_kb"] * 1000))
        tc = [line for dev in ("west", "east") for line in
              htb(dev, rate_kbps, "1", f"pfifo limit {POLICE_QUEUE_PACKETS}", SLOT_CLASSES,
                  burst)]
        return Plan(ruleset(mangle=[*marks, *pre, *post]), tc)
    buffer_ms = knobs["buffer_ms"]
    if name == "shared":
        classify = (f"-A POSTROUTING -m connmark --mark {MARK} "
                    f"-j CLASSIFY --set-class {THROTTLED_CLASS}")
        tc = [line for dev in ("west", "east")
              for line in shape(dev, rate_kbps, buffer_ms, (THROTTLED_CLASS,))]
        return Plan(ruleset(mangle=[*marks, classify]), tc)
    after = (f"-m connbytes --connbytes {int(knobs['after_kb'] * 1000)}: --connbytes-dir both "
             "--connbytes-mode bytes ") if name == "late" else ""
    pre, post = flow_slot_rules(after)
    tc = [line for dev in ("west", "east")
          for line in shape(dev, rate_kbps, buffer_ms, SLOT_CLASSES)]
    return Plan(ruleset(mangle=[*marks, *pre, *post]), tc)


def quic_name_rules() -> list[str]:
    """Mangle rules that queue the first client packets of each UDP/443 flow not yet
    decided to the classifier and save the nfmark of its verdict as the flow's connmark
    (in FORWARD: a queued packet that is accepted skips the rest of PREROUTING)."""
    return [
        f"-A PREROUTING -p udp --dport 443 -m connmark --mark 0x0 -m connbytes --connbytes "
        f"0:{QUIC_INSPECT_PACKETS} --connbytes-dir original --connbytes-mode packets "
        f"-j NFQUEUE --queue-num {QUIC_QUEUE} --queue-bypass",
        *(f"-A FORWARD -m mark --mark {m} -j CONNMARK --set-mark {m}" for m in (MARK, EXEMPT)),
    ]


def quic_plan(name: str, rate_kbps: float, services: Sequence[str]) -> Plan:
    """QUIC of `services` throttled (the sni-throttle policer, each direction) or dropped,
    chosen by the name in the Initial (the classifier's mark) or by the addresses of
    the services' hosts; TCP and other UDP pass untouched."""
    throttle = name.startswith("quic-throttle")
    if name.endswith("-name"):
        domains = tuple(d for s in services for d in SERVICES[s])
        mangle = quic_name_rules()
        if throttle:
            mangle.append(f"-A POSTROUTING -m connmark --mark {MARK} "
                          f"-j CLASSIFY --set-class {THROTTLED_CLASS}")
            return Plan(ruleset(mangle=mangle), police("west", rate_kbps)
                        + police("east", rate_kbps), quic_domains=domains)
        return Plan(ruleset(mangle=mangle, filter_=[f"-A FORWARD -m connmark --mark {MARK} "
                                                    "-j DROP"]), quic_domains=domains)
    udp = [f"-p udp {side} {h.address} {port} 443" for h in topology.HOSTS
           if h.family in services for side, port in (("-d", "--dport"), ("-s", "--sport"))]
    if throttle:
        classify = [f"-A POSTROUTING {m} -j CLASSIFY --set-class {THROTTLED_CLASS}" for m in udp]
        return Plan(ruleset(mangle=classify),
                    police("west", rate_kbps) + police("east", rate_kbps))
    return Plan(ruleset(filter_=[f"-A FORWARD {m} -j DROP" for m in udp]))


def plan(name: str, rate_kbps: float, router_west: str, tuning: Tuning | None = None,
         services: Sequence[str] = ("twitter",)) -> Plan:
    """The kernel configuration of scenario `name` for a router whose west address is given;
    the scenarios keyed on the SNI (sni-throttle, rst-block, blackhole, the zoo) and the
    QUIC ones act on the names (or the hosts) of `services`."""
    if name in ZOO:
        return zoo_plan(name, rate_kbps, tuning or Tuning(), services)
    if name in QUIC_SCENARIOS:
        return quic_plan(name, rate_kbps, services)
    classify = f"-A POSTROUTING -m connmark --mark {MARK} -j CLASSIFY --set-class {THROTTLED_CLASS}"
    both = police("west", rate_kbps) + police("east", rate_kbps)
    if name == "clean":
        return Plan(ruleset())
    if name == "sni-throttle":
        return Plan(ruleset(mangle=[*_service_marks(services), classify]), both)
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
        return Plan(ruleset(mangle=_service_marks(services), filter_=[drop]))
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
