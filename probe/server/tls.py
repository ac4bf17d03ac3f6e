"""TLS for the server: a default certificate, per-name certificates chosen by SNI.

The server must complete a handshake for ANY SNI (or none): the probe sends
Twitter names to a server the researcher controls, and a refused name would
look like censorship. Names in --cert-dir only change which certificate is shown.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_NAME = re.compile(r"[a-z0-9_][a-z0-9_.-]*")


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the first certificate in a PEM file, as colon-separated hex."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def self_signed(common_name: str = "localhost") -> tuple[bytes, bytes]:
    """A throwaway EC certificate and key (PEM) for a server started without --cert,
    named like any development server's (no name that says what this server is)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for one certificate chain: TLS 1.2+, HTTP/1.1 by ALPN."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _context_from_pem(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(key_pem)
        return server_context(cert, key)


class Certificates:
    """The default context, plus one per name found in --cert-dir.

    `cert-dir/NAME.pem` + `NAME.key` serve SNI `NAME`; `_wildcard.DOMAIN.*`
    (the stem `CertificateAuthority.issue` gives `*.DOMAIN`) serves one label below
    DOMAIN. All files are loaded at start, so a client name never touches the disk.
    `verbatim` shows the default certificate without an SNI callback: for names
    Python cannot hand to a callback (not ASCII), which must still be accepted.
    """

    def __init__(
        self, cert: Path | None = None, key: Path | None = None, cert_dir: Path | None = None
    ) -> None:
        if cert is not None:
            cert_pem = Path(cert).read_bytes()
            key_pem = Path(key or cert).read_bytes()
            self.default = server_context(cert, key or cert)
            self.verbatim = server_context(cert, key or cert)
        else:
            cert_pem, key_pem = self_signed()
            self.default = _context_from_pem(cert_pem, key_pem)
            self.verbatim = _context_from_pem(cert_pem, key_pem)
        self.cert_pem, self.key_pem = cert_pem, key_pem  # for HTTP/3 (server/h3.py)
        self.fingerprint = fingerprint(cert_pem)
        self.generated = cert is None
        self.by_name: dict[str, ssl.SSLContext] = {}
        if cert_dir is not None:
            for pem in sorted(Path(cert_dir).glob("*.pem")):
                pem_key = pem.with_suffix(".key")
                name = pem.stem.lower()
                if pem_key.exists() and _NAME.fullmatch(name):
                    self.by_name[name] = server_context(pem, pem_key)
        self.default.sni_callback = self._choose

    def context_for(self, server_name: str | None) -> ssl.SSLContext:
        """The context whose certificate the client sees for this SNI."""
        if not server_name:
            return self.default
        name = server_name.lower().rstrip(".")
        if name in self.by_name:
            return self.by_name[name]
        _, dot, parent = name.partition(".")
        if dot and f"_wildcard.{parent}" in self.by_name:
            return self.by_name[f"_wildcard.{parent}"]
        return self.default

    def _choose(
        self, sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        """sni_callback: remember the name on the socket, switch certificate; never refuse."""
        sock.probe_sni = server_name  # type: ignore[union-attr]
        chosen = self.context_for(server_name)
        if chosen is not self.default:
            sock.context = chosen
