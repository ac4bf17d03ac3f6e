"""Shared fixtures: a throwaway test CA and a root check for lab tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from probe.lab.ca import CertificateAuthority

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root (network namespaces, iptables, raw sockets)"
)


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    """A CA trusted by the probe in tests (passed as the CA bundle)."""
    return CertificateAuthority(tmp_path_factory.mktemp("ca"), name="Probe Test CA")


@pytest.fixture(scope="session")
def foreign_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    """A CA the probe does not trust: plays a TLS interceptor."""
    return CertificateAuthority(tmp_path_factory.mktemp("foreign-ca"), name="Foreign Interceptor CA")


@pytest.fixture
def ca_bundle(test_ca: CertificateAuthority) -> Path:
    return test_ca.cert_path
