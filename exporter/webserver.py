"""Serving the web app so that no client can take it down by holding connections: a cap on
open connections (an idle one makes room for a new one), a deadline for a new
connection's request headers (and its TLS handshake), an idle keep-alive timeout, and
descriptor exhaustion logged once a minute instead of a traceback per accept.

aiohttp has the keep-alive timeout but no header deadline and no cap: those live in a
subclass of its connection handler (`RequestHandler`), made by our own site.
"""

from __future__ import annotations

import asyncio
import enum
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from exporter.acceptor import DECIDING_DESCRIPTORS, Acceptor, fitted_connection_cap
from exporter.request_peek import (
    PEEK_BYTES,
    PROBE_PATHS,
    FirstRequest,
    classify_request,
    discard_waiting,
    peek_request,
)
from exporter.web_limit_counts import LIMIT_COUNTS_KEY, LimitCounts, Tally

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LISTEN_BACKLOG = 4096  # a storm of connects waits here, not refused
ACCEPT_OUT_OF_RESOURCES = "socket.accept() out of system resource"  # asyncio's message
ACCEPT_FAILED = "cannot accept connections: out of file descriptors"
# What a connection refused at the cap is told before it is closed.
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 25\r\n\r\nToo many open connections"
)


@dataclass(frozen=True, slots=True)
class WebLimits:
    """What one client (or many) may hold of the server; README, "Web server limits"."""

    max_connections: int = 512
    read_header_timeout_seconds: float = 10.0
    idle_timeout_seconds: float = 120.0
    # Connections past the cap, for health and readiness only: in a storm of scrapes the
    # probes still get in, the scrapes on them a 503.
    probe_slots: int = 64
    # Idle for less than this, a connection is not closed to make room: its request may be
    # on its way (in a storm of connections, they would close each other).
    idle_grace_seconds: float = 1.0


DEFAULT_WEB_LIMITS = WebLimits()


class Admission(enum.Enum):
    """The guard's answer to a new connection."""

    REFUSED = "refused"  # told 503 and closed
    SERVED = "served"
    # In a probe slot, its request not there yet: served if it is a probe's, else refused.
    PENDING = "pending"


