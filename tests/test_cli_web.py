"""`--web.config.file` and `--web.telemetry-path` as users run them: the console script in a
process of its own, polling the simulator, scraped over real TLS (certificates made in the
test) with a client certificate and basic auth.

| change to the code (tried, seen red) | failing test |
|---|---|
| `cli._serve`: `ssl_context=None` | test_console_script_serves_tls_mtls_and_basic_auth |
| `cli._serve`: web config not passed to `create_app` | test_console_script_serves_tls_... |
| `cli.main`: `--web.telemetry-path` not passed on | test_console_script_serves_tls_... |
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import trustme

from exporter.cli import parse_args
from exporter.healthcheck import running_web_args
from tests.support import TOKEN, RunningSimulator, Samples, free_port

EXPORTER = Path(sys.executable).parent / "vias-exporter"
PASSWORD = "scrape-pa55"
METRICS_PATH = "/vias/metrics"


def write_configs(tmp_path: Path, ca: trustme.CA, simulator_url: str) -> tuple[Path, Path]:
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        "tls_server_config:\n"
        f"  cert_file: {tmp_path / 'server.crt'}\n"
        f"  key_file: {tmp_path / 'server.key'}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca_file: {tmp_path / 'ca.crt'}\n"
        "basic_auth_users:\n"
        f"  prometheus: '{hashed}'\n",
        encoding="utf-8",
    )
    config = tmp_path / "config.yml"
    config.write_text(
        "targets:\n"
        f"  - {{project_id: p1, endpoint: '{simulator_url}', auth_token: {TOKEN},"
        " sources: [tasks]}\n",
        encoding="utf-8",
    )
    return config, web


@contextlib.asynccontextmanager
async def exporter_process(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        str(EXPORTER), *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def wait_for_port(port: int, process: asyncio.subprocess.Process, seconds: float) -> None:
    """Until something accepts TCP connections on the port (the process is listening)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert process.returncode is None, await process.stderr.read()  # type: ignore[union-attr]
            assert asyncio.get_running_loop().time() < deadline, "the exporter never listened"
            await asyncio.sleep(0.05)
        else:
            writer.close()
            await writer.wait_closed()
            return


async def test_console_script_serves_tls_mtls_and_basic_auth(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    ca = trustme.CA()
    config, web = write_configs(tmp_path, ca, simulator.url)
    port = free_port()
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    with_cert = ssl.create_default_context()
    ca.configure_trust(with_cert)
    ca.issue_cert("scraper.example").configure_cert(with_cert)
    auth = aiohttp.BasicAuth("prometheus", PASSWORD)
    base = f"https://127.0.0.1:{port}"
    args = ["--config.file", str(config), "--web.config.file", str(web)]
    args += ["--web.listen-address", f"127.0.0.1:{port}", "--web.telemetry-path", METRICS_PATH]
    async with exporter_process(*args) as process, aiohttp.ClientSession() as session:
        await wait_for_port(port, process, seconds=30)

        async def status(path: str, **kwargs: Any) -> int:
            url = path if path.startswith("http:") else base + path
            async with session.get(url, **kwargs) as response:
                await response.read()
                return response.status

        # Ready once the first poll is shown: waited for with a deadline, over TLS.
        deadline = asyncio.get_running_loop().time() + 30
        while await status("/-/ready", ssl=with_cert, auth=auth) != 200:
            assert asyncio.get_running_loop().time() < deadline, "never ready"
            await asyncio.sleep(0.1)
        async with session.get(base + METRICS_PATH, ssl=with_cert, auth=auth) as response:
            assert response.status == 200
            samples = Samples.parse(await response.text())
        assert samples.value("vias_up", project_id="p1", source="tasks") == 1
        assert await status("/metrics", ssl=with_cert, auth=auth) == 404
        async with session.get(base + "/", ssl=with_cert, auth=auth) as response:
            assert f'href="{METRICS_PATH}"' in await response.text()
        # Basic auth: the right user and password only.
        for path in (METRICS_PATH, "/"):
            assert await status(path, ssl=with_cert) == 401, path
        # Probes carry no credentials: health and readiness answer without them.
        assert await status("/-/healthy", ssl=with_cert) == 200
        assert await status("/-/ready", ssl=with_cert) == 200
        wrong = aiohttp.BasicAuth("prometheus", "nope")
        assert await status(METRICS_PATH, ssl=with_cert, auth=wrong) == 401
        # TLS only, with a client certificate from the configured CA.
        with pytest.raises(aiohttp.ClientError):
            await status(METRICS_PATH, ssl=trusted, auth=auth)  # no client certificate
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await status(METRICS_PATH, auth=auth)  # the server's CA is not trusted
        with pytest.raises(aiohttp.ClientError):
            await status(f"http://127.0.0.1:{port}{METRICS_PATH}", auth=auth)
        assert process.returncode is None


async def healthcheck(*args: str) -> tuple[int, bytes]:
    process = await asyncio.create_subprocess_exec(
        str(EXPORTER), "--healthcheck", *args, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, stderr


async def test_healthcheck_asks_over_tls_with_a_client_certificate(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    """Issue 21, item 10: the HEALTHCHECK asked plain HTTP, which fails once TLS is on.
    `vias-exporter --healthcheck` asks as the exporter serves: here HTTPS with mutual TLS
    (the server's own certificate, from the client CA) and basic auth on."""
    ca = trustme.CA()
    config, web = write_configs(tmp_path, ca, simulator.url)
    port = free_port()
    web_args = ["--web.listen-address", f"127.0.0.1:{port}", "--web.config.file", str(web)]
    async with exporter_process("--config.file", str(config), *web_args) as process:
        await wait_for_port(port, process, seconds=30)
        assert await healthcheck(*web_args) == (0, b"")
        deadline = asyncio.get_running_loop().time() + 30
        while (await healthcheck("/-/ready", *web_args))[0] != 0:  # ready after a poll
            assert asyncio.get_running_loop().time() < deadline, "never ready"
        # What the image's HEALTHCHECK did before: plain HTTP to a TLS port.
        code, stderr = await healthcheck("--web.listen-address", f"127.0.0.1:{port}")
        assert code == 1 and f"http://127.0.0.1:{port}/-/healthy".encode() in stderr
    code, stderr = await healthcheck(*web_args)  # nothing listens any more
    assert code == 1 and b"https://" in stderr


def test_healthcheck_takes_the_running_exporters_web_flags(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    words = ["/opt/venv/bin/python", "/opt/venv/bin/vias-exporter", "--config.file", "c.yml"]
    words += ["--web.listen-address", "0.0.0.0:9875", "--web.config.file=/etc/web.yml"]
    cmdline.write_bytes("\0".join(words).encode() + b"\0")
    assert running_web_args(cmdline) == [
        "--web.listen-address",
        "0.0.0.0:9875",
        "--web.config.file=/etc/web.yml",
    ]
    cmdline.write_bytes(b"/sbin/init\0splash\0")
    assert running_web_args(cmdline) == []
    assert running_web_args(tmp_path / "absent") == []


def test_web_limit_flags_take_durations_and_refuse_nonsense(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse_args(["--web.read-header-timeout", "500ms", "--web.idle-timeout", "2m"])
    assert (args.read_header_timeout, args.idle_timeout, args.max_connections) == (0.5, 120, 512)
    for flag, value in [
        ("--web.read-header-timeout", "0s"),
        ("--web.idle-timeout", "soon"),
        ("--web.max-connections", "0"),
    ]:
        with pytest.raises(SystemExit) as caught:
            parse_args([flag, value])
        assert caught.value.code == 2
        assert flag in capsys.readouterr().err
