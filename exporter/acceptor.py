"""Accepting a listening socket's connections only while a descriptor is free for each.

asyncio's server accepts up to its listen backlog (4,096 here) in one go, before any of
them is seen by the connection cap: a backlog holding more connections than free
descriptors made accept() fail (EMFILE) although the cap fits the open-files limit. After
such a failure asyncio also goes on trying, scheduling a retry per try (CPython
gh-151615), and a retry that fires after the listener is closed logs a ValueError
traceback. This one holds the accepted sockets not yet closed to a budget, waits for one
to close when it is reached, and backs off once on any failure (webserver.py).
"""

from __future__ import annotations

import asyncio
import errno
import resource
import socket
import ssl
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

RESERVED_DESCRIPTORS = 64  # for the API sessions, the config and log files, the loop
# Of those, for connections accepted past the cap and its probe slots while the guard
# decides on them (refused, or making room): accept() waits beyond, so never runs out.
DECIDING_DESCRIPTORS = 16
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
RETRY_SECONDS = 1.0  # after accept() failed for want of resources, as asyncio waits
# The protocol of an accepted connection, given what to call once the connection is lost.
ProtocolFactory = Callable[[Callable[[], None]], asyncio.Protocol]


class Acceptor:
    """Accepts from `listening` while fewer than `budget` accepted sockets are open, and
    serves each with a protocol from `make_protocol` (over TLS with `tls`)."""

    def __init__(
        self,
        listening: socket.socket,
        budget: int,
        make_protocol: ProtocolFactory,
        failed: Callable[[OSError], None],
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float | None = None,
    ) -> None:
        self._listening = listening  # asyncio's (a TransportSocket), closed by its server
        self._fd = listening.fileno()
        self._budget = budget
        self._make_protocol = make_protocol
        self._failed = failed
        self._tls = tls
        self._handshake_timeout = handshake_timeout if tls else None
        self._loop = asyncio.get_running_loop()
        self._reading = False
        self._retry: asyncio.TimerHandle | None = None
        self._connecting: set[asyncio.Task[None]] = set()
        self.open_sockets = 0

    def start(self) -> None:
        self._resume()

    def close(self) -> None:
        """No more accepting (the listening socket is closed by its server)."""
        if self._retry is not None:
            self._retry.cancel()
        self._retry = None
        self._pause()
        self._budget = 0

    def _listening_open(self) -> bool:
        return self._listening.fileno() != -1  # the descriptor number may be reused after

    def _resume(self) -> None:
        if self._reading or self._retry is not None or self.open_sockets >= self._budget:
            return
        if self._listening_open():
            self._loop.add_reader(self._fd, self._accept)
            self._reading = True

    def _pause(self) -> None:
        if self._reading and self._listening_open():
            self._loop.remove_reader(self._fd)
        self._reading = False

    def _retry_now(self) -> None:
        self._retry = None
        self._resume()

    def _accept(self) -> None:
        listening = socket.socket(self._listening.family, self._listening.type, fileno=self._fd)
        try:
            self._accept_from(listening)
        finally:
            listening.detach()  # the descriptor stays asyncio's

    def _accept_from(self, listening: socket.socket) -> None:
        while self.open_sockets < self._budget:
            try:
                connection, _ = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:
                if error.errno not in OUT_OF_RESOURCES:
                    raise  # the event loop logs it, as asyncio's server does
                self._failed(error)
                self._pause()
                self._retry = self._loop.call_later(RETRY_SECONDS, self._retry_now)
                return
            connection.setblocking(False)
            self.open_sockets += 1
            task = self._loop.create_task(self._serve(connection, self._closer()))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
        self._pause()  # until an accepted socket is closed

    def _closer(self) -> Callable[[], None]:
        closed = False

        def close() -> None:
            nonlocal closed
            if not closed:
                closed = True
                self.open_sockets -= 1
                self._resume()

        return close

    async def _serve(self, connection: socket.socket, closed: Callable[[], None]) -> None:
        try:
            await self._loop.connect_accepted_socket(
                lambda: self._make_protocol(closed),
                connection,
                ssl=self._tls,
                ssl_handshake_timeout=self._handshake_timeout,
            )
        except Exception:  # a TLS handshake failed or timed out: nothing to serve
            connection.close()
            closed()
        except asyncio.CancelledError:
            connection.close()
            closed()
            raise


def fitted_connection_cap(max_connections: int, probe_slots: int) -> int:
    """Raise the soft limit of open files to the hard one (as Go programs do), and lower
    the connection cap below it when it would not fit: connections must never take the
    descriptors the polls and the listener need."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if (
        soft == resource.RLIM_INFINITY
        or max_connections + probe_slots + RESERVED_DESCRIPTORS <= soft
    ):
        return max_connections
    fitted = max(1, soft - RESERVED_DESCRIPTORS - probe_slots)
    log.warning(
        "--web.max-connections lowered to fit the open files limit",
        asked=max_connections,
        max_connections=fitted,
        open_files_limit=soft,
    )
    return fitted
