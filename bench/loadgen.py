"""A small HTTP/1.1 keep-alive load generator on raw asyncio protocols.

It runs in a process of its own (the bench's), so the server under test keeps its core.
Raw protocols instead of aiohttp's client: the client must not be the bottleneck when the
server answers megabyte bodies thousands of times a second.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request in flight at a time, bodies discarded."""

    def __init__(self, request: bytes) -> None:
        self._request = request
        self._transport: asyncio.Transport | None = None
        self._header = bytearray()
        self._remaining = -1  # body bytes still expected; -1 while reading the header
        self._done: asyncio.Future[int] | None = None
        self._size = 0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionError("server closed the connection"))

    def data_received(self, data: bytes) -> None:
        if self._remaining < 0:
            self._header += data
            end = self._header.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._header[:end]).lower()
            status = head[9:12]
            start = head.find(b"\r\ncontent-length:")
            if start < 0:
                raise ConnectionError("the load generator needs Content-Length")
            stop = head.find(b"\r\n", start + 2)
            length = int(head[start + 17 : stop if stop >= 0 else None])
            self._size = length
            self._remaining = length - (len(self._header) - end - 4)
            self._header.clear()
            if status != b"200":
                self._fail(f"HTTP {status.decode()}")
                return
        else:
            self._remaining -= len(data)
        if self._remaining == 0 and self._done is not None:
            self._remaining = -1
            self._done.set_result(self._size)

    def _fail(self, reason: str) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionError(reason))

    def get(self) -> asyncio.Future[int]:
        assert self._transport is not None
        self._done = asyncio.get_running_loop().create_future()
        self._transport.write(self._request)
        return self._done

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float] = field(repr=False)  # seconds, one per request

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        if len(self.latencies) == 1:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=1000, method="inclusive")[round(p * 10) - 1]


async def run_load(
    host: str,
    port: int,
    path: str,
    *,
    connections: int,
    duration: float | None = None,
    until: asyncio.Future[Any] | None = None,
    warmup: float = 0.0,
    think_seconds: float = 0.0,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Closed loop: each connection GETs `path` again as soon as (plus `think_seconds`) the
    last answer is complete, for `duration` seconds after `warmup`, or until `until` is done.
    """
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    conns: list[_Connection] = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(lambda: _Connection(request), host, port)
        conns.append(protocol)
    latencies: list[float] = []
    started = loop.time()
    measure_from = started + warmup
    stop_at = measure_from + duration if duration is not None else None

    def running() -> bool:
        if until is not None and until.done():
            return False
        return stop_at is None or loop.time() < stop_at

    async def worker(conn: _Connection) -> None:
        while running():
            sent = time.perf_counter()
            await conn.get()
            elapsed = time.perf_counter() - sent
            if loop.time() >= measure_from:
                latencies.append(elapsed)
            if think_seconds:
                await asyncio.sleep(think_seconds)

    try:
        await asyncio.gather(*(worker(conn) for conn in conns))
    finally:
        for conn in conns:
            conn.close()
    seconds = loop.time() - max(measure_from, started)
    return LoadResult(len(latencies), seconds, latencies)