class ConnectionGuard:
    """The open connections, oldest first; at the cap a new one closes the oldest idle one
    (waiting for request headers, or kept alive between requests), or is refused when every
    one is busy with a request. Health probes get in while idle sockets hold the cap."""

    def __init__(self, limits: WebLimits, counts: LimitCounts | None = None) -> None:
        self.limits = limits
        self._open: dict[GuardedRequestHandler, None] = {}
        self._in_probe_slots: dict[GuardedRequestHandler, None] = {}
        self._no_long_idle_before = float("-inf")  # no connection idle for the grace before
        self.refused = Tally(
            "connection refused: --web.max-connections reached, none idle",
            "max_connections_refused",
            counts,
        )
        self.evicted = Tally(
            "idle connection closed: --web.max-connections reached",
            "max_connections_idle_closed",
            counts,
        )
        self.header_timeouts = Tally(
            "connection closed: no request within the header timeout",
            "read_header_timeout",
            counts,
        )
        self.accept_failures = Tally(ACCEPT_FAILED, "open_files", counts)

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def handlers(self) -> list[GuardedRequestHandler]:
        return list(self._open)

    def admit(self, handler: GuardedRequestHandler, first: Callable[[], FirstRequest]) -> Admission:
        """Room for the new connection: an idle one closed at the cap, or one of
        `probe_slots` beyond it (health and readiness only) when all are busy. Past the
        cap, `first()` peeks at the request: anything but a probe is refused unread (cheap
        shedding), and a probe takes the place of a connection not seen to carry one."""
        admission = Admission.SERVED
        if len(self._open) >= self.limits.max_connections:
            idle = self._oldest_long_idle()
            if idle is not None:
                self.evicted.hit(limit=self.limits.max_connections)
                self.release(idle)
                idle.close_now()
                handler.probes_only = idle.probes_only  # its slot, past the cap or not
            else:
                admission = self._past_the_cap(first())
                if admission is Admission.REFUSED:
                    self.refused.hit(limit=self.limits.max_connections)
                    return admission
                handler.probes_only = True
                handler.known_probe = admission is Admission.SERVED
        self._open[handler] = None
        if handler.probes_only:
            self._in_probe_slots[handler] = None
        return admission

    def _oldest_long_idle(self) -> GuardedRequestHandler | None:
        """The oldest connection idle for over the grace. A scan that finds none is not
        repeated before the soonest one waiting could be (at most the grace later): in a
        storm, each connection past the cap walked every open one (most of the server's
        time)."""
        now = asyncio.get_running_loop().time()
        if now < self._no_long_idle_before:
            return None
        grace = self.limits.idle_grace_seconds
        soonest = now + grace  # a connection idle from now on
        for open_ in self._open:
            idle_since = open_.idle_since
            if idle_since is not None:
                if now - idle_since >= grace:
                    return open_
                soonest = min(soonest, idle_since + grace)
        self._no_long_idle_before = soonest
        return None

    def _past_the_cap(self, first: FirstRequest) -> Admission:
        """A probe slot, at worst in the place of the oldest connection in one not seen to
        carry a probe: a connection whose request is not there yet may be a probe's (one
        was refused in a storm, the slots held by storm connections yet to send theirs)."""
        if first is FirstRequest.OTHER:
            return Admission.REFUSED
        if len(self._open) >= self.limits.max_connections + self.limits.probe_slots:
            in_slots = self._in_probe_slots
            room = next((open_ for open_ in in_slots if not open_.carries_probe()), None)
            if room is None and first is FirstRequest.PROBE:
                room = next((open_ for open_ in self._open if open_.no_request_yet), None)
            if room is None:
                return Admission.REFUSED
            self.evicted.hit(limit=self.limits.max_connections)
            self.release(room)
            room.close_now()
        return Admission.SERVED if first is FirstRequest.PROBE else Admission.PENDING

    def release(self, handler: GuardedRequestHandler) -> None:
        self._open.pop(handler, None)
        self._in_probe_slots.pop(handler, None)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler, admitted by the guard, closed when its first request's
    headers are not in within the deadline (later requests: the keep-alive timeout). One
    pending in a probe slot is handed to aiohttp only once its first bytes show a probe
    (a storm's connections cost a close, not a request handler started and cancelled)."""

    def __init__(self, manager: Server, guard: ConnectionGuard, closed: Callable[[], None]) -> None:
        super().__init__(
            manager,
            loop=asyncio.get_running_loop(),
            keepalive_timeout=guard.limits.idle_timeout_seconds,
            access_log=None,  # type: ignore[arg-type]  # aiohttp takes None for "no log"
        )
        self._guard = guard
        self._closed = closed  # its socket's descriptor is given back
        self.probes_only = False  # admitted past the cap: health and readiness only
        self.known_probe = False  # and its request seen to be a probe's
        self._in_guard = False
        self._started = False  # handed to aiohttp
        self._pending: asyncio.Transport | None = None  # admitted PENDING, not handed yet
        self._connected_at = 0.0
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def idle_since(self) -> float | None:
        """When it began waiting for a request whose headers are not complete (or not
        begun): the connection made, or the last response; None when not waiting."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return None
        last_response = self._next_keepalive_close_time - self._keepalive_timeout
        return max(self._connected_at, last_response)

    @property
    def no_request_yet(self) -> bool:
        """Nothing parsed yet, nor seen to be a probe: its place can go to a probe."""
        return not self.known_probe and self._request_count == 0

    @property
    def pending(self) -> asyncio.Transport | None:
        """The connection of one pending in a probe slot (its request not seen yet)."""
        return self._pending

    def carries_probe(self) -> bool:
        """Its request is seen to be a probe's: read, or waiting on its socket unread."""
        if not self.known_probe and self._pending is not None:
            self.known_probe = peek_request(self._pending) is FirstRequest.PROBE
        return self.known_probe

    def close_now(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            self.force_close()
        else:
            pending.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        admission = self._guard.admit(self, lambda: peek_request(transport))
        if admission is Admission.REFUSED:
            _refuse(transport)
            return
        self._in_guard = True
        self._connected_at = self._loop.time()
        timeout = self._guard.limits.read_header_timeout_seconds
        self._deadline = self._loop.call_later(timeout, self._header_deadline)
        if admission is Admission.PENDING:
            self._pending = transport
        else:
            self._start(transport)

    def _start(self, transport: asyncio.Transport) -> None:
        self._started = True
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            if classify_request(data[:PEEK_BYTES]) is not FirstRequest.PROBE:
                self._guard.release(self)
                self._guard.refused.hit(limit=self._guard.limits.max_connections)
                _refuse(pending)
                return
            self.known_probe = True
            self._start(pending)
        super().data_received(data)

    def _header_deadline(self) -> None:
        self._deadline = None
        if self._request_count == 0 and (self.transport or self._pending) is not None:
            self._guard.header_timeouts.hit()
            self.close_now()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._closed()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._in_guard:
            self._guard.release(self)
        if self._started:
            super().connection_lost(exc)


def _refuse(transport: asyncio.Transport) -> None:
    """503 and closed, its request dropped unparsed."""
    transport.write(REFUSED)
    discard_waiting(transport)
    transport.close()


@web.middleware
async def probes_past_the_cap(request: web.Request, handler: Handler) -> web.StreamResponse:
    """On a connection admitted past the cap, anything but a probe is told 503."""
    protocol = request.protocol
    past_the_cap = isinstance(protocol, GuardedRequestHandler) and protocol.probes_only
    if past_the_cap and request.path not in PROBE_PATHS:
        raise web.HTTPServiceUnavailable(text="Too many open connections\n")
    return await handler(request)


class GuardedSite(web.TCPSite):
    """aiohttp's TCP site with our connection handler, and the TLS handshake held to the
    header deadline (asyncio's default is 60 s)."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str | None,
        port: int,
        guard: ConnectionGuard,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self.guard = guard
        self._acceptors: list[Acceptor] = []

    async def start(self) -> None:
        """asyncio binds the sockets (every interface for no host); `Acceptor`s accept."""
        await web.BaseSite.start(self)  # registers the site with the runner
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            asyncio.Protocol, self._host, self._port, start_serving=False
        )
        limits = self.guard.limits
        budget = limits.max_connections + limits.probe_slots + DECIDING_DESCRIPTORS
        for bound in self._server.sockets:
            listening = socket.socket(bound.family, bound.type, fileno=bound.fileno())
            listening.listen(LISTEN_BACKLOG)
            listening.detach()  # the descriptor stays the server's, which closes it
            acceptor = Acceptor(
                bound,
                budget,
                lambda closed: GuardedRequestHandler(server, self.guard, closed),
                lambda error: self.guard.accept_failures.hit(error=str(error)),
                self._ssl_context,
                limits.read_header_timeout_seconds,
            )
            acceptor.start()
            self._acceptors.append(acceptor)

    async def stop(self) -> None:
        for acceptor in self._acceptors:
            acceptor.close()
        await super().stop()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]


def fit_descriptor_limit(limits: WebLimits) -> WebLimits:
    """The limits with the connection cap lowered to fit the open-files limit (raised)."""
    fitted = fitted_connection_cap(limits.max_connections, limits.probe_slots)
    return replace(limits, max_connections=fitted)


def quiet_accept_errors(
    loop: asyncio.AbstractEventLoop, counts: LimitCounts | None = None
) -> Tally:
    """asyncio logs a traceback each time accept() fails for want of descriptors, and
    retries a second later: that is one counted line a minute instead."""
    accept_failures = Tally(ACCEPT_FAILED, "open_files", counts)

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == ACCEPT_OUT_OF_RESOURCES:
            accept_failures.hit(error=str(context.get("exception", "")))
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
    return accept_failures


async def start_site(
    app: web.Application,
    host: str | None,
    port: int,
    limits: WebLimits,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, GuardedSite]:
    """The app served with `limits`; the caller cleans the runner up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    guard = ConnectionGuard(limits, app.get(LIMIT_COUNTS_KEY))
    site = GuardedSite(runner, host, port, guard, ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site
