"""Packets from an iptables NFQUEUE, and verdicts with a mark, over raw netlink.

The lab's classifier needs only what nfnetlink_queue offers every program (bind a
queue, copy packets, answer each with a verdict and a mark), so it speaks the
protocol itself with the standard library rather than needing libnetfilter_queue
and a compiler on every machine the lab runs on. Linux only; needs CAP_NET_ADMIN.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

NETLINK_NETFILTER = 12
_SUBSYS_QUEUE = 3
_MSG_PACKET, _MSG_VERDICT, _MSG_CONFIG = 0, 1, 2
_NLM_F_REQUEST, _NLM_F_ACK = 0x1, 0x4
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_CFG_CMD, _CFG_PARAMS, _CFG_QUEUE_MAXLEN, _CFG_MASK, _CFG_FLAGS = 1, 2, 3, 4, 5
_CMD_BIND, _CMD_UNBIND = 1, 2
_COPY_PACKET = 2
_F_FAIL_OPEN = 0x1  # the kernel accepts what does not fit the queue instead of dropping it
_A_PACKET_HDR, _A_VERDICT_HDR, _A_MARK, _A_PAYLOAD = 1, 2, 3, 10
NF_DROP, NF_ACCEPT = 0, 1
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_NFGEN = struct.Struct("!BBH")  # nfgenmsg: family, version, resource id (the queue)


@dataclass(frozen=True)
class Packet:
    """One queued packet: its id (for the verdict), the IP packet, the mark it carries."""

    id: int
    payload: bytes
    mark: int


def _attr(kind: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + b"\0" * (-length % 4)


def _attrs(data: bytes) -> dict[int, bytes]:
    out = {}
    while len(data) >= 4:
        length, kind = struct.unpack_from("=HH", data)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[4:length]  # without the nested/byte-order flags
        data = data[(length + 3) & ~3:]
    return out


class Queue:
    """A bound NFQUEUE: iterate for packets, answer each with `verdict` (the kernel holds
    a packet until it is answered, and drops those still held when the queue closes)."""

    def __init__(self, number: int, max_len: int = 256, timeout: float = 1.0) -> None:
        self.number = number
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.sock.settimeout(timeout)
        self._seq = 0
        try:
            self._config(_attr(_CFG_CMD, struct.pack("!BxH", _CMD_BIND, socket.AF_INET)))
            self._config(_attr(_CFG_PARAMS, struct.pack("!IB", 0xFFFF, _COPY_PACKET)),
                         _attr(_CFG_QUEUE_MAXLEN, struct.pack("!I", max_len)))
            self._config(_attr(_CFG_FLAGS, struct.pack("!I", _F_FAIL_OPEN)),
                         _attr(_CFG_MASK, struct.pack("!I", _F_FAIL_OPEN)))
        except BaseException:
            self.sock.close()
            raise

    def _send(self, msg: int, flags: int, *attrs: bytes) -> int:
        self._seq += 1
        body = _NFGEN.pack(socket.AF_UNSPEC, 0, self.number) + b"".join(attrs)
        self.sock.send(_HEADER.pack(_HEADER.size + len(body), (_SUBSYS_QUEUE << 8) | msg,
                                    _NLM_F_REQUEST | flags, self._seq, 0) + body)
        return self._seq

    def _config(self, *attrs: bytes) -> None:
        """Send a config message and wait for its acknowledgement (an error raises)."""
        seq = self._send(_MSG_CONFIG, _NLM_F_ACK, *attrs)
        while True:
            data = self.sock.recv(65536)
            for kind, msg_seq, body in _messages(data):
                if kind == _NLMSG_ERROR and msg_seq == seq:
                    code = -struct.unpack_from("=i", body)[0]
                    if code:
                        raise OSError(code, f"nfqueue config: {os.strerror(code)}")
                    return

    def packets(self) -> Iterator[Packet | None]:
        """Queued packets as they come; None after each receive timeout, so the caller
        can do its own housekeeping between packets."""
        while True:
            try:
                data = self.sock.recv(65536 + 4096)
            except TimeoutError:
                yield None
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel outran us: it failed open
                    continue
                raise
            for kind, _, body in _messages(data):
                if kind != (_SUBSYS_QUEUE << 8) | _MSG_PACKET:
                    continue
                attrs = _attrs(body[_NFGEN.size:])
                if _A_PACKET_HDR not in attrs:
                    continue
                packet_id = struct.unpack_from("!I", attrs[_A_PACKET_HDR])[0]
                mark = struct.unpack("!I", attrs[_A_MARK])[0] if _A_MARK in attrs else 0
                yield Packet(packet_id, attrs.get(_A_PAYLOAD, b""), mark)

    def verdict(self, packet: Packet, verdict: int = NF_ACCEPT, mark: int | None = None) -> None:
        """Let the packet go on (or drop it), with `mark` as its nfmark if given."""
        attrs = [_attr(_A_VERDICT_HDR, struct.pack("!II", verdict, packet.id))]
        if mark is not None:
            attrs.append(_attr(_A_MARK, struct.pack("!I", mark)))
        self._send(_MSG_VERDICT, 0, *attrs)

    def close(self) -> None:
        """Unbind and close: new packets then pass (--queue-bypass), held ones are dropped."""
        try:
            self._send(_MSG_CONFIG, 0, _attr(_CFG_CMD, struct.pack("!BxH", _CMD_UNBIND, 0)))
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, sequence, body) of each netlink message in a datagram."""
    while len(data) >= _HEADER.size:
        length, kind, _, seq, _ = _HEADER.unpack_from(data)
        if length < _HEADER.size:
            return
        if kind != _NLMSG_DONE:
            yield kind, seq, data[_HEADER.size:length]
        data = data[(length + 3) & ~3:]
