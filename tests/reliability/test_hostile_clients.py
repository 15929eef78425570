"""Hostile or careless clients of the exporter's own web server, over real sockets on
loopback: idle and slowloris connections, more of them than descriptors, slow readers.

| change to the code (tried, seen red) | failing test |
|---|---|
| no header deadline (`_header_deadline` returns at once) | test_a_slowloris_is_closed_... |
| `keepalive_timeout` left at aiohttp's 3,630 s | test_an_idle_kept_alive_... |
| the body written whole (`WRITE_SLICE_BYTES` 1 GiB) | test_slow_readers_share_one_body_... |
| `SharedBodies.get` joining for every scrape | test_slow_readers_share_one_body_... |
| no cap (`ConnectionGuard.admit` never full) | the three test_..._cap_... and ..._files_limit_... |
| webserver.py of 628a70c (nothing to peek at past the slots: refused) | both test_a_probe_... |
| `carries_probe` without its peek | test_a_probe_whose_request_waits_unread_... |
| webserver.py of 33cf502 (asyncio accepting its whole backlog at once) | ..._files_limit_... |
| `_refuse` without `discard_waiting` (a reset, not the 503) | test_a_probe_behind_a_storm_... |
| `Acceptor` without its retry after a failed accept() | test_accept_out_of_descriptors_... |
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import signal
import socket
import struct
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
from structlog.typing import EventDict

from bench.fixtures import snapshot_exporter
from exporter.own_metrics import ProjectMetric
from exporter.service import Exporter
from exporter.web import WRITE_SLICE_BYTES, create_app
from exporter.webconfig import MAX_PENDING_CHECKS, WebConfig
from exporter.webserver import (
    ACCEPT_OUT_OF_RESOURCES,
    REFUSED,
    GuardedRequestHandler,
    GuardedSite,
    WebLimits,
    quiet_accept_errors,
    start_site,
)
from tests.reliability.reliability_support import clean_env, events, wait_until
from tests.support import TOKEN, RunningSimulator, Samples, free_port, make_config, serving

EXPORTER = Path(sys.executable).parent / "vias-exporter"
HANG = 10.0  # seconds: what a test waits before calling it a hang (never reached when green)
PARTIAL_REQUEST = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@pytest.fixture
async def idle_exporter() -> AsyncIterator[Exporter]:
    target = {"project_id": "p1", "endpoint": "http://127.0.0.1:9", "auth_token": "t"}
    config = make_config([target])
    async with Exporter(config) as exporter:
        yield exporter


@contextlib.asynccontextmanager
async def served(exporter: Exporter, limits: WebLimits) -> AsyncIterator[GuardedSite]:
    runner, site = await start_site(create_app(exporter), "127.0.0.1", 0, limits)
    try:
        yield site
    finally:
        await runner.cleanup()


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True when the server closes the connection (EOF) before the hang limit."""
    try:
        await asyncio.wait_for(reader.read(), HANG)
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


async def text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()


async def status(url: str) -> int:
    timeout = aiohttp.ClientTimeout(total=HANG)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url) as response,
    ):
        await response.read()
        return response.status


async def test_a_slowloris_is_closed_at_the_header_deadline(idle_exporter: Exporter) -> None:
    limits = WebLimits(read_header_timeout_seconds=0.2)
    async with served(idle_exporter, limits) as site:
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        writer.write(PARTIAL_REQUEST)  # and never the rest
        await writer.drain()
        assert await closed_by_server(reader)
        writer.close()
        assert site.guard.header_timeouts.total == 1
        assert site.guard.open_connections == 0
        samples = Samples.parse(await text(f"http://127.0.0.1:{site.port}/metrics"))
    reached = "vias_exporter_web_limits_reached_total"
    assert samples.value(reached, limit="read_header_timeout") == 1
    assert samples.value(reached, limit="max_connections_refused") == 0


