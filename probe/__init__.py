"""Censorship measurement probe: measures DNS, TCP, TLS and transfers to detect throttling."""

__version__ = "0.2.0"
