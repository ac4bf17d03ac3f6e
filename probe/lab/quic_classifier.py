"""The lab's QUIC-by-name classifier: reads the SNI of QUIC Initials from an NFQUEUE and
marks the flow, so the kernel throttles or drops it (the `quic-*-name` scenarios).

A device that throttles QUIC by name must decrypt the client's Initial (its keys
come from the Destination Connection ID), which a string match in the kernel cannot
do. So the router queues the first client packets of each UDP/443 flow to this
process (iptables NFQUEUE with --queue-bypass, limited with connbytes), which
answers every packet at once, never holding one for the next:
- the ClientHello is whole and names a watched domain (or a subdomain of one):
  the packet goes on with nfmark `--mark`, which iptables saves as the flow's
  connmark, and the kernel's rules act on the flow;
- it names another, no name, or the flow does not begin with a QUIC Initial:
  nfmark `--exempt`, saved likewise, so the flow is no longer queued;
- the ClientHello continues in a later datagram: no mark, wait for it.
Anything this process cannot parse goes on unmarked, and while it is not running
the kernel lets the packets pass (--queue-bypass; fail-open when the queue is full):
the classifier fails open, like the real devices whose misses let traffic through.
Every decision is one JSON line on stdout (the lab's log of the process).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .nfqueue import Packet, Queue
from .quic_initial import ClientHelloReader, NotInitial, destination_cid, read_initials

FLOW_SECONDS = 10.0  # a ClientHello not whole by then is given up (the flow passes)
MAX_FLOWS = 4096  # half-read ClientHellos kept at once (the oldest is forgotten first)
Flow = tuple[str, int, str, int]  # source, source port, destination, destination port


@dataclass
class _Pending:
    dcid: bytes
    since: float
    reader: ClientHelloReader = field(default_factory=ClientHelloReader)


def udp_payload(packet: bytes) -> tuple[Flow, bytes]:
    """The flow and UDP payload of an IPv4 or IPv6 packet (no extension headers)."""
    if packet and packet[0] >> 4 == 4:
        start = (packet[0] & 0x0F) * 4
        if packet[9] != 17 or int.from_bytes(packet[6:8], "big") & 0x1FFF:
            raise NotInitial("not a whole UDP datagram")
        src, dst = packet[12:16], packet[16:20]
    elif packet and packet[0] >> 4 == 6:
        start, src, dst = 40, packet[8:24], packet[24:40]
        if packet[6] != 17:
            raise NotInitial("not UDP")
    else:
        raise NotInitial("not an IP packet")
    udp = packet[start:start + 8]
    if len(udp) < 8:
        raise NotInitial("truncated UDP header")
    flow = (str(ipaddress.ip_address(src)), int.from_bytes(udp[0:2], "big"),
            str(ipaddress.ip_address(dst)), int.from_bytes(udp[2:4], "big"))
    return flow, packet[start + 8:]


def watched(name: str, domains: Sequence[str]) -> bool:
    """True if `name` is one of `domains` or a subdomain of one."""
    name = name.lower().rstrip(".")
    return any(name == d or name.endswith("." + d) for d in domains)


class Classifier:
    """The decisions, apart from the queue: one UDP payload in, the mark out."""

    def __init__(self, domains: Sequence[str], mark: int, exempt: int,
                 log: Callable[[dict], None], clock: Callable[[], float] = time.monotonic):
        self.domains = [d.lower().rstrip(".") for d in domains]
        self.mark, self.exempt = mark, exempt
        self.log, self.clock = log, clock
        self.pending: OrderedDict[Flow, _Pending] = OrderedDict()

    def classify(self, packet: bytes) -> int | None:
        """The nfmark for this packet's flow, or None to let it pass unmarked."""
        try:
            flow, payload = udp_payload(packet)
        except NotInitial:
            return None
        state = self.pending.get(flow)
        try:
            if state is None:
                state = _Pending(destination_cid(payload), self.clock())
            read_initials(payload, state.reader, state.dcid)
            name = state.reader.server_name()
        except NotInitial as exc:
            if flow in self.pending:  # a later packet of a flow being read: wait on
                return None
            self._decide(flow, None, self.exempt, str(exc))
            return self.exempt
        if name is None:
            self.pending[flow] = state
            self.pending.move_to_end(flow)
            while len(self.pending) > MAX_FLOWS:
                self.pending.popitem(last=False)
            return None
        self.pending.pop(flow, None)
        mark = self.mark if name and watched(name, self.domains) else self.exempt
        self._decide(flow, name, mark, "watched name" if mark == self.mark else "other name")
        return mark

    def expire(self) -> None:
        """Forget flows whose ClientHello did not complete in FLOW_SECONDS."""
        now = self.clock()
        for flow in [f for f, p in self.pending.items() if now - p.since > FLOW_SECONDS]:
            del self.pending[flow]
            self._decide(flow, None, None, "ClientHello incomplete: given up")

    def _decide(self, flow: Flow, sni: str | None, mark: int | None, why: str) -> None:
        self.log({"time": time.time(), "event": "flow", "src": f"{flow[0]}:{flow[1]}",
                  "dst": f"{flow[2]}:{flow[3]}", "sni": sni,
                  "mark": None if mark is None else hex(mark), "why": why})


def serve(queue: Queue, classifier: Classifier) -> None:
    """Answer every queued packet with its mark until stopped."""
    for packet in queue.packets():
        if packet is not None:
            queue.verdict(packet, mark=_safe(classifier, packet))
        classifier.expire()


def _safe(classifier: Classifier, packet: Packet) -> int | None:
    """The classifier's mark; on a bug, none (fail open) and a line in the log."""
    try:
        return classifier.classify(packet.payload)
    except Exception as exc:  # noqa: BLE001 - a parser bug must not stall the flow
        classifier.log({"time": time.time(), "event": "error", "error": repr(exc)})
        return None


def _emit(entry: dict) -> None:
    sys.stdout.write(json.dumps(entry) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m probe.lab.quic_classifier",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--queue", type=int, required=True, help="NFQUEUE number")
    parser.add_argument("--domain", action="append", required=True,
                        help="a watched domain (its subdomains too); repeatable")
    parser.add_argument("--mark", type=lambda s: int(s, 0), required=True,
                        help="nfmark of a flow that names a watched domain")
    parser.add_argument("--exempt", type=lambda s: int(s, 0), required=True,
                        help="nfmark of a flow decided otherwise (no longer queued)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    classifier = Classifier(args.domain, args.mark, args.exempt, _emit)
    with Queue(args.queue) as queue:
        _emit({"time": time.time(), "event": "listening", "queue": args.queue,
               "domains": classifier.domains})
        try:
            serve(queue, classifier)
        except (KeyboardInterrupt, SystemExit):
            pass
    _emit({"time": time.time(), "event": "stopped"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