async def test_an_idle_kept_alive_connection_is_closed(idle_exporter: Exporter) -> None:
    limits = WebLimits(idle_timeout_seconds=0.2)
    async with served(idle_exporter, limits) as site:
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        writer.write(b"GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HANG)
        assert head.startswith(b"HTTP/1.1 200")
        assert await asyncio.wait_for(reader.readexactly(3), HANG) == b"OK\n"
        assert await closed_by_server(reader)  # kept alive, then idle past the timeout
        writer.close()


async def test_idle_sockets_beyond_the_cap_make_room_for_new_ones(idle_exporter: Exporter) -> None:
    limits = WebLimits(max_connections=16, idle_grace_seconds=0)
    async with served(idle_exporter, limits) as site:
        idle = [await asyncio.open_connection("127.0.0.1", site.port) for _ in range(48)]
        # The oldest idle ones were closed to admit the newer: the cap holds.
        closed = await asyncio.gather(*(closed_by_server(reader) for reader, _ in idle[:32]))
        assert all(closed)
        base = f"http://127.0.0.1:{site.port}"
        assert await status(base + "/-/healthy") == 200
        assert await status(base + "/metrics") == 200
        assert site.guard.open_connections <= 16
        assert site.guard.evicted.total >= 32
        for _, writer in idle:
            writer.close()


async def test_a_connection_past_the_cap_with_every_slot_busy_is_told_503(
    idle_exporter: Exporter,
) -> None:
    limits = WebLimits(max_connections=1, probe_slots=0)
    async with served(idle_exporter, limits) as site:
        # The one slot is busy: a request whose body is still coming (not idle).
        busy_reader, busy = await asyncio.open_connection("127.0.0.1", site.port)
        busy.write(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        await busy.drain()
        assert (await asyncio.wait_for(busy_reader.readline(), HANG)).startswith(b"HTTP/1.1")
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        answer = await asyncio.wait_for(reader.read(), HANG)
        assert answer.startswith(b"HTTP/1.1 503 ") and answer.endswith(b"open connections")
        assert site.guard.refused.total == 1
        busy.close()
        writer.close()


async def test_probes_answer_when_every_slot_is_busy(idle_exporter: Exporter) -> None:
    """Past the cap, with every connection busy with a request (a scrape storm), a few
    connections more are let in for health and readiness only."""
    async with served(idle_exporter, WebLimits(max_connections=1, probe_slots=1)) as site:
        busy_reader, busy = await asyncio.open_connection("127.0.0.1", site.port)
        busy.write(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        assert (await asyncio.wait_for(busy_reader.readline(), HANG)).startswith(b"HTTP/1.1")

        async def ask(path: str) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            answer = await asyncio.wait_for(reader.read(), HANG)
            writer.close()
            return answer

        assert (await ask("/-/healthy")).startswith(b"HTTP/1.1 200 ")
        assert (await ask("/-/ready")).startswith(b"HTTP/1.1 ")  # 503 "not ready": answered
        assert (await ask("/metrics")).startswith(b"HTTP/1.1 503 ")
        assert site.guard.refused.total == 1  # the scrape, as soon as its request is seen
        busy.close()


def connect_blocking(port: int, request: bytes) -> socket.socket:
    """A connection made and its request sent without letting the event loop run: the
    server (same loop) accepts it later, its request waiting, as in a storm of connects."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(request)
    sock.setblocking(False)
    return sock


async def answer_to(sock: socket.socket) -> bytes:
    """What the server answered before closing; b"" when it reset the connection."""
    loop = asyncio.get_running_loop()
    answer = b""
    try:
        while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), HANG):
            answer += chunk
    except ConnectionResetError:
        return b""
    finally:
        sock.close()
    return answer


async def test_a_probe_behind_a_storm_of_connects_is_answered(idle_exporter: Exporter) -> None:
    """Every slot busy, the probe slot held by a connection that has sent nothing, and 50
    scrapes queued ahead of the probe in the listen backlog: the scrapes are refused
    unread and the probe gets in (before: refused at accept like the scrapes, unread)."""
    async with served(idle_exporter, WebLimits(max_connections=1, probe_slots=1)) as site:
        busy_reader, busy = await asyncio.open_connection("127.0.0.1", site.port)
        busy.write(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        assert (await asyncio.wait_for(busy_reader.readline(), HANG)).startswith(b"HTTP/1.1")
        silent = connect_blocking(site.port, b"")
        scrape = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        scrapes = [connect_blocking(site.port, scrape) for _ in range(50)]
        probe = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        prober = connect_blocking(site.port, probe)

        assert (await answer_to(prober)).startswith(b"HTTP/1.1 200 ")
        refused = await asyncio.gather(*(answer_to(sock) for sock in scrapes))
        assert refused == [REFUSED] * 50  # their requests dropped: a 503, not a reset
        assert await answer_to(silent) == b""  # closed to make room for the probe
        assert site.guard.refused.total == 50
        busy.close()


PROBE_KEPT_ALIVE = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"


@contextlib.asynccontextmanager
async def a_probe_let_in_before_its_request(
    exporter: Exporter,
) -> AsyncIterator[
    tuple[GuardedSite, GuardedRequestHandler, asyncio.StreamReader, asyncio.StreamWriter]
]:
    """The storm bench's missed probe: the one slot and the one probe slot held by
    connections that have sent nothing, and a probe's connection accepted before its
    request arrived (nothing to peek at yet). Yields the site, the probe's handler (on
    the server) and its client streams, once the server has let it in or refused it."""
    limits = WebLimits(max_connections=1, probe_slots=1, idle_grace_seconds=3600)
    async with served(exporter, limits) as site:
        guard = site.guard
        writers = []
        for _ in ("the slot", "the probe slot"):
            taken = guard.open_connections + 1
            writers.append((await asyncio.open_connection("127.0.0.1", site.port))[1])
            await wait_until(lambda: guard.open_connections == taken, HANG, "slots taken")  # noqa: B023
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        writers.append(writer)
        decided = lambda: guard.refused.total + guard.evicted.total == 1  # noqa: E731
        await wait_until(decided, HANG, "the probe's connection let in or refused")
        let_in = [handler for handler in guard.handlers() if handler.probes_only]
        assert let_in, "the probe's connection was refused"
        try:
            yield site, let_in[0], reader, writer
        finally:
            for each in writers:
                each.close()


async def test_a_probe_accepted_before_its_request_arrived_gets_in(
    idle_exporter: Exporter,
) -> None:
    """It takes the place of the connection in the probe slot (before: refused, as
    anything past the probe slots that could not be seen to be a probe); once its request
    is read, a newer connection that has sent nothing cannot take its place in turn."""
    async with a_probe_let_in_before_its_request(idle_exporter) as (site, _, reader, writer):
        writer.write(PROBE_KEPT_ALIVE)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HANG)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert await asyncio.wait_for(reader.readexactly(3), HANG) == b"OK\n"
        assert await answer_to(connect_blocking(site.port, b"")) == REFUSED
        assert (site.guard.evicted.total, site.guard.refused.total) == (1, 1)


async def test_a_probe_whose_request_waits_unread_keeps_its_place(
    idle_exporter: Exporter,
) -> None:
    """Its request there but not read yet (a server too busy to read it), the probe's
    connection is seen to carry a probe by a peek: a newer silent one is refused."""
    async with a_probe_let_in_before_its_request(idle_exporter) as let_in:
        site, handler, reader, writer = let_in
        pending = handler.pending
        assert pending is not None
        pending.pause_reading()  # as an event loop busy elsewhere
        writer.write(PROBE_KEPT_ALIVE)
        await writer.drain()  # on loopback: in the server's receive queue
        assert await answer_to(connect_blocking(site.port, b"")) == REFUSED
        pending.resume_reading()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HANG)
        assert head.startswith(b"HTTP/1.1 200 ")


@contextlib.asynccontextmanager
async def exporter_process(
    *args: str, open_files: int, log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The console script allowed `open_files` descriptors, its stderr in `log` (a pipe
    nobody reads would block it once full)."""

    def limit_open_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            str(EXPORTER),
            *args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=limit_open_files,
            env=clean_env(),
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), HANG)
        except TimeoutError:
            process.kill()
            await process.wait()


