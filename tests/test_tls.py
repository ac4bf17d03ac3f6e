"""TLS handshake records against real TLS servers: success, each verification failure, no SNI."""

from __future__ import annotations

import base64
import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.lab.ca import CertificateAuthority
from probe.measure import tls
from probe.measure.clock import Clock
from tests.servers.http_servers import SilentServer, TestServer, server_context

pytestmark = pytest.mark.timeout(30)
NAME = "media.example"


def _server(ca: CertificateAuthority, tmp: Path, names: list[str], **kw: int) -> TestServer:
    issued = ca.issue(names, tmp, stem=f"{names[0]}-{kw.get('days', 0)}", **kw)
    return TestServer(server_context(issued.cert, issued.key))


@pytest.fixture
def good(test_ca: CertificateAuthority, tmp_path: Path) -> Iterator[TestServer]:
    with _server(test_ca, tmp_path, [NAME]) as server:
        yield server


@pytest.fixture(params=["socket", "bio"], autouse=True)
def strategy(request: pytest.FixtureRequest) -> None:
    """Run every test with both handshake implementations: their records must agree."""
    global _STRATEGY
    _STRATEGY = tls.handshake if request.param == "socket" else tls.handshake_bio


_STRATEGY = tls.handshake


def _handshake(port: int, name: str | None, ca_bundle: Path, timeout: float = 5.0):
    clock = Clock()
    sock = socket.create_connection(("127.0.0.1", port))
    ctx = tls.make_context(ca_bundle)
    handshake, tls_sock = _STRATEGY(sock, name, ctx, timeout, clock, "127.0.0.1", port)
    if tls_sock is not None:
        tls_sock.close()
    return handshake.as_dict(), tls_sock, ctx


def test_verified_handshake_record(good: TestServer, ca_bundle: Path) -> None:
    record, tls_sock, _ = _handshake(good.port, NAME, ca_bundle)
    assert tls_sock is not None and record["failure"] is None
    assert record["address"] == f"127.0.0.1:{good.port}"
    assert record["server_name"] == NAME and record["sni_sent"] and record["hostname_checked"]
    assert record["tls_version"] == "TLSv1.3"
    assert record["cipher_suite"].startswith("TLS_")
    assert record["negotiated_protocol"] == "http/1.1"
    assert record["verified"] is True and record["no_tls_verify"] is False
    assert record["chain_from_unverified_retry"] is False
    assert 0 < record["handshake_ms"] < 5000 and record["t"] >= record["t0"]
    # The presented chain (leaf + CA) as base64 DER; the parsed chain ends at our root.
    ders = [base64.b64decode(c["data"]) for c in record["peer_certificates"]]
    assert len(ders) == 2 and all(c["format"] == "base64" for c in record["peer_certificates"])
    leaf, root = record["certificates"][0], record["certificates"][-1]
    assert leaf["sha256"] == hashlib.sha256(ders[0]).hexdigest()
    assert leaf["sans"] == [NAME] and leaf["subject"] == f"CN={NAME}"
    assert leaf["issuer"] == "CN=Probe Test CA" and root["subject"] == "CN=Probe Test CA"
    assert leaf["not_before"].endswith("Z") and leaf["not_before"] < leaf["not_after"]
    assert good.seen.sni == [NAME]


@pytest.mark.parametrize(
    ("names", "use_foreign", "days", "failure"),
    [
        (["other.example"], False, 825, "ssl_invalid_hostname"),
        ([NAME], True, 825, "ssl_unknown_authority"),
        ([NAME], False, 1, "ssl_invalid_certificate"),  # valid 1 day, from 3 days ago
    ],
    ids=["wrong-host", "untrusted-ca", "expired"],
)
def test_verification_failure_keeps_evidence(
    test_ca: CertificateAuthority, foreign_ca: CertificateAuthority, ca_bundle: Path,
    tmp_path: Path, names: list[str], use_foreign: bool, days: int, failure: str,
) -> None:
    ca = foreign_ca if use_foreign else test_ca
    kw = {"days": days, "not_before_days": -3} if days == 1 else {}
    with _server(ca, tmp_path, names, **kw) as server:
        record, tls_sock, _ = _handshake(server.port, NAME, ca_bundle)
        assert tls_sock is None
        assert record["failure"] == failure
        assert record["verified"] is False and "verify code" in record["verify_error"]
        # Evidence: the chain the server presented, from a separate unverified handshake.
        assert record["chain_from_unverified_retry"] is True
        assert record["certificates"][0]["sans"] == names
        issuer = "CN=Foreign Interceptor CA" if use_foreign else "CN=Probe Test CA"
        assert record["certificates"][0]["issuer"] == issuer
        assert record["tls_version"] is None  # the verified handshake never completed
        assert server.seen.connections == 2  # the failed handshake and the evidence one


