"""The lab's DNS server: answers from a small JSON zone, can lie, fail or stay silent.

The lab plays an ISP resolver, so it must be a real server on the wire (UDP and
TCP, dnspython wire format) that the probe's ordinary code paths talk to. The
zone describes both the truth (`records`) and the censor's behaviour: forced
rcodes, names that get no answer, and poisoned answers for Twitter names.

Zone format (JSON file or dict):
    {"ttl": 300,
     "records": {"pbs.twimg.com": {"A": ["203.0.113.10"], "AAAA": ["2001:db8::10"]},
                 "video.twimg.com": {"CNAME": "video.twimg.com.cdn.test"},
                 "video.twimg.com.cdn.test": {"A": ["203.0.113.11"], "ttl": 60}},
     "rcodes": {"refused.test": "REFUSED", "fail.test": "SERVFAIL"},
     "silent": ["timeout.test"],
     "poison": {"match": ["twimg.com", "twitter.com", "t.co"], "A": "10.10.34.34",
                "AAAA": "::1"}}
A record type maps to one value or a list of values in zone-file text form; a
per-name "ttl" overrides the zone's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

MAX_CNAME_HOPS = 8
UDP_DEFAULT_PAYLOAD = 512  # RFC 1035 limit when the query has no EDNS
TCP_IDLE_TIMEOUT = 10.0  # seconds a TCP client may stay idle before we close it
POLL = 0.2  # seconds between checks of the stop flag in blocking loops

LogSink = Callable[[dict], None]


def _key(name: str | dns.name.Name) -> str:
    """Zone lookups ignore case and the trailing dot."""
    return str(name).rstrip(".").lower()


@dataclass
class Answer:
    """What the zone says about one query; `response` is None for a silent name."""

    response: dns.message.Message | None
    poisoned: bool = False


@dataclass
class Zone:
    """A parsed zone: validated once, so a bad zone fails at load and not per query."""

    ttl: int = 300
    records: dict[str, dict[int, tuple[int, list[dns.rdata.Rdata]]]] = field(default_factory=dict)
    rcodes: dict[str, dns.rcode.Rcode] = field(default_factory=dict)
    silent: frozenset[str] = frozenset()
    poison_match: tuple[str, ...] = ()
    poison: dict[int, list[dns.rdata.Rdata]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Zone:
        """Parse the zone format above; ValueError names the offending entry."""
        unknown = set(data) - {"ttl", "records", "rcodes", "silent", "poison"}
        if unknown:
            raise ValueError(f"unknown zone keys: {sorted(unknown)}")
        ttl = int(data.get("ttl", 300))
        records: dict[str, dict[int, tuple[int, list[dns.rdata.Rdata]]]] = {}
        for name, types in data.get("records", {}).items():
            if not isinstance(types, dict):
                raise ValueError(f"records[{name!r}] must map record types to values")
            name_ttl = int(types.get("ttl", ttl))
            parsed = {}
            for rtype, values in types.items():
                if rtype == "ttl":
                    continue
                rdtype = _rdtype(rtype, name)
                parsed[rdtype] = (name_ttl, _rdatas(rtype, values, name))
            records[_key(name)] = parsed
        rcodes = {}
        for name, text in data.get("rcodes", {}).items():
            try:
                rcodes[_key(name)] = dns.rcode.from_text(text)
            except dns.rcode.UnknownRcode as exc:
                raise ValueError(f"rcodes[{name!r}]: unknown rcode {text!r}") from exc
        poison = data.get("poison", {})
        poison_rdatas = {
            _rdtype(rtype, "poison"): _rdatas(rtype, values, "poison")
            for rtype, values in poison.items()
            if rtype != "match"
        }
        return cls(
            ttl=ttl,
            records=records,
            rcodes=rcodes,
            silent=frozenset(_key(n) for n in data.get("silent", [])),
            poison_match=tuple(_key(n) for n in poison.get("match", [])),
            poison=poison_rdatas,
        )

    @classmethod
    def load(cls, path: Path) -> Zone:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def is_poisoned(self, name: str) -> bool:
        """Suffix match on a label boundary: `t.co` hits `x.t.co`, not `reddit.co`."""
        key = _key(name)
        return any(key == m or key.endswith("." + m) for m in self.poison_match)

    def answer(self, query: dns.message.Message) -> Answer:
        """Build the response to one query as the censored resolver would."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA | dns.flags.RA
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return Answer(response)
        question = query.question[0]
        key = _key(question.name)
        if key in self.silent:
            return Answer(None)
        if key in self.rcodes:
            response.set_rcode(self.rcodes[key])
            return Answer(response)
        if question.rdtype in self.poison and self.is_poisoned(key):
            response.answer.append(
                dns.rrset.from_rdata_list(question.name, self.ttl, self.poison[question.rdtype])
            )
            return Answer(response, poisoned=True)
        self._resolve(question.name, question.rdtype, response)
        return Answer(response)

    def _resolve(self, qname: dns.name.Name, rdtype: int, response: dns.message.Message) -> None:
        """Fill the answer section, following CNAMEs inside the zone."""
        name = qname
        for _ in range(MAX_CNAME_HOPS):
            entry = self.records.get(_key(name))
            if entry is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
                return
            if rdtype in entry:
                ttl, rdatas = entry[rdtype]
                response.answer.append(dns.rrset.from_rdata_list(name, ttl, rdatas))
                return
            if dns.rdatatype.CNAME not in entry:
                return  # NODATA: the name exists without this type
            ttl, rdatas = entry[dns.rdatatype.CNAME]
            response.answer.append(dns.rrset.from_rdata_list(name, ttl, rdatas))
            name = rdatas[0].target
        response.set_rcode(dns.rcode.SERVFAIL)  # CNAME loop or chain too long


