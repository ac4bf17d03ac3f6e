"""Map Python exceptions to OONI df-007 failure strings.

Researchers compare our failures with OONI's, so a network fault is named the
way OONI names it; anything unknown keeps its text behind `unknown_failure`.
"""

from __future__ import annotations

import errno
import socket
import ssl

GENERIC_TIMEOUT = "generic_timeout_error"
CONNECTION_RESET = "connection_reset"
CONNECTION_REFUSED = "connection_refused"
EOF_ERROR = "eof_error"
HOST_UNREACHABLE = "host_unreachable"
NETWORK_UNREACHABLE = "network_unreachable"
SSL_INVALID_HOSTNAME = "ssl_invalid_hostname"
SSL_UNKNOWN_AUTHORITY = "ssl_unknown_authority"
SSL_INVALID_CERTIFICATE = "ssl_invalid_certificate"
SSL_FAILED_HANDSHAKE = "ssl_failed_handshake"
DNS_NXDOMAIN = "dns_nxdomain_error"
DNS_NO_ANSWER = "dns_no_answer"
DNS_REFUSED = "dns_refused_error"
DNS_SERVFAIL = "dns_servfail_error"
CONNECTION_ABORTED = "connection_aborted"
NETWORK_DOWN = "network_down"
NETWORK_RESET = "network_reset"
BAD_RESPONSE = "http_invalid_response"  # ours: df-007 has no name for a malformed response
# QUIC, as OONI's own probe names its faults: a handshake that got no answer within the
# connect timeout, and a connection silent for the idle timeout after it, are both
# generic_timeout_error (the record they are in says which); a CONNECTION_CLOSE the peer
# (or a middlebox) sent is quic_connection_closed, TLS alerts in it ssl_failed_handshake.
QUIC_HANDSHAKE_TIMEOUT = GENERIC_TIMEOUT
QUIC_IDLE_TIMEOUT = GENERIC_TIMEOUT
QUIC_CLOSED = "quic_connection_closed"  # ours: df-007 names no QUIC close
_QUIC_CRYPTO_ERRORS = range(0x100, 0x200)  # RFC 9001 4.8: 0x100 + the TLS alert

_ERRNO = {
    errno.ECONNRESET: CONNECTION_RESET,
    errno.ECONNREFUSED: CONNECTION_REFUSED,
    errno.ETIMEDOUT: GENERIC_TIMEOUT,
    errno.EHOSTUNREACH: HOST_UNREACHABLE,
    errno.ENETUNREACH: NETWORK_UNREACHABLE,
    errno.EPIPE: CONNECTION_RESET,
    errno.ECONNABORTED: CONNECTION_ABORTED,
    errno.ENETDOWN: NETWORK_DOWN,
    errno.ENETRESET: NETWORK_RESET,
}


def classify(exc: BaseException) -> str:
    """Return the df-007 string for a network exception (never raises)."""
    # httpx/httpcore wrap the OS error; unwrap to the root cause first.
    seen = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        found = _classify_one(cause)
        if found:
            return found
        cause = cause.__cause__ or cause.__context__
    return f"unknown_failure: {type(exc).__name__}: {exc}"[:200]


def quic_close(error_code: int, reason: str) -> str:
    """The df-007 string for a QUIC connection that ended with `error_code` and `reason`
    (aioquic reports its own idle timeout as a close with reason "Idle timeout")."""
    if reason == "Idle timeout":
        return QUIC_IDLE_TIMEOUT
    if error_code in _QUIC_CRYPTO_ERRORS:
        return SSL_FAILED_HANDSHAKE
    return QUIC_CLOSED


def _classify_one(exc: BaseException) -> str | None:
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = getattr(exc, "verify_code", None)
        text = str(exc).lower()
        if code in (62, 64) or "hostname mismatch" in text or "ip address mismatch" in text:
            return SSL_INVALID_HOSTNAME
        if code in (18, 19, 20, 21, 2):
            return SSL_UNKNOWN_AUTHORITY
        return SSL_INVALID_CERTIFICATE
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return EOF_ERROR
    if isinstance(exc, ssl.SSLError):
        text = str(exc).lower()
        if "reset" in text:
            return CONNECTION_RESET
        return SSL_FAILED_HANDSHAKE
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return GENERIC_TIMEOUT
    if isinstance(exc, ConnectionResetError):
        return CONNECTION_RESET
    if isinstance(exc, ConnectionRefusedError):
        return CONNECTION_REFUSED
    if isinstance(exc, OSError) and exc.errno in _ERRNO:
        return _ERRNO[exc.errno]
    name = type(exc).__name__
    if "Timeout" in name:
        return GENERIC_TIMEOUT
    if name in ("RemoteProtocolError", "LocalProtocolError", "ProtocolError", "DecodingError"):
        text = str(exc).lower()
        if "without sending" in text or "peer closed" in text:
            return EOF_ERROR
        return BAD_RESPONSE
    return None
