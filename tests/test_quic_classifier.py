"""The QUIC classifier's reading of real client Initials (aioquic's own), without the lab."""

from __future__ import annotations

import struct

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from probe.lab.nfqueue import _attr, _attrs, _messages
from probe.lab.quic_classifier import FLOW_SECONDS, Classifier, udp_payload, watched
from probe.lab.quic_initial import ClientHelloReader, NotInitial, destination_cid, read_initials

MARK, EXEMPT = 0x10, 0x20


def initials(name: str | None, alpn_padding: int = 0) -> list[bytes]:
    """The first datagrams of an aioquic client; long ALPN lists make the ClientHello
    span several Initials, as a post-quantum key share does in browsers."""
    alpn = ["h3"] + ["x" * 200] * alpn_padding
    client = QuicConnection(configuration=QuicConfiguration(
        is_client=True, alpn_protocols=alpn, server_name=name))
    client.connect(("203.0.113.10", 443), now=0.0)
    return [data for data, _ in client.datagrams_to_send(now=0.0)]


def ipv4_udp(payload: bytes, src: str = "192.0.2.1", sport: int = 50000,
             dst: str = "203.0.113.10", dport: int = 443) -> bytes:
    """An IPv4 packet carrying `payload` in UDP (checksums left zero: nobody checks)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    return header + udp


def test_the_sni_of_a_one_packet_client_hello() -> None:
    (datagram,) = initials("pbs.twimg.com")
    reader = ClientHelloReader()
    assert read_initials(datagram, reader, destination_cid(datagram)) == 1
    assert reader.server_name() == "pbs.twimg.com"


def test_a_client_hello_over_two_datagrams_in_either_order() -> None:
    first, second = initials("i.ytimg.com", alpn_padding=8)
    dcid = destination_cid(first)
    assert destination_cid(second) == dcid  # the client keeps its first DCID
    reader = ClientHelloReader()
    read_initials(first, reader, dcid)
    assert reader.server_name() is None
    read_initials(second, reader, dcid)
    assert reader.server_name() == "i.ytimg.com"
    backwards = ClientHelloReader()
    read_initials(second, backwards, dcid)
    assert backwards.server_name() is None
    read_initials(first, backwards, dcid)
    assert backwards.server_name() == "i.ytimg.com"


def test_no_sni_is_the_empty_name() -> None:
    (datagram,) = initials(None)
    reader = ClientHelloReader()
    read_initials(datagram, reader, destination_cid(datagram))
    assert reader.server_name() == ""


def test_what_is_no_client_initial_is_refused() -> None:
    (datagram,) = initials("pbs.twimg.com")
    with pytest.raises(NotInitial):
        destination_cid(b"\x17\x03\x03 not quic at all")
    with pytest.raises(NotInitial):  # the keys of another connection ID
        read_initials(datagram, ClientHelloReader(), b"\x01" * 8)
    short = bytes([0x40]) + b"\x00" * 40  # a 1-RTT (short header) packet
    with pytest.raises(NotInitial):
        destination_cid(short)


def test_watched_names_are_the_domains_and_their_subdomains() -> None:
    domains = ["twimg.com", "t.co"]
    assert watched("pbs.twimg.com", domains) and watched("T.CO.", domains)
    assert not watched("www.microsoft.com", domains)  # holds "t.co", is not under it
    assert not watched("nottwimg.com", domains)


def test_the_classifier_marks_a_watched_flow_and_exempts_others() -> None:
    log: list[dict] = []
    c = Classifier(["twimg.com"], MARK, EXEMPT, log.append)
    assert c.classify(ipv4_udp(initials("pbs.twimg.com")[0])) == MARK
    assert c.classify(ipv4_udp(initials("images.lab.test")[0], sport=50001)) == EXEMPT
    assert c.classify(ipv4_udp(b"\x00" * 100, sport=50002)) == EXEMPT  # not QUIC
    assert [e["sni"] for e in log] == ["pbs.twimg.com", "images.lab.test", None]
    assert log[0]["dst"] == "203.0.113.10:443" and log[0]["mark"] == "0x10"


def test_the_classifier_waits_for_the_rest_of_a_client_hello() -> None:
    c = Classifier(["ytimg.com"], MARK, EXEMPT, [].append)
    first, second = initials("i.ytimg.com", alpn_padding=8)
    assert c.classify(ipv4_udp(first)) is None
    assert c.classify(ipv4_udp(b"\x40" + b"\x00" * 40)) is None  # not an Initial: wait on
    assert c.classify(ipv4_udp(second)) == MARK
    assert not c.pending


def test_a_client_hello_never_completed_is_given_up() -> None:
    now = [0.0]
    log: list[dict] = []
    c = Classifier(["ytimg.com"], MARK, EXEMPT, log.append, clock=lambda: now[0])
    assert c.classify(ipv4_udp(initials("i.ytimg.com", alpn_padding=8)[0])) is None
    c.expire()
    assert c.pending
    now[0] = FLOW_SECONDS + 1
    c.expire()
    assert not c.pending and log[-1]["why"].startswith("ClientHello incomplete")


def test_udp_payload_of_ipv4_and_refusals() -> None:
    flow, payload = udp_payload(ipv4_udp(b"abc"))
    assert flow == ("192.0.2.1", 50000, "203.0.113.10", 443) and payload == b"abc"
    tcp = bytearray(ipv4_udp(b"abc"))
    tcp[9] = 6
    with pytest.raises(NotInitial):
        udp_payload(bytes(tcp))


def test_netlink_attributes_round_trip() -> None:
    packed = _attr(1, b"\x00\x00\x00\x07abc") + _attr(10, b"payload!")
    assert _attrs(packed) == {1: b"\x00\x00\x00\x07abc", 10: b"payload!"}
    message = struct.pack("=IHHII", 16 + 4, 0x300, 0, 9, 0) + b"body"
    assert list(_messages(message + message)) == [(0x300, 9, b"body")] * 2
