"""Shared fixtures: a throwaway test CA and a root check for lab tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from probe.lab.ca import CertificateAuthority
from probe.lab.dns_server import DnsServer
from tests.servers.http_servers import TestServer, closed_port, server_context

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root (network namespaces, iptables, raw sockets)"
)


@pytest.fixture(scope="session", autouse=True)
def state_outside_home(tmp_path_factory: pytest.TempPathFactory):
    """Consent, ledger and run lock of every probe a test starts live in a temporary
    folder, never in the home of whoever runs the suite (a test that checks the home
    default unsets this itself)."""
    old = os.environ.get("PROBE_STATE_DIR")
    os.environ["PROBE_STATE_DIR"] = str(tmp_path_factory.mktemp("probe-state"))
    yield
    if old is None:
        os.environ.pop("PROBE_STATE_DIR", None)
    else:
        os.environ["PROBE_STATE_DIR"] = old


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    """A CA trusted by the probe in tests (passed as the CA bundle)."""
    return CertificateAuthority(tmp_path_factory.mktemp("ca"), name="Probe Test CA")


@pytest.fixture(scope="session")
def foreign_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    """A CA the probe does not trust: plays a TLS interceptor."""
    return CertificateAuthority(tmp_path_factory.mktemp("foreign-ca"),
                                name="Foreign Interceptor CA")


@pytest.fixture
def ca_bundle(test_ca: CertificateAuthority) -> Path:
    return test_ca.cert_path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, test_ca):
    """A TLS origin for every name, a DNS server that names it, and a closed port."""
    issued = test_ca.issue(["pbs.twimg.com", "images.control.test", "wrong.test"])
    zone = {"ttl": 60, "records": {
        "pbs.twimg.com": {"A": ["127.0.0.1"]},
        "images.control.test": {"A": ["127.0.0.1"]},
        "refused.test": {"A": ["127.0.0.1"]},
    }}
    with TestServer(server_context(issued.cert, issued.key)) as origin, \
            DnsServer(zone) as dns_server:
        yield {"origin": origin, "dns": dns_server, "ca": test_ca.cert_path,
               "closed": closed_port(), "dir": tmp_path_factory.mktemp("world")}



# `make test` runs the lab's modules on two processes, a whole module each
# (--dist loadfile); the longest starts first so that it does not end last.
_LONGEST_FIRST = ("test_lab_zoo.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in _LONGEST_FIRST)