def _rdtype(text: str, where: str) -> int:
    try:
        return dns.rdatatype.from_text(text)
    except dns.rdatatype.UnknownRdatatype as exc:
        raise ValueError(f"{where}: unknown record type {text!r}") from exc


def _rdatas(rtype: str, values: Any, where: str) -> list[dns.rdata.Rdata]:
    values = values if isinstance(values, list) else [values]
    try:
        rdatas = [
            dns.rdata.from_text(dns.rdataclass.IN, rtype, _absolute(rtype, str(v)))
            for v in values
        ]
    except (dns.exception.SyntaxError, ValueError) as exc:
        raise ValueError(f"{where}: bad {rtype} value in {values!r}: {exc}") from exc
    if not rdatas:
        raise ValueError(f"{where}: empty {rtype} list")
    return rdatas


def _absolute(rtype: str, value: str) -> str:
    """CNAME targets in the zone are written without a trailing dot but are absolute."""
    if rtype.upper() == "CNAME" and not value.endswith("."):
        return value + "."
    return value


def answer_wire(zone: Zone, wire: bytes, udp: bool = False) -> tuple[bytes | None, dict]:
    """Answer one wire-format query; returns (response wire or None, log entry).

    Shared by the UDP/TCP server and the tests' DoH server so they cannot
    disagree. Over UDP a response larger than the client accepts (its EDNS
    payload, else 512 bytes) is sent empty with the TC bit, as RFC 1035 says.
    """
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException as exc:
        return None, {"event": "query", "error": f"unparsable query: {type(exc).__name__}"}
    answer = zone.answer(query)
    question = query.question[0] if query.question else None
    entry: dict[str, Any] = {
        "event": "query",
        "name": str(question.name) if question is not None else None,
        "type": dns.rdatatype.to_text(question.rdtype) if question is not None else None,
        "rcode": None,
        "poisoned": answer.poisoned,
        "silent": answer.response is None,
    }
    if answer.response is None:
        return None, entry
    entry["rcode"] = dns.rcode.to_text(answer.response.rcode())
    limit = 65535  # TCP and DoH: to_wire's default would be the client's UDP payload
    if udp:
        limit = max(query.payload, UDP_DEFAULT_PAYLOAD) if query.edns >= 0 else UDP_DEFAULT_PAYLOAD
    try:  # zone order, not shuffled: the lab must be reproducible
        out = answer.response.to_wire(max_size=limit, want_shuffle=False)
    except dns.exception.TooBig:
        answer.response.answer.clear()
        answer.response.flags |= dns.flags.TC
        entry["truncated"] = True
        out = answer.response.to_wire()
    return out, entry


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class DnsServer:
    """The zone served over UDP and TCP on one port, each transport in its own thread."""

    def __init__(
        self,
        zone: dict | Zone,
        host: str = "127.0.0.1",
        port: int = 0,
        log: LogSink | None = None,
    ) -> None:
        self.zone = zone if isinstance(zone, Zone) else Zone.from_dict(zone)
        self.host = host
        self.port = port
        self._log = log
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None

    def reload(self, zone: dict | Zone) -> None:
        """Swap the zone; queries in flight finish with the old one."""
        self.zone = zone if isinstance(zone, Zone) else Zone.from_dict(zone)

    def start(self) -> tuple[str, int]:
        """Bind UDP and TCP on the same port (a free one if port is 0) and serve."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._udp, self._tcp = _bind_pair(family, self.host, self.port)
        self.port = self._udp.getsockname()[1]
        self._stop.clear()
        for target in (self._serve_udp, self._serve_tcp):
            thread = threading.Thread(target=target, name=f"dns-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self.host, self.port

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        for sock in (self._udp, self._tcp):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = None

    def __enter__(self) -> DnsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _emit(self, entry: dict, transport: str) -> None:
        if self._log is not None:
            self._log({"time": _now_iso(), **entry, "transport": transport})

    def _serve_udp(self) -> None:
        assert self._udp is not None
        self._udp.settimeout(POLL)
        while not self._stop.is_set():
            try:
                wire, peer = self._udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            out, entry = answer_wire(self.zone, wire, udp=True)
            self._emit(entry, "udp")
            if out is not None:
                try:
                    self._udp.sendto(out, peer)
                except OSError:
                    pass  # the client went away; nothing to tell it

    def _serve_tcp(self) -> None:
        assert self._tcp is not None
        self._tcp.settimeout(POLL)
        clients: list[threading.Thread] = []
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            thread = threading.Thread(target=self._serve_conn, args=(conn,), daemon=True)
            thread.start()
            clients = [t for t in clients if t.is_alive()] + [thread]
        for thread in clients:
            thread.join(timeout=5)

    def _serve_conn(self, conn: socket.socket) -> None:
        """RFC 7766: length-prefixed messages, several per connection, idle timeout."""
        conn.settimeout(POLL)
        idle = 0.0
        with conn:
            while not self._stop.is_set() and idle < TCP_IDLE_TIMEOUT:
                try:
                    first = conn.recv(1)  # wait in short polls only for a message to begin
                except TimeoutError:
                    idle += POLL
                    continue
                except OSError:
                    return
                if not first:
                    return
                idle = 0.0
                conn.settimeout(TCP_IDLE_TIMEOUT)  # the rest may come in later segments
                try:
                    rest = _recv_exact(conn, 1)
                    if rest is None:
                        return
                    wire = _recv_exact(conn, struct.unpack("!H", first + rest)[0])
                except OSError:
                    return
                conn.settimeout(POLL)
                if wire is None:
                    return
                out, entry = answer_wire(self.zone, wire)
                self._emit(entry, "tcp")
                if out is not None:
                    try:
                        conn.sendall(struct.pack("!H", len(out)) + out)
                    except OSError:
                        return


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    """Read n bytes; None if the peer closed first."""
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _bind_pair(family: int, host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """UDP and TCP sockets on one port; with port 0, retry until both get the same one."""
    last: OSError | None = None
    for _ in range(20 if port == 0 else 1):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            udp.bind((host, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, udp.getsockname()[1]))
            tcp.listen(64)
            return udp, tcp
        except OSError as exc:
            udp.close()
            tcp.close()
            last = exc
    raise OSError(f"cannot bind UDP and TCP on {host}:{port}: {last}")


def _json_sink(stream: TextIO) -> LogSink:
    lock = threading.Lock()

    def write(entry: dict) -> None:
        with lock:
            stream.write(json.dumps(entry) + "\n")
            stream.flush()

    return write


def _parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m probe.lab.dns_server",
        description="Lab DNS server (UDP+TCP). SIGHUP reloads the zone; SIGTERM/SIGINT stop.",
    )
    parser.add_argument("--listen", type=_parse_listen, required=True, metavar="HOST:PORT")
    parser.add_argument("--zone", type=Path, required=True, metavar="FILE.json")
    parser.add_argument("--log", type=Path, help="JSON lines log (default: stdout)")
    args = parser.parse_args(argv)

    stream = args.log.open("a") if args.log else sys.stdout
    emit = _json_sink(stream)
    try:
        server = DnsServer(Zone.load(args.zone), *args.listen, log=emit)
    except (OSError, ValueError) as exc:
        print(f"bad zone {args.zone}: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    reload = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    host, port = server.start()
    emit({"time": _now_iso(), "event": "listening", "host": host, "port": port})
    try:
        while not stop.is_set():
            stop.wait(POLL)
            if reload.is_set():
                reload.clear()
                try:
                    server.reload(Zone.load(args.zone))
                    emit({"time": _now_iso(), "event": "reload", "ok": True})
                except (OSError, ValueError) as exc:  # keep serving the old zone
                    emit({"time": _now_iso(), "event": "reload", "ok": False, "error": str(exc)})
    finally:
        server.stop()
        emit({"time": _now_iso(), "event": "stopped"})
        if args.log:
            stream.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