def test_no_sni_verifies_chain_only(
    test_ca: CertificateAuthority, ca_bundle: Path, tmp_path: Path
) -> None:
    # A certificate for another name passes (no name to check) but the chain is still checked.
    with _server(test_ca, tmp_path, ["other.example"]) as server:
        for name in ("", None):
            record, tls_sock, ctx = _handshake(server.port, name, ca_bundle)
            assert record["failure"] is None and record["verified"] is True
            assert record["server_name"] == "" and record["sni_sent"] is False
            assert record["hostname_checked"] is False
            assert ctx.check_hostname is True  # the shared context is left as it was
        assert server.seen.sni == [None, None]


def test_no_sni_still_rejects_untrusted_chain(
    foreign_ca: CertificateAuthority, ca_bundle: Path, tmp_path: Path
) -> None:
    with _server(foreign_ca, tmp_path, [NAME]) as server:
        record, tls_sock, _ = _handshake(server.port, "", ca_bundle)
        assert tls_sock is None and record["failure"] == "ssl_unknown_authority"


def test_handshake_timeout_without_retry(ca_bundle: Path) -> None:
    with SilentServer() as silent:
        record, tls_sock, _ = _handshake(silent.port, NAME, ca_bundle, timeout=0.5)
    assert tls_sock is None and record["failure"] == "generic_timeout_error"
    assert 400 <= record["handshake_ms"] < 3000
    assert record["chain_from_unverified_retry"] is False and record["certificates"] == []


def test_make_context_verifies_by_default(ca_bundle: Path) -> None:
    ctx = tls.make_context(ca_bundle, alpn=("h2", "http/1.1"))
    assert ctx.check_hostname and ctx.verify_mode.name == "CERT_REQUIRED"
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "Probe Test CA"),),)]


def test_ip_name_is_verified_but_never_sent_as_sni(
    test_ca: CertificateAuthority, ca_bundle: Path, tmp_path: Path
) -> None:
    with _server(test_ca, tmp_path, ["127.0.0.1"]) as server:
        record, tls_sock, _ = _handshake(server.port, "127.0.0.1", ca_bundle)
        assert record["failure"] is None and record["hostname_checked"] is True
        assert record["sni_sent"] is False and server.seen.sni == [None]


def test_server_closing_during_handshake(ca_bundle: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = listener.accept()
        server.close()  # FIN before any ServerHello
        ctx = tls.make_context(ca_bundle)
        handshake, conn = _STRATEGY(client, NAME, ctx, 2.0, Clock(), "127.0.0.1", port)
    record = handshake.as_dict()
    assert conn is None
    assert record["failure"] in ("eof_error", "connection_reset")
    assert record["handshake_ms"] < 1500  # noticed at once, not by the timeout


def test_a_name_tls_cannot_encode_is_a_failed_handshake(good: TestServer,
                                                         ca_bundle: Path) -> None:
    record, tls_sock, _ = _handshake(good.port, ".twitter.com", ca_bundle)  # an empty label
    assert tls_sock is None and record["failure"] == "ssl_failed_handshake"
    assert record["verified"] is False


def test_lab_ca_issues_for_a_name_longer_than_a_common_name_holds(
        test_ca: CertificateAuthority, ca_bundle: Path, tmp_path: Path) -> None:
    long_name = "a" * 63 + ".example"  # 71 characters: no Common Name can hold it
    with _server(test_ca, tmp_path, [long_name]) as server:
        record, tls_sock, _ = _handshake(server.port, long_name, ca_bundle)
    assert record["failure"] is None and record["verified"] is True
