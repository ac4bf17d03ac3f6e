"""Ground-truth client tools the lab's own tests run inside the client namespace.

They do, with the standard library only, the few things curl cannot:
- `traceroute DST`: TTL-limited UDP probes; ICMP errors read from the
  socket's error queue (IP_RECVERR), so no raw socket and no external tool.
- `fetch`: HTTPS GET over a TLS memory BIO, optionally evading an SNI
  filter that does not reassemble: `--split-sni` writes the ClientHello record
  in two TCP segments split inside the name, `--split-record` fragments it into
  two TLS records sent in one segment. Optionally it first injects a TTL-limited
  packet into the established connection (what the locate experiment does): a
  trigger ClientHello (`--trigger-sni`) or random bytes (`--trigger-random`).
  The injected packet uses the socket's own sequence numbers (read in
  TCP_REPAIR mode) and a raw socket, so the kernel never retransmits it past
  the hop where it expires.
Each prints one JSON object on stdout. They repeat, on purpose and in a few
lines, what probe/experiments does (split, trigger injection): an oracle that
shared the probe's code would share its bugs and prove nothing.

    python -m probe.lab.groundtruth traceroute 203.0.113.10
    python -m probe.lab.groundtruth fetch --url https://pbs.twimg.com/media/img/photo.jpg \
        --ca lab/ca/ca.pem [--connect-to IP] [--split-sni | --split-record]
        [--trigger-sni NAME | --trigger-random BYTES] [--trigger-ttl N]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import struct
import sys
import time
from urllib.parse import urlsplit

IP_RECVERR = 11
TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ = 19, 20, 21
TCP_RECV_QUEUE, TCP_SEND_QUEUE, TCP_REPAIR_OFF_NO_WP = 1, 2, -1


def traceroute(dst: str, max_hops: int = 8, timeout: float = 2.0) -> list[dict]:
    """One UDP probe per TTL; each hop's ICMP sender, type and code (None if silent)."""
    hops = []
    for ttl in range(1, max_hops + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            s.connect((dst, 33434 + ttl))
            s.send(b"probe lab traceroute")
            hop = {"ttl": ttl, "address": None, "icmp_type": None, "icmp_code": None}
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and hop["address"] is None:
                try:
                    _, ancillary, _, _ = s.recvmsg(512, 512, socket.MSG_ERRQUEUE)
                except BlockingIOError:
                    time.sleep(0.01)
                    continue
                for level, kind, data in ancillary:
                    if level == socket.IPPROTO_IP and kind == IP_RECVERR:
                        # struct sock_extended_err (16 bytes), then the offender's sockaddr_in
                        _, _, icmp_type, icmp_code = struct.unpack_from("=IBBB", data)
                        hop.update(address=socket.inet_ntoa(data[20:24]),
                                   icmp_type=icmp_type, icmp_code=icmp_code)
            hops.append(hop)
            if hop["icmp_type"] == 3:  # destination reached (port unreachable) or unreachable
                break
    return hops


def client_hello(sni: str) -> bytes:
    """The first flight of a real TLS client for `sni` (a ClientHello record)."""
    tls = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), (out := ssl.MemoryBIO()),
                                                server_hostname=sni)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def inject_trigger(sock: socket.socket, payload: bytes, ttl: int) -> None:
    """Send `payload` as the connection's next segment with IP TTL `ttl`, behind its back."""
    sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
        seq = sock.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ)
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)
        ack = sock.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ)
    finally:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP)
    (src, sport), (dst, dport) = sock.getsockname(), sock.getpeername()
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      5 << 4, 0x18, 502, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(
        "!BBH", 0, socket.IPPROTO_TCP, len(tcp) + len(payload))
    csum = _checksum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, ttl,
                     socket.IPPROTO_TCP, 0, socket.inet_aton(src), socket.inet_aton(dst))
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.sendto(ip + tcp + payload, (dst, 0))