async def until_listening(port: int, process: asyncio.subprocess.Process) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert process.returncode is None, "the exporter exited"
            assert asyncio.get_running_loop().time() < deadline, "the exporter never listened"
            await asyncio.sleep(0.05)
        else:
            writer.close()
            return


async def until_answered(url: str) -> None:
    deadline = asyncio.get_running_loop().time() + HANG
    while await status(url) != 200:
        assert asyncio.get_running_loop().time() < deadline, f"{url} never answered 200"


async def test_idle_sockets_beyond_the_open_files_limit_leave_health_answering(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    """The issue's case, scaled down: 400 idle sockets against a process allowed 200 open
    files, all waiting to be accepted at once (made while the process is stopped, as a
    storm meets a busy server). Before, accept() failed for want of descriptors (a
    traceback a second) and the probes waited in the backlog for ever; then, asyncio took
    the whole backlog at once, before the cap saw any: accept() ran out, and its retries
    fired after shutdown (a traceback), in some runs only."""
    config = tmp_path / "config.yml"
    config.write_text(
        f"targets:\n  - {{project_id: p1, endpoint: '{simulator.url}', auth_token: {TOKEN},"
        " sources: [tasks]}\n",
        encoding="utf-8",
    )
    port = free_port()
    args = ["--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}"]
    log = tmp_path / "stderr.log"
    async with exporter_process(*args, open_files=200, log=log) as process:
        await until_listening(port, process)

        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), HANG)

        process.send_signal(signal.SIGSTOP)  # the connections wait in the listen backlog
        try:
            idle = [await connect() for _ in range(400)]
        finally:
            process.send_signal(signal.SIGCONT)
        base = f"http://127.0.0.1:{port}"
        # Idle sockets are closed to make room once idle for a second (or health gets in
        # past the cap): both answer within the hang limit.
        await until_answered(base + "/-/healthy")
        await until_answered(base + "/metrics")
        for _, writer in idle:
            writer.close()
    stderr = log.read_bytes()
    assert b"--web.max-connections lowered to fit the open files limit" in stderr
    assert b"max_connections=72" in stderr  # 200 - 64 probe slots - 64 kept for the rest
    assert b"cannot accept connections" not in stderr  # accept() never ran out
    assert b"Traceback" not in stderr


