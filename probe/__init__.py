"""Censorship measurement probe: measures DNS, TCP, TLS and transfers to detect throttling."""

__version__ = "0.1.0"
