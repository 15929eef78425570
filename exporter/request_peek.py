"""What a new connection's request is, before it is read: a peek at the bytes waiting on
its socket. In a storm of connects, one is accepted seconds after it was made, its request
already there: a probe can be let in past the connection cap and anything else refused
unread (webserver.py).
"""

from __future__ import annotations

import asyncio
import enum
import socket

PROBE_PATHS = frozenset({"/-/healthy", "/-/ready"})
# How a probe's request begins after its method, as read by a peek.
PROBE_TARGETS = tuple(f"{path}{end}".encode() for path in PROBE_PATHS for end in (" ", "?"))
PROBE_METHODS = (b"GET ", b"HEAD ")
PEEK_BYTES = 32  # enough for "HEAD /-/healthy?" and the like
DISCARD_BYTES = 16 << 10  # a refused request's headers, read and dropped


class FirstRequest(enum.Enum):
    """What a new connection's first bytes say about its request, before it is read."""

    PROBE = "probe"  # GET or HEAD of /-/healthy or /-/ready
    OTHER = "other"  # anything else: no probe
    UNKNOWN = "unknown"  # nothing (or too little) there yet, or TLS


def classify_request(start: bytes) -> FirstRequest:
    """A probe, anything else, or not known yet from the first bytes of a request."""
    for method in PROBE_METHODS:
        if start.startswith(method):
            target = start[len(method) :]
            if target.startswith(PROBE_TARGETS):
                return FirstRequest.PROBE
            if any(probe.startswith(target) for probe in PROBE_TARGETS):
                return FirstRequest.UNKNOWN
            return FirstRequest.OTHER
        if method.startswith(start):
            return FirstRequest.UNKNOWN
    return FirstRequest.OTHER


def peek_request(transport: asyncio.BaseTransport) -> FirstRequest:
    """The request already waiting on a plain-HTTP connection, without reading it: in a
    storm of connects, one is accepted seconds after it was made, its request there."""
    if transport.get_extra_info("sslcontext") is not None:
        return FirstRequest.UNKNOWN  # the bytes there are TLS records
    wrapped = transport.get_extra_info("socket")
    if wrapped is None:
        return FirstRequest.UNKNOWN
    sock = socket.socket(wrapped.family, wrapped.type, fileno=wrapped.fileno())
    try:
        start = sock.recv(PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:  # BlockingIOError: nothing yet; or the connection already reset
        return FirstRequest.UNKNOWN
    finally:
        sock.detach()  # the descriptor stays the transport's
    return classify_request(start)


def discard_waiting(transport: asyncio.BaseTransport, size: int = DISCARD_BYTES) -> None:
    """Read and drop what waits on a plain-HTTP connection about to be closed: closed with
    bytes unread, a socket sends a reset, which can reach the client before the 503."""
    if transport.get_extra_info("sslcontext") is not None:
        return
    wrapped = transport.get_extra_info("socket")
    if wrapped is None or wrapped.fileno() < 0:
        return
    sock = socket.socket(wrapped.family, wrapped.type, fileno=wrapped.fileno())
    try:
        sock.recv(size, socket.MSG_DONTWAIT)
    except OSError:  # nothing there, or the connection already reset
        pass
    finally:
        sock.detach()
