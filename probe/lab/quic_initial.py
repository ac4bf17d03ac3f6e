"""The server name in a QUIC client's Initial packets, read as an on-path censor reads it.

Initial packets are encrypted with keys derived from the client's Destination
Connection ID alone (RFC 9001, section 5.2), so anyone on the path can decrypt them.
The ClientHello travels in CRYPTO frames, which may arrive out of order and span the
Initial packets of several datagrams (a large key share does not fit one), so a
flow's CRYPTO bytes are gathered by offset until the whole ClientHello is there.
aioquic's own parsers do the work: header, Initial keys, header protection, and the
ClientHello.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aioquic.buffer import Buffer, BufferReadError
from aioquic.quic.crypto import CryptoError, CryptoPair
from aioquic.quic.packet import QuicPacketType, QuicProtocolVersion, pull_quic_header
from aioquic.tls import pull_client_hello

MAX_CLIENT_HELLO = 16_384  # a ClientHello longer than this is not waited for
_PADDING, _PING, _ACK, _ACK_ECN, _CRYPTO, _CLOSE = 0x00, 0x01, 0x02, 0x03, 0x06, 0x1C
_VERSIONS = (QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2)


class NotInitial(ValueError):
    """The datagram holds no decryptable client Initial (another packet type, an unknown
    version, a bad tag, a frame an Initial may not carry)."""


@dataclass
class ClientHelloReader:
    """The CRYPTO stream of one client's Initials, gathered until the ClientHello is whole."""

    chunks: dict[int, bytes] = field(default_factory=dict)  # offset -> data

    def add(self, offset: int, data: bytes) -> None:
        if offset < MAX_CLIENT_HELLO:
            self.chunks[offset] = data

    def stream(self) -> bytes:
        """The contiguous bytes from offset 0."""
        out = b""
        for offset in sorted(self.chunks):
            if offset > len(out):
                break
            out += self.chunks[offset][len(out) - offset:]
        return out

    def server_name(self) -> str | None:
        """The SNI ("" for none) once the whole ClientHello is there, else None."""
        data = self.stream()
        if len(data) < 4:
            return None
        if data[0] != 1:  # handshake type ClientHello
            raise NotInitial(f"the CRYPTO stream starts with handshake type {data[0]}")
        length = int.from_bytes(data[1:4], "big")
        if length + 4 > MAX_CLIENT_HELLO:
            raise NotInitial(f"a ClientHello of {length} bytes")
        if len(data) < length + 4:
            return None
        try:
            hello = pull_client_hello(Buffer(data=data[:length + 4]))
        except (BufferReadError, ValueError) as exc:
            raise NotInitial(f"unparseable ClientHello: {exc}") from exc
        return hello.server_name or ""


def destination_cid(datagram: bytes) -> bytes:
    """The Destination Connection ID of the datagram's first packet, if it is an Initial."""
    try:
        # A short header's CID length is unknown here: 0 lets it parse, to be refused.
        header = pull_quic_header(Buffer(data=datagram), host_cid_length=0)
    except (BufferReadError, ValueError) as exc:
        raise NotInitial(f"not a QUIC long header: {exc}") from exc
    if header.packet_type != QuicPacketType.INITIAL or header.version not in _VERSIONS:
        raise NotInitial(f"{header.packet_type.name} packet, version {header.version}")
    return header.destination_cid


def read_initials(datagram: bytes, reader: ClientHelloReader, dcid: bytes) -> int:
    """Decrypt the client Initial packets coalesced in a UDP payload with the keys of
    `dcid` (the first Initial's, which later ones keep) and add their CRYPTO frames to
    `reader`; return how many Initials were read."""
    buf = Buffer(data=datagram)
    count = 0
    while not buf.eof():
        start = buf.tell()
        try:
            header = pull_quic_header(buf, host_cid_length=0)
        except (BufferReadError, ValueError):
            break  # the rest is padding or a packet we cannot parse: keep what we read
        end = start + header.packet_length
        if header.packet_type == QuicPacketType.INITIAL and header.version in _VERSIONS:
            crypto = CryptoPair()
            crypto.setup_initial(cid=dcid, is_client=False, version=header.version)
            try:
                _, payload, _ = crypto.decrypt_packet(datagram[start:end], buf.tell() - start, 0)
            except CryptoError as exc:
                raise NotInitial(f"Initial does not decrypt: {exc}") from exc
            _crypto_frames(payload, reader)
            count += 1
        buf.seek(end)
    if not count:
        raise NotInitial("no Initial packet in the datagram")
    return count


def _crypto_frames(payload: bytes, reader: ClientHelloReader) -> None:
    """Add an Initial's CRYPTO frames to `reader`; skip the other frames it may hold."""
    buf = Buffer(data=payload)
    try:
        while not buf.eof():
            kind = buf.pull_uint_var()
            if kind in (_PADDING, _PING):
                continue
            if kind == _CRYPTO:
                offset = buf.pull_uint_var()
                reader.add(offset, buf.pull_bytes(buf.pull_uint_var()))
            elif kind in (_ACK, _ACK_ECN):
                buf.pull_uint_var()  # largest acknowledged
                buf.pull_uint_var()  # delay
                ranges = buf.pull_uint_var()
                for _ in range(2 * ranges + 1):
                    buf.pull_uint_var()
                if kind == _ACK_ECN:
                    for _ in range(3):
                        buf.pull_uint_var()
            elif kind == _CLOSE:
                return
            else:
                raise NotInitial(f"frame type {kind:#x} in an Initial")
    except BufferReadError as exc:
        raise NotInitial(f"truncated frame: {exc}") from exc
