"""Outgoing calls: TLS verified by default, a private CA bundle (`ca_file`), `verify_tls:
false`, and an HTTP(S) proxy (`proxy`) that every call, IAM login included, goes through."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from structlog.typing import EventDict

from exporter.simulator import Simulator, World
from tests.reliability.reliability_support import events, fast_config, running_exporter
from tests.support import RunningSimulator, make_simulator, target


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@contextlib.asynccontextmanager
async def tls_simulator(world: World, ca: trustme.CA) -> AsyncIterator[tuple[Simulator, str]]:
    """The simulator over HTTPS with a certificate for 127.0.0.1 from a private CA."""
    sim = make_simulator(world)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield sim, f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class Proxy:
    """A tiny forward proxy on loopback: CONNECT tunnels (HTTPS) and absolute-URI requests
    (plain HTTP, one request per connection). Records what went through it."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []  # CONNECT targets
        self.requests: list[str] = []  # absolute URIs forwarded
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, uri, version = request_line.split(" ")
            if method == "CONNECT":
                host, port = uri.rsplit(":", 1)
                assert host == "127.0.0.1", "the test proxy only reaches loopback"
                self.tunnels.append(uri)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
                return
            # plain HTTP: "GET http://127.0.0.1:port/path HTTP/1.1"
            rest = uri.removeprefix("http://")
            authority, _, path = rest.partition("/")
            host, port = authority.rsplit(":", 1)
            assert host == "127.0.0.1", "the test proxy only reaches loopback"
            self.requests.append(uri)
            headers = [
                line
                for line in header_lines
                if line and not line.lower().startswith(("connection:", "proxy-"))
            ]
            body = b""
            for line in headers:
                if line.lower().startswith("content-length:"):
                    body = await reader.readexactly(int(line.split(":", 1)[1]))
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            forwarded = [f"{method} /{path} {version}", *headers, "Connection: close", "", ""]
            up_writer.write("\r\n".join(forwarded).encode("latin-1") + body)
            await up_writer.drain()
            writer.write(await up_reader.read())  # until the origin closes
            await writer.drain()
            up_writer.close()
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


async def test_tls_is_verified_by_default(
    world: World, ca: trustme.CA, logs: list[EventDict]
) -> None:
    """A certificate from a CA the system does not trust: `connection`, the error names the
    certificate problem; `ca_file` and `verify_tls: false` both make the poll succeed."""
    async with tls_simulator(world, ca) as (sim, url):
        async with running_exporter(fast_config([target(url, "p1")])) as running:
            await running.exporter.poll_all_once()
            untrusted = await running.scrape()
        assert sim.requests == []  # the handshake failed: no request was ever sent
        for source in ("tasks", "batch_tasks"):
            assert untrusted.value("vias_up", project_id="p1", source=source) == 0
            assert untrusted.value(
                "vias_poll_errors_total", project_id="p1", source=source, reason="connection"
            )
            (failure,) = events(logs, "poll failed", source=source)
            assert "Certificate" in failure["error"] or "CERTIFICATE" in failure["error"]
        assert (
            untrusted.value(
                "vias_api_requests_total",
                project_id="p1",
                endpoint="/v2/{project_id}/tasks",
                code="connection_error",
            )
            == 1  # a refused certificate is not retried
        )


@pytest.mark.parametrize("setting", ["ca_file", "verify_tls_false"])
async def test_a_private_ca_or_no_verification_is_configurable(
    world: World, ca: trustme.CA, tmp_path: Path, setting: str
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    extra = {"ca_file": str(bundle)} if setting == "ca_file" else {"verify_tls": False}
    async with tls_simulator(world, ca) as (sim, url):
        config = fast_config([target(url, "p1")], **extra)
        async with running_exporter(config) as running:
            await running.exporter.poll_all_once()
            samples = await running.scrape()
    for source in ("tasks", "batch_tasks"):
        assert samples.value("vias_up", project_id="p1", source=source) == 1
    assert {r.status for r in sim.requests} == {200}


@pytest.mark.parametrize("auth", ["token", "password"])
async def test_plain_http_calls_go_through_the_proxy(
    simulator: RunningSimulator, auth: str
) -> None:
    async with Proxy() as proxy:
        config = fast_config([target(simulator.url, "p1", auth=auth)], proxy=proxy.url)
        async with running_exporter(config) as running:
            await running.exporter.poll_all_once()
            samples = await running.scrape()
    for source in ("tasks", "batch_tasks"):
        assert samples.value("vias_up", project_id="p1", source=source) == 1
    # every request the simulator saw came through the proxy, the IAM login too
    assert len(proxy.requests) == len(simulator.sim.requests) == (3 if auth == "password" else 2)
    assert all(uri.startswith(simulator.url + "/") for uri in proxy.requests)
    if auth == "password":
        assert any(uri.endswith("/v3/auth/tokens") for uri in proxy.requests)


async def test_https_calls_tunnel_through_the_proxy(
    world: World, ca: trustme.CA, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    async with tls_simulator(world, ca) as (sim, url), Proxy() as proxy:
        config = fast_config(
            [target(url, "p1", auth="password")], ca_file=str(bundle), proxy=proxy.url
        )
        async with running_exporter(config) as running:
            await running.exporter.poll_all_once()
            samples = await running.scrape()
    for source in ("tasks", "batch_tasks"):
        assert samples.value("vias_up", project_id="p1", source=source) == 1
    authority = url.removeprefix("https://")
    assert proxy.tunnels and set(proxy.tunnels) == {authority}
    assert len(sim.requests) == 3  # IAM login + two listings, all inside the tunnel(s)