def fetch(
    url: str, ca: str, connect_to: str | None = None, split: str | None = None,
    trigger: bytes | None = None, trigger_ttl: int = 0, timeout: float = 60.0,
) -> dict:
    """GET `url` over HTTPS (HTTP/1.1) and time the body; never raises for network faults.

    `split` is None, "sni" or "record"; `trigger` is injected first with `trigger_ttl`.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    result: dict = {"url": url, "failure": None, "status": None, "bytes": 0}
    try:
        address = connect_to or socket.gethostbyname(host)
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        return {**result, "failure": f"{type(exc).__name__}: {exc}"}
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if trigger:
                inject_trigger(sock, trigger, trigger_ttl)
                time.sleep(0.2)  # let the ICMP time-exceeded come back before real data
            return {**result, **_https_get(sock, host, parts, ca, split)}
        except (OSError, ssl.SSLError, ValueError) as exc:
            return {**result, "failure": f"{type(exc).__name__}: {exc}"}


def _handshake_done(tls: ssl.SSLObject) -> bool:
    try:
        tls.do_handshake()
        return True
    except ssl.SSLWantReadError:
        return False


def _send_first_flight(sock: socket.socket, data: bytes, host: str, split: str | None) -> None:
    if split == "sni":
        cut = data.find(host.encode()) + max(1, len(host) // 2)
        sock.sendall(data[:cut])
        time.sleep(0.05)  # two TCP segments, never coalesced
        sock.sendall(data[cut:])
    elif split == "record":
        header, body = data[:5], data[5:]
        cut = 8  # the first record holds only the start of the handshake message
        records = b"".join(
            header[:3] + struct.pack("!H", len(part)) + part for part in (body[:cut], body[cut:])
        )
        sock.sendall(records)
    else:
        sock.sendall(data)


def _https_get(sock: socket.socket, host: str, parts, ca: str, split: str | None) -> dict:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context(cafile=ca).wrap_bio(incoming, outgoing,
                                                         server_hostname=host)
    first = True
    while not _handshake_done(tls):
        _send_first_flight(sock, outgoing.read(), host, split if first else None)
        first = False
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed during the TLS handshake")
        incoming.write(chunk)
    sock.sendall(outgoing.read())
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    tls.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    sock.sendall(outgoing.read())
    started = time.monotonic()
    buf, first_byte = b"", None
    while True:
        try:
            piece = tls.read(65536)
            if not piece:
                break
            if first_byte is None:
                first_byte = time.monotonic()
            buf += piece
            continue
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        incoming.write(chunk)
    ended = time.monotonic()
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else None
    seconds = ended - (first_byte or started)
    return {
        "status": status, "bytes": len(body), "seconds": round(seconds, 4),
        "goodput_kbps": round(len(body) * 8 / 1000 / seconds, 3) if seconds > 0 else None,
        "total_seconds": round(ended - started, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m probe.lab.groundtruth")
    sub = parser.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("traceroute")
    tr.add_argument("dst")
    tr.add_argument("--max-hops", type=int, default=8)
    fe = sub.add_parser("fetch")
    fe.add_argument("--url", required=True)
    fe.add_argument("--ca", required=True)
    fe.add_argument("--connect-to")
    how = fe.add_mutually_exclusive_group()
    how.add_argument("--split-sni", dest="split", action="store_const", const="sni")
    how.add_argument("--split-record", dest="split", action="store_const", const="record")
    what = fe.add_mutually_exclusive_group()
    what.add_argument("--trigger-sni", help="inject a ClientHello for this name")
    what.add_argument("--trigger-random", type=int, metavar="BYTES",
                      help="inject this many random bytes")
    fe.add_argument("--trigger-ttl", type=int, default=0)
    fe.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.cmd == "traceroute":
        out: object = traceroute(args.dst, args.max_hops)
    else:
        trigger = (client_hello(args.trigger_sni) if args.trigger_sni
                   else os.urandom(args.trigger_random) if args.trigger_random else None)
        out = fetch(args.url, args.ca, args.connect_to, args.split, trigger, args.trigger_ttl,
                    args.timeout)
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
