"""A private certificate authority for the lab and tests.

The lab and the tests need real TLS with verification on, so every lab name
gets a certificate signed by a throwaway CA that the probe is told to trust
with `--ca-bundle`. A second, foreign CA lets the lab play a TLS interceptor.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class IssuedCert:
    """PEM paths of a leaf certificate (with its CA appended) and its key."""

    cert: Path
    key: Path


class CertificateAuthority:
    """A self-signed CA kept in a folder: `ca.pem` and `ca.key`."""

    def __init__(self, folder: Path, name: str = "Probe Lab CA") -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cert_path = self.folder / "ca.pem"
        self.key_path = self.folder / "ca.key"
        if self.cert_path.exists() and self.key_path.exists():
            self._key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
            self._cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        else:
            self._key = ec.generate_private_key(ec.SECP256R1())
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
            now = _now()
            self._cert = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(subject)
                .public_key(self._key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(
                    x509.KeyUsage(
                        digital_signature=True, content_commitment=False,
                        key_encipherment=False, data_encipherment=False,
                        key_agreement=False, key_cert_sign=True, crl_sign=True,
                        encipher_only=False, decipher_only=False,
                    ),
                    critical=True,
                )
                .add_extension(
                    x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()),
                    critical=False,
                )
                .sign(self._key, hashes.SHA256())
            )
            _write(self.key_path, _key_pem(self._key), private=True)
            _write(self.cert_path, self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        names: list[str],
        out_dir: Path | None = None,
        stem: str | None = None,
        days: int = 825,
        not_before_days: int = -1,
    ) -> IssuedCert:
        """Sign a server certificate for DNS names and/or IP addresses.

        `not_before_days`/`days` allow expired or not-yet-valid certificates for tests.
        """
        out_dir = Path(out_dir or self.folder)
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = stem or names[0].replace("*", "_wildcard")
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        now = _now()
        start = now + dt.timedelta(days=not_before_days)
        # A Common Name holds at most 64 characters; clients match the SANs anyway. Without
        # a subject, RFC 5280 wants the SAN extension critical.
        short = len(names[0]) <= 64
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])] if short else [])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=not short)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        cert_path = out_dir / f"{stem}.pem"
        key_path = out_dir / f"{stem}.key"
        chain = cert.public_bytes(serialization.Encoding.PEM) + self._cert.public_bytes(
            serialization.Encoding.PEM
        )
        _write(cert_path, chain)
        _write(key_path, _key_pem(key), private=True)
        return IssuedCert(cert=cert_path, key=key_path)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)