async def test_descriptor_exhaustion_is_one_counted_line_a_minute(logs: list[EventDict]) -> None:
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    try:
        failures = quiet_accept_errors(loop)
        error = OSError(24, "Too many open files")
        context: dict[str, Any] = {"message": ACCEPT_OUT_OF_RESOURCES, "exception": error}
        for _ in range(1000):
            loop.call_exception_handler(context)
    finally:
        loop.set_exception_handler(previous)
    assert failures.total == 1000
    lines = events(logs, "cannot accept connections: out of file descriptors")
    assert len(lines) == 1 and lines[0]["count"] == 1


async def test_accept_out_of_descriptors_is_one_failure_then_a_retry(
    idle_exporter: Exporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """accept() failing for want of descriptors all the same: counted once, accepting
    paused, and the waiting connection served on the retry a second later (asyncio went on
    trying: up to 4,096 failures counted, and a retry each, CPython gh-151615)."""
    accept = socket.socket.accept
    tries = 0

    def out_of_files_once(listening: socket.socket) -> tuple[socket.socket, Any]:
        nonlocal tries
        tries += 1
        if tries == 1:
            raise OSError(errno.EMFILE, "Too many open files")
        return accept(listening)

    async with served(idle_exporter, WebLimits()) as site:
        monkeypatch.setattr(socket.socket, "accept", out_of_files_once)
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        writer.write(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), HANG)).startswith(b"HTTP/1.1 200 ")
        writer.close()
        assert site.guard.accept_failures.total == 1


async def test_slow_readers_share_one_body_and_each_buffers_a_slice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Item 8 of issue 21: each slow scraper of a big body held a copy of it (joined per
    scrape, then buffered whole by asyncio). Now one join serves them all and each
    connection buffers at most a slice; bench/slow_readers.py measures the RSS."""
    exporter = snapshot_exporter(60_000)  # an 8 MiB text body: far above socket buffers
    joins = 0
    join = exporter.exposition.body

    def counted_join(*, openmetrics: bool, gzipped: bool) -> bytes:
        nonlocal joins
        joins += 1
        return join(openmetrics=openmetrics, gzipped=gzipped)

    exporter.exposition.body = counted_join  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    async with served(exporter, WebLimits()) as site:
        readers = []
        for _ in range(20):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", site.port))
            await loop.sock_sendall(sock, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            readers.append(sock)  # and never read: a stalled scraper

        def all_stalled() -> bool:
            handlers = site.guard.handlers()
            return len(handlers) == 20 and all(buffered(h) > 0 for h in handlers)

        await wait_until(all_stalled, deadline=HANG, what="every reader stalled")
        assert joins == 1
        # A slice plus asyncio's high-water mark (64 KiB) at most, not the body.
        assert max(buffered(h) for h in site.guard.handlers()) <= WRITE_SLICE_BYTES + (64 << 10)
        # The first reader reads on: the whole body, as joined.
        body = exporter.exposition.body(openmetrics=False, gzipped=False)

        async def receive() -> bytes:
            chunk = await asyncio.wait_for(loop.sock_recv(readers[0], 1 << 20), HANG)
            assert chunk, "closed before the whole body"
            return chunk

        received = bytearray()
        while b"\r\n\r\n" not in received:
            received += await receive()
        head, _, content = bytes(received).partition(b"\r\n\r\n")
        received = bytearray(content)
        while len(received) < len(body):
            received += await receive()
        assert f"Content-Length: {len(body)}".encode() in head
        assert received == body
        # The others abort (RST) halfway: their connections go, quietly.
        for sock in readers:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        await wait_until(lambda: site.guard.open_connections == 0, HANG, "connections gone")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def buffered(handler: GuardedRequestHandler) -> int:
    transport = handler.transport
    return 0 if transport is None else transport.get_write_buffer_size()


PASSWORD = "scrape-pa55"


class GatedBcrypt:
    """The real bcrypt check, held at a gate the test opens: a flood of wrong passwords
    that keeps the checking threads busy for as long as the test needs."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.held = 0
        self.costs: list[int] = []
        self._check = bcrypt.checkpw

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.costs.append(int(hashed[4:6]))
        if password != PASSWORD.encode():
            self.held += 1
            self.gate.wait(3 * HANG)  # longer than a client waits
        return self._check(password, hashed)


@pytest.fixture
def gated_bcrypt(monkeypatch: pytest.MonkeyPatch) -> Iterator[GatedBcrypt]:
    gated = GatedBcrypt()
    monkeypatch.setattr(bcrypt, "checkpw", gated)
    yield gated
    gated.gate.set()


def users() -> WebConfig:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    return WebConfig(basic_auth_users={"prometheus": hashed})


async def test_a_flood_of_wrong_passwords_leaves_scrapes_and_health_answering(
    idle_exporter: Exporter, gated_bcrypt: GatedBcrypt
) -> None:
    """Item 9 of issue 21: bcrypt checks of wrong passwords ran on the threads that join
    /metrics bodies; a flood made an authenticated scrape wait 49 s."""
    right = aiohttp.BasicAuth("prometheus", PASSWORD)
    runner, site = await start_site(
        create_app(idle_exporter, web_config=users()), "127.0.0.1", 0, WebLimits()
    )
    base = f"http://127.0.0.1:{site.port}"
    timeout = aiohttp.ClientTimeout(total=HANG)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def get(path: str, auth: aiohttp.BasicAuth | None = None) -> int:
                async with session.get(base + path, auth=auth) as response:
                    await response.read()
                    return response.status

            assert await get("/metrics", right) == 200  # verified once, remembered
            flood = [
                asyncio.create_task(get("/metrics", aiohttp.BasicAuth("prometheus", f"guess{n}")))
                for n in range(40)
            ]
            # The checks past the bound are told 429 at once; the others wait at the gate.
            beyond = len(flood) - MAX_PENDING_CHECKS
            await wait_until(lambda: sum(t.done() for t in flood) >= beyond, HANG, "429s")
            # A new body must be joined (something it shows changed): a worker thread.
            idle_exporter.telemetry.record("p1", ProjectMetric.vias_poll_overruns, "tasks")
            assert await get("/metrics", right) == 200
            assert await get("/-/healthy") == 200
            gated_bcrypt.gate.set()
            statuses = await asyncio.gather(*flood)
    finally:
        await runner.cleanup()
    assert set(statuses) == {401, 429}  # refused, or told to come back: never let in
    assert f'limit="basic_auth_pending_checks"}} {statuses.count(429)}.0'.encode() in (
        idle_exporter.exposition.body(openmetrics=False, gzipped=False)
    )
    assert statuses.count(401) <= 1 + MAX_PENDING_CHECKS


async def test_unknown_users_cost_a_bcrypt_check_like_known_ones(
    idle_exporter: Exporter, gated_bcrypt: GatedBcrypt
) -> None:
    """An unknown user was refused without a bcrypt check (0.4 ms against 55 ms): the
    time told which users exist. Now both cost one check of the same cost."""
    gated_bcrypt.gate.set()
    async with serving(idle_exporter, users()) as url, aiohttp.ClientSession() as session:
        for auth in (aiohttp.BasicAuth("eve", "guess"), aiohttp.BasicAuth("prometheus", "guess")):
            async with session.get(url + "/metrics", auth=auth) as response:
                assert response.status == 401
    assert gated_bcrypt.costs == [5, 5]
